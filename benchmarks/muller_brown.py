"""Enhanced sampling validated on the analytic Müller–Brown surface.

One particle (hydrogen mass) on ``E = s · V_MB(x, y) + ½ k_z z²`` with Langevin dynamics at
300 K through qdyn's own MD (``run_md`` with a bias), s chosen so that kT = 20 MB units
(barriers of 3–5 kT). Three estimates against the exact free energies:

1. well-tempered metadynamics on (x, y) (independent walkers): F(x, y) = V(x, y) + const;
2. umbrella sampling along x with Hamiltonian replica exchange between the windows, MBAR:
   F(x) = -kT ln ∫ exp(-V/kT) dy;
3. parallel tempering (geometric ladder 300–1200 K, the model energy scaled per rung): the
   bottom rung's F(x) histogram at 300 K vs exact; the top rung's at 1200 K vs exact and vs
   plain MD at 1200 K (where plain MD converges too); acceptance and round trips.

RMS errors are over the basins (exact F within 4 kT of its minimum for the 2D surface, 3 kT
for F(x)), after the best constant shift. Writes results/muller_brown.json, a plot
results/muller_brown.png and its section of README.md.

    python benchmarks/muller_brown.py            # full (several minutes on 2 busy cores)
    python benchmarks/muller_brown.py --small    # a quick smoke run (numbers not converged)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn import units  # noqa: E402
from qdyn.md import MDOutput, MDSettings, run_md  # noqa: E402
from qdyn.sampling import cv, muller_brown as mb  # noqa: E402
from qdyn.sampling.bias import make_bias, stack_states, umbrella_states  # noqa: E402
from qdyn.sampling.exchange import ReplicaExchange, by_rung, tempering_scales  # noqa: E402
from qdyn.sampling.free_energy import block_error, metad_fes, rms_difference, umbrella_fes  # noqa: E402

T0 = 300.0
KT = units.temperature_to_energy(T0)
KT_MB = 20.0  # kT in Müller–Brown units
SCALE = KT / KT_MB  # eV per MB unit
ENERGY = mb.energy_fn(scale_eV=SCALE)
XY = cv.stack([lambda R, box: cv.position(R, 0, 0), lambda R, box: cv.position(R, 0, 1)])
X = cv.stack([lambda R, box: cv.position(R, 0, 0)])


def starts(n):
    m = np.array(mb.MINIMA)
    return np.stack([[[*m[i % 3], 0.0]] for i in range(n)])


def metadynamics(n_steps, walkers=8, pace=150):
    bias = make_bias(XY, sigma=(0.05, 0.05), height_eV=0.3 * KT, pace=pace, bias_factor=8.0, temperature_K=T0,
                     max_hills=n_steps // pace)
    t = time.perf_counter()
    res = run_md(ENERGY, {}, starts(walkers), mb.system(),
                 MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=n_steps, temperature_K=T0, replicas=walkers,
                            friction_per_fs=0.05),
                 output=MDOutput(stride=100, frames_per_block=100, progress=None), bias=bias, key=jax.random.PRNGKey(1))
    wall = time.perf_counter() - t
    xs, ys, V = mb.grid(61)
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    basins = (V.ravel() - V.min()) < 4 * KT_MB
    fe = metad_fes(bias, res.bias_state, pts, region=basins)
    rms = rms_difference(fe.F, V.ravel() * SCALE, basins) / KT
    return {"steps": n_steps, "walkers": walkers, "hills_per_walker": int(np.asarray(res.bias_state.n_hills)[0]),
            "rms_kT": rms, "mean_error_bar_kT": float(np.mean(fe.dF[basins]) / KT), "wall_s": wall,
            "steps_per_s": res.timings["steps_per_s"]}, (xs, ys, fe.F.reshape(len(xs), len(ys)) / KT,
                                                        (V - V.min()) / KT_MB, basins.reshape(V.shape))


def umbrella(n_steps, windows=24, kappa=3.0):
    centers = np.linspace(-1.4, 1.1, windows)
    bias = make_bias(X)
    y0 = np.interp(centers, [-1.4, -0.56, -0.05, 0.62, 1.1], [1.5, 1.44, 0.47, 0.03, 0.0])  # along the valley
    R0 = np.stack([[[c, y, 0.0]] for c, y in zip(centers, y0)])
    ex = ReplicaExchange(bias, temperature_K=T0, seed=0)
    t = time.perf_counter()
    res = run_md(ENERGY, {}, R0, mb.system(),
                 MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=n_steps, temperature_K=T0, replicas=windows,
                            friction_per_fs=0.05),
                 output=MDOutput(stride=50, frames_per_block=10, progress=None), bias=bias,
                 bias_states=umbrella_states(bias, centers, kappa), exchange=ex, key=jax.random.PRNGKey(2))
    wall = time.perf_counter() - t
    x = by_rung(res.cv[..., 0], res.exchange["rung_history"], initial=bool(res.step[0] == 0))
    edges = np.linspace(-1.45, 1.15, 53)
    fe = umbrella_fes(x, centers, kappa, temperature_K=T0, bin_edges=edges, discard=len(x) // 10)
    exact = mb.exact_fes_x(fe.s, KT_MB) * SCALE
    basins = exact < 3 * KT
    rms = rms_difference(fe.F, exact, basins) / KT
    acc = res.exchange["acceptance"]
    return {"steps": n_steps, "windows": windows, "kappa_eV_A2": kappa, "rms_kT": rms,
            "mean_error_bar_kT": float(np.nanmean(fe.dF[basins]) / KT), "exchange_acceptance_mean": float(np.mean(acc)),
            "exchange_acceptance_min": float(np.min(acc)), "round_trips": res.exchange["round_trips"],
            "wall_s": wall}, (fe.s, fe.F / KT, fe.dF / KT, exact / KT)


def histogram_fes(x, kT_eV, edges):
    """-kT ln p(x) [eV] and block-averaged errors from samples x [F, walkers]."""
    mids = 0.5 * (edges[1:] + edges[:-1])
    p = np.histogram(x.ravel(), edges, density=True)[0]
    blocks = np.array_split(x, 5, axis=0)
    pb = np.stack([np.histogram(b.ravel(), edges, density=True)[0] for b in blocks])
    with np.errstate(divide="ignore"):
        F = -kT_eV * np.log(p)
        err = np.array([block_error(pb[:, i], 5) for i in range(len(mids))]) / np.maximum(p, 1e-300) * kT_eV
    return mids, F - F[np.isfinite(F)].min(), err


def tempering(n_steps, rungs=8, T_max=1200.0):
    bias = make_bias(X)
    scales = tempering_scales(T0, T_max, rungs)
    states = stack_states([bias.init(n_cv=1, scale=float(s)) for s in scales])
    ex = ReplicaExchange(bias, temperature_K=T0, seed=3)
    R0 = starts(rungs)
    t = time.perf_counter()
    res = run_md(ENERGY, {}, R0, mb.system(),
                 MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=n_steps, temperature_K=T0, replicas=rungs,
                            friction_per_fs=0.05),
                 output=MDOutput(stride=50, frames_per_block=10, progress=None), bias=bias, bias_states=states,
                 exchange=ex, key=jax.random.PRNGKey(4))
    wall = time.perf_counter() - t
    x = by_rung(res.cv[..., 0], res.exchange["rung_history"], initial=bool(res.step[0] == 0))[len(res.step) // 10:]
    # plain MD at T_max, no bias, same number of replicas and steps
    plain = run_md(ENERGY, {}, R0, mb.system(),
                   MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=n_steps, temperature_K=T_max, replicas=rungs,
                              friction_per_fs=0.05),
                   output=MDOutput(stride=50, frames_per_block=10, store_replicas=rungs, progress=None),
                   key=jax.random.PRNGKey(5))
    xp = plain.position[:, :, 0, 0] if plain.position.shape[1] == rungs else None
    edges = np.linspace(-1.45, 1.15, 40)
    kT_hot = units.temperature_to_energy(T_max)
    s, F_cold, _ = histogram_fes(x[:, :1], KT, edges)
    _, F_hot, dF_hot = histogram_fes(x[:, -1:], kT_hot, edges)
    exact_cold = mb.exact_fes_x(s, KT_MB) * SCALE
    exact_hot = mb.exact_fes_x(s, KT_MB * T_max / T0) * SCALE
    cold_basins, hot_basins = exact_cold < 3 * KT, exact_hot < 3 * kT_hot
    out = {"steps": n_steps, "rungs": rungs, "T_max_K": T_max, "acceptance": res.exchange["acceptance"],
           "round_trips": res.exchange["round_trips"], "attempts": res.exchange["attempts"],
           "rms_bottom_rung_vs_exact_kT": rms_difference(F_cold, exact_cold, cold_basins) / KT,
           "rms_top_rung_vs_exact_kT": rms_difference(F_hot, exact_hot, hot_basins) / kT_hot, "wall_s": wall}
    curves = {"s": s, "pt_cold": F_cold / KT, "exact_cold": exact_cold / KT, "pt_hot": F_hot / kT_hot,
              "exact_hot": exact_hot / kT_hot}
    if xp is not None:
        _, F_plain, _ = histogram_fes(xp[len(plain.step) // 10:], kT_hot, edges)
        out["rms_plain_md_vs_exact_kT"] = rms_difference(F_plain, exact_hot, hot_basins) / kT_hot
        out["rms_top_rung_vs_plain_md_kT"] = rms_difference(F_hot, F_plain, hot_basins) / kT_hot
        curves["plain_hot"] = F_plain / kT_hot
    return out, curves


def plot(meta_curves, umb_curves, pt_curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys, F, Vex, basins = meta_curves
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    levels = np.arange(0, 8.5, 0.5)
    for ax, Z, title in ((axes[0], Vex, "exact V(x, y) [kT]"), (axes[1], F - F[basins].min(), "metadynamics F [kT]")):
        cs = ax.contourf(xs, ys, np.clip(Z, 0, 8).T, levels=levels)
        ax.contour(xs, ys, basins.T, levels=[0.5], colors="w", linewidths=0.8)
        ax.set(title=title, xlabel="x [Å]", ylabel="y [Å]")
    fig.colorbar(cs, ax=axes[1])
    s, Fu, dFu, ex = umb_curves
    axes[2].plot(s, ex, "k-", label="exact")
    axes[2].errorbar(s, Fu - np.nanmin(Fu) + np.nanmin(ex), yerr=dFu, fmt="o", ms=3, label="umbrella + HREX, MBAR")
    axes[2].set(title="F(x) at 300 K", xlabel="x [Å]", ylabel="F [kT]", ylim=(-0.5, 8))
    axes[2].legend()
    c = pt_curves
    axes[3].plot(c["s"], c["exact_cold"], "k-", label="exact 300 K")
    axes[3].plot(c["s"], c["pt_cold"], "o", ms=3, label="PT bottom rung (300 K)")
    axes[3].plot(c["s"], c["exact_hot"], "k--", label="exact 1200 K")
    axes[3].plot(c["s"], c["pt_hot"], "s", ms=3, label="PT top rung (1200 K)")
    if "plain_hot" in c:
        axes[3].plot(c["s"], c["plain_hot"], "x", ms=4, label="plain MD 1200 K")
    axes[3].set(title="parallel tempering, F(x) [kT of each T]", xlabel="x [Å]", ylim=(-0.5, 8))
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick smoke run (10x fewer steps)")
    args = ap.parse_args()
    div = 10 if args.small else 1
    load_start = os.getloadavg()
    meta, meta_c = metadynamics(300_000 // div)
    print("metadynamics", meta, flush=True)
    umb, umb_c = umbrella(100_000 // div)
    print("umbrella", umb, flush=True)
    pt, pt_c = tempering(200_000 // div)
    print("tempering", pt, flush=True)
    RESULTS.mkdir(exist_ok=True)
    png = RESULTS / ("muller_brown_small.png" if args.small else "muller_brown.png")
    plot(meta_c, umb_c, pt_c, png)
    payload = {"machine": machine_info(), "load_average_start_end": [load_start, os.getloadavg()], "kT_MB_units": KT_MB, "temperature_K": T0, "metadynamics": meta,
               "umbrella": umb, "tempering": pt, "small": args.small}
    save("muller_brown_small" if args.small else "muller_brown", payload)
    if args.small:
        return
    load = " → ".join(f"{x[0]:.1f}" for x in payload["load_average_start_end"])
    text = "\n".join([
        f"Langevin MD (1 fs, γ = 0.05/fs) at 300 K, kT = {KT_MB:g} MB units; RMS over the basins after a constant "
        f"shift. Load average during the run: {load}.", "",
        "| method | steps × replicas | RMS error [kT] | mean error bar [kT] | notes |",
        "|---|---|---|---|---|",
        f"| well-tempered metadynamics, CVs (x, y) | {meta['steps']} × {meta['walkers']} | {meta['rms_kT']:.3f} | "
        f"{meta['mean_error_bar_kT']:.3f} | γ = 8, {meta['hills_per_walker']} hills per walker |",
        f"| umbrella along x + HREX, MBAR | {umb['steps']} × {umb['windows']} | {umb['rms_kT']:.3f} | "
        f"{umb['mean_error_bar_kT']:.3f} | exchange acceptance {umb['exchange_acceptance_mean']:.2f} (min "
        f"{umb['exchange_acceptance_min']:.2f}), {umb['round_trips']} round trips |",
        f"| parallel tempering, bottom rung F(x) | {pt['steps']} × {pt['rungs']} | "
        f"{pt['rms_bottom_rung_vs_exact_kT']:.3f} | | 300–{pt['T_max_K']:g} K, acceptance "
        f"{', '.join(f'{a:.2f}' for a in pt['acceptance'])}; {pt['round_trips']} round trips |",
        f"| parallel tempering, top rung F(x) at {pt['T_max_K']:g} K | | {pt['rms_top_rung_vs_exact_kT']:.3f} | | "
        f"plain MD at {pt['T_max_K']:g} K: {pt.get('rms_plain_md_vs_exact_kT', float('nan')):.3f} vs exact, "
        f"{pt.get('rms_top_rung_vs_plain_md_kT', float('nan')):.3f} vs PT |",
        "", f"![Müller–Brown](results/{png.name})"])
    update_readme_section("muller_brown", "Müller–Brown: enhanced sampling vs exact free energies", text)


if __name__ == "__main__":
    main()
