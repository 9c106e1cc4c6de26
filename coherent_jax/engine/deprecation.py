"""Old call forms kept working after a signature change, with a DeprecationWarning."""

from __future__ import annotations

import functools
import warnings
from typing import Callable


def old_call_form(new_form: str, adapt: Callable[[tuple, dict], tuple[tuple, dict] | None]):
    """Decorator: a call that `adapt` recognises as the old form (it returns the new form's
    (args, kwargs); None for a call already in the new form) is rewritten and warned about,
    naming `new_form`. The decorated function keeps its signature for `inspect` and help."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            new = adapt(args, kwargs)
            if new is not None:
                warnings.warn(f"this call of {fn.__name__} is deprecated; call {new_form}.",
                              DeprecationWarning, stacklevel=2)
                args, kwargs = new
            return fn(*args, **kwargs)

        return call

    return wrap


def pop_fields(kwargs: dict, names) -> dict:
    """The entries of `kwargs` named in `names`, removed from it."""
    return {n: kwargs.pop(n) for n in list(kwargs) if n in names}
