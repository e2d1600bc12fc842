"""CaH2 near its S0/S1 conical intersection: diabatic models against SA-CASSCF couplings.

Trains two-state multistate models on the S0/S1 energies, forces and nonadiabatic couplings of
the shipped SA-CASSCF set (``shipped:CaH2_casscf``: bend x antisymmetric stretch around the
1A1/1B2 intersection, the C2v line through it at 0.5 degree steps, the C2v plane at three bond
lengths, the Franck-Condon region): one with the default invariant coupling and one with
``odd_couplings {"0-1": [H]}``, both with the NAC term of the loss (``loss.nac_weight``:
h_01 = (E1 - E0) d_01 up to its sign), and, as an ablation, the odd model without it. Then
compares on every frame (held-out frames marked) the model's d_01 (from its diabatic matrix,
:func:`qdyn.namd.electronic_structure`) with the reference SA-CASSCF d_01: direction (|cos|:
the sign of a coupling is a gauge) and size; and on dense C2v scans (r1 = r2 = 1.95, 2.05,
2.2 Angstrom) the S0/S1 gap: where and how deep it closes, against the apex of the V that
straight lines through the reference points on each side make.

    nice -n 15 python benchmarks/cah2_casscf_check.py [--epochs 4000] [--nac-weight 1] [--out runs/casscf_check]
        [--no-ablation]

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

    extras = {k: (v[:, :2, :2] if k == "nacs_states" else v) for k, v in ds.extras.items()}
    return Dataset(R=ds.R, Z=ds.Z, E=ds.E, F=ds.F, E_states=ds.E_states[:, :2], F_states=ds.F_states[:, :2],
                   extras=extras, metadata=ds.metadata, source=ds.source)


def grid_coordinates(R):
    """(H–Ca–H angle [°], delta = (r1 − r2)/2 [Å], r = (r1 + r2)/2 [Å]) of [n, 3, 3] geometries."""
    u = R[:, 1:] - R[:, :1]
    r = np.linalg.norm(u, axis=-1)
    angle = np.degrees(np.arccos(np.clip(np.sum(u[:, 0] * u[:, 1], -1) / (r[:, 0] * r[:, 1]), -1, 1)))
    return angle, 0.5 * (r[:, 0] - r[:, 1]), 0.5 * (r[:, 0] + r[:, 1])


def _line(x, y):
    """Least-squares line ((slope, intercept), sum of squared residuals)."""
    coef = np.polyfit(x, y, 1)
    return coef, float(np.sum((np.polyval(coef, x) - y) ** 2))


def v_apex(x, gap, *, window=3.0):
    """Apex of the V that two straight lines make through points (x, gap) within ``window`` of
    the smallest gap: the split into a falling left and a rising right branch (two points at
    least each) with the least squared residual. Returns (x_apex, gap_apex, slope_left,
    slope_right); gap_apex ≈ 0 for a true crossing, > 0 for a rounded (avoided) one."""
    order = np.argsort(x)
    x, gap = np.asarray(x)[order], np.asarray(gap)[order]
    near = np.abs(x - x[np.argmin(gap)]) <= window
    x, gap = x[near], gap[near]
    best = None
    for k in range(2, len(x) - 1):
        (m1, b1), sse1 = _line(x[:k], gap[:k])
        (m2, b2), sse2 = _line(x[k:], gap[k:])
        sse = sse1 + sse2
        if m1 < 0 < m2 and (best is None or sse < best[0]):
            xa = (b2 - b1) / (m1 - m2)
            best = (sse, float(xa), float(m1 * xa + b1), float(m1), float(m2))
    return (np.nan,) * 4 if best is None else best[1:]


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


SEAM_R = (1.95, 2.05, 2.2)  # Å, the C2v bond lengths of the data's bend scans through the apex
DENSE = np.linspace(46.0, 60.0, 1401)  # degrees, 0.01° steps


def reference_seam(angle, delta, r, gap_ref):
    """Per C2v bond length: the reference V's apex (angle, gap, slopes) from the grid points."""
    out = {}
    for rr in SEAM_R:
        sel = np.isclose(delta, 0.0) & np.isclose(r, rr) & (angle < 62)
        if sel.sum() >= 4:
            xa, ga, m1, m2 = v_apex(angle[sel], gap_ref[sel], window=6.5)
            out[f"{rr:g}"] = {"apex_deg": xa, "apex_gap_eV": ga, "slopes_eV_per_deg": [m1, m2],
                              "min_gap_on_grid_eV": float(gap_ref[sel].min()), "points": int(sel.sum())}
    return out


