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

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from bench_transfer import TRAIN_MAX_N, per_size_errors, trimmed  # noqa: E402
from qdyn.data import load_shipped  # noqa: E402
from qdyn.models.base import count_params  # noqa: E402
from qdyn.train import parse_config, train  # noqa: E402
from qdyn.train.trainer import predict, split_data  # noqa: E402
from qdyn.uncertainty.ensemble import unstack  # noqa: E402

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
        if args.ensemble:
            out[label] = _cluster_ensemble(label, {**SHORT, **extra}, data, pool, test, args, runs)
            continue
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


def _cluster_ensemble(label: str, model: dict, data: dict, pool, test, args, runs: Path) -> dict:
    """``args.ensemble`` initialisations trained as one vmapped ensemble (one compiled step for
    all members); each member scored on its own."""
    cfg = parse_config({**_config(model, data, args).model_dump(mode="json"),
                        "uncertainty": {"method": "ensemble", "ensemble": {"size": args.ensemble}}})
    t0 = time.perf_counter()
    res = train(cfg, runs / f"clusters-ens-{label[:5]}", data=pool, progress=False)
    seconds = time.perf_counter() - t0
    _, _, held = split_data(pool, cfg.data)
    member = res.model.member
    seeds = {}
    for k, p in enumerate(unstack(res.params)):
        seeds[f"member{k}"] = {"n_params": int(count_params(p)), "train_seconds": seconds,
                               "train_sizes": per_size_errors(member, p, held),
                               "test_sizes": per_size_errors(member, p, test)}
        r = seeds[f"member{k}"]
        print(f"clusters, {label}, member {k}: n<=10 held out "
              f"{r['train_sizes']['all']['energy_mae_meV_per_molecule']:.2f} meV/mol, n=12-20 "
              f"{r['test_sizes']['all']['energy_mae_meV_per_molecule']:.2f} meV/mol ({seconds:.0f} s)", flush=True)
    return {"seeds": seeds, "summary": _summary(seeds), "ensemble": True, "train_seconds": seconds}


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


def clusters_with_dipoles(cache: Path):
    """``shipped:water_clusters`` with GFN2-xTB dipoles: relabelled by the shipped labeller
    (its settings from the metadata, resumable per-frame cache), energies checked against the
    shipped ones."""
    from qdyn.data.label_run import label_dataset
    from qdyn.data.labelers import labeler_from_spec

    ds = load_shipped("water_clusters")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    labelled = label_dataset(ds, labeler_from_spec(ds.metadata["labeler"]), workers=1, cache_dir=cache)
    worst = float(np.max(np.abs(labelled.E - ds.E)))
    if not np.all(np.isfinite(labelled.extras["dipole"])) or not worst <= 1e-5:
        raise SystemExit(f"relabelled energies differ from the shipped ones by {worst:.3g} eV: not the same level")
    ds.extras["dipole"] = labelled.extras["dipole"]
    return ds, worst


