"""Do the training constraints act? The water dimer trained without its dissociated and compressed frames.

The shipped water dimer (B3LYP/def2-SVP) spans O–O 2.4–6 Å. Training here sees only the bound
frames (O–O < 3.3 Å); the frames beyond 4.5 Å are held out as the test of the dissociation
limit, where the model must approach E(monomer A) + E(monomer B). Two constraints, each
against the same training without it (same model, data, seed, schedule):

* ``dissociation``: probes of two monomers from ``shipped:H2O`` (same level of theory) 20 Å
  apart, target the sum of their energies. Measured: energy MAE on the held-out far frames
  (O–O > 4.5 Å) and the mean signed error there (the offset of the limit).
* ``repulsive_wall`` O–O below 2.3 Å (the data's closest O–O is 2.39 Å): measured as the
  fraction of compressed geometries (one per bound frame, O–O 1.6–2.3 Å, molecules moved rigidly) where
  the energy *falls* as the pair is compressed (dE/dr > 0), and the mean of that wrong slope.

A third part, ``--part ethanol``, measures ``energy_order`` where the data alone get the order of
conformers wrong: ethanol (PBE/def2-SVP, ``shipped:ethanol``) trained on only ``--n-train``
sampled frames, against the rigid torsion scans of ``shipped:ethanol_torsions`` (the same
level). The constraint is told the order of five conformers — trans < gauche (+120°) < cis
(+180°) for the hydroxyl rotor, staggered < eclipsed for the methyl rotor — and nothing else;
measured on every pair of scan points (reference gap ≥ 10 meV) *not* both among those five:
the fraction the model orders correctly, and the profiles' MAE. One vmapped ensemble of
``--seeds`` initialisations per variant (mean ± std).

Usage: nice -n 15 python benchmarks/bench_constraints.py [--part dimer|ethanol|all] [--epochs 100] [--quick]
Writes benchmarks/results/bench_constraints.{json,png} and its section of benchmarks/README.md.
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
from qdyn.data import load_shipped  # noqa: E402
from qdyn.train import parse_config, train  # noqa: E402
from qdyn.train.constraints import RepulsiveWallConstraint, wall_probes  # noqa: E402
from qdyn.train.trainer import predict  # noqa: E402
from qdyn.uncertainty.ensemble import unstack  # noqa: E402

BOUND_MAX = 3.3  # Å: training frames have O–O below this
FAR_MIN = 4.5  # Å: held-out frames testing the dissociation limit
MODEL = {"family": "bpnn", "hidden": [16, 16], "cutoff": 4.0, "n_radial": 6}
DISSOCIATION = {"fragments": [[0, 1, 2], [3, 4, 5]], "fragment_data": ["shipped:H2O", "shipped:H2O"],
                "separation": 20.0, "n_probes": 32, "weight": 1.0}
WALL = {"pair": "O-O", "below": 2.3, "r_min": 1.6, "n_probes": 32, "weight": 1.0}
VARIANTS = {"data only": {}, "+ dissociation": {"dissociation": DISSOCIATION}, "+ wall": {"repulsive_wall": WALL}}


def r_oo(ds) -> np.ndarray:
    return np.linalg.norm(ds.R[:, 3] - ds.R[:, 0], axis=-1)


def wall_check(model, params, ds) -> dict:
    """Fraction of fresh compressed geometries where E falls on compression, and the mean wrong slope."""
    probes = wall_probes(RepulsiveWallConstraint(pair="O-O", below=2.3, r_min=1.6, n_probes=200), ds, seed=123)

    def slope(R, system, d):
        return jax.jvp(lambda x: model.apply(params, x, system), (R,), (d,))[1]

    s = np.asarray(jax.jit(jax.vmap(slope))(jnp.asarray(probes.R), probes.system, jnp.asarray(probes.direction)))
    return {"probes": int(len(s)), "fraction_falling": float(np.mean(s > 0)),
            "mean_wrong_slope_eV_per_A": float(np.mean(np.maximum(s, 0.0)))}


# ethanol_torsions: frames 0-11 the methyl scan, 12-23 the hydroxyl scan, 30° apart from the minimum
ETHANOL_MODEL = {"family": "bpnn", "hidden": [16, 16], "cutoff": 5.0, "n_radial": 6, "zetas": [1.0, 4.0],
                 "eta_angular": 0.1}
ORDER_GROUPS = [[12, 16, 18], [0, 2]]  # trans < gauche (+120°) < cis (+180°); staggered < eclipsed
ORDER_MIN_GAP = 0.010  # eV: scan pairs closer than this are not scored
ORDER = {"data": "shipped:ethanol_torsions", "groups": ORDER_GROUPS, "weight": 1.0}


def order_scores(E_model: np.ndarray, E_ref: np.ndarray, parts: np.ndarray) -> dict:
    """Over each scan's pairs ≥ ORDER_MIN_GAP apart in the reference: the fraction the model
    orders like the reference, for the constrained conformers and for the other pairs; and the
    MAE of each profile relative to its own minimum [meV]."""
    told = {i for g in ORDER_GROUPS for i in g}
    right = {"constrained": [], "held_out": []}
    out = {}
    for part, name in ((0, "methyl"), (1, "hydroxyl")):
        sel = np.flatnonzero(parts == part)
        for a, i in enumerate(sel):
            for j in sel[a + 1:]:
                if abs(E_ref[i] - E_ref[j]) >= ORDER_MIN_GAP:
                    key = "constrained" if (i in told and j in told) else "held_out"
                    right[key].append(np.sign(E_model[i] - E_model[j]) == np.sign(E_ref[i] - E_ref[j]))
        rel_m, rel_r = E_model[sel] - E_model[sel].min(), E_ref[sel] - E_ref[sel].min()
        out[f"{name}_profile_mae_meV"] = float(np.mean(np.abs(rel_m - rel_r)) * 1e3)
    out.update({f"{k}_pairs_right": float(np.mean(v)) for k, v in right.items()})
    out["held_out_pairs"] = len(right["held_out"])
    return out


def ethanol(args, runs: Path) -> dict:
    pool, scans = load_shipped("ethanol"), load_shipped("ethanol_torsions")
    n_val = 4
    test = pool.subset(np.arange(args.n_train + n_val, pool.n_frames))
    out = {}
    for label, constraints in {"data only": {}, "+ energy order": {"energy_order": ORDER}}.items():
        cfg = parse_config({
            "model": ETHANOL_MODEL, "data": {"n_train": args.n_train, "n_val": n_val, "n_test": 0, "split_seed": 0},
            "loss": {"constraints": constraints},
            "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.05},
            "epochs": args.epochs, "batch_size": 8, "seed": 0, "checkpoint_every": args.epochs,
            "uncertainty": {"method": "ensemble", "ensemble": {"size": args.seeds}}})
        t0 = time.perf_counter()
        res = train(cfg, runs / f"ethanol-{len(out)}", data=pool.subset(np.arange(args.n_train + n_val)),
                    progress=False)
        seconds = time.perf_counter() - t0
        rows = []
        for p in unstack(res.params):
            E, _ = predict(res.model.member, p, scans)
            Et, Ft = predict(res.model.member, p, test)
            rows.append({**order_scores(E, scans.E, scans.extras["sampler_part"]),
                         "test_energy_mae_meV": float(np.mean(np.abs(Et - test.E)) * 1e3),
                         "test_force_mae_meV_per_A": float(np.mean(np.abs(Ft - test.F)[test.mask]) * 1e3)})
        out[label] = {"train_seconds": seconds, "n_seeds": len(rows),
                      "summary": {k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))]
                                  for k in rows[0]}, "seeds": rows}
        print("ethanol", label, out[label]["summary"], f"({seconds:.0f} s)", flush=True)
    return out


def ethanol_table(payload: dict) -> str:
    e = payload["ethanol"]
    s = e["settings"]
    first = next(iter(e["results"].values()))
    lines = ["", f"Ethanol (PBE/def2-SVP) trained on {s['n_train']} sampled frames (BPNN, {s['epochs']} epochs), scored on "
                 "the rigid torsion scans (`shipped:ethanol_torsions`). `energy_order` is told trans < gauche < cis "
                 "(hydroxyl) and staggered < eclipsed (methyl), five conformers; the held-out pairs are the "
                 f"{first['summary']['held_out_pairs'][0]:.0f} other scan pairs ≥ {ORDER_MIN_GAP * 1e3:.0f} meV apart. "
                 f"Mean ± std over {first['n_seeds']} initialisations (one vmapped ensemble):", "",
             "| training | told pairs right | held-out pairs right | hydroxyl profile MAE [meV] | "
             "methyl profile MAE [meV] | test energy MAE [meV] | test force MAE [meV/Å] |", "|---|---|---|---|---|---|---|"]
    pm = lambda v, f, k=1: f"{k * v[0]:{f}} ± {k * v[1]:{f}}"  # noqa: E731
    for label, r in e["results"].items():
        m = r["summary"]
        lines.append(f"| {label} | {pm(m['constrained_pairs_right'], '.0f', 100)}% | "
                     f"{pm(m['held_out_pairs_right'], '.0f', 100)}% | {pm(m['hydroxyl_profile_mae_meV'], '.1f')} | "
                     f"{pm(m['methyl_profile_mae_meV'], '.1f')} | {pm(m['test_energy_mae_meV'], '.1f')} | "
                     f"{pm(m['test_force_mae_meV_per_A'], '.0f')} |")
    lines += ["", f"Load average {e['load_average'][0]:.1f}. `nice -n 15 python benchmarks/bench_constraints.py "
                  "--part ethanol` regenerates this table."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["dimer", "ethanol", "all"], default="all")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--n-train", type=int, default=12, help="ethanol: training frames")
    ap.add_argument("--seeds", type=int, default=5, help="ethanol: initialisations (one vmapped ensemble)")
    ap.add_argument("--quick", action="store_true", help="three epochs, for checking the script")
    args = ap.parse_args()
    if args.quick:
        args.epochs = 3
    name = "bench_constraints" + ("_quick" if args.quick else "")
    previous = RESULTS / f"{name}.json"
    payload = json.loads(previous.read_text()) if previous.exists() else {}
    runs = Path(tempfile.mkdtemp(prefix="qdyn-constraints-"))
    if args.part in ("ethanol", "all"):
        payload["ethanol"] = {"settings": {k: v for k, v in vars(args).items()}, "load_average": list(os.getloadavg()),
                              "model": ETHANOL_MODEL, "constraint": ORDER, "results": ethanol(args, runs),
                              **machine_info()}
    if args.part in ("dimer", "all"):
        payload.update(dimer(args, runs))
    save(name, payload)
    text = table(payload) + ("\n" + ethanol_table(payload) if "ethanol" in payload else "")
    print(text)
    if not args.quick:
        update_readme_section("bench_constraints", "## Constraints that act: the water dimer's limit and wall, "
                                                   "ethanol's conformer order", text)


def dimer(args, runs: Path) -> dict:
    ds = load_shipped("water_dimer")
    r = r_oo(ds)
    bound, far = ds.subset(np.flatnonzero(r < BOUND_MAX)), ds.subset(np.flatnonzero(r > FAR_MIN))
    results = {}
    for label, constraints in VARIANTS.items():
        cfg = parse_config({"model": MODEL, "data": {"n_train": bound.n_frames - 10, "n_val": 10, "n_test": 0},
                            "loss": {"constraints": constraints},
                            "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.05},
                            "epochs": args.epochs, "batch_size": 16, "seed": 0, "checkpoint_every": args.epochs})
        t0 = time.perf_counter()
        res = train(cfg, runs / f"run{len(results)}", data=bound, progress=False)
        E, F = predict(res.model, res.params, far)
        err = E - far.E
        results[label] = {"train_seconds": time.perf_counter() - t0,
                          "far_energy_mae_meV": float(np.mean(np.abs(err)) * 1e3),
                          "far_energy_mean_error_meV": float(np.mean(err) * 1e3),
                          "far_force_mae_meV_per_A": float(np.mean(np.abs(F - far.F)) * 1e3),
                          "bound_val_energy_mae_meV": res.history[-1].get("val_energy_mae_meV"),
                          "wall": wall_check(res.model, res.params, bound)}
        print(label, results[label], flush=True)
    return {"settings": {"epochs": args.epochs, "quick": args.quick}, "load_average": list(os.getloadavg()),
            "data": {"bound_frames": bound.n_frames, "far_frames": far.n_frames, "bound_max_A": BOUND_MAX,
                     "far_min_A": FAR_MIN},
            "model": MODEL, "constraints": {"dissociation": DISSOCIATION, "repulsive_wall": WALL},
            "results": results, **machine_info()}


def table(payload: dict) -> str:
    d = payload["data"]
    lines = [f"BPNN on water-dimer frames with O–O < {d['bound_max_A']} Å ({d['bound_frames']} frames, B3LYP/"
             f"def2-SVP); the dissociation test is the {d['far_frames']} held-out frames with O–O > "
             f"{d['far_min_A']} Å; the wall test one geometry per bound frame compressed to O–O 1.6–2.3 Å (other "
             "distances than the training probes', seed 123).", "",
             "| training | far frames: energy MAE [meV] | mean error [meV] | force MAE [meV/Å] | "
             "bound val. energy MAE [meV] | E falls on compression | mean wrong slope [eV/Å] |",
             "|---|---|---|---|---|---|---|"]
    for label, r in payload["results"].items():
        w = r["wall"]
        lines.append(f"| {label} | {r['far_energy_mae_meV']:.1f} | {r['far_energy_mean_error_meV']:+.1f} | "
                     f"{r['far_force_mae_meV_per_A']:.0f} | {r['bound_val_energy_mae_meV']:.1f} | "
                     f"{100 * w['fraction_falling']:.0f}% | {w['mean_wrong_slope_eV_per_A']:.3f} |")
    lines += ["", f"{payload['settings']['epochs']} epochs, one seed; load average {payload['load_average'][0]:.1f}. "
                  "`nice -n 15 python benchmarks/bench_constraints.py --part dimer` regenerates this table."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
