"""The active-learning report: per round, labels added, test error, uncertainty and the MD
time reached, as ``report.json``, ``report.md`` and ``report.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.io import atomic_write_text
from ..plotting import pyplot, save_figure


def rows(state: dict) -> list[dict]:
    """One flat row per finished round."""
    out, total = [], 0
    for rec in state["rounds"]:
        total += rec.get("labels_added", 0)
        ex = rec["explore"]
        out.append({"round": rec["round"], "train_pool": rec["n_train_pool"], "labels_added": rec.get("labels_added", 0),
                    "labels_total": total, "test_energy_mae_meV": rec["test"]["energy_mae_meV"],
                    "test_force_mae_meV_per_A": rec["test"]["force_mae_meV_per_A"],
                    "test_mean_force_std_eV_per_A": rec["test"]["mean_force_std_eV_per_A"],
                    # test_data (a second held-out set): absent in rounds run without it
                    "test_data_force_mae_meV_per_A": rec.get("test_data", {}).get("force_mae_meV_per_A"),
                    "md_max_force_std_eV_per_A": ex["max_force_std_eV_per_A"],
                    "md_stopped": f"{ex['stopped']}/{ex['replicas']}",
                    "md_time_reached_min_fs": ex["md_time_reached_fs"]["min"], "md_target_fs": ex["target_fs"],
                    "seconds": rec.get("seconds")})
    return out


def markdown(state: dict) -> str:
    table = rows(state)
    head = ["round", "train frames", "labels added", "test E MAE meV", "test F MAE meV/Å", "test σ_F eV/Å",
            "test_data F MAE meV/Å", "MD max σ_F eV/Å", "stopped", "MD time reached (min) fs"]
    lines = ["# Active learning report", "",
             f"Converged (MD survived the target time with no replica stopped): **{bool(state.get('converged'))}**",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda x: "–" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))  # noqa: E731
    for r in table:
        lines.append("| " + " | ".join(fmt(r[k]) for k in (
            "round", "train_pool", "labels_added", "test_energy_mae_meV", "test_force_mae_meV_per_A",
            "test_mean_force_std_eV_per_A", "test_data_force_mae_meV_per_A", "md_max_force_std_eV_per_A", "md_stopped",
            "md_time_reached_min_fs")) + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, state: dict) -> Path:
    plt = pyplot()

    table = rows(state)
    x = [r["round"] for r in table]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].plot(x, [r["test_force_mae_meV_per_A"] for r in table], "o-", label="force MAE [meV/Å]")
    axes[0].plot(x, [r["test_energy_mae_meV"] for r in table], "s-", label="energy MAE [meV]")
    if any(r["test_data_force_mae_meV_per_A"] is not None for r in table):
        axes[0].plot(x, [np.nan if r["test_data_force_mae_meV_per_A"] is None else r["test_data_force_mae_meV_per_A"]
                         for r in table], "^-", label="test_data force MAE [meV/Å]")
    axes[0].set_yscale("log")
    axes[0].set_title("test error")
    axes[0].legend()
    axes[1].plot(x, [r["test_mean_force_std_eV_per_A"] for r in table], "o-", label="test mean σ_F")
    axes[1].plot(x, [np.nan if r["md_max_force_std_eV_per_A"] is None else r["md_max_force_std_eV_per_A"]
                     for r in table], "s-", label="MD max σ_F")
    axes[1].set_title("uncertainty [eV/Å]")
    axes[1].legend()
    axes[2].bar(x, [r["md_time_reached_min_fs"] for r in table], color="C2")
    if table:
        axes[2].axhline(table[0]["md_target_fs"], color="k", ls="--", lw=0.8, label="target")
        axes[2].legend()
    axes[2].set_title("MD time reached by every replica [fs]")
    for ax in axes:
        ax.set_xlabel("round")
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(out: Path, state: dict) -> dict:
    """Write ``report.json``, ``report.md``, ``report.png`` in ``out``; returns the report."""
    out = Path(out)
    report = {"converged": bool(state.get("converged")), "rounds": rows(state),
              "labels_total": sum(r.get("labels_added", 0) for r in state["rounds"]), "details": state["rounds"]}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", markdown(state))
    if state["rounds"]:
        plot(out / "report.png", state)
    return report
