"""Active learning on H2O at B3LYP/def2-SVP: test error against the number of labels,
uncertainty-driven selection against random selection, three seeds each.

Two modes:

* ``--mode pool`` (default, affordable): the candidates are the shipped ``H2O`` frames
  (B3LYP/def2-SVP, labelled with PySCF when the data set was built), so a "label" is a look-up
  and the comparison isolates the *selection*: start from a 20-frame seed set, each round train
  a K=4 BPNN ensemble (warm start), score every unlabelled pool frame by its ensemble force σ
  (max over atoms), pick ``--per-round`` frames (``qdyn.learn.select``: farthest points among
  the most uncertain, or uniformly at random) and add them. Test error on 100 held-out frames.
* ``--mode learn``: the real loop, ``qdyn.learn.run_learning`` with MD exploration and the
  watchdog, labels from PySCF B3LYP/def2-SVP (≈ 0.8–2.7 s a frame on one core, cached in the
  label cache) — ``--selection uncertainty`` against ``random``.

Writes ``benchmarks/results/active_learning_h2o.json``, ``active_learning_h2o.png`` and its
section of ``benchmarks/README.md``.

    python benchmarks/active_learning_h2o.py --rounds 4 --per-round 10 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402

MODEL = {"family": "bpnn", "hidden": [16, 16], "n_radial": 6, "zetas": [1.0, 4.0]}


def _train_cfg(epochs: int, n_frames: int, seed: int):
    from qdyn.train import parse_config

    n_val = max(2, n_frames // 10)
    return parse_config({"model": MODEL, "data": {"n_train": n_frames - n_val, "n_val": n_val, "n_test": 0},
                         "epochs": epochs, "batch_size": 16, "seed": seed, "optim": {"learning_rate": 5e-3},
                         "uncertainty": {"method": "ensemble", "ensemble": {"size": 4}}})


def pool_run(method: str, seed: int, *, rounds: int, per_round: int, n_seed: int, epochs: int, work: Path) -> list:
    """One pool-based active-learning run; a row per round (labels, test errors)."""
    from qdyn.data import load_shipped
    from qdyn.learn import frame_descriptors, select_random, select_uncertain
    from qdyn.train import evaluate, train
    from qdyn.uncertainty import predict_with_uncertainty

    ds = load_shipped("H2O")
    perm = np.random.default_rng(1234).permutation(ds.n_frames)  # one fixed test set for every run
    test, pool_idx = ds.subset(np.sort(perm[:100])), perm[100:]
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(pool_idx, n_seed, replace=False))
    rows, params = [], None
    for r in range(rounds + 1):
        data = ds.subset(np.sort(labelled))
        t = time.perf_counter()
        res = train(_train_cfg(epochs, data.n_frames, seed), work / f"{method}_s{seed}_r{r}", progress=False,
                    data=data, init_params=params)
        params = res.params
        m = evaluate(res.model, params, test)
        rows.append({"round": r, "labels": len(labelled), "test_force_mae_meV_per_A": m["force_mae_meV_per_A"],
                     "test_energy_mae_meV": m["energy_mae_meV"], "train_s": time.perf_counter() - t})
        print(f"  {method} seed {seed} round {r}: {len(labelled)} labels, force MAE "
              f"{m['force_mae_meV_per_A']:.1f} meV/Å", flush=True)
        if r == rounds:
            break
        rest = np.setdiff1d(pool_idx, labelled)
        cand = ds.subset(rest)
        if method == "random":
            pick = select_random(np.zeros(len(rest)), per_round, seed=seed * 1000 + r)
        else:
            pred = predict_with_uncertainty(res.model, params, cand)
            R0, system = ds.to_system(0)
            X = frame_descriptors(res.model, cand.R, system)
            ref = frame_descriptors(res.model, data.R, system)
            pick = select_uncertain(pred.F_std.max(axis=1), X, per_round, reference=ref)
        labelled += [int(i) for i in rest[pick]]
    return rows


def learn_run(method: str, seed: int, *, rounds: int, per_round: int, n_seed: int, epochs: int, work: Path) -> list:
    """One run of the real loop (MD exploration, PySCF labels); a row per round."""
    from qdyn.data import load_shipped, write
    from qdyn.learn import LearnConfig, run_learning

    ds = load_shipped("H2O")
    seed_ds = ds.subset(np.sort(np.random.default_rng(seed).choice(ds.n_frames, n_seed + 20, replace=False)))
    seed_path = work / f"seed_{seed}.npz"
    write(seed_ds, seed_path)
    cfg = LearnConfig.model_validate({
        "train": {"model": MODEL, "data": {"path": str(seed_path)}, "epochs": epochs, "batch_size": 16, "seed": seed,
                  "optim": {"learning_rate": 5e-3}, "uncertainty": {"method": "ensemble", "ensemble": {"size": 4}}},
        "labeler": {"method": "B3LYP", "basis": "def2-SVP", "workers": max(1, (os.cpu_count() or 2) - 1)},
        "explore": {"structure": "water", "temperature_K": 800, "n_steps": 2000, "replicas": 8, "max_force_std": 0.5,
                    "seed": seed},
        "select": {"method": method, "n_per_round": per_round, "seed": seed},
        "max_rounds": rounds + 1, "n_test": 20})
    report = run_learning(cfg, work / f"learn_{method}_s{seed}", progress=False)
    return [{"round": x["round"], "labels": x["labels_total"] - x["labels_added"] + n_seed,
             "test_force_mae_meV_per_A": x["test_force_mae_meV_per_A"], "test_energy_mae_meV": x["test_energy_mae_meV"],
             "md_time_reached_min_fs": x["md_time_reached_min_fs"]} for x in report["rounds"]]


def plot(path: Path, runs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, color in (("uncertainty", "C0"), ("random", "C1")):
        curves = [r for (m, _), r in runs.items() if m == method]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        x = np.array([c["labels"] for c in curves[0][:n]])
        y = np.array([[c["test_force_mae_meV_per_A"] for c in curve[:n]] for curve in curves])
        for curve in y:
            ax.plot(x, curve, color=color, alpha=0.3, lw=0.8)
        ax.plot(x, y.mean(0), "o-", color=color, label=f"{method} (mean of {len(curves)} seeds)")
    ax.set_xlabel("labelled frames")
    ax.set_ylabel("test force MAE [meV/Å]")
    ax.set_title("H2O, B3LYP/def2-SVP, BPNN ensemble K=4")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(runs: dict) -> str:
    methods = sorted({m for m, _ in runs})
    lines = ["| labels | " + " | ".join(f"{m}: force MAE meV/Å (mean ± sd over seeds)" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    n = min(len(r) for r in runs.values())
    for i in range(n):
        labels = next(iter(runs.values()))[i]["labels"]
        cells = []
        for m in methods:
            v = np.array([r[i]["test_force_mae_meV_per_A"] for (mm, _), r in runs.items() if mm == m])
            cells.append(f"{v.mean():.1f} ± {v.std():.1f} (n={len(v)})")
        lines.append(f"| {labels} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("pool", "learn"), default="pool")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--n-seed", type=int, default=20, help="frames in the seed set")
    ap.add_argument("--epochs", type=int, default=40, help="epochs of every round's training")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_al_h2o"))
    args = ap.parse_args()
    from qdyn.precision import enable_x64

    enable_x64()
    load = os.getloadavg()
    runs: dict = {}
    out = RESULTS / "active_learning_h2o.json"
    run = pool_run if args.mode == "pool" else learn_run
    t0 = time.perf_counter()
    for seed in args.seeds:
        for method in ("uncertainty", "random"):
            runs[(method, seed)] = run(method, seed, rounds=args.rounds, per_round=args.per_round, n_seed=args.n_seed,
                                       epochs=args.epochs, work=args.work)
            payload = {**machine_info(), "load_average_at_start": load, "settings": vars(args) | {"work": str(args.work)},
                       "model": MODEL, "runs": [{"method": m, "seed": s, "rows": r} for (m, s), r in runs.items()],
                       "seconds": time.perf_counter() - t0}
            # after every run: an interrupted benchmark keeps (and shows) what it measured
            save("active_learning_h2o", payload)
            _publish(runs, args, load, time.perf_counter() - t0)
    print(json.dumps({"out": str(out)}, indent=2))


def _publish(runs: dict, args, load, seconds: float) -> None:
    plot(RESULTS / "active_learning_h2o.png", runs)
    done = sorted({s for _, s in runs})
    text = (f"`python benchmarks/active_learning_h2o.py --mode {args.mode} --rounds {args.rounds} --per-round "
            f"{args.per_round} --epochs {args.epochs} --seeds {' '.join(map(str, args.seeds))}` "
            f"(seeds finished so far: {done}; load average at start {load[0]:.1f}; {seconds:.0f} s)\n\n"
            + table(runs) + "\n\n![active learning](results/active_learning_h2o.png)")
    update_readme_section("active_learning_h2o", "### Active learning, H2O B3LYP/def2-SVP: uncertainty vs random",
                          text)


if __name__ == "__main__":
    main()
