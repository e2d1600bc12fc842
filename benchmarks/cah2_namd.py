"""CaH2 beyond Born–Oppenheimer: ≥ 1000 FSSH trajectories after vertical excitation to S1.

Loads the trained two-state CaH2 model (``benchmarks/train_cah2.py`` writes ``runs/cah2``),
relaxes its S0 minimum, samples the 0 K harmonic Wigner distribution of S0 (zero-point
motion), puts every trajectory on S1 (vertical excitation) and runs fewest-switches surface
hopping with energy-based decoherence. Reports the S1 population vs time (with a fitted
exponential lifetime when it decays), hop statistics, the per-trajectory distribution of
max |E_tot(t) − E_tot(0)|, and how many trajectories leave the geometry range the model was
trained on (Ca–H and H–H distances of the shipped data), where its surfaces are extrapolation.

    nice -n 10 python benchmarks/cah2_namd.py [--run runs/cah2] [--n-traj 1024] [--dt 0.5] [--steps 6000]

Writes ``benchmarks/results/cah2_namd.{json,png}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, save  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _distances(R):
    """Ca–H [..., 2] and H–H [...] distances (Å) of CaH2 geometries [..., 3, 3] (Ca first)."""
    R = np.asarray(R)
    return np.linalg.norm(R[..., 1:, :] - R[..., :1, :], axis=-1), np.linalg.norm(R[..., 1, :] - R[..., 2, :], axis=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/cah2", help="trained multistate CaH2 run (benchmarks/train_cah2.py)")
    ap.add_argument("--n-traj", type=int, default=1024)
    ap.add_argument("--dt", type=float, default=0.5, help="fs")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--stride", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from qdyn import elements, enable_x64

    enable_x64()
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdyn.cli.namd_cmds import start_structure
    from qdyn.data import load_shipped
    from qdyn.namd import minimize_adiabatic, normal_mode_sampler, report, run_fssh
    from qdyn.train import load_run

    t_wall = time.perf_counter()
    model, params, _ = load_run(args.run)
    R_start, system = start_structure(model, None, 0)
    W_fn = report.multistate_diabatic_fn(model, system)
    Z = np.asarray(system.species)
    t0 = time.perf_counter()
    R0 = minimize_adiabatic(W_fn, params, np.asarray(R_start), state=0)
    E0 = np.asarray(model.adiabatic(params, R0, system))
    W0 = np.asarray(W_fn(params, R0))
    sampler = normal_mode_sampler(W_fn, params, R0, Z, distribution="wigner", temperature_K=0.0)
    t_prep = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = run_fssh(W_fn, params, masses=[elements.mass(int(z)) for z in Z], dt_fs=args.dt, n_steps=args.steps,
                   key=jax.random.PRNGKey(args.seed), initial_state=1, n_traj=args.n_traj, sampler=sampler,
                   stride=args.stride, n_substeps=20, decoherence="edc", frustrated="keep", progress=True)
    t_run = time.perf_counter() - t0

    fit = report.fit_exponential_decay(res.time_fs, res.active_fraction[:, 1])
    energy = report.energy_conservation(res)
    hops = report.hop_summary(res)

    # the training data's geometric range: beyond it the surfaces are extrapolation
    ds = load_shipped("CaH2")
    dCaH, dHH = _distances(ds.R)
    fin_CaH, fin_HH = _distances(res.final_state.R)
    outside = (fin_CaH.min(axis=1) < dCaH.min()) | (fin_CaH.max(axis=1) > dCaH.max()) | (fin_HH < dHH.min())
    dE = np.abs(res.total - res.total[:1]).max(axis=0)
    domain = {"training_CaH_range_A": [float(dCaH.min()), float(dCaH.max())],
              "training_HH_min_A": float(dHH.min()),
              "final_outside_training_range": int(outside.sum()),
              "max_abs_dE_median_inside_eV": float(np.median(dE[~outside])) if (~outside).any() else None,
              "max_abs_dE_max_inside_eV": float(dE[~outside].max()) if (~outside).any() else None,
              "accepted_hops_in_outside_trajectories": int(np.asarray(res.accepted)[outside].sum()),
              "S1_final_active_fraction_inside": float((res.active[-1, ~outside] == 1).mean())
              if (~outside).any() else None}
    S1_inside = (res.active[:, ~outside] == 1).mean(axis=1) if (~outside).any() else None

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.3))
    t = res.time_fs
    ax.plot(t, res.active_fraction[:, 1], "C3", lw=1.8, label="S1 active fraction")
    ax.plot(t, res.coefficient_population[:, 1], "--", color="C3", lw=1.2, label="S1 mean |c|²")
    ax.plot(t, res.active_fraction[:, 0], "C0", lw=1.8, label="S0 active fraction")
    ax.plot(t, res.coefficient_population[:, 0], "--", color="C0", lw=1.2, label="S0 mean |c|²")
    if S1_inside is not None:
        ax.plot(t, S1_inside, color="C1", lw=1.2,
                label=f"S1, the {int((~outside).sum())} trajectories ending in the training range")
    if fit is not None:
        ax.plot(t, fit["p_inf"] + (fit["p0"] - fit["p_inf"]) * np.exp(-t / fit["tau_fs"]), "k:", lw=1.5,
                label=f"fit: τ = {fit['tau_fs']:.0f} ± {fit['tau_std_fs']:.0f} fs, P∞ = {fit['p_inf']:.2f}")
    ax.set_xlabel("time [fs]")
    ax.set_ylabel("population")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"CaH2 after S0→S1 vertical excitation ({E0[1] - E0[0]:.2f} eV): "
                 f"{args.n_traj} FSSH trajectories, EDC", fontsize=9)
    ax.legend(fontsize=8)
    bins = np.logspace(np.log10(max(dE.min(), 1e-8)), np.log10(max(dE.max(), 1e-6)), 40)
    ax2.hist(dE[~outside], bins=bins, color="C2", alpha=0.8, label="ended in the training range")
    ax2.hist(dE[outside], bins=bins, color="C1", alpha=0.8, label="ended outside it (extrapolation)")
    ax2.set_xscale("log")
    ax2.set_xlabel("max |E_tot(t) − E_tot(0)| per trajectory [eV]")
    ax2.set_ylabel("trajectories")
    ax2.set_title(f"energy conservation, dt = {args.dt} fs, {args.steps} steps", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "cah2_namd.png", dpi=110)
    plt.close(fig)

    keep = slice(None, None, max(1, len(t) // 300))
    out = {
        "run": args.run, "model": model.name,
        "settings": {"n_traj": args.n_traj, "dt_fs": args.dt, "steps": args.steps, "time_fs": args.steps * args.dt,
                     "stride": args.stride, "substeps": 20, "decoherence": "edc", "frustrated": "keep",
                     "sampling": "wigner 0 K of S0", "initial_state": 1, "seed": args.seed},
        "S0_minimum": {"R_A": R0.tolist(), "adiabatic_eV": E0.tolist(), "vertical_excitation_eV": float(E0[1] - E0[0]),
                       "diabatic_coupling_eV": float(W0[0, 1])},
        "S1_final_active_fraction": float(res.active_fraction[-1, 1]),
        "S1_final_coefficient_population": float(res.coefficient_population[-1, 1]),
        "lifetime_fit": fit, "hops": hops, "energy_conservation": energy, "training_domain": domain,
        "populations": {"time_fs": t[keep].tolist(), "S1_active_fraction": res.active_fraction[keep, 1].tolist(),
                        "S1_coefficient_population": res.coefficient_population[keep, 1].tolist()},
        "timings": {"prepare_s": t_prep, "fssh_s": t_run, "traj_steps_per_s": args.n_traj * args.steps / t_run,
                    "wall_s": time.perf_counter() - t_wall},
        "machine": machine_info(),
    }
    save("cah2_namd", out)
    print(f"S1 active fraction after {args.steps * args.dt:.0f} fs: {res.active_fraction[-1, 1]:.3f}; "
          f"hops {hops}; lifetime fit {fit}; max|ΔE| median {energy['max_abs_dE_per_traj_eV']['median']:.2e} eV, "
          f"max {energy['max_abs_dE_per_traj_eV']['max']:.2e} eV; "
          f"outside training range {domain['final_outside_training_range']}; "
          f"FSSH {t_run:.0f} s")


if __name__ == "__main__":
    main()
