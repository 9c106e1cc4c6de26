"""The public surface: the user's calls at the top (`__all__`), the engine in `engine`, and every
listed name importable."""

import numpy as np
import pandas as pd
import pytest

import coherent_jax
from coherent_jax import engine
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.data.missingness import induce_missingness


def test_every_listed_name_exists_and_the_lists_are_sorted_and_disjoint():
    for module in (coherent_jax, engine):
        assert module.__all__ == sorted(module.__all__), module.__name__
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, (module.__name__, missing)
    assert not set(coherent_jax.__all__) & set(engine.__all__)


def test_user_calls_at_the_top_engine_pieces_not():
    for name in ("load_cohort", "LatentSpace", "train_model_set", "impute", "Imputer",
                 "evaluate_suite", "EvalConfig", "ModelSetConfig", "DataConfig"):
        assert name in coherent_jax.__all__
    for name in ("train_step", "create_train_state", "coherent_sample", "Denoiser"):
        assert name not in coherent_jax.__all__ and name in engine.__all__


def test_one_exception_type_for_an_unknown_modality():
    cohort = coherent_jax.Cohort.from_tables(
        {"a": pd.DataFrame(np.zeros((3, 2)), index=["p0", "p1", "p2"])}, name="tiny")
    lookups = [lambda: cohort.matrix("rna"),
               lambda: induce_missingness(cohort, {"rna": 0.5}, seed=0),
               lambda: LinearGaussianModel.random({"a": 2}, seed=0).dim("rna")]
    for lookup in lookups:
        with pytest.raises(coherent_jax.UnknownModalityError, match="unknown modality 'rna'") as info:
            lookup()
        assert isinstance(info.value, KeyError) and isinstance(info.value, coherent_jax.UserError)
        assert str(info.value).startswith("unknown modality")  # not KeyError's quoted repr


def test_evaluate_suite_takes_a_trained_run_and_still_the_old_form():
    from coherent_jax.evaluate.suite import _call_form

    run = coherent_jax.TrainedRun("features", "latents", "space", "models")
    assert _call_form(run, ("config", 0, "folder"), {}) == (run, "config", 0, "folder")
    assert _call_form(run, ("config",), {"seed": 1, "folder": "f"}) == (run, "config", 1, "f")
    with pytest.warns(DeprecationWarning, match="TrainedRun"):
        old = _call_form("features", ("latents", "space", "models", "config"),
                         {"seed": 0, "folder": "f"})
    assert old == (run, "config", 0, "f")
    with pytest.raises(TypeError, match="missing"):
        _call_form(run, ("config",), {})


def test_impute_takes_its_call_settings_the_old_way_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"calls=SamplerCalls\(bucket=...\)"):
        with pytest.raises(ValueError, match="bucket must be >= 1"):
            coherent_jax.impute(None, None, bucket=0)


def test_the_engine_imports_nothing_of_the_application():
    import ast
    import pathlib

    folder = pathlib.Path(engine.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("coherent_jax"):
                    assert name.startswith("coherent_jax.engine"), (path.name, name)


def test_modules_that_moved_still_import_from_their_old_paths():
    import importlib
    import sys

    from coherent_jax import _moved

    for old, new in _moved.MOVED.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
    sys.modules.pop("coherent_jax.models", None)
    with pytest.warns(DeprecationWarning):
        from coherent_jax.models import denoiser
    assert denoiser is importlib.import_module("coherent_jax.engine.denoiser")