def model_seam(model, params):
    """Per C2v bond length: the model's smallest gap on a dense scan, where, and its V apex;
    and the dense-scan gaps [eV] themselves."""
    out, gaps = {}, {}
    for rr in SEAM_R:
        g = gaps[f"{rr:g}"] = c2v_scan_gap(model, params, DENSE, r=rr)
        k = int(np.argmin(g))
        # the V from the dense scan away from the tip (≥ 0.25° on each side): a cusp extrapolates to ~0
        far = np.abs(DENSE - DENSE[k]) >= 0.25
        xa, ga, m1, m2 = v_apex(DENSE[far], g[far], window=2.0)
        # every dip below 50 meV: a model can cross again where the data stop (r = 2.2 Å has points
        # at 48-57° only)
        dips = np.flatnonzero((g[1:-1] < g[:-2]) & (g[1:-1] < g[2:]) & (g[1:-1] < 0.05)) + 1
        out[f"{rr:g}"] = {"min_gap_eV": float(g[k]), "angle_of_min_deg": float(DENSE[k]), "apex_deg": xa,
                          "apex_gap_eV": ga, "slopes_eV_per_deg": [m1, m2],
                          "dips_below_50meV": [[float(DENSE[j]), float(g[j])] for j in dips]}
    return out, gaps


