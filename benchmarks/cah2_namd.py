"""CaH2 beyond Born–Oppenheimer: ≥ 1000 FSSH trajectories after vertical excitation to S1.

Loads the trained two-state CaH2 model (``benchmarks/train_cah2.py`` writes ``runs/cah2``),
relaxes its S0 minimum, samples the harmonic Wigner distribution of S0 at each requested
vibrational temperature (0 K: zero-point motion only), puts every trajectory on S1 (vertical
excitation) and runs fewest-switches surface hopping with energy-based decoherence. Per
ensemble it reports the S1 population vs time (with a fitted exponential lifetime when it
decays), hop statistics and *where* the S1→S0 hops happen (H–Ca–H angle, bonds, adiabatic
gap), what the trajectories end as (CaH2, Ca + H2, CaH + H), the per-trajectory distribution
of max |E_tot(t) − E_tot(0)|, and how many trajectories left the geometries the model was
trained on (shorter Ca–H or H–H than any training frame: there the surfaces are extrapolation).

    nice -n 10 python benchmarks/cah2_namd.py [--run runs/cah2] [--n-traj 1024] [--temperatures 0 1000 2000]

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


def _angle(R):
    """H–Ca–H angle [°] of [..., 3, 3] geometries."""
    u = np.asarray(R)[..., 1:, :] - np.asarray(R)[..., :1, :]
    c = np.sum(u[..., 0, :] * u[..., 1, :], -1) / np.prod(np.linalg.norm(u, axis=-1), -1)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def products(R):
    """What each final geometry [N, 3, 3] is: 'CaH2', 'Ca + H2' or 'CaH + H' (by distances, Å)."""
    dCaH, dHH = _distances(R)
    out = np.full(len(dHH), "CaH2", dtype=object)
    out[(dHH < 1.2) & (dCaH.min(-1) > 3.0)] = "Ca + H2"
    out[(dHH > 3.0) & (dCaH.min(-1) < 2.6) & (dCaH.max(-1) > 3.5)] = "CaH + H"
    return out


def hop_geometry(res, stride_fs):
    """Where the active state changed: the recorded frame just before each change."""
    change = res.active[:-1] != res.active[1:]  # [F-1, N]
    dCaH, _ = _distances(res.positions)
    angle = _angle(res.positions)
    gap = res.energies[..., 1] - res.energies[..., 0]
    out = {"note": f"the recorded frame before the change of active state (every {stride_fs:g} fs)"}
    raw = {}
    for name, mask in (("S1_to_S0", change & (res.active[:-1] == 1)), ("S0_to_S1", change & (res.active[:-1] == 0))):
        f, n = np.nonzero(mask)
        vals = {"angle_deg": angle[f, n], "gap_eV": gap[f, n], "r_short_A": dCaH[f, n].min(-1),
                "r_long_A": dCaH[f, n].max(-1), "time_fs": res.time_fs[f]}
        raw[name] = vals
        out[name] = {"count": int(len(f))}
        if len(f):
            out[name].update({k: {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)),
                                  "p90": float(np.percentile(v, 90))} for k, v in vals.items()})
    on_s1 = np.where(res.active == 1, angle, np.inf).min(axis=0)
    out["trajectories_below_60deg_on_S1"] = int((on_s1 < 60).sum())
    return out, raw


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/cah2", help="trained multistate CaH2 run (benchmarks/train_cah2.py)")
    ap.add_argument("--n-traj", type=int, default=1024)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1000.0, 2000.0],
                    help="K, vibrational temperature of the S0 Wigner distribution excited (0: zero-point only)")
    ap.add_argument("--dt", type=float, default=0.1,
                    help="fs; 0.5 fs loses up to eV at the narrow funnel (72 of 256 hot trajectories > 0.05 eV), 0.1 fs 2")
    ap.add_argument("--steps", type=int, default=15000)
    ap.add_argument("--stride", type=int, default=20, help="steps between recorded frames (where hops are located)")
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
    from qdyn.md.adapters import diabatic_fn
    from qdyn.namd import minimize_adiabatic, normal_mode_sampler, report, run_fssh
    from qdyn.train import load_run

    t_wall = time.perf_counter()
    model, params, _ = load_run(args.run)
    R_start, system = start_structure(model, None, 0)
    W_fn = diabatic_fn(model, system)
    Z = np.asarray(system.species)
    masses = [elements.mass(int(z)) for z in Z]
    R0 = minimize_adiabatic(W_fn, params, np.asarray(R_start), state=0)
    E0 = np.asarray(model.adiabatic(params, R0, system))
    W0 = np.asarray(W_fn(params, R0))

    # the training data's geometric range: shorter distances are extrapolation into walls
    ds = load_shipped("CaH2")
    dCaH_data, dHH_data = _distances(ds.R)
    domain_limits = {"CaH_min_A": float(dCaH_data.min()), "CaH_max_A": float(dCaH_data.max()),
                     "HH_min_A": float(dHH_data.min())}

    ensembles, curves = [], []
    for T in args.temperatures:
        sampler = normal_mode_sampler(W_fn, params, R0, Z, distribution="wigner", temperature_K=T)
        t0 = time.perf_counter()
        res = run_fssh(W_fn, params, masses=masses, dt_fs=args.dt, n_steps=args.steps, key=jax.random.PRNGKey(args.seed),
                       initial_state=1, replicas=args.n_traj, sampler=sampler, stride=args.stride, n_substeps=20,
                       decoherence="edc", frustrated="keep", keep_positions=True)
        t_run = time.perf_counter() - t0
        fit = report.fit_exponential_decay(res.time_fs, res.active_fraction[:, 1])
        where, raw = hop_geometry(res, args.stride * args.dt)
        dCaH_t, dHH_t = _distances(res.positions)
        walls = (dCaH_t.min(-1) < domain_limits["CaH_min_A"]) | (dHH_t < domain_limits["HH_min_A"])  # [F, N]
        left = walls.any(axis=0)
        dE = np.abs(res.total - res.total[:1]).max(axis=0)
        prod = products(res.final_state.R)
        E_start = res.potential[0]
        ens = {
            "temperature_K": T,
            "start_S1_energy_above_S0_min_eV": {"mean": float(np.mean(E_start - E0[0])),
                                               "std": float(np.std(E_start - E0[0]))},
            "start_angle_deg": {"p10": float(np.percentile(_angle(res.positions[0]), 10)),
                                "p90": float(np.percentile(_angle(res.positions[0]), 90))},
            "S1_final_active_fraction": float(res.active_fraction[-1, 1]),
            "S1_final_coefficient_population": float(res.coefficient_population[-1, 1]),
            "lifetime_fit": fit, "hops": report.hop_summary(res), "hop_geometry": where,
            "final_products": {k: int((prod == k).sum()) for k in ("CaH2", "Ca + H2", "CaH + H")},
            "final_products_after_S1_to_S0": {k: int(((prod == k) & (res.active[-1] == 0)).sum())
                                              for k in ("CaH2", "Ca + H2", "CaH + H")},
            "energy_conservation": report.energy_conservation(res),
            "left_training_distances": {"trajectories": int(left.sum()),
                                        "more_than_0.1_A_below": int(
                                            ((dCaH_t.min(-1) < domain_limits["CaH_min_A"] - 0.1)
                                             | (dHH_t < domain_limits["HH_min_A"] - 0.1)).any(axis=0).sum()),
                                        "shortest_CaH_reached_A": float(dCaH_t.min()),
                                        "shortest_HH_reached_A": float(dHH_t.min()),
                                        "by_CaH": int((dCaH_t.min(-1) < domain_limits["CaH_min_A"]).any(axis=0).sum()),
                                        "by_HH": int((dHH_t < domain_limits["HH_min_A"]).any(axis=0).sum()),
                                        "max_abs_dE_median_others_eV": float(np.median(dE[~left])),
                                        "max_abs_dE_max_others_eV": float(dE[~left].max()),
                                        "max_abs_dE_max_all_eV": float(dE.max())},
            "fssh_s": t_run, "traj_steps_per_s": args.n_traj * args.steps / t_run,
        }
        keep = slice(None, None, max(1, len(res.time_fs) // 300))
        ens["populations"] = {"time_fs": res.time_fs[keep].tolist(),
                              "S1_active_fraction": res.active_fraction[keep, 1].tolist(),
                              "S1_coefficient_population": res.coefficient_population[keep, 1].tolist()}
        ensembles.append(ens)
        curves.append((T, res, fit, raw, dE, left))
        print(f"T = {T:g} K: S1 {res.active_fraction[-1, 1]:.3f} after {args.steps * args.dt:g} fs, "
              f"fit {fit}, hops {ens['hops']['accepted']} accepted, S1→S0 at {where['S1_to_S0'].get('angle_deg')}, "
              f"products {ens['final_products']}, left the data's distances {int(left.sum())}, "
              f"max|ΔE| median {np.median(dE):.1e} eV, {t_run:.0f} s", flush=True)

    fig, (ax, ax3, ax2) = plt.subplots(1, 3, figsize=(17, 4.6))
    colours = ["C3", "C1", "C4", "C5", "C6"]
    for (T, res, fit, raw, dE, left), c in zip(curves, colours):
        t = res.time_fs
        lab = f"{T:g} K" + (f": τ = {fit['tau_fs']:.0f} ± {fit['tau_std_fs']:.0f} fs, P∞ = {fit['p_inf']:.2f}"
                            if fit else ": no decay")
        ax.plot(t, res.active_fraction[:, 1], color=c, lw=1.8, label=f"S1 active, {lab}")
        ax.plot(t, res.coefficient_population[:, 1], "--", color=c, lw=1.0)
        if fit is not None:
            ax.plot(t, fit["p_inf"] + (fit["p0"] - fit["p_inf"]) * np.exp(-t / fit["tau_fs"]), "k:", lw=1.2)
        if raw["S1_to_S0"]["angle_deg"].size:
            ax3.hist(raw["S1_to_S0"]["angle_deg"], bins=np.linspace(0.0, 180.0, 73), color=c, alpha=0.6,
                     label=f"{T:g} K: {raw['S1_to_S0']['angle_deg'].size} S1→S0 hops, median gap "
                           f"{np.median(raw['S1_to_S0']['gap_eV']):.2f} eV")
        bins = np.logspace(-6, 1, 50)
        ax2.hist(np.clip(dE[~left], 1e-6, None), bins=bins, color=c, alpha=0.5, histtype="stepfilled",
                 label=f"{T:g} K ({int((~left).sum())} within the data)")
        if left.any():
            ax2.hist(np.clip(dE[left], 1e-6, None), bins=bins, color=c, histtype="step", lw=1.5,
                     label=f"{T:g} K, {int(left.sum())} that left the data's distances")
    ax.set_xlabel("time [fs]")
    ax.set_ylabel("S1 population (solid: active fraction, dashed: mean |c₁|²)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"CaH2 after S0→S1 vertical excitation ({E0[1] - E0[0]:.2f} eV at the S0 minimum), "
                 f"{args.n_traj} trajectories each", fontsize=9)
    ax.legend(fontsize=7, title="S0 vibrational temperature", title_fontsize=7)
    ax3.axvline(_angle(R0), color="0.5", lw=1, ls="--", label=f"S0 minimum ({_angle(R0):.0f}°)")
    ax3.set_xlabel("H–Ca–H angle at the hop [°]")
    ax3.set_ylabel("hops")
    ax3.set_title("where S1→S0 hops happen (the funnel near 50°)", fontsize=9)
    ax3.legend(fontsize=7)
    ax2.set_xscale("log")
    ax2.set_xlabel("max |E_tot(t) − E_tot(0)| per trajectory [eV]")
    ax2.set_ylabel("trajectories")
    ax2.set_title(f"energy conservation, dt = {args.dt} fs, {args.steps} steps", fontsize=9)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "cah2_namd.png", dpi=110)
    plt.close(fig)

    out = {
        "run": args.run, "model": model.name,
        "settings": {"n_traj": args.n_traj, "dt_fs": args.dt, "steps": args.steps, "time_fs": args.steps * args.dt,
                     "stride": args.stride, "substeps": 20, "decoherence": "edc", "frustrated": "keep",
                     "sampling": "harmonic Wigner of S0 at each temperature", "initial_state": 1, "seed": args.seed},
        "S0_minimum": {"R_A": R0.tolist(), "angle_deg": float(_angle(R0)),
                       "CaH_A": _distances(R0)[0].tolist(), "adiabatic_eV": E0.tolist(),
                       "vertical_excitation_eV": float(E0[1] - E0[0]), "diabatic_coupling_eV": float(W0[0, 1])},
        "training_distances": domain_limits,
        "ensembles": ensembles,
        "wall_s": time.perf_counter() - t_wall,
        "machine": machine_info(),
    }
    save("cah2_namd", out)


if __name__ == "__main__":
    main()
