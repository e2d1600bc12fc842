"""Analysis of MD output: temperatures and energies, drift, radial distribution functions,
velocity autocorrelation → vibrational spectrum, and harmonic frequencies from the model's
own Hessian. Host NumPy except :func:`harmonic_frequencies` (one ``jax.hessian``).

Units: Å, Å/fs, amu, eV, fs, K; wavenumbers in cm⁻¹ (conversions via :mod:`qdyn.units`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..compiled import shared_jit
from ..plotting import pyplot, save_figure
from ..validation import QdynInputError

_C_CM_PER_FS = units.SPEED_OF_LIGHT_CM_S * 1e-15  # speed of light [cm/fs]


def energy_drift(time_fs, total_eV, *, n_atoms: int) -> dict:
    """Linear drift of the total energy.

    Args:
        time_fs: [F] fs.  total_eV: [F] or [F, Rp] eV.  n_atoms: atoms per replica.

    Returns:
        ``{"slope_eV_per_ps_per_atom", "max_abs_dev_eV", "std_eV"}`` (averaged over replicas).
    """
    t = np.asarray(time_fs, float)
    E = np.asarray(total_eV, float).reshape(len(t), -1)
    if len(t) < 2:
        raise QdynInputError("energy_drift needs at least two frames")
    slope = np.polyfit(t / 1e3, E, 1)[0]  # eV/ps per replica
    return {"slope_eV_per_ps_per_atom": float(np.mean(slope) / n_atoms),
            "max_abs_dev_eV": float(np.max(np.abs(E - E[0]))), "std_eV": float(np.mean(np.std(E, axis=0)))}


def harmonic_frequencies(energy_fn: Callable, params, R, system, mass, *, n_zero: Optional[int] = None) -> np.ndarray:
    """Harmonic wavenumbers [cm⁻¹] from the mass-weighted Hessian of the model's energy.

    Args:
        energy_fn: MD energy ``(R, *, params, system, neighbor) -> E`` [eV].
        params: its parameters.  R: [n, 3] Å, a minimum of the energy.  system: its System.
        mass: [n] amu.
        n_zero: translational/rotational modes to drop (the smallest |eigenvalues|);
            default 6 (5 for two atoms) in free space, 3 in a periodic box.

    Returns:
        [3n - n_zero] ascending wavenumbers; imaginary modes come out negative.
    """
    R = jnp.asarray(R)
    n = R.shape[0]
    # compiled: op by op, the second derivatives of a circuit model are thousands of one-operation
    # dispatches (first call 7.8 s against 1.4 s for the quickstart's siVQLM, measured)
    hessian = shared_jit(jax.hessian(lambda x, p: energy_fn(x, params=p, system=system, neighbor=None)))
    H = np.asarray(hessian(R, params)).reshape(3 * n, 3 * n)
    if not np.all(np.isfinite(H)):
        raise QdynInputError("the Hessian of the energy is not finite at this geometry")
    m = np.repeat(np.asarray(mass, float), 3)
    Hm = H / np.sqrt(m[:, None] * m[None, :])  # eV/(Å² amu) = 1/τ²
    lam = np.linalg.eigvalsh(0.5 * (Hm + Hm.T))
    if n_zero is None:
        n_zero = 3 if system.box is not None else (5 if n == 2 else 6)
    keep = np.sort(np.argsort(np.abs(lam))[n_zero:])
    lam = lam[keep]
    omega = np.sign(lam) * np.sqrt(np.abs(lam)) / units.TIME_UNIT_FS  # rad/fs
    return np.sort(omega / (2 * np.pi * _C_CM_PER_FS))


def velocity_autocorrelation(velocity, mass, *, max_lag: Optional[int] = None) -> np.ndarray:
    """Mass-weighted velocity autocorrelation C(τ)/C(0).

    Args:
        velocity: [F, n, 3] or [F, S, n, 3] Å/fs (S replicas are averaged).
        mass: [n] amu.
        max_lag: lags to return (default F // 2).

    Returns:
        [max_lag] normalised autocorrelation, averaged over time origins (FFT, zero-padded so
        it is not circular) and replicas.
    """
    v = np.asarray(velocity, float)
    if v.ndim == 3:
        v = v[:, None]
    F = v.shape[0]
    max_lag = F // 2 if max_lag is None else max_lag
    w = np.sqrt(np.asarray(mass, float))[None, None, :, None]
    x = (v * w).reshape(F, -1)
    f = np.fft.rfft(x, n=2 * F, axis=0)
    acf = np.fft.irfft(np.abs(f) ** 2, axis=0)[:F].sum(axis=1)
    acf /= (F - np.arange(F))  # unbiased: number of time origins per lag
    return acf[:max_lag] / acf[0]


def vibrational_spectrum(velocity, mass, dt_frame_fs: float, *, max_lag: Optional[int] = None):
    """Vibrational density of states from the Fourier transform of the VACF.

    Args:
        velocity: [F, n, 3] or [F, S, n, 3] Å/fs.  mass: [n] amu.
        dt_frame_fs: time between frames [fs] (Nyquist: 1/(2 c dt); 2 fs → 8340 cm⁻¹).
        max_lag: VACF length used (Hann-windowed); default F // 2.

    Returns:
        (wavenumber [K] cm⁻¹, intensity [K], normalised to a maximum of 1 above 100 cm⁻¹).
    """
    c = velocity_autocorrelation(velocity, mass, max_lag=max_lag)
    L = len(c)
    window = np.hanning(2 * L)[L:]  # the decaying half of a Hann window
    sym = np.concatenate([c * window, (c * window)[1:-1][::-1]])  # even extension
    spec = np.abs(np.fft.rfft(sym))
    nu = np.fft.rfftfreq(len(sym), d=dt_frame_fs) / _C_CM_PER_FS  # 1/fs -> cm^-1
    sel = nu > 100
    spec = spec / (spec[sel].max() if sel.any() else spec.max())
    return nu, spec


def spectrum_peaks(wavenumber, intensity, *, n_peaks: int, min_wavenumber: float = 200.0,
                   min_height: float = 0.02) -> np.ndarray:
    """The ``n_peaks`` highest local maxima above ``min_wavenumber`` [cm⁻¹], ascending,
    refined by a parabola through the three points around each maximum."""
    nu, I = np.asarray(wavenumber), np.asarray(intensity)
    idx = [i for i in range(1, len(I) - 1)
           if I[i] >= I[i - 1] and I[i] > I[i + 1] and nu[i] > min_wavenumber and I[i] > min_height]
    idx = sorted(idx, key=lambda i: -I[i])[:n_peaks]
    out = []
    for i in idx:
        a, b, c = I[i - 1], I[i], I[i + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        out.append(nu[i] + shift * (nu[1] - nu[0]))
    return np.sort(np.array(out))


def radial_distribution(positions, species, box_side, *, pair: tuple[int, int] = (8, 8), r_max: Optional[float] = None,
                        n_bins: int = 100):
    """g(r) between two species in an orthorhombic periodic box.

    Args:
        positions: [F, n, 3] Å.  species: [n] atomic numbers.  box_side: [3] Å.
        pair: the two atomic numbers (e.g. (8, 8) for O–O).
        r_max: up to this distance [Å] (default half the shortest side).
        n_bins: histogram bins.

    Returns:
        (r [n_bins] bin centres Å, g [n_bins]).
    """
    X = np.asarray(positions, float)
    if X.ndim == 2:
        X = X[None]
    L = np.asarray(box_side, float)
    if L.shape != (3,):
        raise QdynInputError(f"radial_distribution needs box_side [3] Å (periodic box), got {box_side!r}")
    Z = np.asarray(species)
    a, b = np.nonzero(Z == pair[0])[0], np.nonzero(Z == pair[1])[0]
    if len(a) == 0 or len(b) == 0:
        raise QdynInputError(f"no atoms of species {pair} in the system")
    r_max = 0.5 * L.min() if r_max is None else r_max
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = np.zeros(n_bins)
    for x in X:
        d = x[b][None] - x[a][:, None]
        d -= L * np.round(d / L)
        r = np.linalg.norm(d, axis=-1)
        same = a[:, None] == b[None, :]
        hist += np.histogram(r[~same], bins=edges)[0]
    n_pairs = len(a) * len(b) - int(np.sum(a[:, None] == b[None, :]))
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = hist / (len(X) * n_pairs * shell / np.prod(L))
    return 0.5 * (edges[1:] + edges[:-1]), g


# -- plots (matplotlib Agg; files written atomically) -------------------------------------
def plot_energies(result, path, *, replica: int = 0) -> Path:
    """Potential, kinetic and total energy [eV] and temperature [K] against time [ps]."""
    plt = pyplot()
    t = result.time_fs / 1e3
    fig, (a, b) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    for name, y in (("potential", result.potential), ("kinetic", result.kinetic), ("total", result.total)):
        a.plot(t, y[:, replica] - result.total[0, replica], label=name)
    a.set_ylabel("E − E_tot(0) [eV]")
    a.legend()
    b.plot(t, result.temperature.mean(axis=1), label=f"mean of {result.temperature.shape[1]} replicas")
    b.set_xlabel("time [ps]")
    b.set_ylabel("T [K]")
    b.legend()
    return save_figure(fig, path)


def plot_spectrum(wavenumber, intensity, path, *, harmonic: Optional[Sequence[float]] = None,
                  peaks: Optional[Sequence[float]] = None, title: str = "") -> Path:
    """Vibrational spectrum with the harmonic frequencies as vertical lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sel = wavenumber <= 4500
    ax.plot(wavenumber[sel], intensity[sel], color="k", lw=1, label="FT of VACF (MD)")
    for i, w in enumerate(harmonic or ()):
        ax.axvline(w, color="tab:red", ls="--", lw=1, label="harmonic (model Hessian)" if i == 0 else None)
    for p in peaks or ():
        ax.plot([p], [np.interp(p, wavenumber, intensity)], "o", color="tab:blue")
    ax.set_xlabel("wavenumber [cm⁻¹]")
    ax.set_ylabel("intensity [arb.]")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)
