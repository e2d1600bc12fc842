"""Error metrics (meV, meV/atom, meV/Å) and the pictures people look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import pyplot, save_figure


def error_metrics(E_pred, E_true, F_pred, F_true, mask) -> dict:
    """Energy MAE/RMSE [meV] and per atom [meV/atom]; force MAE/RMSE [meV/Å], also per
    Cartesian component. Arrays in eV and eV/Å; ``mask`` [n, A] marks real atoms."""
    n_at = mask.sum(axis=1)
    dE = np.asarray(E_pred) - np.asarray(E_true)
    out = {
        "n_frames": int(len(dE)),
        "energy_mae_meV": 1e3 * float(np.mean(np.abs(dE))),
        "energy_rmse_meV": 1e3 * float(np.sqrt(np.mean(dE**2))),
        "energy_mae_meV_per_atom": 1e3 * float(np.mean(np.abs(dE / n_at))),
        "energy_rmse_meV_per_atom": 1e3 * float(np.sqrt(np.mean((dE / n_at) ** 2))),
    }
    if F_true is not None:
        dF = (np.asarray(F_pred) - np.asarray(F_true))[mask]  # [n_real_atoms, 3]
        out.update({
            "force_mae_meV_per_A": 1e3 * float(np.mean(np.abs(dF))),
            "force_rmse_meV_per_A": 1e3 * float(np.sqrt(np.mean(dF**2))),
            "force_mae_components_meV_per_A": [1e3 * float(v) for v in np.mean(np.abs(dF), axis=0)],
        })
    return out


def multistate_metrics(E_pred, E_true, F_pred, F_true, mask) -> list[dict]:
    """:func:`error_metrics` of every adiabatic state: ``E_*`` [n, S] eV, ``F_*`` [n, S, A, 3]
    eV/Å (``F_true`` may be None), ``mask`` [n, A]; one dict per state."""
    S = np.shape(E_true)[1]
    return [error_metrics(np.asarray(E_pred)[:, k], np.asarray(E_true)[:, k],
                          None if F_true is None else np.asarray(F_pred)[:, k],
                          None if F_true is None else np.asarray(F_true)[:, k], mask) for k in range(S)]


def parity_plot(path, E_pred, E_true, F_pred, F_true, mask, *, title: str = "") -> Path:
    plt = pyplot()

    ref = float(np.mean(E_true))
    fig, axes = plt.subplots(1, 2 if F_true is not None else 1, figsize=(9, 4), squeeze=False)
    ax = axes[0, 0]
    ax.scatter(np.asarray(E_true) - ref, np.asarray(E_pred) - ref, s=6)
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("reference E − mean [eV]")
    ax.set_ylabel("predicted E − mean [eV]")
    ax.set_title(f"{title} energies")
    if F_true is not None:
        ax = axes[0, 1]
        ft, fp = np.asarray(F_true)[mask].ravel(), np.asarray(F_pred)[mask].ravel()
        ax.scatter(ft, fp, s=3, alpha=0.5)
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("reference F [eV/Å]")
        ax.set_ylabel("predicted F [eV/Å]")
        ax.set_title(f"{title} force components")
    fig.tight_layout()
    return save_figure(fig, path)


def learning_curve(path, history: list[dict]) -> Path:
    plt = pyplot()

    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].semilogy(ep, [h["train_loss"] for h in history], label="train loss")
    if any("val_loss" in h for h in history):
        axes[0].semilogy(ep, [h.get("val_loss", np.nan) for h in history], label="validation loss")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    if any("val_energy_mae_meV" in h for h in history):
        axes[1].semilogy(ep, [h.get("val_energy_mae_meV", np.nan) for h in history], label="E MAE [meV]")
        axes[1].semilogy(ep, [h.get("val_force_mae_meV_per_A", np.nan) for h in history], label="F MAE [meV/Å]")
        axes[1].set_xlabel("epoch")
        axes[1].legend()
        axes[1].set_title("validation")
    fig.tight_layout()
    return save_figure(fig, path)
