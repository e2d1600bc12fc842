"""CaH2 surface hopping: the invariant-coupling model beside the odd-coupling one, same start.

Two multistate models trained on the same data with the same settings (by default the
SA-CASSCF pair of ``benchmarks/cah2_casscf_check.py --out runs/casscf_check``: energies,
forces and nonadiabatic couplings; the TDA-B3LYP pair of ``benchmarks/train_cah2.py [--odd-coupling]``
with ``--invariant runs/cah2 --odd runs/cah2_odd``) differ only in the symmetry of their S0/S1
coupling: invariant under H1 <-> H2 (the S0/S1 crossing on the C2v
plane becomes a narrow avoided one) or odd (a true conical intersection). From the *same*
initial conditions (the harmonic Wigner distribution of the first model's S0 minimum at each
temperature, vertical excitation to S1, the same PRNG keys) both run fewest-switches surface
hopping; reported per model: the S1 active fraction vs time, the decay time with its
uncertainty from a bootstrap over trajectories (:func:`qdyn.namd.report.bootstrap_decay`), and
where the S1 -> S0 hops happen (angle, gap).

    nice -n 15 python benchmarks/cah2_conical_namd.py [--invariant runs/casscf_check/invariant]
        [--odd runs/casscf_check/odd] [--n-traj 256] [--temperatures 2000] [--steps 5000]

Writes ``benchmarks/results/cah2_conical_namd.{json,png}`` and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, save, update_readme_section  # noqa: E402
from cah2_namd import _distances, hop_geometry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def load_uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def coverage_coordinates(R):
    """[..., 3] (shorter Ca–H, longer Ca–H, H–H) [Å] of CaH2 geometries [..., 3, 3]: lengths that
    do not depend on which H is which, to compare a trajectory frame with the data frames."""
    dCaH, dHH = _distances(R)
    return np.stack([dCaH.min(-1), dCaH.max(-1), dHH], axis=-1)


def data_coverage(res, data_R, hop_raw_mask, *, far_A=0.3):
    """Where the trajectories leave the training data. A trajectory *leaves the data range* when
    a recorded frame has a Ca–H longer than the longest (or shorter than the shortest) in the
    data; a frame is *far from the data* when the nearest data frame differs by more than
    ``far_A`` in (shorter Ca–H, longer Ca–H, H–H) (Euclidean, Å). Reported over all frames, over
    the frames before S1 -> S0 hops, and per trajectory up to its first S1 -> S0 hop."""
    from scipy.spatial import cKDTree

    data = coverage_coordinates(data_R)
    lo, hi = float(data[:, 0].min()), float(data[:, 1].max())
    q = coverage_coordinates(res.positions)  # [F, N, 3]
    tree = cKDTree(data)
    spacing = tree.query(data, k=2)[0][:, 1]
    dist, _ = tree.query(q.reshape(-1, 3))
    dist = dist.reshape(q.shape[:2])
    out_range = (q[..., 0] < lo) | (q[..., 1] > hi)
    hop_f, hop_n = np.nonzero(hop_raw_mask)
    first_hop = np.full(q.shape[1], q.shape[0])
    for f, n in zip(hop_f[::-1], hop_n[::-1]):
        first_hop[n] = f
    before = np.arange(q.shape[0])[:, None] <= first_hop[None, :]
    return {
        "data_CaH_range_A": [lo, hi], "far_threshold_A": far_A,
        # the data's own spacing, to read the distances below against: each frame's nearest other frame
        "data_nearest_other_frame_A": {"median": float(np.median(spacing)), "p90": float(np.percentile(spacing, 90))},
        "trajectories_leaving_range": float(out_range.any(0).mean()),
        "trajectories_beyond_longest_CaH": float((q[..., 1] > hi).any(0).mean()),
        "trajectories_below_shortest_CaH": float((q[..., 0] < lo).any(0).mean()),
        "trajectories_beyond_longest_CaH_on_S1": float(((q[..., 1] > hi) & (res.active == 1)).any(0).mean()),
        "trajectories_beyond_5A_cutoff": float((q[..., 1] > 5.0).any(0).mean()),
        "first_exit_time_fs": {"median": float(np.median(res.time_fs[np.argmax(out_range, 0)][out_range.any(0)]))}
        if out_range.any() else None,
        "trajectories_leaving_range_before_first_S1_to_S0_hop": float((out_range & before).any(0).mean()),
        "trajectories_far_from_data": float((dist > far_A).any(0).mean()),
        "trajectories_far_before_first_S1_to_S0_hop": float(((dist > far_A) & before).any(0).mean()),
        "frames_far_from_data": float((dist > far_A).mean()),
        "hops_S1_to_S0_far_from_data": float((dist[hop_f, hop_n] > far_A).mean()) if len(hop_f) else None,
        "hops_S1_to_S0_outside_range": float(out_range[hop_f, hop_n].mean()) if len(hop_f) else None,
        "hop_nearest_data_A": {"median": float(np.median(dist[hop_f, hop_n])),
                               "p90": float(np.percentile(dist[hop_f, hop_n], 90))} if len(hop_f) else None,
        "max_CaH_A": {"median_over_trajectories": float(np.median(q[..., 1].max(0))),
                      "p90": float(np.percentile(q[..., 1].max(0), 90))},
    }


def reference_near(data, R0):
    """The data frame nearest ``R0`` in (shorter Ca–H, longer Ca–H, H–H): its distance [Å] and
    reference S0/S1 gap [eV], to set beside the models' gaps at their minimum."""
    d = np.linalg.norm(coverage_coordinates(data.R) - coverage_coordinates(np.asarray(R0)[None])[0], axis=-1)
    i = int(np.argmin(d))
    return {"frame": i, "distance_A": float(d[i]), "gap_eV": float(data.E_states[i, 1] - data.E_states[i, 0]),
            "geometry": dict(zip(("r_short_A", "r_long_A", "HH_A"), coverage_coordinates(data.R[i]).tolist()))}


