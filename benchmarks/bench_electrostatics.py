"""Does long-range electrostatics help? Water-cluster size transfer and the periodic water box.

Same model, same data, same training, with and without the electrostatic term
(``model.electrostatics``, docs/electrostatics.md):

* **clusters**: trained on (H2O)n, n ≤ 10 (GFN2-xTB, ``shipped:water_clusters``), tested on the
  never-seen n = 12–20 (bench_transfer's split and error measures: energy MAE per molecule,
  force MAE per Cartesian component);
* **box**: 32 waters in a periodic cube (periodic GFN2-xTB, ``shipped:water_box32``), a short
  training on 40 frames, errors on the 10 others (Ewald summation).

The short-range model is a BPNN on symmetry functions (cutoff 5 Å): the electrostatic term is
family-agnostic, and the BPNN keeps each run to minutes on two cores.

Usage: nice -n 15 python benchmarks/bench_electrostatics.py [--part clusters|box|all] [--epochs 30]
       [--seeds 0 1 2] [--quick]
Writes benchmarks/results/bench_electrostatics.{json,png} and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from bench_transfer import TRAIN_MAX_N, per_size_errors, trimmed  # noqa: E402
from qdyn.data import load_shipped  # noqa: E402
from qdyn.models.base import count_params  # noqa: E402
from qdyn.train import parse_config, train  # noqa: E402
from qdyn.train.trainer import predict, split_data  # noqa: E402

SHORT = {"family": "bpnn", "hidden": [16, 16], "cutoff": 5.0, "n_radial": 6, "zetas": [1.0, 4.0]}
ELEC = {"scheme": "qeq", "hidden": [8], "charge_width": 0.8}
BOX_CUTOFF = 4.5  # Å: below half the 9.87 Å box (minimum image)
VARIANTS = {"short-range only": {}, "+ electrostatics (QEq)": {"electrostatics": ELEC}}


def _config(model: dict, data: dict, args, seed: int = 0) -> object:
    return parse_config({
        "model": model, "data": data,
        "optim": {"learning_rate": args.lr, "schedule": "cosine", "final_lr_fraction": 0.05},
        "epochs": args.epochs, "batch_size": args.batch, "seed": seed, "checkpoint_every": max(args.epochs, 1),
    })


def clusters(args, runs: Path, previous: dict) -> dict:
    """Per variant: {"seeds": {seed: errors}} (merged with ``previous``) and the mean and spread."""
    ds = load_shipped("water_clusters")
    nm = ds.extras["n_molecules"]
    pool = trimmed(ds, np.flatnonzero(nm <= TRAIN_MAX_N))
    test = trimmed(ds, np.flatnonzero(nm > TRAIN_MAX_N))
    n_val = n_hold = max(pool.n_frames // 10, 1)
    data = {"path": "shipped:water_clusters", "n_train": pool.n_frames - n_val - n_hold, "n_val": n_val,
            "n_test": n_hold, "split_seed": 0}
    out = {}
    for label, extra in VARIANTS.items():
        old = previous.get(label, {})
        seeds = dict(old.get("seeds", {"0": old} if "train_sizes" in old else {}))
        for seed in args.seeds:
            cfg = _config({**SHORT, **extra}, data, args, seed)
            t0 = time.perf_counter()
            res = train(cfg, runs / f"clusters-{label[:5]}-{seed}", data=pool, progress=False)
            _, _, held = split_data(pool, cfg.data)
            seeds[str(seed)] = {"n_params": int(count_params(res.params)), "train_seconds": time.perf_counter() - t0,
                                "train_sizes": per_size_errors(res.model, res.params, held),
                                "test_sizes": per_size_errors(res.model, res.params, test)}
            r = seeds[str(seed)]
            print(f"clusters, {label}, seed {seed}: n<=10 held out "
                  f"{r['train_sizes']['all']['energy_mae_meV_per_molecule']:.2f} meV/mol, n=12-20 "
                  f"{r['test_sizes']['all']['energy_mae_meV_per_molecule']:.2f} meV/mol, "
                  f"{r['test_sizes']['all']['force_mae_meV_per_A']:.0f} meV/Å ({r['train_seconds']:.0f} s)", flush=True)
        out[label] = {"seeds": seeds, "summary": _summary(seeds)}
    return out


def _summary(seeds: dict) -> dict:
    """{part: {size: {key: [mean, std]}}} over seeds (std with ddof 0; one seed gives 0)."""
    first = next(iter(seeds.values()))
    out = {"n_params": first["n_params"], "n_seeds": len(seeds)}
    for part in ("train_sizes", "test_sizes"):
        out[part] = {n: {k: [float(np.mean([s[part][n][k] for s in seeds.values()])),
                             float(np.std([s[part][n][k] for s in seeds.values()]))]
                         for k in ("energy_mae_meV_per_molecule", "force_mae_meV_per_A")}
                     for n in first[part]}
    return out


def box(args, runs: Path) -> dict:
    ds = load_shipped("water_box32")
    data = {"path": "shipped:water_box32", "n_train": 36, "n_val": 4, "n_test": 10, "split_seed": 0}
    out = {}
    for label, extra in VARIANTS.items():
        cfg = _config({**SHORT, "cutoff": BOX_CUTOFF, **extra}, data, args)
        t0 = time.perf_counter()
        res = train(cfg, runs / f"box-{len(out)}", data=ds, progress=False)
        _, _, test = split_data(ds, cfg.data)
        E, F = predict(res.model, res.params, test)
        out[label] = {"n_params": int(count_params(res.params)), "train_seconds": time.perf_counter() - t0,
                      "energy_mae_meV_per_molecule": float(np.mean(np.abs(E - test.E)) / 32 * 1e3),
                      "force_mae_meV_per_A": float(np.mean(np.abs(F - test.F)) * 1e3)}
        r = out[label]
        print(f"box, {label}: {r['energy_mae_meV_per_molecule']:.2f} meV/mol, {r['force_mae_meV_per_A']:.0f} meV/Å "
              f"({r['train_seconds']:.0f} s)", flush=True)
    return out


def memory_probe(batch: int, electrostatics: bool) -> dict:
    """Peak RSS [MB] and times [s] of one compiled training step (E+F loss, value and gradient)
    on ``batch`` frames of the 32-water box: the cost the charge head adds to the short model.
    Run in a fresh process per variant (peak RSS never goes down)."""
    import resource

    import jax

    from qdyn.models import build_model
    from qdyn.train.batches import make_batch
    from qdyn.train.losses import make_loss_fn

    ds = load_shipped("water_box32")
    spec = {**SHORT, "cutoff": BOX_CUTOFF, **({"electrostatics": ELEC} if electrostatics else {})}
    model = build_model(spec, species=(1, 8))
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    loss = make_loss_fn(model.apply, sigma_E=1.0, sigma_F=1.0)
    step = jax.jit(jax.value_and_grad(lambda p, b: loss(p, b, 1.0, 1.0, 0.0)[0]))
    b = make_batch(ds, np.arange(batch), batch)
    t0 = time.perf_counter()
    compiled = step.lower(params, b).compile()
    t_compile = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(compiled(params, b))
        times.append(time.perf_counter() - t)
    return {"batch": batch, "electrostatics": electrostatics, "compile_s": t_compile, "step_s": min(times),
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def plot(path: Path, results: dict) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, r in results.items():
        rows = {**r["summary"]["train_sizes"], **r["summary"]["test_sizes"]}
        ns = sorted(int(k) for k in rows if k != "all")
        mean = [rows[str(n)]["energy_mae_meV_per_molecule"][0] for n in ns]
        spread = [rows[str(n)]["energy_mae_meV_per_molecule"][1] for n in ns]
        ax.errorbar(ns, mean, yerr=spread, fmt="o-", capsize=3, label=f"{label} ({r['summary']['n_seeds']} seeds)")
    ax.axvspan(TRAIN_MAX_N + 0.5, 20.5, color="0.9", zorder=0)
    ax.set_xlabel("cluster size n (H2O)")
    ax.set_ylabel("energy MAE [meV/molecule]")
    ax.set_title(f"BPNN, trained on n ≤ {TRAIN_MAX_N}: with and without electrostatics", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(payload: dict) -> str:
    lines = []
    if "clusters" in payload["results"]:
        res = payload["results"]["clusters"]
        first = next(iter(res.values()))["summary"]
        sizes = [k for k in first["test_sizes"] if k != "all"]
        pm = lambda v, f: f"{v[0]:{f}} ± {v[1]:{f}}"  # noqa: E731
        lines += [f"Water clusters, trained on n ≤ 10; energy MAE [meV/molecule] (force MAE [meV/Å]) on held-out "
                  f"n ≤ 10 frames and on the never-seen sizes; mean ± spread (std) over {first['n_seeds']} seed(s):",
                  "", "| model | params | n ≤ 10 | " + " | ".join(f"n={n}" for n in sizes) + " | n = 12–20 |",
                  "|---" * (len(sizes) + 4) + "|"]
        for label, r in res.items():
            t, s = r["summary"]["train_sizes"]["all"], r["summary"]["test_sizes"]
            cells = [pm(s[n]["energy_mae_meV_per_molecule"], ".1f") for n in sizes]
            lines.append(f"| {label} | {r['summary']['n_params']} | {pm(t['energy_mae_meV_per_molecule'], '.1f')} "
                         f"({t['force_mae_meV_per_A'][0]:.0f}) | " + " | ".join(cells) +
                         f" | {pm(s['all']['energy_mae_meV_per_molecule'], '.1f')} "
                         f"({s['all']['force_mae_meV_per_A'][0]:.0f}) |")
    if "box" in payload["results"]:
        lines += ["", f"Periodic box of 32 waters (Ewald; short-range cutoff {BOX_CUTOFF} Å), 36 training frames, 10 test frames:", "",
                  "| model | params | energy MAE [meV/molecule] | force MAE [meV/Å] | training [s] |",
                  "|---|---|---|---|---|"]
        for label, r in payload["results"]["box"].items():
            lines.append(f"| {label} | {r['n_params']} | {r['energy_mae_meV_per_molecule']:.2f} | "
                         f"{r['force_mae_meV_per_A']:.0f} | {r['train_seconds']:.0f} |")
    s = payload["settings"]
    lines += ["", f"{s['epochs']} epochs, batch {s['batch']}, lr {s['lr']}; load average at start "
                  f"{payload['load_average'][0]:.1f} (shared machine: times are inflated). "
                  "`nice -n 15 python benchmarks/bench_electrostatics.py` regenerates this section."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["clusters", "box", "all"], default="all")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--runs", type=Path, default=None, help="run directories (default: a temporary folder)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="clusters: training seeds (added to the "
                                                                      "seeds already in the results file)")
    ap.add_argument("--quick", action="store_true", help="two epochs, for checking the script")
    ap.add_argument("--memory-probe", choices=["short", "elec"], default=None,
                    help="only print the peak RSS [MB] and step time [s] of one training step on the box "
                         "(--batch frames) as JSON, for the model without/with electrostatics")
    args = ap.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.batch, args.memory_probe == "elec")))
        return
    if args.quick:
        args.epochs = 2
    runs = args.runs or Path(tempfile.mkdtemp(prefix="qdyn-elec-"))
    name = "bench_electrostatics" + ("_quick" if args.quick else "")
    previous = RESULTS / f"{name}.json"
    results = json.loads(previous.read_text())["results"] if previous.exists() else {}
    payload = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "load_average": list(os.getloadavg()), "model": {"short": SHORT, "electrostatics": ELEC},
               "results": results, **machine_info()}
    if args.part in ("clusters", "all"):
        results["clusters"] = clusters(args, runs, results.get("clusters", {}))
    if args.part in ("box", "all"):
        results["box"] = box(args, runs)
    save(name, payload)
    text = table(payload)
    print(text)
    if "clusters" in results:
        plot(RESULTS / f"{name}.png", results["clusters"])
    if not args.quick:
        update_readme_section("bench_electrostatics", "## Long-range electrostatics: cluster transfer and the water box",
                              text)


if __name__ == "__main__":
    main()