def compare(d_model, d_ref):
    """|cos| of the angle and |d_model| / |d_ref| per frame (couplings as 9-vectors)."""
    a, b = d_model.reshape(len(d_model), -1), d_ref.reshape(len(d_ref), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.abs(np.sum(a * b, axis=1)) / (na * nb), na / nb


MODELS = (  # label, model settings, whether the loss has the NAC term
    ("invariant coupling", {}, True),
    ("odd coupling", {"odd_couplings": {"0-1": ["H"]}}, True),
    ("odd coupling, no NAC term", {"odd_couplings": {"0-1": ["H"]}}, False),
)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset file (default: shipped CaH2_casscf)")
    ap.add_argument("--epochs", type=int, default=4000)
    ap.add_argument("--nac-weight", type=float, default=1.0,
                    help="loss.nac_weight (dimensionless: h_01 errors over their RMS in the data)")
    ap.add_argument("--energy-weight", type=float, default=10.0,
                    help="loss.energy_weight: the Franck-Condon frames spread the energies over 3.6 eV, so σ_E is "
                         "large and the apex's tens of meV need the weight (1: 35-45 meV test RMSE, no crossing)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="per-element MLP widths")
    ap.add_argument("--out", default=None, help="directory for the runs (default: a temporary one); "
                                                "benchmarks/cah2_conical_namd.py loads them from there")
    ap.add_argument("--reuse", action="store_true", help="load the runs already in --out instead of training "
                                                                  "(the missing ones are trained)")
    ap.add_argument("--no-ablation", action="store_true", help="skip the odd model trained without the NAC term")
    args = ap.parse_args()

    from qdyn import enable_x64

    enable_x64()
    import matplotlib

    matplotlib.use("Agg")

    from qdyn.data import load_shipped, read
    from qdyn.plotting import pyplot, save_figure
    from qdyn.train.config import parse_config
    from qdyn.train.trainer import load_run, split_data, train

    plt = pyplot()
    full = load_shipped("CaH2_casscf") if args.data is None else read(args.data).converged_only()
    ds = two_states(full)
    d_ref = full.extras["nacs_states"][:, 0, 1]
    angle, delta, r_mean = grid_coordinates(full.R)
    gap_ref = full.E_states[:, 1] - full.E_states[:, 0]
    n = ds.n_frames
    n_test, n_val = max(4, n // 6), max(3, n // 10)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="cah2_casscf_check_"))
    ref_seam = reference_seam(angle, delta, r_mean, gap_ref)
    print("reference C2v apex:", {k: (round(v["apex_deg"], 2), round(v["apex_gap_eV"], 4)) for k, v in ref_seam.items()})
    results, predictions = {}, {}
    models = MODELS[:2] if args.no_ablation else MODELS
    for label, extra, with_nac in models:
        cfg = parse_config({
            "model": {"family": "multistate", "backbone": "bpnn", "hidden": list(args.hidden), "n_radial": 6,
                      "zetas": [1.0, 4.0], "cutoff": 5.0, "core_radii": "auto", **extra},
            "data": {"n_train": n - n_val - n_test, "n_val": n_val, "n_test": n_test, "split_seed": 0},
            "loss": {"energy_weight": args.energy_weight, "force_weight": 1.0, "smoothness_weight": 1e-3,
                     "nac_weight": args.nac_weight if with_nac else 0.0},
            "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.05},
            "epochs": args.epochs, "batch_size": 8, "checkpoint_every": args.epochs, "seed": 0,
        })
        run_dir = out_dir / ("odd_no_nac" if not with_nac else label.split()[0])
        if args.reuse and (run_dir / "metrics.json").exists():
            model, params, _ = load_run(run_dir)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            seconds = metrics.get("train_seconds_this_call")
        else:
            res = train(cfg, run_dir, data=ds, progress=True)
            model, params, metrics, seconds = res.model, res.params, res.metrics, res.seconds
        _, _, test = split_data(ds, cfg.data)
        is_test = np.isin(np.arange(n), [int(np.flatnonzero(np.all(ds.R == r, axis=(1, 2)))[0]) for r in test.R])
        E, d_model = model_couplings(model, params, ds.R)
        seam, dense_gaps = model_seam(model, params)
        cos, ratio = compare(d_model, d_ref)
        near = gap_ref < 0.3  # where the coupling matters and is large
        gap_model = E[:, 1] - E[:, 0]
        results[label] = {
            "model": model.name, "nac_weight": cfg.loss.nac_weight, "train_seconds": seconds,
            "test_states": metrics["test"]["states"],
            "nac_abs_cos": {"median_all": float(np.median(cos)), "median_gap_below_0.3_eV": float(np.median(cos[near])),
                            "median_test": float(np.median(cos[is_test])),
                            "median_c2v_frames": float(np.median(cos[np.isclose(delta, 0.0)]))},
            "nac_size_ratio_model_over_ref": {"median_all": float(np.median(ratio)),
                                              "median_gap_below_0.3_eV": float(np.median(ratio[near]))},
            "c2v_seam": seam, "dense_scan": "r1 = r2 = r, 46-60° in 0.01° steps",
        }
        predictions[label] = (dense_gaps, d_model, cos)
        s05 = seam["2.05"]
        print(f"{label}: test RMSE S0/S1 {metrics['test']['states'][0]['energy_rmse_meV']:.1f}/"
              f"{metrics['test']['states'][1]['energy_rmse_meV']:.1f} meV; NAC |cos| median {np.median(cos):.3f} "
              f"(gap < 0.3 eV: {np.median(cos[near]):.3f}); r = 2.05 C2v: min gap {s05['min_gap_eV']:.2e} eV at "
              f"{s05['angle_of_min_deg']:.2f}° (reference apex {ref_seam['2.05']['apex_deg']:.2f}°)", flush=True)

    plot(plt, save_figure, angle, delta, r_mean, gap_ref, d_ref, predictions)
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    save("cah2_casscf_check", {"data": full.metadata.get("level"), "n_frames": n, "epochs": args.epochs,
                               "reference_c2v_seam": ref_seam, "models": results, "load": load,
                               "machine": machine_info()})
    update_readme_section("cah2_casscf_check", f"CaH2 diabatic models vs SA-CASSCF couplings ({n} frames, "
                          f"{args.epochs} epochs, energy weight {args.energy_weight:g}, NAC weight {args.nac_weight:g}, hidden "
                          f"{args.hidden}; load: {load})",
                          readme_table(results, ref_seam) + "\n\n![CaH2 vs SA-CASSCF](results/cah2_casscf_check.png)")


def readme_table(results, ref_seam):
    rows = ["| model | test RMSE S0 / S1: energy [meV], force [meV/Å] | NAC \\|cos\\| median: all / gap < 0.3 eV / "
            "test / C2v | smallest C2v gap, dense scan r = 2.05 Å [meV] (at °) | C2v gap minima < 50 meV, "
            "r = 1.95 / 2.05 / 2.2 Å: ° (meV) |",
            "|---|---|---|---|---|"]
    ref = " / ".join(f"{ref_seam[k]['apex_deg']:.2f}" for k in ref_seam)
    rows.append(f"| SA-CASSCF reference (V fit to the grid) | – | – | "
                f"{1e3 * ref_seam['2.05']['apex_gap_eV']:.1f} at the apex (grid minimum "
                f"{1e3 * ref_seam['2.05']['min_gap_on_grid_eV']:.0f}) | {ref} |")
    for label, r in results.items():
        t, c, s = r["test_states"], r["nac_abs_cos"], r["c2v_seam"]
        rows.append(f"| {label} | {t[0]['energy_rmse_meV']:.1f} / {t[1]['energy_rmse_meV']:.1f}, "
                    f"{t[0]['force_rmse_meV_per_A']:.0f} / {t[1]['force_rmse_meV_per_A']:.0f} | "
                    f"{c['median_all']:.2f} / {c['median_gap_below_0.3_eV']:.2f} / {c['median_test']:.2f} / "
                    f"{c['median_c2v_frames']:.2f} | {1e3 * s['2.05']['min_gap_eV']:.2g} "
                    f"({s['2.05']['angle_of_min_deg']:.2f}) | "
                    + " / ".join(", ".join(f"{a:.2f} ({1e3 * g:.2g})" for a, g in s[k]["dips_below_50meV"]) or "none"
                                 for k in s) + " |")
    return "\n".join(rows)


def plot(plt, save_figure, angle, delta, r_mean, gap_ref, d_ref, predictions):
    """Gap along the C2v line (reference points, model dense scans) and, near the apex, the
    coupling's direction and size against the reference, per antisymmetric displacement."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    styles = {"invariant coupling": ":", "odd coupling": "-", "odd coupling, no NAC term": "--"}
    for k, rr in enumerate(SEAM_R):
        c2v = np.isclose(delta, 0.0) & np.isclose(r_mean, rr) & (angle < 62)
        axes[0].plot(angle[c2v], gap_ref[c2v], "o", color=f"C{k}", mfc="none", label=f"SA-CASSCF, r = {rr:g} Å")
        for label, (dense_gaps, _, _) in predictions.items():
            axes[0].plot(DENSE, dense_gaps[f"{rr:g}"], styles[label], color=f"C{k}", lw=1,
                         label=label if k == 1 else None)
    axes[0].legend(fontsize=6)
    ax0 = axes[0]
    ax0.set_yscale("log")
    ax0.set_ylim(1e-5, 2.0)
    ax0.set_xlim(DENSE[0], DENSE[-1])
    ax0.set_ylabel("S0/S1 gap on the C2v line [eV]")
    region = (angle < 62) & np.isclose(r_mean, 2.05)
    deltas = np.unique(np.round(np.abs(delta[region]), 4))
    for k, dl in enumerate(deltas):
        sel = region & np.isclose(np.abs(delta), dl)
        order = np.argsort(angle[sel])
        x = angle[sel][order]
        axes[2].plot(x, np.linalg.norm(d_ref[sel].reshape(sel.sum(), -1), axis=1)[order], "o", color=f"C{k}",
                     mfc="none", label=f"SA-CASSCF, |δ| = {dl:g} Å")
        for label, (_, d_model, cos) in predictions.items():
            axes[1].plot(x, cos[sel][order], styles[label], color=f"C{k}", label=f"{label}, |δ| = {dl:g} Å")
            axes[2].plot(x, np.linalg.norm(d_model[sel].reshape(sel.sum(), -1), axis=1)[order], styles[label],
                         color=f"C{k}")
    axes[1].set_ylabel("|cos(d01 model, d01 SA-CASSCF)|")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("|d01| [1/Å] (points: reference)")
    for ax in axes:
        ax.set_xlabel("H–Ca–H [°]")
    axes[1].legend(fontsize=6)
    axes[2].legend(fontsize=7)
    fig.suptitle("CaH2 around the 1A1/1B2 intersection: models trained on SA-CASSCF energies, forces (and NACs)",
                 fontsize=10)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    save_figure(fig, RESULTS / "cah2_casscf_check.png", dpi=110)


if __name__ == "__main__":
    main()
