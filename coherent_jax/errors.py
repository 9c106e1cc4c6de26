"""Exceptions for a user's mistakes (bad input, refused paths, mismatched runs).

The experiment scripts print a `UserError` as one line and exit with status 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Input or options the user can fix; the message names the problem and the fix."""
