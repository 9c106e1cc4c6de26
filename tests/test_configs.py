"""The experiment configs take their fields and defaults from the library's config dataclasses
(one source of defaults), and every shipped config builds valid library configs."""

import dataclasses
import importlib.util
import os
import sys

import pytest

from coherent_jax.evaluate import EvalConfig
from coherent_jax.latent import LatentConfig
from coherent_jax.model_set import ModelSetConfig
from coherent_jax.impute import ImputeConfig
from coherent_jax.pipeline import DataConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = {"data": (DataConfig, ()), "latent": (LatentConfig, ("max_epochs", "patience")),
            "denoisers": (ModelSetConfig, ("targets",)), "impute": (ImputeConfig, ("split", "calibrate_quantile")),
            "evaluate": (EvalConfig, ())}


def _config(name):
    path = os.path.join(ROOT, "experiments", "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if hasattr(module, "get_config") else module.base_config()


def _plain(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return list(value) if isinstance(value, tuple) else value


def test_base_sections_are_the_dataclass_defaults():
    base = _config("base")
    for section, (cls, extra) in SECTIONS.items():
        fields = {f.name for f in dataclasses.fields(cls)} - {"autoencoders"}
        assert set(base[section]) == fields | set(extra), section
        defaults = dataclasses.asdict(cls())
        for name in fields:
            assert _plain(base[section][name]) == _plain(defaults[name]), (section, name)


@pytest.mark.parametrize("name", ["demo", "paper", "test"])
def test_shipped_configs_build_library_configs(name):
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import _common  # noqa: PLC0415

    c = _config(name)
    assert _common.data_config(c) and _common.impute_config(c) and _common.eval_config(c)
    assert isinstance(_common.model_config(c), ModelSetConfig)
    assert isinstance(_common.impute_config(c), ImputeConfig)


def test_a_none_default_can_still_be_overridden_from_the_command_line():
    c = _config("base")
    assert c.denoisers.val_num_steps is None
    c.denoisers.val_num_steps = 50  # what --config.denoisers.val_num_steps=50 does
    assert c.denoisers.val_num_steps == 50
    with pytest.raises(TypeError):
        c.denoisers.val_num_steps = "fifty"


def test_impute_settings_from_a_saved_section():
    # a flag's 0 means all T steps; an absent key keeps the default; pipeline keys are ignored
    assert ImputeConfig.from_settings({"sampler": "ddpm", "num_steps": 0}).num_steps is None
    assert ImputeConfig.from_settings({"method": "multi"}) == ImputeConfig(method="multi")
    assert ImputeConfig.from_settings({"split": "test", "calibrate_quantile": 0.5}) == (
        ImputeConfig())
    with pytest.raises(ValueError, match="unknown sampler"):
        ImputeConfig(sampler="euler")
