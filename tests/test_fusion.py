import jax.numpy as jnp
import numpy as np
import pytest

from coherent_jax.engine import fusion


def test_inverse_mse_weights_is_softmax_of_inverse():
    w = fusion.inverse_mse_weights([0.5, 1.0, 2.0])
    logits = np.array([2.0, 1.0, 0.5])
    np.testing.assert_allclose(w, np.exp(logits) / np.exp(logits).sum(), rtol=1e-6)


def test_availability_weights_renormalise_over_available():
    w = fusion.availability_weights([0.5, 1.0, 2.0], [[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    assert w[1, 0] == 0 and w[2].tolist() == [0, 0, 1]
    np.testing.assert_allclose(w[1, 1] / w[1, 2], np.exp(1.0 - 0.5), rtol=1e-5)
    with pytest.raises(ValueError, match="no available source"):
        fusion.availability_weights([1.0, 1.0], [[1, 0], [0, 0]])
    with pytest.raises(ValueError, match="finite and > 0"):
        fusion.inverse_mse_weights([1.0, np.nan])


def test_disagreement_matches_pairwise_loop():
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((3, 5, 7)).astype(np.float32)
    w = rng.dirichlet(np.ones(3), size=5).astype(np.float32)
    w[4, 0] = 0.0  # sample 4: member 0 unavailable
    got = np.asarray(fusion.disagreement(jnp.asarray(eps), jnp.asarray(w)))
    for n in range(5):
        num = den = 0.0
        for i in range(3):
            for j in range(i + 1, 3):
                if w[n, i] > 0 and w[n, j] > 0:
                    cos = eps[i, n] @ eps[j, n] / np.linalg.norm(eps[i, n]) / np.linalg.norm(eps[j, n])
                    num += (w[n, i] + w[n, j]) / 2 * cos
                    den += (w[n, i] + w[n, j]) / 2
        np.testing.assert_allclose(got[n], 1 - num / den, rtol=1e-5)


def test_fuse_mean_is_weighted_average():
    eps = jnp.stack([jnp.ones((2, 3)), 3 * jnp.ones((2, 3))])
    np.testing.assert_allclose(fusion.fuse_mean(eps, jnp.array([[0.5, 0.5], [0.25, 0.75]])),
                               [[2.0] * 3, [2.5] * 3])
