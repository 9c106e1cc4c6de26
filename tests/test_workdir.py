"""The work directory's one home for its stage order and for runs saved by earlier versions."""

import json

import pytest

from coherent_jax import workdir
from coherent_jax.impute import ImputeConfig
from coherent_jax.settings import from_mapping


def test_the_stages_run_in_one_order_and_name_their_config_sections():
    assert [s.name for s in workdir.STAGES] == ["data", "latent", "denoisers", "impute",
                                                 "evaluate"]
    assert workdir.TRAINING == workdir.stages_through("denoisers")
    assert workdir.RERUNNABLE == ("impute", "evaluate")
    assert workdir.IMPUTER_PARTS == ("config.json", "preprocessing", "latent_space", "models")
    with pytest.raises(ValueError, match="unknown stage 'latents'"):
        workdir.stages_through("latents")


def test_done_is_whether_a_stage_left_its_output(tmp_path):
    assert not workdir.done(str(tmp_path), workdir.STAGES.latent)
    (tmp_path / "latent_space").mkdir()
    assert workdir.done(str(tmp_path), workdir.STAGES.latent)
    assert not workdir.done(str(tmp_path), workdir.STAGES.impute)  # writes beside it


def test_a_config_saved_with_old_names_is_read_in_todays():
    old = {"denoisers": {"num_steps": 0, "num_train_steps": 1000, "val_num_steps": 20},
           "impute": {"num_steps": 20, "split": "test"},
           "evaluate": {"imputation": {"num_steps": 5}}, "data": {"source": "mixture"}}
    new = workdir.upgrade_config(old)
    assert new["denoisers"] == {"train_steps": 0, "diffusion_steps": 1000,
                                "val_sample_steps": 20, "distill_conditions": False,
                                "covariate": "", "ema_decay": 0.0, "patience": 0,
                                "anchor_components": 1, "condition_components": 0,
                                "correction_test_z": -1e9}
    assert new["impute"] == {"sample_steps": 20, "split": "test"}
    assert new["evaluate"] == {"imputation": {"sample_steps": 5}}
    assert new["data"] == {"source": "mixture", "mixture_link": "sinh", "marginal": "none"}
    assert old["impute"] == {"num_steps": 20, "split": "test"}  # the input is left alone
    assert workdir.upgrade_config(new) == new
    assert workdir.upgrade_config(None) == {}
    # a setting given under both names keeps the new one
    assert workdir.upgrade_config({"impute": {"num_steps": 3, "sample_steps": 4}}) == {
        "impute": {"sample_steps": 4}}


def test_an_old_runs_imputation_settings_parse_after_the_upgrade(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config": {"impute": {
        "method": "multi", "num_steps": 0, "split": "val", "calibrate_quantile": 0.0}},
        "seed": 3}))
    run = workdir.read_run(str(tmp_path))
    assert run["seed"] == 3
    settings = from_mapping(ImputeConfig, run["config"]["impute"],
                            besides=workdir.STAGES.impute.own_settings)
    assert settings == ImputeConfig(method="multi", sample_steps=None)


def test_a_model_sets_old_metadata_is_read_in_todays_names():
    arch = {"data_dim": 4, "num_train_steps": 100}
    old = {"schedule": "linear", "num_train_steps": 100,
           "targets": {"b": {"model": arch, "multi_model": None},
                       "a": {"model": None, "multi_model": dict(arch)}}}
    meta = workdir.upgrade_models_metadata(old)
    assert meta["diffusion_steps"] == 100 and "num_train_steps" not in meta
    assert meta["target_order"] == ["a", "b"] and meta["covariate"] is None
    assert meta["targets"]["b"] == {"specialist_model": {"data_dim": 4, "diffusion_steps": 100},
                                    "multi_model": None, "sharpness": 0.0}
    assert meta["targets"]["a"]["multi_model"] == {"data_dim": 4, "diffusion_steps": 100}
    renamed = workdir.upgrade_models_metadata(
        {**old, "targets": {"b": {"model": arch, "multi_model": None, "fusion_sharpness": 0.5}}})
    assert renamed["targets"]["b"]["sharpness"] == 0.5
    assert "fusion_sharpness" not in renamed["targets"]["b"]
    assert old["targets"]["b"]["model"] is arch and "num_train_steps" in arch  # left alone
    assert workdir.upgrade_models_metadata(meta) == meta
