"""Every config starts from the library's dataclass defaults (their one source); paper.py,
demo.py and test.py change only what they need. tests/test_configs.py fails when a section and
its dataclass disagree."""

import dataclasses
import typing

import ml_collections

from coherent_jax.evaluate import EvalConfig
from coherent_jax.latent import LatentConfig
from coherent_jax.model_set import ModelSetConfig
from coherent_jax.autoencoder import AutoencoderConfig
from coherent_jax.impute import ImputeConfig
from coherent_jax.pipeline import DataConfig


def _flag_type(hint) -> type:
    """The type a command-line override of a field parses to: int for `int | None`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def section(cls, exclude: tuple[str, ...] = (), **extra) -> ml_collections.ConfigDict:
    """The fields of config dataclass `cls` at their defaults, as a ConfigDict.

    `exclude` drops fields the scripts build themselves; `extra` adds script-level fields.
    """
    return _as_config(cls(), exclude, extra)


def _as_config(instance, exclude=(), extra=None) -> ml_collections.ConfigDict:
    """A config dataclass instance as a ConfigDict: nested config dataclasses become nested
    sections, and a None becomes a typed FieldReference so that `--config.x.field=5` parses."""
    hints = typing.get_type_hints(type(instance))
    values = {}
    for field in dataclasses.fields(instance):
        if field.name in exclude:
            continue
        value = getattr(instance, field.name)
        if dataclasses.is_dataclass(value):
            value = _as_config(value)
        elif value is None:
            value = ml_collections.FieldReference(None, field_type=_flag_type(hints[field.name]))
        values[field.name] = value
    return ml_collections.ConfigDict({**values, **(extra or {})})


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = section(DataConfig)
    # autoencoders and widths are built per modality by experiments/_common.latent_config from
    # the epochs, patience and per_modality_widths here
    ae = AutoencoderConfig()
    c.latent = section(LatentConfig, exclude=("autoencoders", "widths"),
                       max_epochs=ae.max_epochs, patience=ae.patience, per_modality_widths=False)
    c.denoisers = section(ModelSetConfig, targets="")  # targets: comma-separated, '' = all
    # split and calibrate_quantile: the pipeline's imputation stage (`pipeline.stage_impute`)
    c.impute = section(ImputeConfig, split="test", calibrate_quantile=0.0, bucket=256)
    c.evaluate = section(EvalConfig)
    c.parallel = ml_collections.ConfigDict(dict(num_devices=0, distributed=False))
    return c
