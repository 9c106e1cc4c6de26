"""Label conventions shared by every loader: tumour stage and overall survival.

A cohort's labels table always has these columns (missing values where unknown):
    cancer_type  str      tumour type (TCGA project code for TCGA data)
    stage        Int64    1-4 (Stage 0/I* -> 1, II* -> 2, III* -> 3, IV* -> 4; X/unknown -> <NA>)
    os_time      float64  overall-survival time in days
    os_event     Int64    1 = death observed at os_time, 0 = censored
Cohort-specific columns (subtype, histology, ...) come after them.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

STANDARD_COLUMNS = ("cancer_type", "stage", "os_time", "os_event")

_STAGE = re.compile(r"^(?:STAGE)?\s*(IV|III|II|I|0|IS)(?:[A-C][0-9]?)?$")
_STAGE_OF = {"0": 1, "IS": 1, "I": 1, "II": 2, "III": 3, "IV": 4}


def encode_stage(values) -> pd.Series:
    """Maps stage strings to 1-4, the paper's rule, case- and format-tolerant.

    'Stage 0', 'Stage I', 'stage ia', 'IB' -> 1; 'Stage IIA' -> 2; 'Stage IIIC' -> 3;
    'Stage IVB' -> 4; 'Stage X', 'not reported', empty -> <NA>. Integers 1-4 pass through.

    Args:
        values: a sequence or Series of stage labels.

    Returns:
        Int64 Series (same index when given a Series).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values))

    def one(value):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return pd.NA
        if isinstance(value, (int, np.integer, float, np.floating)):
            return int(value) if value in (1, 2, 3, 4) else pd.NA
        text = str(value).strip().upper()
        if text in {"1", "2", "3", "4"}:
            return int(text)
        match = _STAGE.match(text)
        return _STAGE_OF[match.group(1)] if match else pd.NA

    return pd.Series([one(v) for v in series], index=series.index, dtype="Int64", name="stage")


def overall_survival(event, death_time, followup_time) -> pd.DataFrame:
    """Builds (os_time, os_event) from the usual TCGA clinical columns.

    A patient with an observed death gets its time to death; a living patient its time to last
    follow-up, censored. When the needed time is missing both columns are missing: a survival
    model needs both, and guessing a time would bias it.

    Args:
        event: [N] 1/True when the patient died (vital status), missing when unknown.
        death_time: [N] days to death.
        followup_time: [N] days to last follow-up.

    Returns:
        DataFrame [N, 2] with os_time (float64) and os_event (Int64), on the index of `event`.
    """
    event = pd.Series(event)
    index = event.index
    event = pd.to_numeric(event, errors="coerce").to_numpy(dtype=np.float64)
    death = pd.to_numeric(pd.Series(death_time, index=index), errors="coerce").to_numpy(np.float64)
    follow = pd.to_numeric(pd.Series(followup_time, index=index),
                           errors="coerce").to_numpy(np.float64)
    time = np.where(event == 1, death, np.where(event == 0, follow, np.nan))
    known = ~np.isnan(time) & ~np.isnan(event)
    return pd.DataFrame({
        "os_time": np.where(known, time, np.nan),
        "os_event": pd.Series(np.where(known, event, np.nan), index=index).astype("Int64"),
    }, index=index)


def standard_labels(index: pd.Index, **columns) -> pd.DataFrame:
    """A labels table with the standard columns first, missing where not given.

    Args:
        index: sample IDs.
        **columns: column name -> values aligned with `index` (extra names are kept, in order).
    """
    labels = pd.DataFrame(index=pd.Index(index, name="sample_id"))
    labels["cancer_type"] = pd.Series(columns.pop("cancer_type", pd.NA), index=labels.index,
                                      dtype="string")
    stage = columns.pop("stage", None)
    labels["stage"] = (pd.Series(pd.NA, index=labels.index, dtype="Int64") if stage is None
                       else encode_stage(pd.Series(np.asarray(stage, dtype=object),
                                                   index=labels.index)))
    labels["os_time"] = pd.Series(columns.pop("os_time", np.nan), index=labels.index,
                                  dtype="float64")
    labels["os_event"] = pd.Series(columns.pop("os_event", pd.NA), index=labels.index,
                                   dtype="Int64")
    negative = labels["os_time"] < 0
    if negative.any():  # e.g. follow-up recorded before the diagnosis date in TCGA LGG
        warnings.warn(f"{int(negative.sum())} sample(s) have a negative survival time (e.g. "
                      f"{labels.index[negative][0]!r}: {labels['os_time'][negative].iloc[0]:g});"
                      " their survival labels are treated as unknown.", stacklevel=2)
        labels.loc[negative, "os_time"] = np.nan
        labels.loc[negative, "os_event"] = pd.NA
    for name, values in columns.items():
        labels[name] = values
    return labels
