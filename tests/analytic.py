"""Ideal noise predictors for Gaussian data, plugged into the samplers through apply_fn.

If x0 | c ~ N(m(c), S) with m(c) = bias + gain @ c, then x_t | c ~ N(sqrt(ab_t) m, ab_t S + (1-ab_t) I)
and the MMSE noise prediction is eps = sqrt(1-ab_t) (ab_t S + (1-ab_t) I)^-1 (x_t - sqrt(ab_t) m).
A masked-out condition (mask 0) switches the expert to the marginal N(marg_mean, marg_cov).
"""

import jax.numpy as jnp
import numpy as np


def _gauss_eps(x, ab, mean, evecs, evals):
    # x, mean [N, D]; ab [N]; P_t = U diag(1 / (ab * l + 1 - ab)) U^T.
    scale = 1.0 / (ab[:, None] * evals[None, :] + 1.0 - ab[:, None])  # [N, D]
    resid = (x - jnp.sqrt(ab)[:, None] * mean) @ evecs  # [N, D] in eigenbasis
    return jnp.sqrt(1.0 - ab)[:, None] * ((resid * scale) @ evecs.T)


def gaussian_expert(params, x, t, cond):
    """apply_fn of an exact conditional-Gaussian expert; cond is a Condition with one value."""
    ab = params["alpha_bars"][t]
    c = cond.values[0]
    eps_cond = _gauss_eps(x, ab, params["bias"] + c @ params["gain"].T,
                          params["evecs"], params["evals"])
    eps_marg = _gauss_eps(x, ab, jnp.broadcast_to(params["marg_mean"], x.shape),
                          params["marg_evecs"], params["marg_evals"])
    return jnp.where(cond.mask[:, :1] > 0, eps_cond, eps_marg)


def expert_params(schedule, bias, gain, cov, marg_mean, marg_cov):
    """Float32 params of `gaussian_expert` from float64 Gaussian parameters."""
    evals, evecs = np.linalg.eigh(cov)
    m_evals, m_evecs = np.linalg.eigh(marg_cov)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return dict(alpha_bars=schedule.alpha_bars, bias=f32(bias), gain=f32(gain), evecs=f32(evecs),
                evals=f32(evals), marg_mean=f32(marg_mean), marg_evecs=f32(m_evecs),
                marg_evals=f32(m_evals))


def conditional_gain(model, target, source):
    """(bias [D_t], gain [D_t, D_s], cov) of target | source for a LinearGaussianModel."""
    d_s = model.dim(source)
    zero_mean, cov = model.conditional(target, {source: np.zeros((1, d_s))})
    gain = np.stack([model.conditional(target, {source: np.eye(d_s)[i:i + 1]})[0][0] - zero_mean[0]
                     for i in range(d_s)], axis=1)
    return zero_mean[0], gain, cov


def condition_joint(mean, cov, target, given):
    """(bias, gain, cov) of x[target] | x[given] for a joint Gaussian; index lists."""
    s_tg = cov[np.ix_(target, given)]
    gain = np.linalg.solve(cov[np.ix_(given, given)], s_tg.T).T
    bias = mean[target] - gain @ mean[given]
    return bias, gain, cov[np.ix_(target, target)] - gain @ s_tg.T
