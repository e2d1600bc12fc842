"""Mean-squared displacement and the Einstein diffusion coefficient.

``D = lim MSD(τ) / (2 d τ)`` with d = 3; the slope is fitted over a range of lags chosen by
the user (the ballistic start and the noisy tail are left out), and its error comes from
independent time blocks of the trajectory (each block gives its own D; the error is their
standard error). The MSD is computed with the FFT algorithm of Calandrini et al.
(nMoldyn, Collection SFN 12, 201 (2011)), O(F log F) per atom, over all time origins.

Positions must be unwrapped first in a periodic box (:func:`unwrap`): a qdyn trajectory
holds wrapped positions, and an atom crossing the cell would otherwise jump by a box length.

Units: Å, fs; D in Å²/fs and cm²/s (1 Å²/fs = 0.1 cm²/s; via :mod:`qdyn.units`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import units
from ..validation import QdynInputError


def unwrap(positions, box) -> np.ndarray:
    """Undo the wrapping into the cell: each frame moves by the minimum-image displacement
    from the previous one.

    Args:
        positions: [F, n, 3] Å, wrapped.
        box: [3, 3] Å (columns = lattice vectors), [F, 3, 3] for a changing cell (NPT), or
            None (free space: returned unchanged).

    Returns:
        [F, n, 3] Å continuous positions (frame 0 unchanged). Correct while no atom moves
        more than half a cell between frames (always true at MD strides).
    """
    X = np.asarray(positions, float)
    if box is None:
        return X.copy()
    cells = np.broadcast_to(np.asarray(box, float), (len(X), 3, 3))
    inv = np.linalg.inv(cells)  # [F, 3, 3]
    step = np.diff(X, axis=0)  # [F-1, n, 3]
    frac = np.einsum("fij,fnj->fni", inv[1:], step)
    frac -= np.round(frac)
    step = np.einsum("fij,fnj->fni", cells[1:], frac)
    return np.concatenate([X[:1], X[:1] + np.cumsum(step, axis=0)], axis=0)


def mean_squared_displacement(positions, *, max_lag: Optional[int] = None) -> np.ndarray:
    """MSD(τ) averaged over atoms and all time origins (FFT algorithm).

    Args:
        positions: [F, n, 3] Å, unwrapped.
        max_lag: lags returned (default F // 2: longer lags have few origins).

    Returns:
        [max_lag] Å², MSD at lags 0 .. max_lag - 1 frames.

    Example:
        >>> import numpy as np
        >>> X = np.cumsum(np.ones((4, 1, 3)), axis=0)  # ballistic: 1 Å per frame along x, y, z
        >>> mean_squared_displacement(X, max_lag=3).round(12)
        array([ 0.,  3., 12.])
    """
    X = np.asarray(positions, float)
    if X.ndim != 3 or X.shape[-1] != 3:
        raise QdynInputError(f"positions must be [frames, atoms, 3], got shape {X.shape}")
    F = X.shape[0]
    if F < 2:
        raise QdynInputError("the MSD needs at least two frames")
    max_lag = F // 2 if max_lag is None else int(max_lag)
    if not 1 <= max_lag <= F:
        raise QdynInputError(f"max_lag must be between 1 and {F} frames, got {max_lag}")
    x = X.reshape(F, -1)  # every (atom, dimension) column is one signal
    sq = np.sum(X * X, axis=2).sum(axis=1)  # [F] Σ_atoms |r|²
    # S1(m) = Σ_{k=0}^{F-m-1} (|r(k)|² + |r(k+m)|²) / (F - m), by a running sum
    total = 2.0 * sq.sum()
    s1 = np.empty(F)
    for m in range(F):
        s1[m] = total / (F - m)
        total -= sq[m] + sq[F - 1 - m]
    # S2(m) = Σ_k r(k)·r(k+m) / (F - m): the autocorrelation, through a zero-padded FFT
    f = np.fft.rfft(x, n=2 * F, axis=0)
    s2 = np.fft.irfft(np.abs(f) ** 2, axis=0)[:F].sum(axis=1) / (F - np.arange(F))
    msd = (s1 - 2.0 * s2) / X.shape[1]
    return np.maximum(msd[:max_lag], 0.0)  # round-off can leave -1e-16 at lag 0


def diffusion_coefficient(positions, dt_frame_fs: float, *, fit_start_fs: float, fit_end_fs: float,
                          n_blocks: int = 4) -> dict:
    """Einstein diffusion coefficient from the MSD slope over ``[fit_start_fs, fit_end_fs]``.

    Args:
        positions: [F, n, 3] Å, unwrapped (e.g. only the oxygens of water).
        dt_frame_fs: time between frames [fs].
        fit_start_fs: start of the lag range of the linear fit [fs] (after the ballistic
            regime).
        fit_end_fs: its end [fs] (well below the trajectory length).
        n_blocks: independent time blocks for the error (each must span the fit range).

    Returns:
        ``{"D_A2_per_fs", "D_cm2_per_s", "D_err_A2_per_fs", "D_err_cm2_per_s", "fit_start_fs",
        "fit_end_fs", "n_blocks", "block_D_A2_per_fs"}``; the error is the standard error of
        the block values (NaN with fewer than two blocks).

    Raises:
        QdynInputError: a fit range outside the lags a block can provide, or fewer than two
            lags in it.
    """
    X = np.asarray(positions, float)
    F = X.shape[0]
    dt = float(dt_frame_fs)
    if not (0 <= fit_start_fs < fit_end_fs):
        raise QdynInputError(f"the fit range must satisfy 0 ≤ start < end, got [{fit_start_fs}, {fit_end_fs}] fs")
    n_blocks = max(1, int(n_blocks))
    block = F // n_blocks
    lo, hi = int(np.ceil(fit_start_fs / dt)), int(np.floor(fit_end_fs / dt))
    if hi >= block:
        longest = (block - 1) * dt
        raise QdynInputError(f"fit range ends at {fit_end_fs} fs but a block of {block} frames reaches lags of "
                             f"{longest:g} fs; shorten the range or use fewer blocks ({n_blocks} now)")
    if hi - lo < 1:
        raise QdynInputError(f"the fit range [{fit_start_fs}, {fit_end_fs}] fs holds fewer than two lags of "
                             f"{dt:g} fs")
    lags = np.arange(lo, hi + 1) * dt

    def slope(Xb):
        msd = mean_squared_displacement(Xb, max_lag=hi + 1)[lo:]
        return np.polyfit(lags, msd, 1)[0] / 6.0

    D = slope(X)
    blocks = np.array([slope(X[b * block:(b + 1) * block]) for b in range(n_blocks)])
    err = float(np.std(blocks, ddof=1) / np.sqrt(n_blocks)) if n_blocks > 1 else float("nan")
    to_cgs = units.convert(1.0, "Angstrom^2/fs", "cm^2/s")
    return {"D_A2_per_fs": float(D), "D_cm2_per_s": float(D * to_cgs), "D_err_A2_per_fs": err,
            "D_err_cm2_per_s": err * to_cgs, "fit_start_fs": float(lags[0]), "fit_end_fs": float(lags[-1]),
            "n_blocks": n_blocks, "block_D_A2_per_fs": blocks.tolist()}
