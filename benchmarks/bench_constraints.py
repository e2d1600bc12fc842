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

Usage: nice -n 15 python benchmarks/bench_constraints.py [--epochs 100] [--quick]
Writes benchmarks/results/bench_constraints.{json,png} and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="three epochs, for checking the script")
    args = ap.parse_args()
    if args.quick:
        args.epochs = 3
    ds = load_shipped("water_dimer")
    r = r_oo(ds)
    bound, far = ds.subset(np.flatnonzero(r < BOUND_MAX)), ds.subset(np.flatnonzero(r > FAR_MIN))
    runs = Path(tempfile.mkdtemp(prefix="qdyn-constraints-"))
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
    payload = {"settings": vars(args), "load_average": list(os.getloadavg()),
               "data": {"bound_frames": bound.n_frames, "far_frames": far.n_frames, "bound_max_A": BOUND_MAX,
                        "far_min_A": FAR_MIN},
               "model": MODEL, "constraints": {"dissociation": DISSOCIATION, "repulsive_wall": WALL},
               "results": results, **machine_info()}
    name = "bench_constraints" + ("_quick" if args.quick else "")
    save(name, payload)
    text = table(payload)
    print(text)
    if not args.quick:
        update_readme_section("bench_constraints", "## Constraints that act: the water dimer's limit and wall", text)


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
                  "`nice -n 15 python benchmarks/bench_constraints.py` regenerates this section."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
