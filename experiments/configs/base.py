"""Every config starts from the library's dataclass defaults (their one source); paper.py,
demo.py and test.py change only what they need. tests/test_configs.py fails when a section and
its dataclass disagree."""

import dataclasses
import typing

import ml_collections

from coherent_jax.evaluate import EvalConfig
from coherent_jax.latent import LatentConfig
from coherent_jax.model_set import ModelSetConfig
from coherent_jax.models.autoencoder import AutoencoderConfig
from coherent_jax.pipeline import DataConfig, ImputeConfig


def _flag_type(hint) -> type:
    """The type a command-line override of a field parses to: int for `int | None`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def section(cls, exclude: tuple[str, ...] = (), **extra) -> ml_collections.ConfigDict:
    """The fields of config dataclass `cls` at their defaults, as a ConfigDict.

    A None default becomes a typed FieldReference so that `--config.x.field=5` still parses;
    `exclude` drops fields the scripts build themselves; `extra` adds script-level fields.
    """
    defaults, hints = cls(), typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        value = getattr(defaults, field.name)
        values[field.name] = (ml_collections.FieldReference(None, field_type=_flag_type(
            hints[field.name])) if value is None else value)
    return ml_collections.ConfigDict({**values, **extra})


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = section(DataConfig)
    # autoencoders are built per modality by experiments/_common.latent_config from the
    # epochs and patience here
    ae = AutoencoderConfig()
    c.latent = section(LatentConfig, exclude=("autoencoders",), max_epochs=ae.max_epochs,
                       patience=ae.patience)
    c.denoisers = section(ModelSetConfig, targets="")  # targets: comma-separated, '' = all
    c.impute = section(ImputeConfig)
    c.evaluate = section(EvalConfig)
    c.parallel = ml_collections.ConfigDict(dict(num_devices=0, distributed=False))
    return c
