"""Exceptions for a user's mistakes (bad input, refused paths, mismatched runs).

The experiment scripts print a `UserError` as one line and exit with status 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Input or options the user can fix; the message names the problem and the fix."""


class UnknownModalityError(UserError, KeyError):
    """A modality name that the cohort, latent space or model set does not have. One type for
    every such lookup (a `UserError`, and a `KeyError` for code that catches lookups)."""

    __str__ = BaseException.__str__  # the message as written, not KeyError's quoted repr
