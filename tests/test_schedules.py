import numpy as np
import pytest

from coherent_jax.engine.schedules import Schedule, cosine_schedule, linear_schedule, make_schedule


def test_linear_schedule_matches_paper():
    s = linear_schedule()
    assert s.diffusion_steps == 1000
    np.testing.assert_allclose(np.asarray(s.betas)[[0, -1]], [1e-4, 0.02], rtol=1e-6)
    np.testing.assert_allclose(s.alpha_bars, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-5)


def test_cosine_schedule_is_decreasing_and_valid():
    ab = np.asarray(cosine_schedule(200).alpha_bars)
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < ab[0] < 1


def test_bad_schedules_raise():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        Schedule.from_betas([0.1, 1.0])
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("quadratic")
