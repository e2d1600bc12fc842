"""The MD uncertainty watchdog stopping replicas of a deliberately under-trained model.

A K=4 BPNN ensemble is fitted to 48 H2O frames (B3LYP/def2-SVP, shipped) for a few epochs
only (``--epochs``, default 3: it knows the energy scale, not the bonds). Replicas of NVT MD at
``--temperature`` run twice from the same velocities and noise: without the watchdog (they
come apart or blow up) and with ``--max-force-std``. For a trained ensemble (``--epochs-good``)
the same threshold lets every replica run through. Reported: per replica when it stopped, its
σ at the stop, the longest O–H bond it ever reached (with and without the watchdog), and a
plot of σ and O–H traces with the stop marked.

Writes ``benchmarks/results/watchdog.json``, ``watchdog.png`` and its section of
``benchmarks/README.md``.

    python benchmarks/watchdog.py --replicas 8 --steps 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402


def _train(epochs: int, work: Path):
    from qdyn.data import load_shipped
    from qdyn.train import parse_config, train

    data = load_shipped("H2O").subset(np.arange(64))
    cfg = parse_config({"model": {"family": "bpnn", "hidden": [16], "n_radial": 5, "zetas": [1.0, 4.0]},
                        "data": {"n_train": 48, "n_val": 8, "n_test": 8}, "epochs": epochs, "batch_size": 16,
                        "optim": {"learning_rate": 1e-2}, "uncertainty": {"method": "ensemble", "ensemble": {"size": 4}}})
    res = train(cfg, work / f"ens_{epochs}ep", progress=False, data=data)
    return res.model, res.params, res.metrics["test"]["force_mae_meV_per_A"]


def _oh(position):
    return np.linalg.norm(position[:, :, 1:] - position[:, :, :1], axis=-1).max(-1)  # [F, Rp]


def _run(model, params, args, watchdog):
    import jax

    from qdyn.md import BlowUpError, MDOutput, MDSettings, model_energy_fn, run_md
    from qdyn.structures import water

    R, system = water()
    try:
        res = run_md(model_energy_fn(model.apply), params, R, system,
                     MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=args.steps, temperature_K=args.temperature,
                                replicas=args.replicas),
                     output=MDOutput(stride=10, frames_per_block=10, store_replicas=args.replicas, progress=None),
                     key=jax.random.PRNGKey(args.seed), watchdog=watchdog)
        return res, None
    except BlowUpError as exc:
        return None, exc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the under-trained ensemble")
    ap.add_argument("--epochs-good", type=int, default=150, help="training epochs of the trained ensemble")
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000, help="MD steps of 0.5 fs")
    ap.add_argument("--temperature", type=float, default=300.0, help="K")
    ap.add_argument("--max-force-std", type=float, default=1.0, help="watchdog threshold, eV/Å")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_watchdog"))
    args = ap.parse_args()
    from qdyn.md import make_watchdog
    from qdyn.precision import enable_x64

    enable_x64()
    load = os.getloadavg()
    t0 = time.perf_counter()
    rows, traces = [], {}
    for label, epochs in (("under-trained", args.epochs), ("trained", args.epochs_good)):
        model, params, mae = _train(epochs, args.work)
        free, blew = _run(model, params, args, None)
        watched, _ = _run(model, params, args, make_watchdog(model, max_force_std=args.max_force_std))
        events = {e["replica"]: e for e in watched.watchdog["events"]}
        oh_w = _oh(watched.position)
        oh_free = None if free is None else _oh(free.position)
        traces[label] = (watched, oh_w, oh_free)
        rows.append({"model": label, "epochs": epochs, "test_force_mae_meV_per_A": mae,
                     "without_watchdog": ("blew up: " + str(blew).split(":")[1].strip()) if blew is not None else
                     f"max O–H {oh_free.max():.2f} Å",
                     "replicas_stopped": f"{len(events)}/{args.replicas}",
                     "first_stop_fs": min((e["time_fs"] for e in events.values()), default=None),
                     "max_OH_with_watchdog_A": float(np.nanmax(oh_w)),
                     "events": list(events.values())})
        print(rows[-1]["model"], rows[-1]["without_watchdog"], rows[-1]["replicas_stopped"],
              f"max O–H with watchdog {rows[-1]['max_OH_with_watchdog_A']:.2f} Å", flush=True)
    _plot(RESULTS / "watchdog.png", traces, args)
    payload = {**machine_info(), "load_average_at_start": load, "settings": vars(args) | {"work": str(args.work)},
               "rows": rows, "seconds": time.perf_counter() - t0}
    save("watchdog", payload)
    head = "| model | epochs | test force MAE meV/Å | without watchdog | stopped | first stop fs | max O–H with watchdog Å |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['epochs']} | {r['test_force_mae_meV_per_A']:.0f} | {r['without_watchdog']} | "
                     f"{r['replicas_stopped']} | {r['first_stop_fs'] if r['first_stop_fs'] is not None else '–'} | "
                     f"{r['max_OH_with_watchdog_A']:.2f} |")
    text = (f"`python benchmarks/watchdog.py --replicas {args.replicas} --steps {args.steps} --temperature "
            f"{args.temperature:g} --max-force-std {args.max_force_std:g}` (load average at start {load[0]:.1f}; "
            f"{time.perf_counter() - t0:.0f} s)\n\n" + "\n".join(lines) + "\n\n![watchdog](results/watchdog.png)")
    update_readme_section("watchdog", "### MD uncertainty watchdog (H2O, BPNN ensemble K=4)", text)


def _plot(path, traces, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    for col, (label, (res, oh_w, oh_free)) in enumerate(traces.items()):
        t = res.time_fs
        for r in range(res.force_std.shape[1]):
            axes[0, col].plot(t, res.force_std[:, r], lw=0.8)
            line, = axes[1, col].plot(t, oh_w[:, r], lw=0.8)
            if oh_free is not None:
                axes[1, col].plot(t[: len(oh_free)], oh_free[:, r], lw=0.5, ls=":", color=line.get_color())
        for e in res.watchdog["events"]:
            axes[0, col].plot(e["time_fs"], e["force_std_eV_per_A"], "rx")
        axes[0, col].axhline(args.max_force_std, color="k", ls="--", lw=0.8, label="threshold")
        axes[0, col].set_yscale("log")
        axes[0, col].set_title(f"{label}: largest per-atom force σ [eV/Å]")
        axes[0, col].legend()
        axes[1, col].set_title("longest O–H [Å] (solid: watchdog, dotted: without)")
        axes[1, col].set_xlabel("time [fs]")
        axes[1, col].set_ylim(0.8, 3.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
