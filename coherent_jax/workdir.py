"""The work directory: the one owner of its folder and file names.

    workdir/
      config.json          the full config, seed, versions, data fingerprint
      preprocessing/       the fitted feature preprocessing (features, fills, scaling)
      latent_space/        fitted encoders (Orbax) + latent_quality.{csv,json}
      models/              the trained ModelSet (Orbax) + training reports
      checkpoints/         resumable denoiser training, checkpoints/<target>/<family>
      metrics.jsonl        every training record (pandas.read_json(lines=True))
      report/              the evaluation: index.md, tables/, figures/, results/

No file of it holds a patient's row (`coherent_jax.audit` checks): the imputation of the
configured split is patient data and goes beside it (`imputation_folder`). The stages that
write these parts are `pipeline.stage_*`, run in the order of `STAGES`; `Imputer.load` and the
scripts read them here. What earlier versions saved under other names or without a setting
added since is brought up to date here, before anything parses it (`upgrade_config`,
`upgrade_models_metadata`, `read_run`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, NamedTuple

CONFIG = "config.json"
PREPROCESSING = "preprocessing"
LATENT_SPACE = "latent_space"
MODELS = "models"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
REPORT = "report"
EARLIER_IMPUTATION = "imputation"
"""Where versions before `imputation_folder` wrote the pipeline's imputation (patients' rows)."""


class Stage(NamedTuple):
    """One stage of the pipeline.

    Attributes:
        name: the stage, and the section of the run's config that sets it.
        part: what it writes in the work directory ('': nothing; the imputation goes
            beside it, `imputation_folder`).
        label: what the scripts call its output in their log lines.
        own_settings: keys of its config section that are the stage's own, not fields of
            the section's config dataclass (`settings.from_mapping(besides=...)`).
    """

    name: str
    part: str
    label: str
    own_settings: tuple[str, ...] = ()


class Stages(NamedTuple):
    """The pipeline's stages in the order they run; each reloads what the work directory
    has (a rerun resumes an interrupted run)."""

    data: Stage
    latent: Stage
    denoisers: Stage
    impute: Stage
    evaluate: Stage


STAGES = Stages(
    data=Stage("data", PREPROCESSING, "cohort"),
    latent=Stage("latent", LATENT_SPACE, "latent space"),
    denoisers=Stage("denoisers", MODELS, "denoisers", own_settings=("targets",)),
    impute=Stage("impute", "", "imputation",
                 own_settings=("split", "calibrate_quantile", "bucket")),
    evaluate=Stage("evaluate", REPORT, "report"))
TRAINING = STAGES[:3]
"""The stages that train a run: their settings make the run (`pipeline.claim_workdir`)."""
RERUNNABLE = tuple(stage.name for stage in STAGES[len(TRAINING):])
"""Config sections that change no trained artefact: a work directory accepts new values."""
IMPUTER_PARTS = (CONFIG,) + tuple(stage.part for stage in TRAINING)
"""What `Imputer.load` needs of a work directory (the training data is not among them)."""


def part(workdir: str, name: str, *more: str) -> str:
    """The path of one part of a work directory (a name above), or of something inside it."""
    return os.path.join(workdir, name, *more)


def imputation_folder(workdir: str) -> str:
    """Where the pipeline writes its patients' imputation by default: `<workdir>_imputed`,
    beside the work directory, never inside it (it holds patients' rows; the work directory
    is what may be shared, `coherent_jax.audit`)."""
    return os.path.abspath(workdir).rstrip(os.sep) + "_imputed"


def stages_through(name: str) -> tuple[Stage, ...]:
    """The stages up to and including `name`, in the order they run."""
    names = [stage.name for stage in STAGES]
    if name not in names:
        raise ValueError(f"unknown stage {name!r}; stages: {names}.")
    return STAGES[:names.index(name) + 1]


def done(workdir: str, stage: Stage) -> bool:
    """Whether the work directory holds the stage's output (the stage then reloads it)."""
    return bool(stage.part) and os.path.isdir(part(workdir, stage.part))


