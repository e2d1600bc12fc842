"""Ensemble summaries of surface-hopping runs: populations, lifetimes, hops, energy conservation.

Host-side NumPy helpers shared by ``qdyn namd``, ``benchmarks/cah2_namd.py`` and the
notebooks; they take a :class:`~qdyn.namd.run.FSSHResult` and return plain JSON-ready dicts
or write a matplotlib figure. (The adapter from a multistate model to ``W_fn(params, R)`` is
:func:`qdyn.md.adapters.diabatic_fn`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..plotting import pyplot, save_figure
from .run import FSSHResult


def fit_exponential_decay(time_fs, population, *, min_drop: float = 0.05) -> Optional[dict]:
    """Fit ``P(t) = P_∞ + (P(0) − P_∞) exp(−t/τ)`` to a decaying population.

    Args:
        time_fs: [F] fs.  population: [F] fraction in [0, 1].
        min_drop: no fit (None) unless the population falls by at least this much.

    Returns:
        ``{"tau_fs", "tau_std_fs", "p_inf", "p0", "rmse"}`` or None when it does not decay.
    """
    from scipy.optimize import curve_fit

    t = np.asarray(time_fs, dtype=np.float64)
    p = np.asarray(population, dtype=np.float64)
    p0 = float(p[0])
    if p0 - float(p.min()) < min_drop:
        return None

    def model(t, tau, p_inf):
        return p_inf + (p0 - p_inf) * np.exp(-t / tau)

    # initial τ from the first crossing of half the drop; P_∞ free in [0, P(0)]
    half = p0 - 0.5 * (p0 - p.min())
    tau_guess = float(t[np.argmax(p <= half)]) / np.log(2.0) or t[-1]
    popt, pcov = curve_fit(model, t, p, p0=(max(tau_guess, 1e-3), float(p.min())),
                           bounds=([1e-6, 0.0], [np.inf, p0]), maxfev=20000)
    err = np.sqrt(np.diag(pcov))
    return {"tau_fs": float(popt[0]), "tau_std_fs": float(err[0]), "p_inf": float(popt[1]), "p0": p0,
            "rmse": float(np.sqrt(np.mean((model(t, *popt) - p) ** 2)))}


def bootstrap_decay(time_fs, active, *, state: int = 1, n_boot: int = 200, seed: int = 0,
                    min_drop: float = 0.05) -> Optional[dict]:
    """Decay time of the fraction of trajectories on ``state`` with its uncertainty from a
    bootstrap over trajectories (resampled with replacement, refitted each time).

    The fit's own standard error (:func:`fit_exponential_decay`) treats the frames of one
    population curve as independent; they are not (the same trajectories at successive
    times), and it misses the finite number of trajectories. Resampling trajectories is the
    uncertainty a second ensemble of the same size would show.

    Args:
        time_fs: [F] fs.  active: [F, N] int, active state of every trajectory.
        state: whose active fraction decays.  n_boot: resamples.  seed: NumPy seed.
        min_drop: as in :func:`fit_exponential_decay`.

    Returns:
        ``{"tau_fs", "tau_median_fs", "tau_std_fs", "tau_p2_5_fs", "tau_p97_5_fs", "p_inf",
        "p_inf_std", "n_boot", "n_failed"}`` (``tau_fs`` from all trajectories), or None when
        the full ensemble does not decay.
    """
    on = np.asarray(active) == state  # [F, N]
    full = fit_exponential_decay(time_fs, on.mean(axis=1), min_drop=min_drop)
    if full is None:
        return None
    rng = np.random.default_rng(seed)
    n = on.shape[1]
    taus, pinf = [], []
    for _ in range(n_boot):
        fit = fit_exponential_decay(time_fs, on[:, rng.integers(0, n, n)].mean(axis=1), min_drop=min_drop)
        if fit is not None:
            taus.append(fit["tau_fs"])
            pinf.append(fit["p_inf"])
    taus = np.asarray(taus)
    out = {"tau_fs": full["tau_fs"], "p_inf": full["p_inf"], "n_boot": n_boot, "n_failed": n_boot - len(taus)}
    if len(taus):
        out.update({"tau_median_fs": float(np.median(taus)), "tau_std_fs": float(np.std(taus)),
                    "tau_p2_5_fs": float(np.percentile(taus, 2.5)), "tau_p97_5_fs": float(np.percentile(taus, 97.5)),
                    "p_inf_std": float(np.std(pinf))})
    return out


def energy_conservation(res: FSSHResult) -> dict:
    """Distribution over trajectories of ``max_t |E_tot(t) − E_tot(0)|`` [eV] (hops included)."""
    dE = np.abs(res.total - res.total[:1]).max(axis=0)  # [N]
    q = np.percentile(dE, [50, 90, 99])
    return {"max_abs_dE_per_traj_eV": {"median": float(q[0]), "p90": float(q[1]), "p99": float(q[2]),
                                        "max": float(dE.max()), "mean": float(dE.mean())},
            "n_traj_above_0.01_eV": int((dE > 0.01).sum()),
            "histogram_eV": {"counts": np.histogram(dE, bins=20)[0].tolist(),
                             "edges": np.histogram(dE, bins=20)[1].tolist()}}


def hop_summary(res: FSSHResult) -> dict:
    """Totals and per-trajectory statistics of attempted, accepted and frustrated hops."""
    acc = np.asarray(res.accepted)
    return {**res.hop_statistics(),
            "trajectories_with_accepted_hop": int((acc > 0).sum()),
            "accepted_per_traj_mean": float(acc.mean()), "accepted_per_traj_max": int(acc.max()),
            "final_active_fraction": np.asarray(res.active_fraction[-1]).tolist()}


def populations_dict(res: FSSHResult) -> dict:
    """Time [fs], active fractions and mean |c|² per state, as lists."""
    return {"time_fs": np.asarray(res.time_fs).tolist(),
            "active_fraction": np.asarray(res.active_fraction).T.tolist(),
            "coefficient_population": np.asarray(res.coefficient_population).T.tolist()}


def plot_populations(res: FSSHResult, path, *, title: str = "", fit: Optional[dict] = None,
                     fit_state: int = 1) -> Path:
    """Write the figure of state populations vs time: fraction of trajectories on each
    surface (solid), mean |c|² (dashed), an optional exponential fit of state ``fit_state``."""
    plt = pyplot()

    t = np.asarray(res.time_fs)
    n = res.active_fraction.shape[1]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k in range(n):
        c = f"C{k}"
        ax.plot(t, res.active_fraction[:, k], c, lw=1.8, label=f"S{k} active fraction")
        ax.plot(t, res.coefficient_population[:, k], "--", color=c, lw=1.2, label=f"S{k} mean |c|²")
    if fit is not None:
        p = fit["p_inf"] + (fit["p0"] - fit["p_inf"]) * np.exp(-t / fit["tau_fs"])
        ax.plot(t, p, ":", color="k", lw=1.5,
                label=f"fit S{fit_state}: τ = {fit['tau_fs']:.0f} ± {fit['tau_std_fs']:.0f} fs, P∞ = {fit['p_inf']:.2f}")
    ax.set_xlabel("time [fs]")
    ax.set_ylabel("population")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or f"FSSH, {res.active.shape[1]} trajectories")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
