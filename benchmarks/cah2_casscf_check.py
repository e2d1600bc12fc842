"""CaH2 near its S0/S1 conical intersection: diabatic models against SA-CASSCF couplings.

Trains two two-state multistate models on the S0/S1 energies and forces of the shipped
SA-CASSCF grid (``shipped:CaH2_casscf``, bend x antisymmetric stretch around the 1A1/1B2
intersection): one with the default invariant coupling, one with ``odd_couplings
{"0-1": [H]}``. Neither sees a coupling in training. Then compares, on every frame (held-out
frames marked), the model's nonadiabatic coupling d_01 (from its diabatic matrix,
:func:`qdyn.namd.electronic_structure`) with the reference SA-CASSCF d_01 (the full analytic
coupling): direction (|cos|: the sign of a coupling is a gauge) and size, and the S0/S1 gap
on the C2v line (r1 = r2), where the reference states cross.

    nice -n 15 python benchmarks/cah2_casscf_check.py [--epochs 600] [--data qdyn/data/shipped/CaH2_casscf.npz]

Writes ``benchmarks/results/cah2_casscf_check.{json,png}`` and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, save, update_readme_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def two_states(ds):
    """The dataset with its two lowest states only (the models are 2 x 2)."""
    from qdyn.data import Dataset

    extras = {k: v for k, v in ds.extras.items() if k != "nacs_states"}
    return Dataset(R=ds.R, Z=ds.Z, E=ds.E, F=ds.F, E_states=ds.E_states[:, :2], F_states=ds.F_states[:, :2],
                   extras=extras, metadata=ds.metadata, source=ds.source)


def grid_coordinates(R):
    """(H–Ca–H angle [°], delta = (r1 − r2)/2 [Å]) of [n, 3, 3] geometries."""
    u = R[:, 1:] - R[:, :1]
    r = np.linalg.norm(u, axis=-1)
    angle = np.degrees(np.arccos(np.clip(np.sum(u[:, 0] * u[:, 1], -1) / (r[:, 0] * r[:, 1]), -1, 1)))
    return angle, 0.5 * (r[:, 0] - r[:, 1])


def model_couplings(model, params, R):
    """Adiabatic energies [n, 2] eV and d_01 [n, 3, 3] 1/Å of a multistate model on frames R."""
    import jax
    import jax.numpy as jnp

    from qdyn.md.adapters import diabatic_fn
    from qdyn.namd.electronic import electronic_structure
    from qdyn.system import System

    W_fn = diabatic_fn(model, System.create(["Ca", "H", "H"]))
    batched = jax.vmap(lambda p, R: electronic_structure(W_fn, p, R, gap_regularization=1e-8), in_axes=(None, 0))
    el = jax.jit(batched)(jax.tree_util.tree_map(jnp.asarray, params), jnp.asarray(R))
    return np.asarray(el.energy), np.asarray(el.nac[:, 0, 1])


def c2v_scan_gap(model, params, angles_deg, r=2.05):
    """The model's S0/S1 gap [eV] on a dense C2v bend scan (r1 = r2 = r Å): where the
    diabats cross, an odd coupling gives zero, an invariant one a finite (avoided) gap."""
    a = np.radians(np.asarray(angles_deg)) / 2
    R = np.zeros((len(a), 3, 3))
    R[:, 1] = np.stack([r * np.sin(a), np.zeros_like(a), r * np.cos(a)], -1)
    R[:, 2] = R[:, 1] * np.array([-1.0, 1.0, 1.0])
    E, _ = model_couplings(model, params, R)
    return E[:, 1] - E[:, 0]


def compare(d_model, d_ref):
    """|cos| of the angle and |d_model| / |d_ref| per frame (couplings as 9-vectors)."""
    a, b = d_model.reshape(len(d_model), -1), d_ref.reshape(len(d_ref), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.abs(np.sum(a * b, axis=1)) / (na * nb), na / nb


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset file (default: shipped CaH2_casscf)")
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--out", default=None, help="directory for the two runs (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="load the runs already in --out instead of training")
    args = ap.parse_args()

    from qdyn import enable_x64

    enable_x64()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdyn.data import load_shipped, read
    from qdyn.train.config import parse_config
    from qdyn.train.trainer import load_run, split_data, train

    full = load_shipped("CaH2_casscf") if args.data is None else read(args.data).converged_only()
    ds = two_states(full)
    d_ref = full.extras["nacs_states"][:, 0, 1]
    angle, delta = grid_coordinates(full.R)
    gap_ref = full.E_states[:, 1] - full.E_states[:, 0]
    n = ds.n_frames
    n_test, n_val = max(4, n // 6), max(3, n // 10)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="cah2_casscf_check_"))
    results, predictions = {}, {}
    for label, extra in (("invariant coupling", {}), ("odd coupling", {"odd_couplings": {"0-1": ["H"]}})):
        cfg = parse_config({
            "model": {"family": "multistate", "backbone": "bpnn", "hidden": [16, 16], "n_radial": 6,
                      "zetas": [1.0, 4.0], "cutoff": 5.0, **extra},
            "data": {"n_train": n - n_val - n_test, "n_val": n_val, "n_test": n_test, "split_seed": 0},
            "loss": {"energy_weight": 1.0, "force_weight": 1.0, "smoothness_weight": 1e-3},
            "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.05},
            "epochs": args.epochs, "batch_size": 8, "checkpoint_every": args.epochs, "seed": 0,
        })
        run_dir = out_dir / label.split()[0]
        if args.reuse:
            model, params, _ = load_run(run_dir)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            seconds = metrics.get("train_seconds_this_call")
        else:
            res = train(cfg, run_dir, data=ds, progress=True)
            model, params, metrics, seconds = res.model, res.params, res.metrics, res.seconds
        _, _, test = split_data(ds, cfg.data)
        is_test = np.isin(np.arange(n), [int(np.flatnonzero(np.all(ds.R == r, axis=(1, 2)))[0]) for r in test.R])
        E, d_model = model_couplings(model, params, ds.R)
        dense_gap = c2v_scan_gap(model, params, np.linspace(50.0, 56.0, 601))
        cos, ratio = compare(d_model, d_ref)
        near = gap_ref < 0.3  # where the coupling matters and is large
        c2v = np.isclose(delta, 0.0)
        gap_model = E[:, 1] - E[:, 0]
        results[label] = {
            "model": model.name, "train_seconds": seconds, "test_states": metrics["test"]["states"],
            "nac_abs_cos": {"median_all": float(np.median(cos)), "median_gap_below_0.3_eV": float(np.median(cos[near])),
                            "median_test": float(np.median(cos[is_test]))},
            "nac_size_ratio_model_over_ref": {"median_all": float(np.median(ratio)),
                                              "median_gap_below_0.3_eV": float(np.median(ratio[near]))},
            "c2v_line": {"min_gap_model_eV": float(gap_model[c2v].min()), "min_gap_reference_eV": float(gap_ref[c2v].min()),
                         "angle_of_min_gap_model_deg": float(angle[c2v][np.argmin(gap_model[c2v])]),
                         "angle_of_min_gap_reference_deg": float(angle[c2v][np.argmin(gap_ref[c2v])]),
                         "min_gap_model_dense_scan_eV": float(dense_gap.min()),
                         "dense_scan": "r1 = r2 = 2.05 Å, 50-56° in 0.01° steps"},
        }
        predictions[label] = (gap_model, d_model, cos)
        print(f"{label}: test RMSE S0/S1 {metrics['test']['states'][0]['energy_rmse_meV']:.1f}/"
              f"{metrics['test']['states'][1]['energy_rmse_meV']:.1f} meV; dense C2v min gap {dense_gap.min():.2e} eV; "
              f"NAC |cos| median "
              f"{np.median(cos):.3f} (gap < 0.3 eV: {np.median(cos[near]):.3f}); C2v min gap "
              f"{gap_model[c2v].min():.4f} eV (reference {gap_ref[c2v].min():.4f})", flush=True)

    deltas = np.unique(np.round(delta, 4))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for k, dl in enumerate(deltas):
        sel = np.isclose(delta, dl)
        order = np.argsort(angle[sel])
        x = angle[sel][order]
        axes[0].plot(x, gap_ref[sel][order], "o", color=f"C{k}", mfc="none", label=f"SA-CASSCF, δ = {dl:g} Å")
        axes[2].plot(x, np.linalg.norm(d_ref[sel].reshape(sel.sum(), -1), axis=1)[order], "o", color=f"C{k}", mfc="none")
        for label, ls in (("invariant coupling", ":"), ("odd coupling", "-")):
            gap_model, d_model, cos = predictions[label]
            axes[0].plot(x, gap_model[sel][order], ls, color=f"C{k}")
            axes[1].plot(x, cos[sel][order], ls, color=f"C{k}", label=f"{label}, δ = {dl:g} Å")
            axes[2].plot(x, np.linalg.norm(d_model[sel].reshape(sel.sum(), -1), axis=1)[order], ls, color=f"C{k}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("S0/S1 gap [eV] (points: reference; solid: odd, dotted: invariant)")
    axes[1].set_ylabel("|cos(d01 model, d01 SA-CASSCF)|")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("|d01| [1/Å]")
    for ax in axes:
        ax.set_xlabel("H–Ca–H [°]")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6)
    fig.suptitle("CaH2 around the 1A1/1B2 intersection: models trained on SA-CASSCF energies and forces only", fontsize=10)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "cah2_casscf_check.png", dpi=110)
    plt.close(fig)
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    save("cah2_casscf_check", {"data": full.metadata.get("level"), "n_frames": n, "epochs": args.epochs,
                               "models": results, "load": load, "machine": machine_info()})
    rows = ["| model | test RMSE S0 / S1 [meV] | NAC \\|cos\\| median (gap < 0.3 eV) | \\|d\\| model/ref median | "
            "C2v min gap on the grid, model / ref [eV] | min gap, dense C2v scan [eV] |", "|---|---|---|---|---|---|"]
    for label, r in results.items():
        t = r["test_states"]
        rows.append(f"| {label} | {t[0]['energy_rmse_meV']:.1f} / {t[1]['energy_rmse_meV']:.1f} | "
                    f"{r['nac_abs_cos']['median_all']:.3f} ({r['nac_abs_cos']['median_gap_below_0.3_eV']:.3f}) | "
                    f"{r['nac_size_ratio_model_over_ref']['median_all']:.2f} | "
                    f"{r['c2v_line']['min_gap_model_eV']:.4f} / {r['c2v_line']['min_gap_reference_eV']:.4f} | "
                    f"{r['c2v_line']['min_gap_model_dense_scan_eV']:.1e} |")
    update_readme_section("cah2_casscf_check", f"CaH2 diabatic models vs SA-CASSCF couplings ({n} frames, "
                          f"{args.epochs} epochs; load: {load})",
                          "\n".join(rows) + "\n\n![CaH2 vs SA-CASSCF](results/cah2_casscf_check.png)")


if __name__ == "__main__":
    main()
