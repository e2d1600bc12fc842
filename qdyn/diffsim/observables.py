"""Smooth MD observables (JAX, differentiable) of the frames of a :class:`~.rollout.Rollout`.

Histograms and peaks are made smooth so that their derivative with respect to the
trajectory exists: a Gaussian kernel per sample instead of a bin count, and a soft-argmax
(a Boltzmann-weighted mean position) instead of the argmax. A vibrational frequency is the
intensity-weighted centre of a band of the VACF spectrum, which moves continuously with the
peak it contains. Units: Å, Å/fs, fs, cm⁻¹.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import units

_C_CM_PER_FS = units.SPEED_OF_LIGHT_CM_S * 1e-15  # speed of light [cm/fs]


def _pair_distances(R, i, j):
    d = R[..., jnp.asarray(j), :] - R[..., jnp.asarray(i), :]
    return jnp.sqrt(jnp.sum(d * d, axis=-1))


def mean_distance(R, i, j) -> jnp.ndarray:
    """Mean of |R_j − R_i| [Å] over frames and the given pairs (e.g. both O–H bonds).

    Args:
        R: [F, n, 3] Å.  i, j: int sequences of equal length (the pairs).
    """
    return jnp.mean(_pair_distances(R, i, j))


def smooth_pair_histogram(R, i, j, r_grid, *, width: float = 0.02) -> jnp.ndarray:
    """Gaussian-kernel density of the pair distances on ``r_grid`` [Å⁻¹] (normalised to
    integrate to 1), a smooth stand-in for the pair-distribution histogram. For g(r) in a
    periodic box divide by 4πr² ρ; the peak position of a narrow molecular distribution is
    the same either way.

    Args:
        R: [F, n, 3] Å.  i, j: the pairs.  r_grid: [G] Å.  width: kernel σ [Å].
    """
    r = _pair_distances(R, i, j).reshape(-1)
    z = (jnp.asarray(r_grid)[:, None] - r[None, :]) / width
    return jnp.mean(jnp.exp(-0.5 * z * z), axis=1) / (width * np.sqrt(2 * np.pi))


def soft_peak_position(x, y, *, sharpness: float = 50.0) -> jnp.ndarray:
    """Soft-argmax: Σ x·w / Σ w with w = exp(sharpness·(y/max y − 1)); tends to the argmax as
    sharpness grows and is differentiable in y."""
    y = jnp.asarray(y)
    w = jnp.exp(sharpness * (y / jnp.max(y) - 1.0))
    return jnp.sum(jnp.asarray(x) * w) / jnp.sum(w)


def vacf_spectrum(V, mass, dt_frame_fs: float):
    """Vibrational density of states from the mass-weighted velocity autocorrelation
    (JAX twin of :func:`qdyn.md.analysis.vibrational_spectrum`, without the peak
    normalisation): FFT autocorrelation over all time origins, Hann window, even extension.

    Args:
        V: [F, n, 3] Å/fs.  mass: [n] amu.  dt_frame_fs: time between frames [fs].

    Returns:
        (wavenumber [K] cm⁻¹ (NumPy), intensity [K] arb.).
    """
    F = V.shape[0]
    x = (V * jnp.sqrt(jnp.asarray(mass))[None, :, None]).reshape(F, -1)
    f = jnp.fft.rfft(x, n=2 * F, axis=0)
    acf = jnp.fft.irfft(jnp.abs(f) ** 2, n=2 * F, axis=0)[:F].sum(axis=1) / (F - jnp.arange(F))
    L = F // 2
    c = acf[:L] / acf[0]
    window = jnp.asarray(np.hanning(2 * L)[L:])
    cw = c * window
    sym = jnp.concatenate([cw, cw[1:-1][::-1]])
    spec = jnp.abs(jnp.fft.rfft(sym))
    nu = np.fft.rfftfreq(2 * L - 2, d=dt_frame_fs) / _C_CM_PER_FS
    return nu, spec


def band_centroid_cm(wavenumber, intensity, lo_cm: float, hi_cm: float) -> jnp.ndarray:
    """Intensity-weighted mean wavenumber [cm⁻¹] of the band lo_cm ≤ ν ≤ hi_cm."""
    sel = jnp.asarray((np.asarray(wavenumber) >= lo_cm) & (np.asarray(wavenumber) <= hi_cm), dtype=intensity.dtype)
    return jnp.sum(jnp.asarray(wavenumber) * intensity * sel) / jnp.sum(intensity * sel)
