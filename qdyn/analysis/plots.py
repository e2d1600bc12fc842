"""Plots of the trajectory analyses (matplotlib Agg, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..plotting import pyplot, save_figure


def plot_msd(lag_fs, msd, result: dict, path) -> Path:
    """MSD [Å²] against lag [ps] with the fitted Einstein line over the fit range."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    lag_fs = np.asarray(lag_fs)
    ax.plot(lag_fs / 1e3, msd, color="k", lw=1, label="MSD")
    sel = (lag_fs >= result["fit_start_fs"]) & (lag_fs <= result["fit_end_fs"])
    t = lag_fs[sel]
    intercept = np.mean(np.asarray(msd)[sel] - 6.0 * result["D_A2_per_fs"] * t)
    ax.plot(t / 1e3, intercept + 6.0 * result["D_A2_per_fs"] * t, color="tab:red", lw=2,
            label=f"D = {result['D_cm2_per_s']:.3g} ± {result['D_err_cm2_per_s']:.2g} cm²/s")
    ax.set_xlabel("lag [ps]")
    ax.set_ylabel("MSD [Å²]")
    ax.legend()
    return save_figure(fig, path)


def plot_hbonds(result: dict, time_fs, path) -> Path:
    """H-bond count per molecule against time, and the lifetime correlations."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    per_mol = 2.0 * np.asarray(result["count_per_frame"]) / result["n_molecules"]
    a.plot(np.asarray(time_fs) / 1e3, per_mol, color="k", lw=1)
    a.set_xlabel("time [ps]")
    a.set_ylabel("H-bonds per molecule")
    lag = np.asarray(result["lag_fs"])
    b.plot(lag, result["C_intermittent"], label=f"intermittent ({result['lifetime_intermittent_fs']:.0f} fs)")
    b.plot(lag, result["C_continuous"], label=f"continuous ({result['lifetime_continuous_fs']:.0f} fs)")
    b.set_xlabel("lag [fs]")
    b.set_ylabel("C(τ)")
    b.legend()
    return save_figure(fig, path)


def plot_projection(projection, path, *, labels: Optional[np.ndarray] = None, time_fs=None,
                    axis_names=("component 1", "component 2")) -> Path:
    """Frames in the first two components, coloured by cluster (or by time)."""
    plt = pyplot()
    Y = np.asarray(projection)
    y2 = Y[:, 1] if Y.shape[1] > 1 else np.zeros(len(Y))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if labels is not None:
        sc = ax.scatter(Y[:, 0], y2, c=labels, cmap="tab10", s=8)
        fig.colorbar(sc, ax=ax, label="cluster")
    else:
        c = np.arange(len(Y)) if time_fs is None else np.asarray(time_fs) / 1e3
        sc = ax.scatter(Y[:, 0], y2, c=c, cmap="viridis", s=8)
        fig.colorbar(sc, ax=ax, label="time [ps]")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    return save_figure(fig, path)
