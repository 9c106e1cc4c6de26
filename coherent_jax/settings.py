"""Settings -> typed config: the one parser of every config section.

    config = from_mapping(ImputeConfig, c.impute, besides=("split", "calibrate_quantile"))

A section comes from a script's ConfigDict or a saved run's config.json; a saved run's
configuration is first brought to today's names by `workdir.upgrade_config`, so this parser
knows nothing of old names and refuses every key it does not know.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from coherent_jax.errors import UserError


def from_mapping(cls, values: Mapping[str, Any], *, besides: tuple[str, ...] = ()):
    """Builds the frozen config dataclass `cls` from a ConfigDict / dict of its fields.

    Lists become tuples; a field typed as a config dataclass (`EvalConfig.imputation`) is
    built from its mapping by this same parser; a field typed `int | None` given 0 takes None
    (a command-line flag cannot say None: `sample_steps=0` is all T steps).

    Args:
        cls: the config dataclass.
        values: its settings.
        besides: keys of the section that belong to its caller (a stage's own settings, e.g.
            the imputation stage's split), skipped.

    Raises:
        UserError: a key that is not a field (and not in `besides`), or a value the dataclass
            refuses (e.g. --config.denoisers.patience=-1); one line from the scripts.
    """
    values = {k: v for k, v in _as_dict(values).items() if k not in besides}
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UserError(f"{cls.__name__} has no field(s) {unknown}; known: {sorted(fields)}.")
    hints = typing.get_type_hints(cls)
    values = {name: _field_value(hints[name], value) for name, value in values.items()}
    try:
        return cls(**values)
    except UserError:
        raise
    except ValueError as error:
        raise UserError(f"{cls.__name__}: {error}") from error


def _as_dict(values) -> dict:
    """A ConfigDict or mapping as a plain dict (one level)."""
    return dict(values.to_dict() if hasattr(values, "to_dict") else values)


def _field_value(hint, value):
    """One setting as its field takes it (see `from_mapping`)."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, list):
        return tuple(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_mapping(hint, value)
    if _is_optional_int(hint) and value == 0:
        return None
    return value


def _is_optional_int(hint) -> bool:
    """True for `int | None` (and `Optional[int]`)."""
    return (typing.get_origin(hint) in (typing.Union, types.UnionType)
            and set(typing.get_args(hint)) == {int, type(None)})
