"""hyperopt's TPE loops over trials, vectorized: the densities of quantized parameters
(``quniform``, ``qloguniform``, …) and the split of observations into good and bad ones.

hyperopt 0.3.0 evaluates a quantized parameter's mixture density with a Python loop over the
mixture's components, one per finished trial: at 10,000 trials that loop is most of what a
suggestion costs (and of what ``fmin`` costs). ``install()`` registers the same computation
over a samples × components array in hyperopt's ``pyll`` scope, under the same names, so TPE
calls it instead. The result is bit for bit hyperopt's: the same element-wise operations, and
the components added one after another in the same order (a running sum, ``cumsum``), not
pairwise, and each distinct sample computed once (a sample's density depends on it alone; TPE's
24 candidates of a quantized parameter repeat a few values) — so TPE suggests exactly the points
it would have (``tests/unit/test_tuning.py``).
Continuous parameters (``q`` None) go to hyperopt's own functions, which are vectorized already.
``ap_split_trials`` (which observations feed the "below" and "above" densities) walks every
observation in Python twice per parameter; here a mask picks the same values in the same order.

Written by hand because hyperopt has no such option; checked against hyperopt's functions for
the pinned version only (``install`` refuses another version).
"""

from __future__ import annotations

import threading

import numpy as np

HYPEROPT_VERSION = "0.3.0"
_NAMES = ("GMM1_lpdf", "LGMM1_lpdf", "ap_split_trials")
_originals: dict = {}
_lock = threading.Lock()


def _running_sum(inc: np.ndarray) -> np.ndarray:
    """Each row's sum, adding its columns left to right from 0.0 (as ``prob += inc`` in a loop)."""
    if inc.shape[1] == 0:
        return np.zeros(inc.shape[0], dtype="float64")
    return np.cumsum(inc, axis=1)[:, -1]


def gmm1_lpdf(samples, weights, mus, sigmas, low=None, high=None, q=None):
    """hyperopt.tpe.GMM1_lpdf, the quantized case without the loop."""
    from hyperopt.tpe import normal_cdf

    if q is None:
        return _originals["GMM1_lpdf"](samples, weights, mus, sigmas, low=low, high=high, q=q)
    samples, weights, mus, sigmas = map(np.asarray, (samples, weights, mus, sigmas))
    if samples.size == 0:
        return np.asarray([])
    if weights.ndim != 1 or mus.ndim != 1 or sigmas.ndim != 1:
        raise TypeError("need vectors of weights, mus and sigmas", weights.shape, mus.shape, sigmas.shape)
    assert len(weights) == len(mus) == len(sigmas)
    shape, samples = samples.shape, samples.flatten()
    if low is None and high is None:
        p_accept = 1
    else:
        p_accept = np.sum(weights * (normal_cdf(high, mus, sigmas) - normal_cdf(low, mus, sigmas)))
    samples, seen = np.unique(samples, return_inverse=True)  # quantized samples repeat: each computed once
    ubound = samples + q / 2 if high is None else np.minimum(samples + q / 2, high)
    lbound = samples - q / 2 if low is None else np.maximum(samples - q / 2, low)
    inc = weights * normal_cdf(ubound[:, None], mus, sigmas)
    inc -= weights * normal_cdf(lbound[:, None], mus, sigmas)
    rval = (np.log(_running_sum(inc)) - np.log(p_accept))[seen]
    rval.shape = shape
    return rval


def lgmm1_lpdf(samples, weights, mus, sigmas, low=None, high=None, q=None):
    """hyperopt.tpe.LGMM1_lpdf, the quantized case without the loop."""
    from hyperopt.tpe import lognormal_cdf, normal_cdf

    if q is None:
        return _originals["LGMM1_lpdf"](samples, weights, mus, sigmas, low=low, high=high, q=q)
    samples, weights, mus, sigmas = map(np.asarray, (samples, weights, mus, sigmas))
    assert weights.ndim == 1 and mus.ndim == 1 and sigmas.ndim == 1
    shape = samples.shape
    if samples.ndim != 1:
        samples = samples.flatten()
    if low is None and high is None:
        p_accept = 1
    else:
        p_accept = np.sum(weights * (normal_cdf(high, mus, sigmas) - normal_cdf(low, mus, sigmas)))
    samples, seen = np.unique(samples, return_inverse=True)  # as in gmm1_lpdf
    ubound = samples + q / 2 if high is None else np.minimum(samples + q / 2, np.exp(high))
    lbound = samples - q / 2 if low is None else np.maximum(samples - q / 2, np.exp(low))
    lbound = np.maximum(0, lbound)
    if samples.size == 0:  # lognormal_cdf answers an empty row list with a flat array
        return np.asarray([], dtype="float64").reshape(shape)
    inc = weights * lognormal_cdf(ubound[:, None], mus, sigmas)
    inc -= weights * lognormal_cdf(lbound[:, None], mus, sigmas)
    rval = (np.log(_running_sum(inc)) - np.log(p_accept))[seen]
    rval.shape = shape
    return rval


def ap_split_trials(o_idxs, o_vals, l_idxs, l_vals, gamma, gamma_cap=None):
    """hyperopt.tpe.ap_split_trials without the loops: the values ``o_vals`` of the trials
    (``o_idxs``) among the ``n_below`` lowest losses, and of the others, in ``o_vals``' order."""
    from hyperopt.tpe import DEFAULT_LF

    gamma_cap = DEFAULT_LF if gamma_cap is None else gamma_cap
    o_idxs, o_vals, l_idxs, l_vals = map(np.asarray, (o_idxs, o_vals, l_idxs, l_vals))
    n_below = min(int(np.ceil(gamma * np.sqrt(len(l_vals)))), gamma_cap)
    l_order = np.argsort(l_vals)

    def values_of(ids) -> np.ndarray:
        picked = o_vals[np.isin(o_idxs, ids)]
        return picked if picked.size else np.asarray([])  # hyperopt's asarray of an empty list

    return values_of(l_idxs[l_order[:n_below]]), values_of(l_idxs[l_order[n_below:]])


def install() -> bool:
    """Make hyperopt's TPE use the functions above (idempotent; this process only). False
    where hyperopt is not the version they follow (it keeps its own functions)."""
    import hyperopt
    from hyperopt.pyll import scope

    if hyperopt.__version__ != HYPEROPT_VERSION:
        return False
    with _lock:
        if _originals:
            return True
        for name, fast in zip(_NAMES, (gmm1_lpdf, lgmm1_lpdf, ap_split_trials)):
            _originals[name] = scope._impls[name]
            scope._impls[name] = fast
    return True


def uninstall() -> None:
    """hyperopt's own functions again (for comparisons)."""
    from hyperopt.pyll import scope

    with _lock:
        for name, original in _originals.items():
            scope._impls[name] = original
        _originals.clear()
