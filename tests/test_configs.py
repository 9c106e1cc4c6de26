"""The experiment configs take their fields and defaults from the library's config dataclasses
(one source of defaults), and every shipped config builds valid library configs."""

import dataclasses
import importlib.util
import json
import os
import sys

import pytest

from coherent_jax import pipeline, workdir
from coherent_jax.errors import UserError
from coherent_jax.evaluate import EvalConfig
from coherent_jax.impute import ImputeConfig
from coherent_jax.latent import LatentConfig
from coherent_jax.model_set import ModelSetConfig
from coherent_jax.pipeline import DataConfig
from coherent_jax.settings import from_mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))  # as the scripts run: configs, _common
SECTIONS = {"data": (DataConfig, ()),
            "latent": (LatentConfig, ("max_epochs", "patience", "per_modality_widths")),
            "denoisers": (ModelSetConfig, workdir.STAGES.denoisers.own_settings),
            "impute": (ImputeConfig, workdir.STAGES.impute.own_settings),
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
        fields = {f.name for f in dataclasses.fields(cls)} - {"autoencoders", "widths"}
        assert set(base[section]) == fields | set(extra), section
        defaults = dataclasses.asdict(cls())
        for name in fields:
            assert _plain(base[section][name]) == _plain(defaults[name]), (section, name)


@pytest.mark.parametrize("name", ["demo", "paper", "test", "private", "pan_cancer"])
def test_shipped_configs_build_library_configs(name):
    import _common  # noqa: PLC0415

    c = _config(name)
    assert _common.data_config(c) and _common.impute_config(c) and _common.eval_config(c)
    assert isinstance(_common.model_config(c), ModelSetConfig)
    assert isinstance(_common.impute_config(c), ImputeConfig)


def test_model_set_config_stays_flat_and_groups_its_fields_by_concern():
    from coherent_jax.model_set import TrainingRuntime, _old_training_call  # noqa: PLC0415

    config = ModelSetConfig(hidden_dim=16, train_steps=7, patience=2, covariate="kind",
                            sharpness_grid=(0.0, 0.5), calibration_draws=4, val_sampler="ddim")
    groups = (config.architecture, config.training, config.conditioning)
    grouped = [f.name for g in groups for f in dataclasses.fields(g)]
    flat = {f.name for f in dataclasses.fields(ModelSetConfig)}
    assert len(grouped) == len(set(grouped)) and set(grouped) <= flat  # each field one home
    assert set(dataclasses.asdict(config)) == flat  # what config.json and checkpoints hold
    for group in groups:
        assert all(getattr(group, f.name) == getattr(config, f.name)
                   for f in dataclasses.fields(group))
    assert config.denoiser(4) == config.architecture.denoiser(4)
    assert config.training.loop.train_steps == 7 and config.training.loop.early_stop.patience == 2
    assert config.training.step_config("specialists").uncond_prob == config.uncond_prob
    assert config.training.step_config("multi").mask_drop_prob == config.mask_drop_prob
    fusion = config.fusion_calibration
    assert (fusion.grid, fusion.num_samples, fusion.sampler) == ((0.0, 0.5), 4, "ddim")
    assert _old_training_call(("c",), {"workdir": "w", "features": None}) == (
        ("c",), {"features": None, "runtime": TrainingRuntime(workdir="w")})
    assert _old_training_call(("c",), {"runtime": TrainingRuntime()}) is None


def test_a_none_default_can_still_be_overridden_from_the_command_line():
    c = _config("base")
    assert c.denoisers.val_sample_steps is None
    c.denoisers.val_sample_steps = 50  # what --config.denoisers.val_sample_steps=50 does
    assert c.denoisers.val_sample_steps == 50
    with pytest.raises(TypeError):
        c.denoisers.val_sample_steps = "fifty"


def test_a_bad_setting_from_the_command_line_is_a_user_error():
    import _common  # noqa: PLC0415

    c = _config("demo")
    c.denoisers.patience = -1  # what --config.denoisers.patience=-1 does
    with pytest.raises(UserError, match="ModelSetConfig: patience must be >= 0"):
        _common.model_config(c)


def test_impute_settings_from_a_config_section():
    # a flag's 0 means all T steps; an absent key keeps the default; the stage's keys skipped
    own = workdir.STAGES.impute.own_settings
    assert from_mapping(ImputeConfig, {"sampler": "ddpm", "sample_steps": 0}).sample_steps is None
    assert from_mapping(ImputeConfig, {"method": "multi"}) == ImputeConfig(method="multi")
    assert from_mapping(ImputeConfig, {"split": "test", "calibrate_quantile": 0.5, "bucket": 8},
                        besides=own) == ImputeConfig()
    with pytest.raises(UserError, match="ImputeConfig has no field\\(s\\) \\['split'\\]"):
        from_mapping(ImputeConfig, {"split": "test"})  # unknown keys are refused, not dropped
    with pytest.raises(UserError, match="ImputeConfig: num_samples must be >= 1, got -3"):
        from_mapping(ImputeConfig, {"num_samples": -3})
    with pytest.raises(ValueError, match="unknown sampler"):
        ImputeConfig(sampler="euler")


def test_from_settings_is_a_deprecated_door_to_the_one_parser():
    with pytest.warns(DeprecationWarning, match="settings.from_mapping"):
        # a run saved before the step names were split, with the stage's own keys
        assert ImputeConfig.from_settings({"sampler": "ddim", "num_steps": 7, "split": "test"}
                                          ) == ImputeConfig(sampler="ddim", sample_steps=7)
    with pytest.warns(DeprecationWarning), pytest.raises(UserError, match="num_sample"):
        ImputeConfig.from_settings({"num_sample": 3})


def test_a_bad_impute_setting_stops_a_script_before_any_work():
    import _common  # noqa: PLC0415

    for field, value, message in (("num_samples", 0, "num_samples must be >= 1"),
                                  ("method", "bogus", "unknown method 'bogus'")):
        c = _config("test")
        c.impute[field] = value  # what --config.impute.<field>=<value> does
        with pytest.raises(UserError, match=message):
            _common.check_settings(c)
    _common.check_settings(_config("test"))


def test_a_work_directory_saved_with_the_old_step_names_is_the_same_run(tmp_path):
    old = {"denoisers": {"num_steps": 0, "num_train_steps": 1000, "val_num_steps": 20},
           "impute": {"num_steps": 20}}
    (tmp_path / "config.json").write_text(json.dumps(
        {"config": old, "seed": 0, "data_fingerprint": "f"}))
    new = {"denoisers": {"train_steps": 0, "diffusion_steps": 1000, "val_sample_steps": 20},
           "impute": {"sample_steps": 20}}
    pipeline.claim_workdir(str(tmp_path), new, 0, "f")  # no error: same trained run
    new["denoisers"]["train_steps"] = 10
    with pytest.raises(UserError, match="differs in: \\['denoisers'\\]"):
        pipeline.claim_workdir(str(tmp_path), new, 0, "f")


def test_a_work_directory_saved_before_distill_conditions_is_the_plain_ridge_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"config": {"denoisers": {"train_steps": 0}}, "seed": 0, "data_fingerprint": "f"}))
    pipeline.claim_workdir(str(tmp_path), {"denoisers": {"train_steps": 0,
                                                         "distill_conditions": False}}, 0, "f")
    with pytest.raises(UserError, match="differs in: \\['denoisers'\\]"):
        pipeline.claim_workdir(str(tmp_path), {"denoisers": {
            "train_steps": 0, "distill_conditions": True}}, 0, "f")


