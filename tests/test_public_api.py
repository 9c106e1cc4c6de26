"""The public surface: the user's calls at the top (`__all__`), the engine in `engine`, and every
listed name importable."""

import coherent_jax
from coherent_jax import engine


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
