"""Free-energy surfaces from biased runs, with error estimates.

- Well-tempered metadynamics: ``F(s) = -γ/(γ-1) V_hills(s)`` (+ const) for each walker;
  the estimate is the mean over independent walkers and its error their standard error
  (each walker's surface shifted to its own minimum inside the region compared). Walkers
  of one shared bias give one estimate (no spread to take an error from: NaN).
- Umbrella sampling: MBAR (pymbar 4, the ``sampling`` extra, imported lazily) on the
  restraint energies of all windows, samples decorrelated by each window's statistical
  inefficiency; MBAR's analytical uncertainties.

Energies in eV unless a name says kT.

Example:
    >>> import numpy as np
    >>> rms_difference(np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0]))  # constant offset
    0.0
"""

from __future__ import annotations

import contextlib
import io
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..precision import rank_promotion_allowed
from ..validation import QdynInputError
from .bias import Bias, BiasState
from .cv import wrap


class FreeEnergy(NamedTuple):
    """A free-energy profile or surface on CV points.

    Attributes:
        s: [G, n_cv] (or [G]) CV points.  F: [G] eV, minimum 0.  dF: [G] eV one-sigma
        error (NaN where there are no samples).  n_samples: effective samples used.
    """

    s: np.ndarray
    F: np.ndarray
    dF: np.ndarray
    n_samples: int


def metad_fes(bias: Bias, states: BiasState, s_points, *, region=None) -> FreeEnergy:
    """Well-tempered metadynamics free energy on ``s_points`` [G, n_cv] from the final bias
    ``states`` (leading walker axis) of independent walkers, or of the shared bias (every
    replica holds a copy of it: the first is used and the error is NaN).

    Args:
        region: optional bool [G]: the points whose minimum sets each walker's zero (the
            sampled basins; default all).
    """
    if bias.walkers == "shared":
        states = jax.tree_util.tree_map(lambda x: x[:1], states)
    gamma = bias.bias_factor
    factor = 1.0 if np.isinf(gamma) else gamma / (gamma - 1.0)
    s = jnp.asarray(np.asarray(s_points, dtype=float).reshape(len(s_points), -1))
    V = np.asarray(jax.vmap(lambda st: bias.hills(s, st))(states))  # [W, G]
    F = -factor * V
    region = np.ones(F.shape[1], bool) if region is None else np.asarray(region)
    F = F - F[:, region].min(axis=1, keepdims=True)
    W = F.shape[0]
    mean = F.mean(axis=0)
    err = F.std(axis=0, ddof=1) / np.sqrt(W) if W > 1 else np.full_like(mean, np.nan)
    return FreeEnergy(np.asarray(s_points), mean - mean[region].min(), err, int(np.asarray(states.n_hills).sum()))


def _pymbar():
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pymbar prints a banner about JAX's bitsize
            import pymbar
            from pymbar import timeseries
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("umbrella-sampling free energies need pymbar: pip install 'qdyn-mlff[sampling]'") from e
    return pymbar, timeseries


def decorrelate(series) -> np.ndarray:
    """Indices of roughly independent samples of one window's time series (pymbar's
    statistical inefficiency g: every g-th frame)."""
    _, timeseries = _pymbar()
    x = np.asarray(series, dtype=float)
    if len(x) < 10 or np.ptp(x) == 0.0:
        return np.arange(len(x))
    return np.asarray(timeseries.subsample_correlated_data(x), dtype=int)


def umbrella_fes(cv_frames, centers, kappa, *, temperature_K: float, bin_edges, period: Optional[float] = None,
                 discard: int = 0) -> FreeEnergy:
    """Free-energy profile along one CV from umbrella windows, by MBAR.

    Args:
        cv_frames: [F, K] CV value of window k's replica at frame f (``MDResult.cv[..., 0]``
            of a run with one restraint window per replica).
        centers: [K] window centres; kappa: [K] or scalar spring constants [eV / CV unit²].
        temperature_K: the sampling temperature [K].
        bin_edges: [B + 1] histogram bin edges (CV units).
        period: the CV's period (None: not periodic).
        discard: frames dropped at the start of every window (equilibration).

    Returns:
        :class:`FreeEnergy` at the bin centres (bins without samples are NaN).
    """
    pymbar, _ = _pymbar()
    x = np.asarray(cv_frames, dtype=float)[discard:]
    c = np.asarray(centers, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(c):
        raise QdynInputError(f"cv_frames must be [frames, {len(c)} windows], got shape {x.shape}")
    k = np.broadcast_to(np.asarray(kappa, dtype=float), c.shape)
    beta = 1.0 / units.temperature_to_energy(temperature_K)

    def restraint(samples):  # [K windows, N samples] reduced energies
        d = np.asarray(wrap(samples[None, :] - c[:, None], period))
        return beta * 0.5 * k[:, None] * d * d

    keep = [x[decorrelate(restraint(x[:, w])[w]), w] for w in range(len(c))]
    x_n = np.concatenate(keep)
    N_k = np.array([len(s) for s in keep])
    u_kn = restraint(x_n)
    edges = np.asarray(bin_edges, dtype=float)
    mids = 0.5 * (edges[1:] + edges[:-1])
    occupied = np.histogram(x_n, edges)[0] > 0
    out = _mbar_profile(pymbar, u_kn, N_k, x_n, edges, mids[occupied])
    F = np.full(len(mids), np.nan)
    dF = np.full(len(mids), np.nan)
    F[occupied] = out["f_i"] / beta
    dF[occupied] = out["df_i"] / beta
    return FreeEnergy(mids, F - np.nanmin(F), dF, int(N_k.sum()))


@rank_promotion_allowed  # pymbar's JAX solvers broadcast implicitly
def _mbar_profile(pymbar, u_kn, N_k, x_n, edges, points) -> dict:
    """pymbar's histogram FES (reduced units, from the lowest bin) at ``points``."""
    with contextlib.redirect_stdout(io.StringIO()):
        fes = pymbar.FES(u_kn, N_k, mbar_options={"solver_protocol": "robust"})
        fes.generate_fes(np.zeros_like(x_n), x_n, fes_type="histogram", histogram_parameters={"bin_edges": edges})
        return fes.get_fes(points, reference_point="from-lowest", uncertainty_method="analytical")


def rms_difference(F, F_ref, mask=None) -> float:
    """RMS of ``F - F_ref`` after the best constant shift (free energies are defined up to
    one), over ``mask`` (default all finite points)."""
    F, F_ref = np.asarray(F, float), np.asarray(F_ref, float)
    m = np.isfinite(F) & np.isfinite(F_ref)
    if mask is not None:
        m &= np.asarray(mask)
    d = F[m] - F_ref[m]
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def block_error(series, n_blocks: int = 5) -> float:
    """Standard error of the mean of a correlated time series by block averaging."""
    x = np.asarray(series, dtype=float)
    n = len(x) // n_blocks
    if n < 1 or n_blocks < 2:
        raise QdynInputError(f"block averaging needs at least {n_blocks} samples and 2 blocks")
    means = x[: n * n_blocks].reshape(n_blocks, n).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(n_blocks))
