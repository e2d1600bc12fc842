"""Beyond water (issue 21): ethanol at PBE/def2-SVP; alanine dipeptide and ferrocene at GFN2-xTB.

Ethanol (``load_shipped("ethanol")``, the rMD17 level of theory):

* **Learning curves at equal data.** The hybrid model (per-atom re-uploading circuit ∥ MLP),
  its classical control (the circuit replaced by a tanh MLP of the same width: ``branch:
  mlp``) and a Behler-Parrinello network, trained on the same nested training subsets
  (``--sizes``, default 50/100/200/400 frames, capped by the data) and tested on the same
  held-out frames. Each point is the mean ± standard deviation over ``--seeds``
  initialisations, trained together as a deep ensemble (one compiled step vmapped over the
  members, the same minibatches): the spread is the initialisation noise the question "does
  the circuit help?" has to beat.
* **Torsion profiles.** Every model (largest training set, member 0) along the shipped rigid
  methyl and hydroxyl scans (``load_shipped("ethanol_torsions")``, PBE/def2-SVP), energies
  relative to each curve's minimum.
* **NVT.** ``--md-ps`` ps of Langevin MD at 300 K with each model; a bond counts as broken
  when it stretches past 1.5 × its length in the starting structure, or a new one forms
  (covalent-radius graph).

Alanine dipeptide and ferrocene: the hybrid (one seed) trained on their GFN2-xTB sets, test
errors and a short NVT run with the same bond check.

Usage: nice -n 15 python benchmarks/bench_organics.py [--seeds 5] [--steps 1000 | --epochs 60]
       [--force-weight 10] [--md-replicas 2] [--md-ps 100] [--ethanol labelled:ethanol] [--quick]
(``labelled:ethanol``: the frames a running labelling job has finished so far, from the cache.)
Writes benchmarks/results/bench_organics.{json,png} (+ _torsions.png) and its section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn import elements, md  # noqa: E402
from qdyn.plotting import save_figure  # noqa: E402
from qdyn.data import Dataset, load_shipped, read  # noqa: E402
from qdyn.system import System  # noqa: E402
from qdyn.train import parse_config, train  # noqa: E402
from qdyn.train.trainer import predict  # noqa: E402
from qdyn.uncertainty.ensemble import unstack  # noqa: E402

# The hybrid families get a core wall (core_radii: auto, 0.9 x the shortest training distance per species
# pair): zero inside the data's region, so test errors are those of the models as they are, while MD
# cannot fall into the holes below it. The BPNN family has no wall option.
DESCRIPTOR = {"cutoff": 5.0, "n_radial": 6, "zetas": [1.0, 4.0], "eta_angular": 0.1}
MODELS = {
    "hybrid (circuit)": {"family": "hybrid", "branch": "reupload", "n_qubits": 4, "layers": 2, "hidden": [16, 16],
                         "core_radii": "auto"},
    "classical control (MLP branch)": {"family": "hybrid", "branch": "mlp", "n_qubits": 4, "layers": 2,
                                       "hidden": [16, 16], "core_radii": "auto"},
    "BPNN": {"family": "bpnn", "hidden": [16, 16]},
}
BOND_STRETCH_LIMIT = 1.5  # × starting length: past this a bond counts as broken


def load(spec: str) -> Dataset:
    """``shipped:NAME``, ``labelled:NAME`` or a dataset file; converged frames only.

    ``labelled:NAME`` is the part of shipped recipe NAME finished so far in the per-frame label
    cache (what ``build_organics_data.py`` would ship now), so a benchmark can run on the frames
    of a labelling job that is still going, without recomputing any.
    """
    if spec.startswith("shipped:"):
        return load_shipped(spec.split(":", 1)[1])
    if spec.startswith("labelled:"):
        return labelled_so_far(spec.split(":", 1)[1])
    return read(spec).converged_only()


def labelled_so_far(name: str) -> Dataset:
    from qdyn.data import label_dataset, recipes
    from qdyn.data.label_run import labeled_mask
    from qdyn.data.labelers import labeler_from_spec

    recipe = recipes.get_recipe(f"shipped:{name}")
    lab = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    configs = recipes.sample_configurations(recipe)
    keep = np.flatnonzero(labeled_mask(configs, lab))
    ds = label_dataset(configs.subset(keep), lab, workers=0,
                       metadata={"sampling": load_shipped(name).metadata["sampling"],
                                 "n_recipe_frames": int(configs.n_frames)})
    return ds.converged_only()


# -- training and errors ------------------------------------------------------------------
def train_config(model: dict, *, n_train: int, n_val: int, epochs: int, seeds: int, batch: int,
                 force_weight: float = 1.0) -> object:
    quantum = model["family"] == "hybrid"
    return parse_config({
        "model": {**DESCRIPTOR, **model},
        "data": {"path": "unused", "n_train": n_train, "n_val": n_val, "n_test": 0, "split_seed": 0},
        "loss": {"energy_weight": 1.0, "force_weight": force_weight},
        "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.05},
        "epochs": epochs, "batch_size": batch, "seed": 0, "staged": quantum,
        "pretrain_epochs": max(1, epochs // 4) if quantum else 0, "checkpoint_every": epochs,
        "uncertainty": {"method": "ensemble", "ensemble": {"size": seeds}} if seeds > 1 else {"method": "none"},
    })


def members(res) -> list:
    """(member model, params) of every initialisation in a training result."""
    member = res.model.member if res.model.member is not None else res.model
    params = unstack(res.params) if res.model.member is not None else [res.params]
    return [(member, p) for p in params]


def errors(model, params, ds: Dataset) -> dict:
    """Energy MAE per atom [meV/atom] and force MAE [meV/Å] (per Cartesian component)."""
    E, F = predict(model, params, ds)
    n_atoms = ds.mask.sum(1)
    return {"energy_mae_meV_per_atom": float(np.mean(np.abs(E - ds.E) / n_atoms) * 1e3),
            "energy_mae_meV": float(np.mean(np.abs(E - ds.E)) * 1e3),
            "force_mae_meV_per_A": float(np.mean(np.abs(F - ds.F)[ds.mask]) * 1e3)}


def mean_spread(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        vals = np.array([r[key] for r in rows])
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                    "values": vals.tolist()}
    return out


def epochs_for(args, n_train: int) -> int:
    """``--epochs``, or as many as make ``--steps`` optimiser steps on ``n_train`` frames (so every
    point of a learning curve gets the same number of updates)."""
    if getattr(args, "steps", None):
        return max(1, -(-args.steps * args.batch // n_train))
    return args.epochs


def fit(label: str, model: dict, pool: Dataset, n_train: int, args, runs: Path, *, tag: str = ""):
    """Train ``model`` on the first ``n_train`` frames of ``pool`` (+ a validation tenth)."""
    n_val = max(5, n_train // 10)
    data = pool.subset(np.arange(n_train + n_val))
    cfg = train_config(model, n_train=n_train, n_val=n_val, epochs=epochs_for(args, n_train), seeds=args.seeds,
                       batch=args.batch, force_weight=getattr(args, "force_weight", 1.0))
    t0 = time.perf_counter()
    res = train(cfg, runs / f"{label.split(' ')[0]}-{n_train}{tag}", data=data, progress=False)
    return res, time.perf_counter() - t0


def learning_curves(pool: Dataset, test: Dataset, sizes, args, runs: Path, log) -> tuple[dict, dict]:
    curves, largest = {}, {}
    for label, model in MODELS.items():
        if args.models and not any(label.startswith(m) for m in args.models):
            continue
        curves[label] = {}
        for n in sizes:
            res, seconds = fit(label, model, pool, n, args, runs)
            per_seed = [errors(m, p, test) for m, p in members(res)]
            curves[label][str(n)] = {**mean_spread(per_seed), "train_seconds": seconds, "epochs": epochs_for(args, n),
                                     "n_params_per_member": int(res.metrics["n_params"])}
            c = curves[label][str(n)]
            log(f"{label:32s} N={n:4d}: E {c['energy_mae_meV_per_atom']['mean']:.2f} ± "
                f"{c['energy_mae_meV_per_atom']['std']:.2f} meV/atom, F {c['force_mae_meV_per_A']['mean']:.1f} ± "
                f"{c['force_mae_meV_per_A']['std']:.1f} meV/Å ({seconds:.0f} s)")
            largest[label] = members(res)[0]
    return curves, largest


def md_models(pool: Dataset, test: Dataset, n_train: int, args, runs: Path, log) -> tuple[dict, dict]:
    """One model of each kind for MD and torsions: the largest training set, ``--md-steps``
    updates, forces weighted by ``--force-weight``, and for the hybrid families a core wall
    (``core_radii: auto``, 0.9 × the shortest training distance of each species pair; the BPNN
    family has no wall option)."""
    trained, info = {}, {}
    margs = argparse.Namespace(**{**vars(args), "seeds": 1, "steps": args.md_steps})
    for label, model in MODELS.items():
        if args.models and not any(label.startswith(m) for m in args.models):
            continue
        res, seconds = fit(label, model, pool, n_train, margs, runs, tag="-md")
        trained[label] = members(res)[0]
        info[label] = {"n_train": n_train, "steps": args.md_steps, "epochs": epochs_for(margs, n_train),
                       "train_seconds": seconds, "core_wall": "core_radii" in model,
                       "test": errors(*trained[label], test)}
        log(f"MD model {label}: {info[label]}")
    return trained, info


# -- torsions -----------------------------------------------------------------------------
def torsion_profiles(models: dict, scans: Dataset) -> dict:
    """Relative energies [meV] along each scan: reference and every model."""
    out = {}
    for part, name in ((0, "methyl"), (1, "hydroxyl")):
        sel = np.flatnonzero(scans.extras["sampler_part"] == part)
        ds = scans.subset(sel)
        angles = np.linspace(0.0, 360.0, len(sel), endpoint=False)
        ref = (ds.E - ds.E.min()) * 1e3
        rows = {"angle_deg": angles.tolist(), "reference_meV": ref.tolist(), "models": {}}
        for label, (model, params) in models.items():
            E, _ = predict(model, params, ds)
            rel = (E - E.min()) * 1e3
            rows["models"][label] = {"meV": rel.tolist(), "mae_meV": float(np.mean(np.abs(rel - ref))),
                                     "barrier_meV": float(rel.max())}
        rows["reference_barrier_meV"] = float(ref.max())
        out[name] = rows
    return out


# -- MD -----------------------------------------------------------------------------------
def bond_pairs(Z, R) -> np.ndarray:
    """[n_bonds, 2] atom pairs closer than 1.2 × the sum of covalent radii."""
    rc = np.array([elements.covalent_radius(int(z)) for z in Z])
    d = np.linalg.norm(R[:, None] - R[None], axis=-1)
    i, j = np.nonzero(np.triu(d < 1.2 * (rc[:, None] + rc[None]), 1))
    return np.stack([i, j], 1)


def nvt_run(model, params, Z, R0, *, ps: float, seed: int, replicas: int = 1):
    """Langevin NVT at 300 K (dt 0.5 fs) from R0, ``replicas`` independent trajectories in one
    run_md call, every replica stored (every 100 steps from 10 ps on, else every 20):
    (MDResult, wall seconds)."""
    system = System.create([int(z) for z in Z])
    dt_fs, stride = 0.5, 100 if ps >= 10 else 20
    steps = max(stride, int(round(ps * 1000 / dt_fs / stride)) * stride)
    settings = md.MDSettings(ensemble="nvt-langevin", dt_fs=dt_fs, n_steps=steps, temperature_K=300.0,
                             remove_rotation=True, replicas=replicas)
    t0 = time.perf_counter()
    res = md.run_md(md.model_energy_fn(model.apply), params, R0, system, settings,
                    output=md.MDOutput(stride=stride, frames_per_block=50, progress=None, store_replicas=replicas),
                    key=jax.random.PRNGKey(seed))
    return res, time.perf_counter() - t0


def bond_report(Z, R0, res, wall: float) -> dict:
    """Bond lengths over every stored frame of every replica of an :func:`nvt_run` result, and
    when each replica first broke one (past BOND_STRETCH_LIMIT × its length in R0)."""
    X = np.asarray(res.position)  # [F, replicas, n, 3]
    replicas = X.shape[1]
    pairs = bond_pairs(Z, R0)
    L0 = np.linalg.norm(R0[pairs[:, 0]] - R0[pairs[:, 1]], axis=-1)
    L = np.linalg.norm(X[..., pairs[:, 0], :] - X[..., pairs[:, 1], :], axis=-1)  # [F, replicas, bonds]
    new_bonds = max(len(bond_pairs(Z, x)) - len(pairs) for x in X.reshape(-1, *X.shape[2:]))
    stretch = L / L0
    broken = stretch > BOND_STRETCH_LIMIT
    t_ps = np.asarray(res.time_fs) / 1000
    first_break = [float(t_ps[np.argmax(broken[:, r].any(-1))]) if broken[:, r].any() else None
                   for r in range(replicas)]
    worst = np.unravel_index(np.argmax(stretch.max(0)), stretch.shape[1:])  # (replica, bond)
    T = np.asarray(res.temperature)
    steps = int(res.step[-1])
    dt_fs = float(res.time_fs[-1]) / steps
    return {"ps": steps * dt_fs / 1000, "steps": steps, "dt_fs": dt_fs, "replicas": replicas, "frames": int(len(X)),
            "max_bond_stretch": float(stretch.max()), "min_bond_ratio": float(stretch.min()),
            "bonds_broken": int((stretch.max(axis=(0, 1)) > BOND_STRETCH_LIMIT).sum()),
            "replicas_with_broken_bond": int(sum(t is not None for t in first_break)),
            "first_break_ps": first_break, "worst_bond_atoms": [int(a) for a in pairs[worst[1]]],
            "extra_bonds_formed": int(new_bonds), "mean_temperature_K": float(T[len(T) // 2:].mean()),
            "steps_per_s": float(res.timings["steps_per_s"]), "wall_s": wall}


def nvt_check(model, params, Z, R0, *, ps: float, seed: int, replicas: int = 1) -> dict:
    """:func:`nvt_run` and its :func:`bond_report`."""
    res, wall = nvt_run(model, params, Z, R0, ps=ps, seed=seed, replicas=replicas)
    return bond_report(Z, R0, res, wall)


# -- alanine dipeptide and ferrocene -------------------------------------------------------
def xtb_system(name: str, args, runs: Path, log) -> dict:
    ds = load(f"shipped:{name}")
    perm = np.random.default_rng(0).permutation(ds.n_frames)
    n_test = max(20, ds.n_frames // 5)
    test, pool = ds.subset(perm[:n_test]), ds.subset(perm[n_test:])
    n_train = min(args.xtb_train, pool.n_frames - max(5, args.xtb_train // 10))
    model = MODELS["hybrid (circuit)"]
    xargs = argparse.Namespace(**{**vars(args), "seeds": 1, "epochs": args.xtb_epochs, "steps": None})
    res, seconds = fit(f"hybrid-{name}", model, pool, n_train, xargs, runs)
    m, p = members(res)[0]
    err = errors(m, p, test)
    R0 = np.asarray(ds.metadata["sampling"]["reference"][0]["R_minimum"])
    Z = np.asarray(ds.metadata["sampling"]["reference"][0]["Z"])
    mdres = nvt_check(m, p, Z, R0, ps=args.md_ps, seed=1)
    log(f"{name}: hybrid N={n_train}, E {err['energy_mae_meV_per_atom']:.2f} meV/atom, F "
        f"{err['force_mae_meV_per_A']:.1f} meV/Å; NVT {mdres['ps']:.1f} ps, max stretch {mdres['max_bond_stretch']:.2f}")
    return {"level": ds.metadata["labeler"]["method"], "frames": ds.n_frames, "n_train": n_train, "n_test": n_test,
            "n_atoms": int(ds.n_atoms), "train_seconds": seconds, "epochs": args.xtb_epochs,
            "n_params": int(res.metrics["n_params"]), "test": err, "nvt": mdres}


# -- plots and README ----------------------------------------------------------------------
def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(path: Path, curves: dict, n_test: int) -> None:
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for label, rows in curves.items():
        ns = [int(n) for n in rows]
        for ax, key in zip(axes, ("energy_mae_meV_per_atom", "force_mae_meV_per_A")):
            mean = [rows[str(n)][key]["mean"] for n in ns]
            std = [rows[str(n)][key]["std"] for n in ns]
            ax.errorbar(ns, mean, yerr=std, marker="o", capsize=3, label=label)
    for ax, ylab in zip(axes, ("energy MAE [meV/atom]", "force MAE [meV/Å]")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training frames")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"ethanol: test errors on {n_test} held-out frames (mean ± std over initialisations)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_torsions(path: Path, torsions: dict) -> None:
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for ax, (name, rows) in zip(axes, torsions.items()):
        a = rows["angle_deg"]
        ax.plot(a, rows["reference_meV"], "k-o", lw=2, label="PBE/def2-SVP")
        for label, r in rows["models"].items():
            ax.plot(a, r["meV"], "--.", label=label)
        ax.set_title(f"{name} torsion (rigid scan)")
        ax.set_xlabel("rotation [°]")
        ax.set_ylabel("E − E_min [meV]")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def level_name(labeler: dict) -> str:
    """``PBE/def2-SVP`` for a DFT labeller's metadata, else its method (``GFN2-xTB``)."""
    return f"{labeler['xc']}/{labeler['basis']}" if "xc" in labeler else labeler["method"]


