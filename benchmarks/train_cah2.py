"""Train a diabatic two-state model on the shipped CaH2 S0/S1 data and plot its diabats.

Trains :mod:`qdyn.models.multistate` (BPNN backbone by default) on TDA-B3LYP/def2-SVP
adiabatic energies and forces of both states (random train/validation/test split of all
frames), reports the adiabatic energy and force errors of both states on the held-out test
frames, and plots, along a bend scan and an asymmetric-stretch scan (dense model curves,
reference points from the dataset's scans), the model's adiabats against the reference
together with its diabatic energies W_00, W_11 and the coupling W_01.

    nice -n 10 python benchmarks/train_cah2.py [--out runs/cah2] [--epochs 300] [--backbone bpnn]
    nice -n 10 python benchmarks/train_cah2.py --odd-coupling --out runs/cah2_odd --results-name cah2_multistate_odd

Writes the run to ``--out`` (load with ``qdyn.train.trainer.load_run``), the figure to
``benchmarks/results/cah2_multistate.png`` and the numbers to
``benchmarks/results/cah2_multistate.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, save  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def scan_dataset(r1, r2, angle_deg, n):
    from qdyn.data import Dataset
    from qdyn.data.samplers import triatomic

    R = triatomic(n=n, r1=r1, r2=r2, angle_deg=angle_deg, mode="scan")
    return Dataset(R=R, Z=np.broadcast_to([20, 1, 1], (n, 3)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/cah2")
    ap.add_argument("--epochs", type=int, default=800)
    ap.add_argument("--backbone", default="bpnn", choices=["bpnn", "hybrid", "quantum"])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="per-element MLP widths")
    ap.add_argument("--data", default=None, help="a dataset file with the shipped CaH2 layout (default: shipped)")
    ap.add_argument("--results-name", default="cah2_multistate", help="file stem under benchmarks/results")
    ap.add_argument("--odd-coupling", action="store_true",
                    help="W01 odd under H1 <-> H2 (odd_couplings {'0-1': [H]}): a true 1A1/1B2 conical intersection")
    args = ap.parse_args()

    from qdyn import enable_x64

    enable_x64()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdyn.data import load_shipped
    from qdyn.train.config import parse_config
    from qdyn.train.trainer import predict_states, train

    from qdyn.data import read

    ds = load_shipped("CaH2") if args.data is None else read(args.data)
    n = ds.n_frames
    n_test = max(6, n // 6)
    n_val = max(4, n // 12)
    cfg = parse_config({
        "model": {"family": "multistate", "backbone": args.backbone, "hidden": list(args.hidden), "n_radial": 6,
                  "zetas": [1.0, 4.0], "cutoff": 5.0, "n_qubits": 3, "layers": 2,
                  # a pair wall 10 % inside the data's shortest Ca–H / H–H: hot trajectories after
                  # a hop otherwise fuse H atoms where the network never saw any
                  "core_radii": "auto", **({"odd_couplings": {"0-1": ["H"]}} if args.odd_coupling else {})},
        "data": {"n_train": n - n_val - n_test, "n_val": n_val, "n_test": n_test, "split_seed": 0},
        "loss": {"energy_weight": 1.0, "force_weight": 1.0, "smoothness_weight": 1e-3,
                 "coupling_far_weight": 1e-2, "diabat_order_weight": 1e-2, "coupling_gap_scale": 2.0},
        "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.05},
        "epochs": args.epochs, "batch_size": 16, "checkpoint_every": 50, "seed": 0,
    })
    res = train(cfg, args.out, data=ds, progress=True)
    model, params = res.model, res.params
    test = res.metrics["test"]["states"]

    part = ds.extras["sampler_part"]
    scans = {
        "bend (r = 2.05 Å)": (scan_dataset(2.05, "r1", [30.0, 179.0], 160), (part == 1) | (part == 4),
                               lambda d: np.degrees(np.arccos(np.clip(np.einsum(
                                   "ix,ix->i", d.R[:, 1] - d.R[:, 0], d.R[:, 2] - d.R[:, 0]) / (
                                   np.linalg.norm(d.R[:, 1] - d.R[:, 0], axis=1)
                                   * np.linalg.norm(d.R[:, 2] - d.R[:, 0], axis=1)), -1, 1))), "H–Ca–H angle [°]"),
        "asymmetric stretch (r1 = 2.05 Å, 150°)": (scan_dataset(2.05, [1.75, 3.4], 150.0, 120), part == 3,
                                                    lambda d: np.linalg.norm(d.R[:, 2] - d.R[:, 0], axis=1), "r2 [Å]"),
        "symmetric stretch (150°)": (scan_dataset([1.75, 3.2], "r1", 150.0, 120), part == 2,
                                     lambda d: np.linalg.norm(d.R[:, 1] - d.R[:, 0], axis=1), "r1 = r2 [Å]"),
        "symmetric stretch (50°, through the funnel)": (scan_dataset([1.85, 2.45], "r1", 50.0, 120), part == 6,
                                                        lambda d: np.linalg.norm(d.R[:, 1] - d.R[:, 0], axis=1),
                                                        "r1 = r2 [Å]"),
    }
    E_ref0 = float(np.min(ds.E_states[:, 0]))
    fig, axes = plt.subplots(2, len(scans), figsize=(4.6 * len(scans), 7), sharex="col")
    smooth = {}
    for col, (title, (dense, sel, coord, xlabel)) in enumerate(scans.items()):
        Ed, _, Wd = predict_states(model, params, dense)
        x = coord(dense)
        ref = ds.subset(np.flatnonzero(sel))
        xr = coord(ref)
        ax = axes[0, col]
        for k, c in enumerate(("C0", "C3")):
            ax.plot(x, Ed[:, k] - E_ref0, c, lw=1.5, label=f"model E{k} (adiabat)")
            ax.plot(xr, ref.E_states[:, k] - E_ref0, "o", color=c, ms=4, mfc="none", label=f"TDA-B3LYP S{k}")
            ax.plot(x, Wd[:, k, k] - E_ref0, "--", color=c, lw=1, label=f"model W{k}{k} (diabat)")
        ax.set_title(title)
        ax.set_ylabel("energy − min S0 [eV]")
        if col == 0:
            ax.legend(fontsize=7)
        ax = axes[1, col]
        ax.plot(x, Wd[:, 0, 1], "k", lw=1.5, label="W01 (coupling)")
        ax.plot(x, Ed[:, 1] - Ed[:, 0], "C2", lw=1, label="adiabatic gap (model)")
        ax.plot(xr, ref.E_states[:, 1] - ref.E_states[:, 0], "o", color="C2", ms=4, mfc="none", label="gap (reference)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eV")
        ax.legend(fontsize=7)
        # smoothness: the largest second difference of the coupling on the dense scan,
        # relative to its range (a jump or kink would show up as a spike)
        c = Wd[:, 0, 1]
        smooth[title] = {"coupling_min_eV": float(c.min()), "coupling_max_eV": float(c.max()),
                         "max_abs_second_difference_eV": float(np.max(np.abs(np.diff(c, 2)))),
                         "gap_min_reference_eV": float(np.min(ref.E_states[:, 1] - ref.E_states[:, 0])),
                         "adiabat_rmse_on_scan_meV": [1e3 * float(np.sqrt(np.mean(
                             (predict_states(model, params, ref)[0][:, k] - ref.E_states[:, k]) ** 2))) for k in range(2)]}
    fig.suptitle(f"CaH2 S0/S1: {model.name} trained on TDA-B3LYP/def2-SVP; test RMSE "
                 f"S0 {test[0]['energy_rmse_meV']:.0f} meV, S1 {test[1]['energy_rmse_meV']:.0f} meV")
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / f"{args.results_name}.png", dpi=110)
    plt.close(fig)
    out = {"run": str(args.out), "model": model.config, "sizes": res.metrics["sizes"],
           "train_seconds": res.seconds, "test_states": test, "train_states": res.metrics["train"]["states"],
           "scans": smooth, "labels": "TDA-B3LYP/def2-SVP (PySCF), shipped:CaH2", "machine": machine_info()}
    save(args.results_name, out)
    for k, s in enumerate(test):
        print(f"test S{k}: energy RMSE {s['energy_rmse_meV']:.1f} meV, force RMSE {s['force_rmse_meV_per_A']:.1f} meV/Å")


if __name__ == "__main__":
    main()
