"""Surface hopping: throughput of the jitted FSSH block and Tully's models against exact results.

Part 1 — trajectory-steps per second (and compile time) of one jitted, vmapped FSSH block for
1 and 1024 trajectories, on Tully's model 1 and on the analytic two-state triatomic of
:mod:`qdyn.namd.analytic` (20 electronic substeps per step, EDC on).

Part 2 — Tully's three models: transmission / reflection probabilities on each adiabatic
state against the initial momentum k, FSSH (binomial error bars) against the exact
split-operator wavepacket, for the same initial Gaussian packet (σ = 20/k). FSSH runs
without decoherence (Tully's original algorithm); model 3 is also run with EDC, where
decoherence matters most (reflection on the upper state).

Usage: nice -n 10 python benchmarks/bench_namd.py [--quick]
Writes benchmarks/results/bench_namd.json, tully_fssh.json and tully_fssh.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn import elements, units  # noqa: E402
from qdyn.namd import analytic, minimize_adiabatic, normal_mode_sampler, tully, wavepacket  # noqa: E402
from qdyn.namd.sampling import sample_batch  # noqa: E402
from qdyn.namd.run import _block, init_batch, make_fssh, run_fssh  # noqa: E402

AU = units.AU_TIME_FS
K_VALUES = {
    1: [4.0, 7.0, 10.0, 15.0, 20.0, 30.0],
    2: [10.0, 15.0, 20.0, 28.0, 36.0, 45.0],
    3: [4.0, 7.0, 10.0, 15.0, 20.0, 30.0],
}
X0_BOHR = -15.0


def throughput(W, p, masses, R, V, dt_fs, n_traj, steps=200):
    sim = make_fssh(W, tuple(float(m) for m in masses), dt_fs, 20, "edc", float(0.1 * units.HARTREE_EV), "keep", 1e-4)
    keys = jax.random.split(jax.random.PRNGKey(0), n_traj)
    state = init_batch(sim, p, keys, active=1, R0=R[:n_traj], V0=V[:n_traj])
    block = _block(sim, steps // 10, 10, False)
    t0 = time.perf_counter()
    compiled = block.lower(state, p).compile()
    t_compile = time.perf_counter() - t0
    jax.block_until_ready(compiled(state, p))
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(compiled(state, p))
        best = min(best, time.perf_counter() - t)
    return {"n_traj": n_traj, "compile_s": t_compile, "seconds_per_block": best, "steps": steps,
            "traj_steps_per_s": n_traj * steps / best, "us_per_traj_step": best / (n_traj * steps) * 1e6}


def part1():
    out = {}
    W, p = tully.model(1)
    R, V = sample_batch(tully.sampler(20.0, -3.0), jax.random.split(jax.random.PRNGKey(1), 1024))
    out["tully1"] = [throughput(W, p, [tully.MASS_AMU], R, V, 5 * AU, n) for n in (1, 1024)]
    Wt, pt, Z, Rg = analytic.triatomic(2)
    R0 = minimize_adiabatic(Wt, pt, Rg)
    R, V = sample_batch(normal_mode_sampler(Wt, pt, R0, Z), jax.random.split(jax.random.PRNGKey(2), 1024))
    masses = [elements.mass(z) for z in Z]
    out["triatomic"] = [throughput(Wt, pt, masses, R, V, 0.1, n) for n in (1, 1024)]
    for name, rows in out.items():
        for r in rows:
            print(f"{name:10s} N={r['n_traj']:5d}: {r['traj_steps_per_s']:.3g} traj·steps/s "
                  f"({r['us_per_traj_step']:.3g} µs each), compile {r['compile_s']:.1f} s", flush=True)
    return out


def exact(model, k):
    W, p = tully.model(model)
    n_grid = 4096 if k > 32 else 2048
    r = wavepacket.scattering(
        W, p, mass=tully.MASS_AMU, k0=float(tully.wavenumber_per_angstrom(k)), x0=float(tully.bohr(X0_BOHR)),
        sigma_x=float(tully.bohr(tully.packet_width_bohr(k) / 2)), x_range=tuple(tully.bohr([-50.0, 50.0])),
        n_grid=n_grid, absorber_width=float(tully.bohr(15.0)), dt_fs=2.0 * AU, t_max_fs=40000 * AU, tol=1e-3)
    return {"T": r.transmission.tolist(), "R": r.reflection.tolist(), "remaining": r.remaining}


def fssh_outcome(model, k, n_traj, decoherence):
    W, p = tully.model(model)
    R, V = sample_batch(tully.sampler(k, X0_BOHR), jax.random.split(jax.random.PRNGKey(int(10 * k) + model), n_traj))
    x_exit = float(tully.bohr(16.0))

    def done(s):
        x, v = np.asarray(s.R[:, 0]), np.asarray(s.V[:, 0])
        return bool(np.all(((x > x_exit) & (v > 0)) | ((x < -x_exit) & (v < 0))))

    res = run_fssh(W, p, masses=[tully.MASS_AMU], dt_fs=5 * AU, n_steps=40000, key=jax.random.PRNGKey(7),
                   initial_state=0, R0=R, V0=V, stride=20, frames_per_block=25, decoherence=decoherence, stop_when=done,
                   progress=None)
    x, a = np.asarray(res.final_state.R[:, 0]), np.asarray(res.final_state.active)
    T = [float(np.mean((x > 0) & (a == i))) for i in range(2)]
    Rf = [float(np.mean((x < 0) & (a == i))) for i in range(2)]
    return {"T": T, "R": Rf, "n_traj": n_traj, "finished": done(res.final_state), **res.hop_statistics()}


def part2(n_traj, ks):
    results = {}
    for model in (1, 2, 3):
        rows = []
        for k in ks[model]:
            t = time.perf_counter()
            row = {"k": k, "exact": exact(model, k), "fssh": fssh_outcome(model, k, n_traj, "none")}
            if model == 3:
                row["fssh_edc"] = fssh_outcome(model, k, n_traj, "edc")
            rows.append(row)
            ex = row["exact"]
            print(f"model {model} k={k:5.1f}: exact T={np.round(ex['T'], 3)} R={np.round(ex['R'], 3)}"
                  f" | FSSH T={np.round(row['fssh']['T'], 3)} R={np.round(row['fssh']['R'], 3)}"
                  f" ({time.perf_counter() - t:.1f} s)", flush=True)
        results[model] = rows
    return results


def plot(results, n_traj, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels = {1: [("T", 0), ("T", 1), ("R", 0)], 2: [("T", 0), ("T", 1), ("R", 0)],
                3: [("T", 0), ("T", 1), ("R", 0), ("R", 1)]}
    labels = {("T", 0): "transmission, lower", ("T", 1): "transmission, upper", ("R", 0): "reflection, lower",
              ("R", 1): "reflection, upper"}
    colors = {("T", 0): "C0", ("T", 1): "C1", ("R", 0): "C2", ("R", 1): "C3"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for ax, model in zip(axes, (1, 2, 3)):
        rows = results[model]
        k = np.array([r["k"] for r in rows])
        for ch in channels[model]:
            c = colors[ch]
            ex = np.array([r["exact"][ch[0]][ch[1]] for r in rows])
            fs = np.array([r["fssh"][ch[0]][ch[1]] for r in rows])
            err = np.sqrt(np.clip(fs * (1 - fs), 1.0 / n_traj, None) / n_traj)
            ax.plot(k, ex, "-", color=c, label=f"{labels[ch]} (exact)")
            ax.errorbar(k, fs, yerr=err, fmt="o", color=c, ms=4, capsize=2, label=f"{labels[ch]} (FSSH)")
            if model == 3:
                fe = np.array([r["fssh_edc"][ch[0]][ch[1]] for r in rows])
                ax.plot(k, fe, "x", color=c, ms=6, label=f"{labels[ch]} (FSSH+EDC)")
        ax.set_title(f"Tully model {model}: {tully.NAMES[model]}")
        ax.set_xlabel("initial momentum k [a.u.]")
        ax.set_ylabel("probability")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def readme_section(bench, payload):
    rows = ["| system | trajectories | traj·steps/s | compile (s) |", "|---|---|---|---|"]
    for name, runs in bench["throughput"].items():
        rows += [f"| {name} | {r['n_traj']} | {r['traj_steps_per_s']:.3g} | {r['compile_s']:.1f} |" for r in runs]
    dev = []
    for m, res in payload["results"].items():
        d = max(abs(r["fssh"][c][i] - r["exact"][c][i]) for r in res if r["k"] >= 7 for c in "TR" for i in range(2))
        dev.append(f"model {m}: {d:.3f}")
    text = "\n".join(rows) + ("\n\nTully models, FSSH (no decoherence, " f"{payload['n_traj']} trajectories) vs exact "
                             "split-operator, largest |ΔP| over channels for k ≥ 7: " + ", ".join(dev)
                             + ". Figure: results/tully_fssh.png; table and discussion: docs/namd.md.")
    info = bench["info"]
    update_readme_section("bench_namd", f"Surface hopping, measured {info['date']} on {info['machine']['cpu']} "
                          f"({info['machine']['cores']} cores, shared).", text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer k values and trajectories")
    ap.add_argument("--replot", action="store_true", help="redraw the figure from tully_fssh.json only")
    args = ap.parse_args()
    if args.replot:
        import json

        saved = json.loads((RESULTS / "tully_fssh.json").read_text())
        plot({int(m): v for m, v in saved["results"].items()}, saved["n_traj"], RESULTS / "tully_fssh.png")
        return
    t0 = time.perf_counter()
    bench = {"info": machine_info(), "throughput": part1()}
    save("bench_namd", bench)
    n_traj = 100 if args.quick else 400
    ks = {m: v[::2] for m, v in K_VALUES.items()} if args.quick else K_VALUES
    results = part2(n_traj, ks)
    payload = {"info": machine_info(), "n_traj": n_traj, "x0_bohr": X0_BOHR, "dt_au": 5.0,
               "packet": "psi ~ exp(ikx - (x-x0)^2/sigma^2), sigma = 20/k bohr; FSSH samples its Wigner function",
               "fssh": "decoherence none (Tully 1990); model 3 also with EDC (C = 0.1 hartree); frustrated: keep",
               "results": {str(m): v for m, v in results.items()}, "wall_s": time.perf_counter() - t0}
    save("tully_fssh", payload)
    plot(results, n_traj, RESULTS / "tully_fssh.png")
    if not args.quick:
        readme_section(bench, payload)
    print(f"wrote {RESULTS / 'tully_fssh.png'} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
