"""The water dimer's O–O potential of mean force with a trained qdyn model: umbrella
windows on the O–O distance (one per replica, Hamiltonian replica exchange between
neighbours) and MBAR, at 300 K.

Trains a small BPNN on the shipped water-dimer data (B3LYP/def2-SVP; O atoms 0 and 3) unless
``--model RUN`` names a finished training run, then runs the biased MD with
``qdyn.md.run_md(bias=...)``. Reports the PMF W(r) with MBAR errors, the same with the
r² Jacobian removed (W + 2 kT ln r, the part of the free energy not due to the growing
shell volume), the well depth, the exchange acceptance; writes results/dimer_pmf.json, a
plot and its README section.

    python benchmarks/dimer_pmf.py [--small] [--model RUN]
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
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn import units  # noqa: E402
from qdyn.data import load_shipped  # noqa: E402
from qdyn.md import MDOutput, MDSettings, model_energy_fn, run_md  # noqa: E402
from qdyn.sampling import cv  # noqa: E402
from qdyn.sampling.bias import make_bias, umbrella_states  # noqa: E402
from qdyn.sampling.exchange import ReplicaExchange, by_rung  # noqa: E402
from qdyn.sampling.free_energy import umbrella_fes  # noqa: E402
from qdyn.system import System  # noqa: E402
from qdyn.train import load_run, parse_config, train  # noqa: E402

T = 300.0
KT = units.temperature_to_energy(T)
O1, O2 = 0, 3


def trained_model(run: Path | None, small: bool):
    if run is not None:
        model, params, _ = load_run(run)
        return model, params, {"run": str(run)}
    data = load_shipped("water_dimer")
    cfg = parse_config({"model": {"family": "bpnn", "hidden": [32, 32], "n_radial": 8, "cutoff": 6.5},
                        "data": {"path": "shipped:water_dimer", "n_train": 240, "n_val": 30, "n_test": 30},
                        "optim": {"learning_rate": 1e-2, "schedule": "cosine"},
                        "epochs": 5 if small else 300, "batch_size": 16, "seed": 0})
    t = time.perf_counter()
    res = train(cfg, Path(tempfile.mkdtemp()) / "dimer_bpnn", data=data, progress=False)
    return res.model, res.params, {"trained_s": time.perf_counter() - t, "metrics": res.metrics}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick smoke run (few epochs and steps)")
    ap.add_argument("--model", type=Path, default=None, help="a finished training run of the water dimer")
    args = ap.parse_args()
    load_start = os.getloadavg()
    model, params, info = trained_model(args.model, args.small)
    data = load_shipped("water_dimer")
    r_data = np.linalg.norm(data.R[:, O1] - data.R[:, O2], axis=-1)
    centers = np.linspace(2.6, 5.0, 13)
    kappa = 3.0  # eV/Å²
    # start every window from the dataset frame nearest its centre
    R0 = np.stack([data.R[np.argmin(np.abs(r_data - c)), : data.n_real[0]] for c in centers])
    system = System.create(data.Z[0, : data.n_real[0]])
    bias = make_bias(cv.stack([lambda R, box: cv.distance(R, O1, O2, box)]))
    ex = ReplicaExchange(bias, temperature_K=T, seed=0)
    n_steps = 4000 if args.small else 40_000
    t = time.perf_counter()
    res = run_md(model_energy_fn(model.apply), params, R0, system,
                 MDSettings(ensemble="nvt-langevin", dt_fs=0.5, n_steps=n_steps, temperature_K=T, replicas=len(centers),
                            friction_per_fs=0.02),
                 output=MDOutput(stride=20, frames_per_block=20, progress=None), bias=bias,
                 bias_states=umbrella_states(bias, centers, kappa), exchange=ex, key=jax.random.PRNGKey(0))
    md_s = time.perf_counter() - t
    x = by_rung(res.cv[..., 0], res.exchange["rung_history"], initial=bool(res.step[0] == 0))
    edges = np.linspace(2.45, 5.15, 46)
    fe = umbrella_fes(x, centers, kappa, temperature_K=T, bin_edges=edges, discard=len(x) // 10)
    W = fe.F
    W_radial = W + 2.0 * KT * np.log(fe.s)  # remove the r² shell-volume (Jacobian) term
    W_radial -= np.nanmin(W_radial)
    i_min = int(np.nanargmin(W))
    far = fe.s > 4.6
    depth = float(np.nanmean(W[far]) - W[i_min])
    out = {"machine": machine_info(), "load_average_start_end": [load_start, os.getloadavg()], "model": info,
           "windows": len(centers), "kappa_eV_A2": kappa, "steps": n_steps, "md_wall_s": md_s,
           "r_min_A": float(fe.s[i_min]), "well_depth_eV": depth, "well_depth_kT": depth / KT,
           "exchange_acceptance": res.exchange["acceptance"], "round_trips": res.exchange["round_trips"],
           "r_A": fe.s.tolist(), "pmf_eV": [None if not np.isfinite(v) else float(v) for v in W],
           "pmf_err_eV": [None if not np.isfinite(v) else float(v) for v in fe.dF], "small": args.small}
    print({k: v for k, v in out.items() if k not in ("r_A", "pmf_eV", "pmf_err_eV", "machine")}, flush=True)
    name = "dimer_pmf_small" if args.small else "dimer_pmf"
    png = RESULTS / f"{name}.png"
    plot(fe, W_radial, png)
    save(name, out)
    if args.small:
        return
    acc = ", ".join(f"{a:.2f}" for a in out["exchange_acceptance"])
    test = info.get("metrics", {}).get("test")
    model_note = (f"test MAE {test['energy_mae_meV']:.1f} meV, forces {test['force_mae_meV_per_A']:.0f} meV/Å, "
                  f"trained in {info['trained_s']:.0f} s" if test else f"run {info.get('run')}")
    text = "\n".join([
        f"BPNN trained on the shipped dimer data ({model_note}); 13 umbrella "
        f"windows 2.6–5.0 Å (κ = {kappa} eV/Å²) with HREX, {n_steps} steps of 0.5 fs each, 300 K; MBAR. Load "
        f"{load_start[0]:.1f} → {out['load_average_start_end'][1][0]:.1f}.", "",
        f"| PMF minimum r_OO | well depth (W(r > 4.6 Å) − W_min) | exchange acceptance | round trips | MD wall |",
        "|---|---|---|---|---|",
        f"| {out['r_min_A']:.2f} Å | {depth:.3f} eV ({depth / KT:.1f} kT) | {acc} | {out['round_trips']} | "
        f"{md_s:.0f} s |", "", f"![dimer PMF](results/{png.name})"])
    update_readme_section("dimer_pmf", "Water dimer O–O potential of mean force (umbrella + HREX + MBAR)", text)


def plot(fe, W_radial, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(fe.s, fe.F / KT, yerr=fe.dF / KT, fmt="o-", ms=3, label="W(r), MBAR ±1σ")
    ax.plot(fe.s, W_radial / KT, "s--", ms=3, label="W(r) + 2kT ln r")
    ax.set(xlabel="O–O distance r [Å]", ylabel="free energy [kT, 300 K]", title="water dimer PMF (trained BPNN)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