def dipoles(args, runs: Path) -> dict:
    """QEq model trained on n ≤ 10 with and without the dipole loss; dipole, energy and force
    errors on held-out n ≤ 10 frames and the never-seen n = 12–20."""
    from qdyn.models.electrostatics import dipole_moment

    ds, worst = clusters_with_dipoles(runs / "xtb-dipole-cache")
    nm = ds.extras["n_molecules"]

    def with_dipoles(idx):
        sub = trimmed(ds, idx)
        sub.extras["dipole"] = ds.extras["dipole"][idx]
        return sub

    pool, test = with_dipoles(np.flatnonzero(nm <= TRAIN_MAX_N)), with_dipoles(np.flatnonzero(nm > TRAIN_MAX_N))
    n_val = n_hold = max(pool.n_frames // 10, 1)
    data = {"path": "shipped:water_clusters", "n_train": pool.n_frames - n_val - n_hold, "n_val": n_val,
            "n_test": n_hold, "split_seed": 0}
    out = {"relabel_max_energy_difference_eV": worst}
    for label, weight in (("QEq, energies + forces", 0.0), (f"QEq + dipole loss (weight {args.dipole_weight:g})",
                                                           args.dipole_weight)):
        cfg = parse_config({**_config({**SHORT, "electrostatics": ELEC}, data, args).model_dump(mode="json"),
                            "loss": {"dipole_weight": weight}})
        t0 = time.perf_counter()
        res = train(cfg, runs / f"dipole-{weight:g}", data=pool, progress=False)
        _, _, held = split_data(pool, cfg.data)
        charges = jax.jit(jax.vmap(res.model.charges, in_axes=(None, 0, 0)))
        row = {"train_seconds": time.perf_counter() - t0}
        for name, part in (("held", held), ("test", test)):
            q = charges(res.params, jnp.asarray(part.R), _systems(part))
            mu = np.asarray(jax.vmap(dipole_moment)(q, jnp.asarray(part.R), jnp.asarray(part.Z > 0)))
            E, F = predict(res.model, res.params, part)
            row[name] = {"dipole_mae_eA": float(np.mean(np.abs(mu - part.extras["dipole"]))),
                         "energy_mae_meV_per_molecule": float(np.mean(np.abs(E - part.E) / part.extras["n_molecules"])
                                                              * 1e3),
                         "force_mae_meV_per_A": float(np.mean(np.abs(F - part.F)[part.Z > 0]) * 1e3)}
        out[label] = row
        print("dipoles", label, row, flush=True)
    return out


def _systems(ds):
    from qdyn.system import System

    return System(species=jnp.asarray(ds.Z), mask=jnp.asarray(ds.Z > 0), box=None)


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
    peak_step = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # then what validation does after each epoch: energies and forces of 4 frames (trainer.predict)
    t = time.perf_counter()
    predict(model, params, ds.subset(np.arange(4)))
    return {"batch": batch, "electrostatics": electrostatics, "compile_s": t_compile, "step_s": min(times),
            "peak_rss_MB": peak_step, "predict_4_frames_s": time.perf_counter() - t,
            "peak_rss_after_predict_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def memory(args) -> dict:
    """Each variant's probe in a fresh process (peak RSS only grows), for this checkout and,
    with ``--before-path``, for an older checkout's ``qdyn`` (the charge head that recomputed
    the dense descriptor)."""
    import subprocess

    here = Path(__file__).resolve()
    trees = {"after": str(here.parents[1])}
    if args.before_path:
        trees["before"] = str(args.before_path)
    out = []
    for batch in args.memory_batches:
        for variant in ("short", "elec"):
            for when, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": tree}
                line = subprocess.run([sys.executable, str(here), "--memory-probe", variant, "--batch", str(batch)],
                                      env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                out.append({"code": when, "load_average": os.getloadavg()[0], **json.loads(line)})
                print("memory", out[-1], flush=True)
    return {"rows": out, "before_path": str(args.before_path) if args.before_path else None}


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


def _footer(payload: dict, part: str) -> str:
    s = payload.get("settings_by_part", {}).get(part, payload["settings"])
    load = s.get("load_average") or payload["load_average"]
    return (f"{s['epochs']} epochs, batch {s['batch']}, lr {s['lr']}; load average at start {load[0]:.1f} (shared "
            f"machine: times are inflated). `nice -n 15 python benchmarks/bench_electrostatics.py --part {part}` "
            "regenerates this part.")


def table(payload: dict) -> str:
    lines = []
    res_all = payload["results"]
    if "clusters" in res_all:
        res = res_all["clusters"]
        first = next(iter(res.values()))["summary"]
        sizes = [k for k in first["test_sizes"] if k != "all"]
        pm = lambda v, f: f"{v[0]:{f}} ± {v[1]:{f}}"  # noqa: E731
        how = ("initialisations trained as one vmapped ensemble" if next(iter(res.values())).get("ensemble")
               else "seed(s)")
        lines += [f"Water clusters, trained on n ≤ 10; energy MAE [meV/molecule] (force MAE [meV/Å]) on held-out "
                  f"n ≤ 10 frames and on the never-seen sizes; mean ± spread (std) over {first['n_seeds']} {how}:",
                  "", "| model | params | n ≤ 10 | " + " | ".join(f"n={n}" for n in sizes) + " | n = 12–20 |",
                  "|---" * (len(sizes) + 4) + "|"]
        for label, r in res.items():
            t, s = r["summary"]["train_sizes"]["all"], r["summary"]["test_sizes"]
            cells = [pm(s[n]["energy_mae_meV_per_molecule"], ".1f") for n in sizes]
            lines.append(f"| {label} | {r['summary']['n_params']} | {pm(t['energy_mae_meV_per_molecule'], '.1f')} "
                         f"({t['force_mae_meV_per_A'][0]:.0f}) | " + " | ".join(cells) +
                         f" | {pm(s['all']['energy_mae_meV_per_molecule'], '.1f')} "
                         f"({s['all']['force_mae_meV_per_A'][0]:.0f}) |")
        lines += ["", _comparison(res), "", _footer(payload, "clusters")]
    if "dipoles" in res_all:
        d = res_all["dipoles"]
        lines += ["", "The same QEq model trained with and without the dipole loss (`loss.dipole_weight`) on the "
                      "clusters relabelled with GFN2-xTB dipoles by the shipped labeller (largest energy difference "
                      f"from the shipped labels {d['relabel_max_energy_difference_eV']:.2g} eV); dipole MAE per "
                      "component [e·Å], energy MAE "
                      "[meV/molecule], force MAE [meV/Å], one seed:", "",
                  "| training | dipole, n ≤ 10 held out | dipole, n = 12–20 | energy, n ≤ 10 | energy, n = 12–20 | "
                  "force, n = 12–20 |", "|---|---|---|---|---|---|"]
        for label, r in d.items():
            if isinstance(r, dict):
                lines.append(f"| {label} | {r['held']['dipole_mae_eA']:.3f} | {r['test']['dipole_mae_eA']:.3f} | "
                             f"{r['held']['energy_mae_meV_per_molecule']:.1f} | "
                             f"{r['test']['energy_mae_meV_per_molecule']:.1f} | {r['test']['force_mae_meV_per_A']:.0f} |")
        lines += ["", _footer(payload, "dipoles")]
    if "box" in res_all:
        lines += ["", f"Periodic box of 32 waters (Ewald; short-range cutoff {BOX_CUTOFF} Å), 36 training frames, "
                      "10 test frames, one seed:", "",
                  "| model | params | energy MAE [meV/molecule] | force MAE [meV/Å] | training [s] |",
                  "|---|---|---|---|---|"]
        for label, r in res_all["box"].items():
            lines.append(f"| {label} | {r['n_params']} | {r['energy_mae_meV_per_molecule']:.2f} | "
                         f"{r['force_mae_meV_per_A']:.0f} | {r['train_seconds']:.0f} |")
        lines += ["", _footer(payload, "box")]
    if "memory" in res_all:
        lines += ["", "Memory on the 32-water box, each row a fresh process: peak RSS [MB] after one compiled "
                      "training step (E+F loss, value and gradient; step and compile time [s]) and after the "
                      "validation that follows each epoch (energies and forces of 4 frames, `trainer.predict`). "
                      "*before*: the charge head recomputed the dense descriptor and evaluation padded every chunk "
                      "to 64 frames; the shared descriptor (`EnergyModel.atom_terms`) alone changes nothing "
                      "measurable (XLA already merged the two copies under jit); the 64-frame evaluation chunk was "
                      "what the killed run spent its memory on (`trainer.eval_chunk`):", "",
                  "| frames per step | model | code | peak RSS, step [MB] | step [s] | compile [s] | "
                  "peak RSS after validation [MB] | validation [s] | load |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in res_all["memory"]["rows"]:
            val = (f"{r['peak_rss_after_predict_MB']:.0f} | {r['predict_4_frames_s']:.1f}"
                   if "peak_rss_after_predict_MB" in r else "– | –")
            lines.append(f"| {r['batch']} | {'+ QEq' if r['electrostatics'] else 'short-range only'} | {r['code']} | "
                         f"{r['peak_rss_MB']:.0f} | {r['step_s']:.2f} | {r['compile_s']:.0f} | {val} | "
                         f"{r['load_average']:.1f} |")
    return "\n".join(lines)


def _comparison(res: dict) -> str:
    """Is the difference in the n = 12–20 error larger than the seed spread?"""
    (la, a), (lb, b) = list(res.items())[:2]
    va = [s["test_sizes"]["all"]["energy_mae_meV_per_molecule"] for s in a["seeds"].values()]
    vb = [s["test_sizes"]["all"]["energy_mae_meV_per_molecule"] for s in b["seeds"].values()]
    diff = np.mean(vb) - np.mean(va)
    se = float(np.sqrt(np.var(va, ddof=1) / len(va) + np.var(vb, ddof=1) / len(vb))) if min(len(va), len(vb)) > 1 \
        else float("nan")
    verdict = ("larger than" if abs(diff) > 2 * se else "within") if np.isfinite(se) else "not comparable (one seed)"
    return (f"n = 12–20: {lb} minus {la} = {diff:+.1f} meV/molecule; standard error of that difference "
            f"{se:.1f} meV/molecule ({len(va)} and {len(vb)} seeds): the difference is {verdict} twice its "
            "standard error.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["clusters", "box", "memory", "dipoles", "all"], default="all")
    ap.add_argument("--ensemble", type=int, default=0, help="clusters: train this many initialisations as one "
                                                            "vmapped ensemble (replaces the per-seed results)")
    ap.add_argument("--dipole-weight", type=float, default=1.0, help="dipoles: weight of the dipole loss")
    ap.add_argument("--memory-batches", type=int, nargs="+", default=[4, 16], help="memory: frames per step")
    ap.add_argument("--before-path", type=Path, default=None, help="memory: a directory holding an older qdyn "
                                                                    "package to measure beside this one")
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
    old = json.loads(previous.read_text()) if previous.exists() else {}
    results = old.get("results", {})
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    by_part = old.get("settings_by_part", {})  # each part keeps the settings and load it was measured with
    for part in (["clusters", "box", "memory", "dipoles"] if args.part == "all" else [args.part]):
        by_part[part] = {**settings, "load_average": list(os.getloadavg())}
    payload = {"settings": settings, "settings_by_part": by_part, "load_average": list(os.getloadavg()),
               "model": {"short": SHORT, "electrostatics": ELEC}, "results": results, **machine_info()}
    if args.part in ("clusters", "all"):
        results["clusters"] = clusters(args, runs, {} if args.ensemble else results.get("clusters", {}))
    if args.part in ("box", "all"):
        results["box"] = box(args, runs)
    if args.part in ("memory", "all"):
        results["memory"] = memory(args)
    if args.part in ("dipoles", "all"):
        results["dipoles"] = dipoles(args, runs)
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