def superseded_text() -> str:
    """Where the current GFN2-xTB results are (the first recipe's rows above break bonds): the
    dipeptide's and ferrocene's own benchmarks, with their headline numbers when saved."""
    out = []
    for name, what in (("ramachandran", "alanine dipeptide"), ("ferrocene", "ferrocene")):
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        test = r["model"]["test"]
        if name == "ramachandran":
            run, bonds = r["run"], r["bonds"]
            md = (f"{run['walkers']} metadynamics walkers × {run['ps_per_walker']:.0f} ps, "
                  f"{bonds['walkers_with_broken_bond']} with a broken bond")
        else:
            nvt = r["nvt"]
            md = f"NVT {nvt['replicas']} × {nvt['ps']:.0f} ps, {nvt['bonds_broken']} bonds broken"
        out.append(f"{what}: `{name}.py` ({test['energy_mae_meV_per_atom']:.2f} meV/atom, "
                   f"{test['force_mae_meV_per_A']:.0f} meV/Å; {md})")
    return "; ".join(out) + "." if out else "the alanine dipeptide and ferrocene sections."


def readme_text(p: dict) -> str:
    s = p["settings"]
    level = level_name(p["data"]["level"])
    sub = p["data"].get("n_recipe_frames")
    frames = f"{p['data']['frames']} of the recipe's {sub} frames labelled so far" if sub else f"{p['data']['frames']} frames"
    budget = (f"{s['steps']} optimiser steps per point (epochs = steps × batch / frames)" if s.get("steps")
              else f"{s['epochs']} epochs")
    lines = [f"Ethanol at {level} ({frames}; {p['data']['n_test']} held out for "
             f"testing), {budget}, batch {s['batch']}, force weight {s.get('force_weight', 1.0)}, mean ± std over "
             f"{s['seeds']} initialisations (one deep-ensemble run per point). Energy MAE per atom [meV/atom] / "
             f"force MAE [meV/Å]:", "",
             "| model | params | " + " | ".join(f"N = {n}" for n in p["sizes"]) + " |",
             "|---|---|" + "---|" * len(p["sizes"])]
    for label, rows in p["curves"].items():
        cells = [f"{rows[str(n)]['energy_mae_meV_per_atom']['mean']:.2f} ± {rows[str(n)]['energy_mae_meV_per_atom']['std']:.2f}"
                 f" / {rows[str(n)]['force_mae_meV_per_A']['mean']:.0f} ± {rows[str(n)]['force_mae_meV_per_A']['std']:.0f}"
                 for n in p["sizes"]]
        lines.append(f"| {label} | {rows[str(p['sizes'][0])]['n_params_per_member']} | " + " | ".join(cells) + " |")
    if p.get("md_models"):
        lines += ["", f"MD and torsion models: one seed per kind, {s['md_steps']} optimiser steps on the largest "
                  "training set, a core wall (`core_radii: auto`) for the hybrid and its control (the BPNN family has "
                  "no wall option). Test errors:", "", "| model | E MAE [meV/atom] | F MAE [meV/Å] | train [s] |",
                  "|---|---|---|---|"]
        for label, r in p["md_models"].items():
            lines.append(f"| {label} | {r['test']['energy_mae_meV_per_atom']:.2f} | "
                         f"{r['test']['force_mae_meV_per_A']:.0f} | {r['train_seconds']:.0f} |")
    which = "the MD models" if p.get("md_models") else "largest training set, member 0; the NVT below uses the same models"
    lines += ["", f"Torsion profiles (rigid scans of the GFN2-xTB minimum labelled at the reference level, {which}): MAE of the "
              "relative energy [meV] and barrier [meV] (reference: "
              + ", ".join(f"{k} {v['reference_barrier_meV']:.0f}" for k, v in p["torsions"].items()) + ")", "",
              "| model | " + " | ".join(f"{k} MAE | {k} barrier" for k in p["torsions"]) + " |",
              "|---|" + "---|---|" * len(p["torsions"])]
    for label in next(iter(p["torsions"].values()))["models"]:
        lines.append(f"| {label} | " + " | ".join(
            f"{v['models'][label]['mae_meV']:.1f} | {v['models'][label]['barrier_meV']:.0f}" for v in p["torsions"].values()) + " |")
    lines += ["", f"NVT (Langevin, 300 K, dt 0.5 fs) from the GFN2-xTB minimum, independent replicas in one run; a "
              f"bond is broken past {BOND_STRETCH_LIMIT} × its starting length:", "",
              "| system | model | replicas × ps | max bond stretch | bonds broken | replicas broken (first at) | "
              "bonds formed | mean T [K] | steps/s |", "|---|---|---|---|---|---|---|---|---|"]
    for label, r in p["nvt"].items():
        firsts = [t for t in r.get("first_break_ps", []) if t is not None]
        when = f"{r.get('replicas_with_broken_bond', 0)} ({min(firsts):.2f} ps)" if firsts else "0"
        lines.append(f"| ethanol | {label} | {r.get('replicas', 1)} × {r['ps']:.1f} | {r['max_bond_stretch']:.2f} | "
                     f"{r['bonds_broken']} | {when} | {r['extra_bonds_formed']} | {r['mean_temperature_K']:.0f} | "
                     f"{r['steps_per_s']:.0f} |")
    for name, r in p.get("xtb", {}).items():
        lines.append(f"| {name} (GFN2-xTB), first recipe, superseded | hybrid | 1 × {r['nvt']['ps']:.1f} | "
                     f"{r['nvt']['max_bond_stretch']:.2f} | "
                     f"{r['nvt']['bonds_broken']} | – | {r['nvt']['extra_bonds_formed']} | "
                     f"{r['nvt']['mean_temperature_K']:.0f} | {r['nvt']['steps_per_s']:.0f} |")
    if p.get("xtb"):
        lines += ["", "Hybrid on the GFN2-xTB sets, first recipe (one seed, hidden [16, 16], the epochs below, no "
                  "refinement; its NVT rows above broke bonds): test errors. **Superseded** by "
                  + superseded_text(), "",
                  "| system | atoms | train / test frames | epochs | E MAE [meV/atom] | F MAE [meV/Å] |", "|---|---|---|---|---|---|"]
        for name, r in p.get("xtb", {}).items():
            lines.append(f"| {name} | {r['n_atoms']} | {r['n_train']} / {r['n_test']} | {r['epochs']} | "
                         f"{r['test']['energy_mae_meV_per_atom']:.2f} | {r['test']['force_mae_meV_per_A']:.0f} |")
    for name, r in p.get("second", {}).items():
        lines += ["", f"{name} at {r['level']} ({r['frames']} frames: {r['n_train']} train, {r['n_val']} validation, "
                  f"{r['n_test']} test; {r['steps']} optimiser steps, mean ± std over {r['seeds']} initialisations):", "",
                  "| model | E MAE [meV/atom] | F MAE [meV/Å] |", "|---|---|---|"]
        for label, c in r["models"].items():
            lines.append(f"| {label} | {c['energy_mae_meV_per_atom']['mean']:.2f} ± {c['energy_mae_meV_per_atom']['std']:.2f}"
                         f" | {c['force_mae_meV_per_A']['mean']:.0f} ± {c['force_mae_meV_per_A']['std']:.0f} |")
    lines += ["", f"Plots: `results/bench_organics.png`, `results/bench_organics_torsions.png`. {p['machine']['cores']} "
              f"cores, load average {p['load_average']} at the start, {p['total_seconds'] / 60:.0f} min in all."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400], help="training frames per point")
    ap.add_argument("--seeds", type=int, default=5, help="initialisations per point (a deep ensemble)")
    ap.add_argument("--epochs", type=int, default=60, help="training epochs per point (unless --steps)")
    ap.add_argument("--steps", type=int, default=None,
                    help="optimiser steps per learning-curve point (epochs = steps × batch / frames)")
    ap.add_argument("--force-weight", type=float, default=10.0,
                    help="force-loss weight (residuals scaled by their spreads; energy weight 1)")
    ap.add_argument("--md-steps", type=int, default=3000,
                    help="optimiser steps of the MD/torsion models (one seed, largest set, core wall for the "
                         "hybrid families); 0: use member 0 of the largest learning-curve point")
    ap.add_argument("--md-replicas", type=int, default=4, help="independent NVT trajectories per model")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n-test", type=int, default=100, help="held-out ethanol frames (fewer if the data is short)")
    ap.add_argument("--md-ps", type=float, default=100.0, help="NVT length per replica [ps]")
    ap.add_argument("--xtb-train", type=int, default=200, help="training frames, alanine dipeptide and ferrocene")
    ap.add_argument("--xtb-epochs", type=int, default=30)
    ap.add_argument("--ethanol", default="shipped:ethanol", help="ethanol dataset (shipped:NAME or a file)")
    ap.add_argument("--torsions", default="shipped:ethanol_torsions", help="torsion scans (shipped:NAME or a file)")
    ap.add_argument("--models", nargs="*", default=None, help="only the models whose labels start with these words")
    ap.add_argument("--skip-xtb", action="store_true", help="ethanol only (earlier alanine dipeptide and "
                    "ferrocene results in the JSON are kept)")
    ap.add_argument("--xtb-only", action="store_true", help="alanine dipeptide and ferrocene only, added to the "
                    "saved ethanol results")
    ap.add_argument("--compile-cache", type=Path, default=None,
                    help="JAX persistent compilation cache folder: every training after the first of a model "
                         "reuses its compiled step (CPU prints cpu_aot_loader warnings; harmless on one machine)")
    ap.add_argument("--second-molecule", default=None, metavar="NAME",
                    help="only the accuracy of every model on a second shipped molecule (e.g. malonaldehyde: "
                         "all its frames, a fifth held out), added to the saved results")
    ap.add_argument("--quick", action="store_true", help="tiny settings, for checking the script")
    ap.add_argument("--runs", type=Path, default=None, help="run directories (default: a temporary folder)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.seeds, args.epochs, args.md_ps, args.xtb_train, args.xtb_epochs = [20, 40], 2, 2, 0.05, 20, 2
        args.steps, args.md_steps, args.md_replicas = None, 10, 2
    import os

    if args.compile_cache is not None:
        from qdyn.precision import enable_compilation_cache

        enable_compilation_cache(args.compile_cache, on_cpu=True)
    load_avg = os.getloadavg()[0]
    t_start = time.perf_counter()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="qdyn-organics-"))
    log = lambda s: print(s, flush=True)  # noqa: E731

    name = "bench_organics" + ("_quick" if args.quick else "")
    path = RESULTS / f"{name}.json"
    if args.second_molecule:
        second = second_molecule(args.second_molecule, args, runs, log)
        payload = json.loads(path.read_text())  # read after the training: another run may have saved meanwhile
        payload.setdefault("second", {})[args.second_molecule] = second
    elif args.xtb_only:
        payload = json.loads(path.read_text())
    else:
        payload = ethanol_part(args, runs, log)
        if path.exists():  # keep the previous alanine dipeptide / ferrocene results unless rerun
            payload["xtb"] = json.loads(path.read_text()).get("xtb", {})
    if not args.skip_xtb and not args.second_molecule:
        payload["xtb"] = {n: xtb_system(n, args, runs, log) for n in ("alanine_dipeptide", "ferrocene")}
        payload["xtb_settings"] = {"train": args.xtb_train, "epochs": args.xtb_epochs, "md_ps": args.md_ps,
                                   "load_average": round(load_avg, 2)}
    payload["total_seconds"] = payload.get("total_seconds", 0.0) + time.perf_counter() - t_start
    save(name, payload)
    text = readme_text(payload)
    print(text)
    if not args.quick:
        update_readme_section("bench_organics", "### Organics, a peptide and an organometallic "
                              "(`python benchmarks/bench_organics.py`)", text)


