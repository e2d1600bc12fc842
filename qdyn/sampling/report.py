"""What ``qdyn md --bias`` adds to an MD run directory: the CVs and bias energies of every
frame (``sampling.npz``), a summary (``sampling.json``: hills, exchange acceptance and round
trips, the free-energy profile with errors) and a plot (``fes.png``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.io import atomic_savez, atomic_write_text
from ..plotting import pyplot, save_figure
from ..units import temperature_to_energy
from .exchange import by_rung
from .config import BiasConfig, build, load_bias_config
from .free_energy import FreeEnergy, metad_fes, umbrella_fes


def run_kwargs(md_cfg) -> dict:
    """``run_md`` keyword arguments (bias, bias_states, exchange) of an MD config with ``bias``."""
    cfg = load_bias_config(md_cfg.bias)
    bias, states, exchange = build(cfg, replicas=md_cfg.replicas, n_steps=md_cfg.n_steps,
                                   temperature_K=md_cfg.temperature_K)
    return {"bias": bias, "bias_states": states, "exchange": exchange}


def free_energy(res, cfg: BiasConfig, bias, *, temperature_K: float, discard: int = 0):
    """The run's free-energy profile: umbrella windows by MBAR (one CV), otherwise the
    metadynamics bias sum on a grid over the sampled range (one or two CVs); None when
    neither applies."""
    cv = res.cv  # [F, Rp, n_cv]
    n_cv = cv.shape[-1]
    lo, hi = cv.reshape(-1, n_cv).min(0), cv.reshape(-1, n_cv).max(0)
    if cfg.umbrella is not None and cfg.metadynamics is None and n_cv == 1:
        centers = np.asarray(res.bias_state.center)[:, 0]
        kappa = np.asarray(res.bias_state.kappa)[:, 0]
        x = cv[..., 0]
        if res.exchange is not None and res.exchange.get("attempts", 0):
            # MBAR groups samples by the window that produced them, i.e. by rung
            history = np.asarray(res.exchange["rung_history"])
            x = by_rung(x, history, initial=bool(res.step[0] == 0))
            final_holder = np.argsort(history[-1])
            centers, kappa = centers[final_holder], kappa[final_holder]
        edges = np.linspace(lo[0], hi[0], cfg.fes_bins + 1)
        return umbrella_fes(x, centers, kappa, temperature_K=temperature_K, bin_edges=edges,
                            period=bias.periods[0] if bias.periods else None, discard=discard)
    if cfg.metadynamics is not None and n_cv <= 2:
        axes = [np.linspace(lo[k], hi[k], cfg.fes_bins) for k in range(n_cv)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, n_cv)
        return metad_fes(bias, res.bias_state, pts)
    return None


def write_report(res, md_cfg, biased: dict, out: Path) -> dict:
    """Write sampling.npz, sampling.json and fes.png; returns the summary."""
    cfg = load_bias_config(md_cfg.bias)
    bias, exchange = biased["bias"], biased["exchange"]
    atomic_savez(out / "sampling.npz", {"cv": res.cv, "bias_eV": res.bias_energy, "potential_eV": res.potential,
                                        "step": res.step})
    summary = {"cvs": [c.model_dump() for c in cfg.cvs], "n_hills": np.asarray(res.bias_state.n_hills).tolist()}
    if bias.max_hills and np.any(np.asarray(res.bias_state.n_hills) >= bias.max_hills):
        summary["warning"] = "the hill buffer filled up: later hills were not deposited (raise max_hills)"
    if exchange is not None:
        stats = res.exchange or {}
        summary["exchange"] = {k: v for k, v in stats.items() if k != "rung_history"}
    fe = free_energy(res, cfg, bias, temperature_K=md_cfg.temperature_K, discard=len(res.step) // 10)
    if fe is not None:
        kT = temperature_to_energy(md_cfg.temperature_K)
        summary["free_energy"] = {"s": np.asarray(fe.s).tolist(), "F_eV": _list(fe.F), "dF_eV": _list(fe.dF),
                                  "kT_eV": kT, "samples": fe.n_samples}
        plot_fes(fe, cfg, out / "fes.png")
        summary["plot"] = str(out / "fes.png")
    atomic_write_text(out / "sampling.json", json.dumps(summary, indent=2))
    return {k: v for k, v in summary.items() if k != "free_energy"}


def _list(x):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x).ravel()]


def plot_fes(fe: FreeEnergy, cfg: BiasConfig, path: Path) -> None:
    """A 1D profile with its error band, or 2D contours (Agg backend)."""
    plt = pyplot()

    units = {"distance": "Å", "difference": "Å", "position": "Å", "angle": "rad", "dihedral": "rad",
             "coordination": ""}
    labels = [f"{c.kind} {c.atoms} [{units[c.kind]}]" for c in cfg.cvs]
    fig, ax = plt.subplots(figsize=(5, 4))
    s = np.asarray(fe.s)
    if s.ndim == 1 or s.shape[-1] == 1:
        x = s.reshape(-1)
        ax.plot(x, fe.F, "k-")
        ax.fill_between(x, fe.F - fe.dF, fe.F + fe.dF, color="C0", alpha=0.3, label="±1σ")
        ax.set_xlabel(labels[0])
        ax.set_ylabel("free energy [eV]")
        ax.legend()
    else:
        n = int(round(np.sqrt(len(s))))
        cs = ax.contourf(s[:, 0].reshape(n, n), s[:, 1].reshape(n, n), fe.F.reshape(n, n), levels=20)
        fig.colorbar(cs, ax=ax, label="free energy [eV]")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    fig.tight_layout()
    save_figure(fig, path)