def initial_conditions(W_fn, params, R0, Z, temperature_K, n, key):
    """[n, A, 3] positions (Å) and velocities (Å/fs) from the harmonic Wigner distribution of S0."""
    import jax

    from qdyn.namd import normal_mode_sampler

    sample = normal_mode_sampler(W_fn, params, R0, Z, distribution="wigner", temperature_K=temperature_K)
    pairs = [sample(k) for k in jax.random.split(key, n)]
    return np.stack([np.asarray(r) for r, _ in pairs]), np.stack([np.asarray(v) for _, v in pairs])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invariant", default="runs/casscf_check/invariant", help="run of the invariant-coupling model")
    ap.add_argument("--odd", default="runs/casscf_check/odd", help="run of the odd-coupling model")
    ap.add_argument("--no-nac", default=None, help="optional run of the odd model trained without the NAC term "
                                                   "(cah2_casscf_check.py's ablation): a third column")
    ap.add_argument("--data", default="CaH2_casscf", help="shipped set the models were trained on (coverage flags)")
    ap.add_argument("--surfaces", default="SA-CASSCF (shipped:CaH2_casscf): energies, forces and NACs",
                    help="what both models were trained on (recorded with the numbers)")
    ap.add_argument("--n-traj", type=int, default=256)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[2000.0],
                    help="K, vibrational temperature of the S0 Wigner distribution (the decay is activated)")
    ap.add_argument("--dt", type=float, default=0.1, help="fs (docs/namd.md: 0.5 fs loses energy at the funnel)")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--stride", type=int, default=20, help="steps between recorded frames")
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples of the trajectories")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from qdyn import elements, enable_x64

    enable_x64()
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdyn.cli.namd_cmds import start_structure
    from qdyn.md.adapters import diabatic_fn
    from qdyn.namd import minimize_adiabatic, report, run_fssh
    from qdyn.plotting import save_figure
    from qdyn.train import load_run

    t_wall = time.perf_counter()
    models = {}
    from qdyn.data import load_shipped

    data = load_shipped(args.data)
    data_R = data.R
    runs = [("invariant coupling", args.invariant), ("odd coupling", args.odd)]
    if args.no_nac:
        runs.append(("odd coupling, no NAC term", args.no_nac))
    for label, run in runs:
        model, params, _ = load_run(run)
        models[label] = (model, params, run)
    model0, params0, _ = models["invariant coupling"]
    R_start, system = start_structure(model0, None, 0)
    Z = np.asarray(system.species)
    masses = [elements.mass(int(z)) for z in Z]
    W0 = diabatic_fn(model0, system)
    R0 = minimize_adiabatic(W0, params0, np.asarray(R_start), state=0)

    out_T, curves = [], []
    for T in args.temperatures:
        key_ic, key_run = jax.random.split(jax.random.PRNGKey(args.seed + int(T)))
        R_init, V_init = initial_conditions(W0, params0, R0, Z, T, args.n_traj, key_ic)
        per_model = {}
        for label, (model, params, run) in models.items():
            W_fn = diabatic_fn(model, system)
            t0 = time.perf_counter()
            res = run_fssh(W_fn, params, masses=masses, dt_fs=args.dt, n_steps=args.steps, key=key_run,
                           initial_state=1, R0=R_init, V0=V_init, stride=args.stride, n_substeps=20,
                           decoherence="edc", frustrated="keep", keep_positions=True, progress=None)
            seconds = time.perf_counter() - t0
            boot = report.bootstrap_decay(res.time_fs, res.active, state=1, n_boot=args.n_boot, seed=args.seed)
            where, raw = hop_geometry(res, args.stride * args.dt)
            change = res.active[:-1] != res.active[1:]
            coverage = data_coverage(res, data_R, change & (res.active[:-1] == 1))
            E_start = np.asarray(res.energies[0])
            per_model[label] = {
                "run": run, "model": model.name,
                "start_gap_eV": {"mean": float(np.mean(E_start[:, 1] - E_start[:, 0]))},
                "S1_final_active_fraction": float(res.active_fraction[-1, 1]),
                "decay_bootstrap": boot, "hops": report.hop_summary(res), "hop_geometry": where, "coverage": coverage,
                "energy_conservation_median_eV": report.energy_conservation(res)["max_abs_dE_per_traj_eV"]["median"],
                "fssh_s": seconds,
                "populations": {"time_fs": res.time_fs.tolist(), "S1_active_fraction": res.active_fraction[:, 1].tolist()},
            }
            curves.append((T, label, res, boot, raw))
            tau = "no decay" if boot is None else (f"τ = {boot['tau_fs']:.0f} fs (bootstrap 95 %: "
                                                   f"{boot.get('tau_p2_5_fs', np.nan):.0f}–{boot.get('tau_p97_5_fs', np.nan):.0f})")
            print(f"T = {T:g} K, {label}: S1 {res.active_fraction[-1, 1]:.3f} after {args.steps * args.dt:g} fs, {tau}, "
                  f"S1→S0 hops {where['S1_to_S0']['count']}, {seconds:.0f} s; trajectories leaving the data's Ca–H "
                  f"range {coverage['trajectories_leaving_range']:.3f}, hops far from data "
                  f"{coverage['hops_S1_to_S0_far_from_data']}", flush=True)
        out_T.append({"temperature_K": T, "models": per_model})

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colours = {"invariant coupling": "C0", "odd coupling": "C3", "odd coupling, no NAC term": "C2"}
    styles = ["-", "--", ":"]
    for T, label, res, boot, raw in curves:
        ls = styles[args.temperatures.index(T) % 3]
        lab = f"{label}, {T:g} K" + ("" if boot is None else f": τ = {boot['tau_fs']:.0f} ± {boot.get('tau_std_fs', 0):.0f} fs")
        axes[0].plot(res.time_fs, res.active_fraction[:, 1], ls, color=colours[label], label=lab)
        gaps = raw["S1_to_S0"]["gap_eV"]
        if gaps.size:
            axes[1].hist(np.clip(gaps, 1e-3, None), bins=np.logspace(-3, 0.5, 36), color=colours[label], alpha=0.5,
                         label=f"{label}, {T:g} K ({gaps.size} hops)")
    axes[0].set_xlabel("time [fs]")
    axes[0].set_ylabel("S1 active fraction")
    axes[0].set_title(f"CaH2, same {args.n_traj} initial conditions per temperature (± = bootstrap std)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("S0/S1 gap at the recorded frame before an S1→S0 hop [eV]")
    axes[1].set_ylabel("hops")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    save_figure(fig, RESULTS / "cah2_conical_namd.png", dpi=110)

    load = load_uptime()
    out = {"surfaces": args.surfaces, "runs": {k: v[2] for k, v in models.items()},
           "settings": {"n_traj": args.n_traj, "dt_fs": args.dt, "steps": args.steps, "stride": args.stride,
                        "n_boot": args.n_boot, "seed": args.seed, "initial_state": 1, "decoherence": "edc",
                        "frustrated": "keep", "sampling": "harmonic Wigner of the invariant model's S0 minimum, "
                                                          "the same R0, V0 and keys for both models"},
           "S0_minimum_angle_deg": float(np.degrees(np.arccos(np.dot(R0[1] - R0[0], R0[2] - R0[0]) / (
               np.linalg.norm(R0[1] - R0[0]) * np.linalg.norm(R0[2] - R0[0]))))),
           "S0_minimum_CaH_A": np.linalg.norm(R0[1:] - R0[:1], axis=-1).tolist(),
           "reference_at_S0_minimum": reference_near(data, R0),
           "temperatures": out_T, "wall_s": time.perf_counter() - t_wall, "load": load, "machine": machine_info()}
    save("cah2_conical_namd", out)
    rows = ["| T [K] | model | start gap [eV] | S1 at end | τ [fs] (bootstrap std; 95 %) | S1→S0 hops | median gap at hop "
            "[eV] | hop r(Ca–H) short/long [Å] | traj. leaving data's Ca–H range | hops > 0.3 Å from data |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for entry in out_T:
        for label, m in entry["models"].items():
            b = m["decay_bootstrap"]
            tau = "no decay" if b is None else (f"{b['tau_fs']:.0f} ({b.get('tau_std_fs', float('nan')):.0f}; "
                                                f"{b.get('tau_p2_5_fs', float('nan')):.0f}–{b.get('tau_p97_5_fs', float('nan')):.0f})")
            h = m["hop_geometry"]["S1_to_S0"]
            gap = f"{h['gap_eV']['median']:.3f}" if h["count"] else "–"
            geo = f"{h['r_short_A']['median']:.2f} / {h['r_long_A']['median']:.2f}" if h["count"] else "–"
            c = m["coverage"]
            far = "–" if c["hops_S1_to_S0_far_from_data"] is None else f"{c['hops_S1_to_S0_far_from_data']:.0%}"
            rows.append(f"| {entry['temperature_K']:g} | {label} | {m['start_gap_eV']['mean']:.2f} | "
                        f"{m['S1_final_active_fraction']:.3f} | {tau} | {h['count']} | {gap} | {geo} | "
                        f"{c['trajectories_leaving_range']:.1%} | {far} |")
    update_readme_section(
        "cah2_conical_namd", "CaH2 FSSH, invariant vs odd S0/S1 coupling, same initial conditions "
        f"({args.n_traj} trajectories, {args.steps * args.dt:g} fs, dt {args.dt} fs; models trained on {args.surfaces}; "
        f"S0 minimum {out['S0_minimum_angle_deg']:.1f}°, nearest data frame {out['reference_at_S0_minimum']['distance_A']:.2f} Å "
        f"away with reference gap {out['reference_at_S0_minimum']['gap_eV']:.2f} eV; load: {load})",
        "\n".join(rows) + "\n\n![CaH2 invariant vs odd coupling](results/cah2_conical_namd.png)")


if __name__ == "__main__":
    main()