def second_molecule(name: str, args, runs: Path, log) -> dict:
    """Every model on another shipped molecule: all its frames, a fifth held out for testing,
    one deep ensemble of ``--seeds`` members per model (``--steps`` updates)."""
    ds = load(f"shipped:{name}")
    perm = np.random.default_rng(0).permutation(ds.n_frames)
    n_test = max(5, ds.n_frames // 5)
    test, pool = ds.subset(perm[:n_test]), ds.subset(perm[n_test:])
    n_train = pool.n_frames - max(5, pool.n_frames // 10)
    log(f"{name}: {ds.n_frames} frames, train {n_train}, test {n_test}, {args.seeds} seeds")
    curves, _ = learning_curves(pool, test, [n_train], args, runs, log)
    return {"level": level_name(ds.metadata["labeler"]), "frames": ds.n_frames,
            "n_train": n_train, "n_val": pool.n_frames - n_train, "n_test": n_test, "seeds": args.seeds,
            "steps": args.steps, "models": {label: c[str(n_train)] for label, c in curves.items()}}


def ethanol_part(args, runs: Path, log) -> dict:
    """Learning curves, torsion profiles and NVT on ethanol; plots written."""
    import os

    load_avg = os.getloadavg()[0]
    ds = load(args.ethanol)
    perm = np.random.default_rng(0).permutation(ds.n_frames)
    n_test = min(args.n_test, ds.n_frames // 4)
    test, pool = ds.subset(perm[:n_test]), ds.subset(perm[n_test:])
    sizes = sorted({min(n, pool.n_frames - max(5, n // 10)) for n in args.sizes})
    log(f"ethanol: {ds.n_frames} frames, test {n_test}, training sizes {sizes}, {args.seeds} seeds, {args.epochs} epochs")
    curves, largest = learning_curves(pool, test, sizes, args, runs, log) if args.seeds > 0 else ({}, {})
    md_info = {}
    if args.md_steps:
        largest, md_info = md_models(pool, test, sizes[-1], args, runs, log)
    torsions = torsion_profiles(largest, load(args.torsions))
    ref = ds.metadata["sampling"]["reference"][0]
    Z0, R0 = np.asarray(ref["Z"]), np.asarray(ref["R_minimum"])
    nvt = {}
    for label, (m, p) in largest.items():
        nvt[label] = nvt_check(m, p, Z0, R0, ps=args.md_ps, seed=0, replicas=args.md_replicas)
        log(f"NVT {label}: {nvt[label]}")
    name = "bench_organics" + ("_quick" if args.quick else "")
    plot_curves(RESULTS / f"{name}.png", curves, n_test)
    plot_torsions(RESULTS / f"{name}_torsions.png", torsions)
    n_recipe = ds.metadata.get("subset", {}).get("n_recipe_frames") or ds.metadata.get("n_recipe_frames")
    return {"data": {"name": "ethanol", "frames": ds.n_frames, "n_test": n_test, "level": ds.metadata["labeler"],
                     "n_recipe_frames": n_recipe},
            "sizes": sizes, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "models": MODELS, "descriptor": DESCRIPTOR, "curves": curves, "torsions": torsions, "nvt": nvt,
            "md_models": md_info,
            "load_average": round(load_avg, 2), **machine_info()}


if __name__ == "__main__":
    main()