def test_the_scripts_lower_the_latent_width_to_what_the_cohort_can_fill(capsys):
    """configs/demo.py asks 128-d latents; in a cohort with a 12-feature and a 40-feature
    modality, each keeps its features and a 200-feature one gets the smallest width, 12
    (printed); with per_modality_widths the 200-feature one keeps 128; where conditions are the
    sources' latents all get 12; too few training rows get a clear error. The config's scaling
    reaches the space."""
    import _common  # noqa: PLC0415

    from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort, paper_split  # noqa: PLC0415

    c = _config("demo")
    model = LinearGaussianModel.random({"a": 12, "b": 200, "c": 40}, num_factors=2,
                                       noise_std=0.5, seed=0)
    cohort = paper_split(linear_gaussian_cohort(model, 300, seed=0), seed=0)
    lc = _common.latent_config(c, cohort)
    assert (lc.width("a"), lc.width("b"), lc.width("c"), lc.scaling) == (12, 12, 40, "global")
    printed = capsys.readouterr().out
    assert "lowered to 12 for 'a': it has 12 features" in printed
    assert "lowered to 40 for 'c': it has 40 features" in printed
    assert "lowered to 12 for 'b': the smallest modality, 'a', has 12" in printed
    c.latent.per_modality_widths = True
    lc = _common.latent_config(c, cohort)
    assert (lc.width("a"), lc.width("b"), lc.width("c")) == (12, 128, 40)
    assert "lowered to 12 for 'a': it has 12 features" in capsys.readouterr().out
    c.denoisers.feature_conditions = False
    lc = _common.latent_config(c, cohort)
    assert (lc.width("a"), lc.width("b"), lc.width("c")) == (12, 12, 12)
    c.latent.scaling = "per_dimension"
    assert _common.latent_config(c, cohort).scaling == "per_dimension"
    c.denoisers.feature_conditions = True
    c.latent.latent_dim = 8
    lc = _common.latent_config(c, cohort)
    assert (lc.width("a"), lc.width("b"), dict(lc.widths)) == (8, 8, {})  # fits: unchanged
    tiny = paper_split(linear_gaussian_cohort(model, 2, seed=0), seed=0, val_fraction=0,
                       test_fraction=0)
    with pytest.raises(UserError, match="too few for any latent space"):
        _common.latent_config(c, tiny)