# Settings of a run's config renamed since a run could have been saved: section -> old -> new
# (when the step counts got their own names).
RENAMED = {("denoisers",): {"num_steps": "train_steps", "num_train_steps": "diffusion_steps",
                            "val_num_steps": "val_sample_steps"},
           ("impute",): {"num_steps": "sample_steps"},
           ("evaluate", "imputation"): {"num_steps": "sample_steps"}}
ADDED = {("denoisers",): {"distill_conditions": False, "covariate": "", "ema_decay": 0.0,
                          "patience": 0, "anchor_components": 1,
                          "condition_components": 0, "correction_test_z": -1e9},
         ("data",): {"mixture_link": "sinh", "marginal": "none"},
         ("latent",): {"per_modality_widths": False}}
"""Settings added since a run could have been saved, with the value that run trained with."""


def upgrade_config(config: Mapping[str, Any] | None) -> dict:
    """A run's configuration as saved by any version (config.json's 'config'), in today's
    names: settings saved under an old name renamed (`RENAMED`), settings added since filled
    with the value the run used (`ADDED`). Sections it lacks stay absent; what it does not
    know stays, for the parser to refuse (`settings.from_mapping`)."""
    out = dict(config or {})
    for path, names in RENAMED.items():
        out = _with_section(out, path, lambda section, names=names: _renamed(section, names))
    for path, added in ADDED.items():
        out = _with_section(out, path, lambda section, added=added: {**added, **section})
    return out


def _renamed(section: dict, names: Mapping[str, str]) -> dict:
    """The section with its old names replaced (a new name given too wins)."""
    out = {k: v for k, v in section.items() if k not in names}
    for old, new in names.items():
        if old in section and new not in section:
            out[new] = section[old]
    return out


def _with_section(config: dict, path: tuple[str, ...], change) -> dict:
    """The config with the (nested) section at `path` replaced by `change(section)`; unchanged
    when it has no such section."""
    head, rest = path[0], path[1:]
    section = config.get(head)
    if not isinstance(section, Mapping):
        return config
    section = dict(section)
    return {**config, head: _with_section(section, rest, change) if rest else change(section)}


def read_run(workdir: str) -> dict:
    """workdir/config.json (config, seed, versions, data fingerprint), its config in today's
    names (`upgrade_config`)."""
    with open(part(workdir, CONFIG)) as f:
        run = json.load(f)
    return {**run, "config": upgrade_config(run.get("config"))}


def upgrade_models_metadata(meta: Mapping[str, Any]) -> dict:
    """A saved model set's metadata (models/metadata.json) as written by any version, in
    today's names: the diffusion T saved as 'num_train_steps' (in the set and in every
    architecture), the specialists' architecture as 'model', the fusion sharpness as
    'fusion_sharpness'; the target order (sorted), the sharpness (0, off), the covariate
    (none) and the cascade's orders (none: the targets' order) added."""
    meta = dict(meta)
    if "num_train_steps" in meta and "diffusion_steps" not in meta:
        meta["diffusion_steps"] = meta.pop("num_train_steps")
    meta.setdefault("target_order", sorted(meta["targets"]))
    meta.setdefault("covariate", None)
    meta.setdefault("cascade_orders", {})
    meta["targets"] = {name: _upgraded_target(info) for name, info in meta["targets"].items()}
    return meta


def _upgraded_target(info: Mapping[str, Any]) -> dict:
    """One target's saved metadata in today's names (`upgrade_models_metadata`)."""
    info = dict(info)
    info["sharpness"] = info.pop("fusion_sharpness", info.get("sharpness", 0.0))
    if "specialist_model" not in info:
        info["specialist_model"] = info.pop("model", None)
    for key in ("specialist_model", "multi_model"):
        if info[key] and "num_train_steps" in info[key]:
            arch = dict(info[key])
            arch.setdefault("diffusion_steps", arch.pop("num_train_steps"))
            info[key] = arch
    return info
