"""Size transferability on water clusters: trained on (H2O)n, n ≤ 10, tested on n = 12–20.

The hybrid model (per-atom re-uploading circuit ∥ MLP on symmetry functions) and its
classical-only control (the circuit replaced by a tanh MLP of the same width, the same
parameter group, the same staged schedule) are trained identically on the shipped GFN2-xTB
cluster data (``load_shipped("water_clusters")``) restricted to n ≤ 10; the sizes 12, 14, 16,
18 and 20 are never seen in training. Reported per n and overall: energy MAE per molecule
(meV/molecule) and force MAE (meV/Å, per Cartesian component over real atoms).

With ``--seeds N`` (N > 1) every model, a Behler-Parrinello network on the same descriptor
included, is trained from N initialisations at once as a deep ensemble (one compiled step
vmapped over the members, the same minibatches), and the table reports each error as the
mean ± standard deviation over the members: the spread the circuit's effect has to beat.

Usage: nice -n 10 python benchmarks/bench_transfer.py [--descriptor power_spectrum|symmetry]
       [--epochs 60] [--pretrain-epochs 20] [--seeds 5] [--quick]
Writes benchmarks/results/bench_transfer_<descriptor>[_seeds].{json,png} (the seeds run also its
section of benchmarks/README.md); run directories go to --runs (default a temporary folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save  # noqa: E402
from qdyn.data import Dataset, load_shipped  # noqa: E402
from qdyn.models.base import count_params  # noqa: E402
from qdyn.train import parse_config, train  # noqa: E402
from qdyn.train.trainer import predict  # noqa: E402

TRAIN_MAX_N = 10
MODEL_BASE = {"family": "hybrid", "n_qubits": 4, "layers": 2, "hidden": [16, 16], "cutoff": 5.0, "n_radial": 6,
              "zetas": [1.0, 4.0], "eta_angular": 0.1, "l_max": 2, "radial_basis": "bessel"}
MODELS = {"hybrid (circuit)": {"branch": "reupload"}, "classical control (MLP branch)": {"branch": "mlp"}}
BPNN = {"BPNN": {"family": "bpnn"}}  # the seeds run adds it: same descriptor and hidden widths, no circuit


def trimmed(ds: Dataset, idx: np.ndarray) -> Dataset:
    """Frames ``idx`` with the padding cut to the largest molecule count among them."""
    sub = ds.subset(idx)
    A = int(sub.n_real.max())
    return Dataset(R=sub.R[:, :A], Z=sub.Z[:, :A], E=sub.E, F=sub.F[:, :A],
                   extras={"n_molecules": sub.extras["n_molecules"]}, metadata=sub.metadata, source=sub.source)


def per_size_errors(model, params, ds: Dataset) -> dict:
    """{n: {energy_mae_meV_per_molecule, force_mae_meV_per_A, frames}} and 'all' (frame-pooled)."""
    E, F = predict(model, params, ds)
    nm = ds.extras["n_molecules"]
    mask = ds.Z > 0
    dE = np.abs(E - ds.E) / nm * 1e3
    dF = np.abs(F - ds.F) * 1e3
    out = {}
    for n in np.unique(nm):
        sel = nm == n
        out[str(int(n))] = {"energy_mae_meV_per_molecule": float(dE[sel].mean()),
                            "force_mae_meV_per_A": float(dF[sel][mask[sel]].mean()), "frames": int(sel.sum())}
    out["all"] = {"energy_mae_meV_per_molecule": float(dE.mean()), "force_mae_meV_per_A": float(dF[mask].mean()),
                  "frames": int(len(dE))}
    return out


def plot(path: Path, results: dict) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for label, r in results.items():
        for ax, key in zip(axes, ("energy_mae_meV_per_molecule", "force_mae_meV_per_A")):
            rows = {**r["train_sizes"], **r["test_sizes"]}
            ns = sorted(int(k) for k in rows if k != "all")
            ax.plot(ns, [rows[str(n)][key] for n in ns], "o-", label=f"{label} ({r['n_params']} params)")
    for ax, ylab in zip(axes, ("energy MAE [meV/molecule]", "force MAE [meV/Å]")):
        ax.axvspan(TRAIN_MAX_N + 0.5, 20.5, color="0.9", zorder=0)
        ax.text(16, ax.get_ylim()[1] * 0.95, "never seen", ha="center", va="top", fontsize=9)
        ax.set_xlabel("cluster size n (H2O)")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"(H2O)n, GFN2-xTB: trained on n ≤ {TRAIN_MAX_N} (held-out frames), tested on n = 12–20")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--pretrain-epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--runs", type=Path, default=None, help="run directories (default: a temporary folder)")
    ap.add_argument("--descriptor", choices=["symmetry", "power_spectrum"], default="power_spectrum")
    ap.add_argument("--seeds", type=int, default=1, help="initialisations per model, trained as one deep ensemble; "
                    "> 1 adds the BPNN and reports mean ± std")
    ap.add_argument("--quick", action="store_true", help="a few epochs, for checking the script")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.pretrain_epochs = 3, 1
    if args.seeds > 1:
        return seeds_run(args)

    ds = load_shipped("water_clusters")
    nm = ds.extras["n_molecules"]
    train_pool = trimmed(ds, np.flatnonzero(nm <= TRAIN_MAX_N))
    test = trimmed(ds, np.flatnonzero(nm > TRAIN_MAX_N))
    n_pool = train_pool.n_frames
    n_val = max(n_pool // 10, 1)
    n_hold = max(n_pool // 10, 1)  # held-out frames of the training sizes (in-distribution reference)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="qdyn-transfer-"))
    info = machine_info()
    results = {}
    for label, extra in MODELS.items():
        cfg = parse_config({
            "model": {**MODEL_BASE, **extra, "descriptor": args.descriptor},
            "data": {"path": "shipped:water_clusters", "n_train": n_pool - n_val - n_hold, "n_val": n_val,
                     "n_test": n_hold, "split_seed": 0},
            "loss": {"energy_weight": 1.0, "force_weight": 1.0},
            "optim": {"learning_rate": args.lr, "schedule": "cosine", "final_lr_fraction": 0.05},
            "epochs": args.epochs, "batch_size": args.batch, "seed": 0, "staged": True,
            "pretrain_epochs": args.pretrain_epochs, "checkpoint_every": max(args.epochs, 1),
        })
        print(f"== {label}: {cfg.model.model_dump()}", flush=True)
        t0 = time.perf_counter()
        res = train(cfg, runs / f"{label.split(' ')[0]}-{args.descriptor}", data=train_pool, progress=True)
        seconds = time.perf_counter() - t0
        # The held-out frames of the training sizes: the trainer's own test split.
        from qdyn.train.trainer import split_data

        _, _, held = split_data(train_pool, cfg.data)
        results[label] = {
            "model": cfg.model.model_dump(), "n_params": int(count_params(res.params)), "train_seconds": seconds,
            "train_sizes": per_size_errors(res.model, res.params, held),
            "test_sizes": per_size_errors(res.model, res.params, test),
            "trainer_metrics": res.metrics,
        }
        r = results[label]
        print(f"{label}: {r['n_params']} params, {seconds:.0f} s; held-out n<=10: "
              f"{r['train_sizes']['all']['energy_mae_meV_per_molecule']:.2f} meV/mol, "
              f"{r['train_sizes']['all']['force_mae_meV_per_A']:.1f} meV/Å; n=12-20: "
              f"{r['test_sizes']['all']['energy_mae_meV_per_molecule']:.2f} meV/mol, "
              f"{r['test_sizes']['all']['force_mae_meV_per_A']:.1f} meV/Å", flush=True)
    payload = {"data": {"name": "water_clusters", "level": ds.metadata["labeler"], "train_pool_frames": n_pool,
                        "n_train": n_pool - n_val - n_hold, "n_val": n_val, "n_held_out": n_hold,
                        "test_frames": test.n_frames, "train_max_n": TRAIN_MAX_N},
               "settings": vars(args) | {"runs": str(runs)}, "results": results, **info}
    name = f"bench_transfer_{args.descriptor}" + ("_quick" if args.quick else "")
    save(name, payload)
    plot(RESULTS / f"{name}.png", results)
    print(table(results))


def _split(ds: Dataset):
    nm = ds.extras["n_molecules"]
    return trimmed(ds, np.flatnonzero(nm <= TRAIN_MAX_N)), trimmed(ds, np.flatnonzero(nm > TRAIN_MAX_N))


def seeds_run(args) -> None:
    """Hybrid, its control and a BPNN, each ``--seeds`` initialisations as one ensemble run."""
    import os

    from bench_organics import members, mean_spread
    from qdyn.train.trainer import split_data

    load_avg = round(os.getloadavg()[0], 2)
    ds = load_shipped("water_clusters")
    train_pool, test = _split(ds)
    n_pool = train_pool.n_frames
    n_val = n_hold = max(n_pool // 10, 1)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="qdyn-transfer-seeds-"))
    results = {}
    for label, extra in {**MODELS, **BPNN}.items():
        quantum = extra.get("family", "hybrid") == "hybrid"
        cfg = parse_config({
            "model": {**MODEL_BASE, **extra, "descriptor": args.descriptor} if quantum else
                     {k: v for k, v in {**MODEL_BASE, **extra, "descriptor": args.descriptor}.items()
                      if k not in ("n_qubits", "layers", "branch")},
            "data": {"path": "shipped:water_clusters", "n_train": n_pool - n_val - n_hold, "n_val": n_val,
                     "n_test": n_hold, "split_seed": 0},
            "loss": {"energy_weight": 1.0, "force_weight": 1.0},
            "optim": {"learning_rate": args.lr, "schedule": "cosine", "final_lr_fraction": 0.05},
            "epochs": args.epochs, "batch_size": args.batch, "seed": 0, "staged": quantum,
            "pretrain_epochs": args.pretrain_epochs if quantum else 0, "checkpoint_every": max(args.epochs, 1),
            "uncertainty": {"method": "ensemble", "ensemble": {"size": args.seeds}},
        })
        t0 = time.perf_counter()
        res = train(cfg, runs / label.split(" ")[0], data=train_pool, progress=False)
        seconds = time.perf_counter() - t0
        _, _, held = split_data(train_pool, cfg.data)
        per = [(per_size_errors(m, p, held), per_size_errors(m, p, test)) for m, p in members(res)]
        results[label] = {
            "n_params_per_member": int(count_params(members(res)[0][1])), "train_seconds": seconds,
            "held_out_n_le_10": mean_spread([h["all"] for h, _ in per]),
            "test_n_12_20": mean_spread([t["all"] for _, t in per]),
            "test_per_n": {n: mean_spread([t[n] for _, t in per]) for n in per[0][1] if n != "all"},
        }
        r = results[label]
        print(f"{label}: {seconds:.0f} s; n<=10 F {r['held_out_n_le_10']['force_mae_meV_per_A']['mean']:.0f} ± "
              f"{r['held_out_n_le_10']['force_mae_meV_per_A']['std']:.0f}; n=12-20 E "
              f"{r['test_n_12_20']['energy_mae_meV_per_molecule']['mean']:.1f} ± "
              f"{r['test_n_12_20']['energy_mae_meV_per_molecule']['std']:.1f} meV/mol, F "
              f"{r['test_n_12_20']['force_mae_meV_per_A']['mean']:.0f} ± "
              f"{r['test_n_12_20']['force_mae_meV_per_A']['std']:.0f} meV/Å", flush=True)
    payload = {"data": {"name": "water_clusters", "n_train": n_pool - n_val - n_hold, "n_val": n_val,
                        "n_held_out": n_hold, "test_frames": test.n_frames, "train_max_n": TRAIN_MAX_N},
               "settings": vars(args) | {"runs": str(runs)}, "results": results, "load_average": load_avg,
               **machine_info()}
    name = f"bench_transfer_{args.descriptor}_seeds" + ("_quick" if args.quick else "")
    save(name, payload)
    plot_seeds(RESULTS / f"{name}.png", results, args.seeds)
    text = seeds_table(payload)
    print(text)
    if not args.quick:
        from _common import update_readme_section

        update_readme_section("bench_transfer_seeds", "Water clusters over seeds: hybrid vs control vs BPNN "
                              "(`python benchmarks/bench_transfer.py --seeds 5`)", text)


def plot_seeds(path: Path, results: dict, seeds: int) -> None:
    from qdyn.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k, (label, r) in enumerate(results.items()):
        ns = sorted(int(n) for n in r["test_per_n"])
        for ax, key in zip(axes, ("energy_mae_meV_per_molecule", "force_mae_meV_per_A")):
            xs = [TRAIN_MAX_N] + ns
            ys = [r["held_out_n_le_10"][key]] + [r["test_per_n"][str(n)][key] for n in ns]
            ax.errorbar(np.array(xs) + 0.15 * (k - 1), [y["mean"] for y in ys], yerr=[y["std"] for y in ys],
                        marker="o", capsize=3, label=f"{label} ({r['n_params_per_member']} params)")
    for ax, ylab in zip(axes, ("energy MAE [meV/molecule]", "force MAE [meV/Å]")):
        ax.set_xlabel("cluster size n (10: held-out frames of n ≤ 10)")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"(H2O)n, GFN2-xTB: mean ± std over {seeds} initialisations")
    save_figure(fig, path)


def seeds_table(p: dict) -> str:
    s = p["settings"]
    lines = [f"(H2O)n at GFN2-xTB, trained on n ≤ {p['data']['train_max_n']} ({p['data']['n_train']} frames), "
             f"{s['descriptor']} descriptor, {s['epochs']} epochs ({s['pretrain_epochs']} classical-only first for the "
             f"hybrid families), batch {s['batch']}; mean ± std over {s['seeds']} initialisations (one deep-ensemble "
             f"run per model). Held-out n ≤ 10 ({p['data']['n_held_out']} frames) and unseen n = 12–20 "
             f"({p['data']['test_frames']} frames):", "",
             "| model | params | E n ≤ 10 [meV/mol] | F n ≤ 10 [meV/Å] | E n = 12–20 [meV/mol] | F n = 12–20 [meV/Å] | "
             "train [s] |", "|---|---|---|---|---|---|---|"]
    for label, r in p["results"].items():
        cells = [f"{r[part][key]['mean']:.1f} ± {r[part][key]['std']:.1f}" if key.startswith("energy") else
                 f"{r[part][key]['mean']:.0f} ± {r[part][key]['std']:.0f}"
                 for part in ("held_out_n_le_10", "test_n_12_20")
                 for key in ("energy_mae_meV_per_molecule", "force_mae_meV_per_A")]
        lines.append(f"| {label} | {r['n_params_per_member']} | " + " | ".join(cells) +
                     f" | {r['train_seconds']:.0f} |")
    lines += ["", f"{p['machine']['cores']} cores, load average {p['load_average']} at the start. "
              f"Plot: `results/bench_transfer_{s['descriptor']}_seeds.png`."]
    return "\n".join(lines)


def table(results: dict) -> str:
    lines = []
    for key, unit in (("energy_mae_meV_per_molecule", "energy MAE [meV/molecule]"), ("force_mae_meV_per_A", "force MAE [meV/Å]")):
        first = next(iter(results.values()))
        cols = [k for k in first["train_sizes"] if k != "all"] + ["n≤10 all"] + \
               [k for k in first["test_sizes"] if k != "all"] + ["12–20 all"]
        lines += [f"\n{unit}\n", "| model | " + " | ".join(f"n={c}" if c[0].isdigit() else c for c in cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for label, r in results.items():
            vals = [r["train_sizes"][k][key] for k in r["train_sizes"] if k != "all"] + [r["train_sizes"]["all"][key]] + \
                   [r["test_sizes"][k][key] for k in r["test_sizes"] if k != "all"] + [r["test_sizes"]["all"][key]]
            lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" if key.startswith("energy") else f"{v:.0f}" for v in vals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
