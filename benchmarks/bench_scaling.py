"""Scaling of MD with system size: periodic water boxes from 1 to 1000 molecules (3 to 3000
atoms), time per NVE step (energy + forces + neighbour-list update inside one compiled
``lax.scan`` block, as in qdyn's MD block) for

* the hybrid model (power-spectrum descriptor, 4-qubit 3-layer angle-encoded circuit per atom),
* the hybrid with the quantum symmetry function (4 qubits, 2 layers, parity-averaged),
* the classical-only control (circuit branch replaced by an MLP of equal width and size),
* JAX-MD's built-in ``energy.behler_parrinello_neighbor_list`` (its default symmetry functions
  and (30, 30) network) at the same cutoff, skin and sizes;

compile time of the block per size; log-log slope of time per step vs atoms (linear = 1).
All models run on a JAX-MD ``Dense`` neighbour list (cutoff 4.5 Å, skin 0.5 Å, cell lists
from 3 cells per side); the single molecule sits in a 10 Å box.

Usage: python benchmarks/bench_scaling.py [--quick] [--steps N] [--repeats N] [--sides S ...]
Writes benchmarks/results/bench_scaling.json and bench_scaling.png (``_quick`` with --quick)
and the bench_scaling section of benchmarks/README.md (full runs only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn import md  # noqa: E402
from qdyn.descriptors.neighbors import neighbor_list_fn  # noqa: E402
from qdyn.structures import water_box  # noqa: E402
from qdyn.models import hybrid  # noqa: E402
from qdyn.models.base import count_params  # noqa: E402
from qdyn.system import System  # noqa: E402

CUTOFF, SKIN, DT_FS = 4.5, 0.5, 0.25
COMMON = dict(species=(1, 8), descriptor="power_spectrum", cutoff=CUTOFF, n_radial=6, l_max=2, hidden=(16, 16))
MODELS = {
    "hybrid": dict(branch="reupload", n_qubits=4, layers=3),
    "hybrid-qsf": dict(branch="qsf", n_qubits=4, layers=2),
    "classical control": dict(branch="mlp", n_qubits=4, layers=3),
}


def box_for(n_side: int):
    """(R [3m, 3] Å wrapped, species, side [3] Å): m = n_side³ waters at ~liquid density
    (3.1 Å spacing); one molecule gets a 10 Å box so the cutoff fits."""
    if n_side == 1:
        R, Z, _ = water_box(1, spacing=10.0)
        return R, Z, np.full(3, 10.0)
    R, Z, side = water_box(n_side, spacing=3.1)
    return np.mod(R, side), Z, side


def qdyn_energy(name):
    model = hybrid.build(**COMMON, **MODELS[name])
    params = model.init(jax.random.PRNGKey(0))
    # a gentle potential: random weights at full scale would heat the box within the timed steps
    params = {**params, "scale": jnp.asarray(0.01)}
    return md.model_energy_fn(model.apply), params, count_params(params)


def jaxmd_bp_energy(side, species):
    from jax_md import energy, partition, space

    disp, _ = space.periodic(jnp.asarray(side))
    nf, e = energy.behler_parrinello_neighbor_list(
        disp, jnp.asarray(side), key=jax.random.PRNGKey(0), species=jnp.asarray(species == 8, dtype=jnp.int32),
        sym_kwargs={"cutoff_distance": CUTOFF}, dr_threshold=SKIN, format=partition.Dense)

    def energy_fn(R, *, params, system, neighbor=None):
        del params, system  # the NNX module holds its own weights
        return e(R, neighbor=neighbor)

    from flax import nnx

    return energy_fn, nf, int(sum(np.size(x) for x in jax.tree_util.tree_leaves(nnx.state(e.model, nnx.Param))))


def time_md(energy_fn, params, nf, R, system, *, steps: int, repeats: int):
    """(compile s, seconds per MD step): NVE block of ``steps`` steps, neighbour update inside."""
    sp = md.make_space(system)
    integ = md.make_integrator(energy_fn, sp.shift_fn, ensemble="nve", dt_fs=DT_FS)
    R = jnp.asarray(R)
    nbr = nf.allocate(R)
    m = jnp.asarray(md.masses(system))
    p0 = md.maxwell_boltzmann(jax.random.PRNGKey(1), R, m, temperature_K=300.0)
    state = integ.init(jax.random.PRNGKey(2), R, mass=m, momenta=p0, params=params, system=system, neighbor=nbr)

    def block(state, nbr, params, system):
        def one(carry, _):
            state, nbr = carry
            state = integ.step(state, params=params, system=system, neighbor=nbr)
            return (state, nbr.update(state.position)), None

        (state, nbr), _ = jax.lax.scan(one, (state, nbr), None, length=steps)
        return state, nbr

    t0 = time.perf_counter()
    compiled = jax.jit(block).lower(state, nbr, params, system).compile()
    t_compile = time.perf_counter() - t0
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(state, nbr, params, system))
    times = [time.perf_counter() - t]  # already compiled: the first call counts too
    if bool(out[1].did_buffer_overflow):
        raise RuntimeError("neighbour list overflowed during the timed block: enlarge capacity")
    for _ in range(repeats if times[0] < 10.0 else 0):  # slow references: one run is enough
        t = time.perf_counter()
        jax.block_until_ready(compiled(state, nbr, params, system))
        times.append(time.perf_counter() - t)
    return t_compile, min(times) / steps


def slope(atoms, t, *, min_atoms: int):
    a, t = np.asarray(atoms, float), np.asarray(t, float)
    keep = a >= min_atoms
    return float(np.polyfit(np.log(a[keep]), np.log(t[keep]), 1)[0]) if keep.sum() >= 2 else float("nan")


def plot(path, results, sizes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rows in results.items():
        atoms = [r["atoms"] for r in rows]
        ax[0].loglog(atoms, [1e3 * r["step_s"] for r in rows], "o-", label=name)
        ax[1].semilogx(atoms, [r["compile_s"] for r in rows], "o-", label=name)
    a = np.array([s[0] for s in sizes], float)
    ref = results[next(iter(results))][-1]
    ax[0].loglog(a, 1e3 * ref["step_s"] * a / a[-1], "k:", lw=1, label="∝ N (linear)")
    ax[0].set(xlabel="atoms", ylabel="time per MD step [ms]", title="NVE step with neighbour list (float64)")
    ax[1].set(xlabel="atoms", ylabel="compile time of the MD block [s]", title="compile time")
    for x in ax:
        x.grid(alpha=0.3, which="both")
        x.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="sizes up to 125 molecules")
    ap.add_argument("--steps", type=int, default=10, help="MD steps per timed block")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sides", type=int, nargs="+", default=None,
                    help="molecules per box side (default 1 3 5 7 10; --quick: 1 3 5)")
    ap.add_argument("--bp-max-atoms", type=int, default=400,
                    help="largest box for JAX-MD's BP (its dense neighbour triplets cost ~5 s/step from 81 atoms "
                         "on 2 cores; a run at 1029 atoms did not finish)")
    args = ap.parse_args(argv)
    sides = args.sides or ([1, 3, 5] if args.quick else [1, 3, 5, 7, 10])
    sizes = [(3 * s**3, s) for s in sides]
    from rich.progress import Progress

    results: dict = {}
    n_params = {}
    with Progress() as prog:
        task = prog.add_task("bench_scaling", total=len(sizes) * (len(MODELS) + 1))
        for atoms, s in sizes:
            R, Z, side = box_for(s)
            system = System.create(Z.tolist(), box=side)
            nf = neighbor_list_fn(system.box, CUTOFF, skin=SKIN, format="dense")
            for name in MODELS:
                prog.update(task, description=f"{name}, {atoms} atoms")
                energy_fn, params, n_params[name] = qdyn_energy(name)
                c, t = time_md(energy_fn, params, nf, R, system, steps=args.steps, repeats=args.repeats)
                results.setdefault(name, []).append({"atoms": atoms, "molecules": atoms // 3, "compile_s": c,
                                                     "step_s": t, "atom_steps_per_s": atoms / t})
                prog.console.print(f"{name:>26s} {atoms:5d} atoms: {1e3 * t:9.2f} ms/step, compile {c:6.1f} s")
                prog.advance(task)
            if atoms > args.bp_max_atoms:
                prog.advance(task)
                continue
            prog.update(task, description=f"JAX-MD BP, {atoms} atoms")
            energy_fn, bp_nf, n_params["JAX-MD Behler–Parrinello"] = jaxmd_bp_energy(side, Z)
            # JAX-MD's BP (dense angular triplets) is far slower per step: one step per block
            c, t = time_md(energy_fn, {}, bp_nf, R, system, steps=1, repeats=args.repeats)
            results.setdefault("JAX-MD Behler–Parrinello", []).append(
                {"atoms": atoms, "molecules": atoms // 3, "compile_s": c, "step_s": t, "atom_steps_per_s": atoms / t})
            prog.console.print(f"{'JAX-MD Behler–Parrinello':>26s} {atoms:5d} atoms: {1e3 * t:9.2f} ms/step, "
                               f"compile {c:6.1f} s")
            prog.advance(task)

    slopes = {name: {"all_sizes": slope([r["atoms"] for r in rows], [r["step_s"] for r in rows], min_atoms=1),
                     "from_375_atoms": slope([r["atoms"] for r in rows], [r["step_s"] for r in rows], min_atoms=375)}
              for name, rows in results.items()}
    suffix = "_quick" if args.quick or args.sides else ""
    payload = {**machine_info(), "settings": {"cutoff_A": CUTOFF, "skin_A": SKIN, "dt_fs": DT_FS,
                                              "steps_per_block": args.steps, "repeats": args.repeats,
                                              "neighbour_list": "JAX-MD Dense, cell list",
                                              "models": {k: {**COMMON, **v, "species": [1, 8], "hidden": [16, 16]}
                                                         for k, v in MODELS.items()}},
               "n_params": n_params, "results": results, "loglog_slope": slopes}
    path = save(f"bench_scaling{suffix}", payload)
    png = RESULTS / f"bench_scaling{suffix}.png"
    plot(png, results, sizes)
    print(f"wrote {path} and {png}")
    names = list(results)
    lines = ["| atoms | " + " | ".join(f"{n}: ms/step (compile s)" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for i, (atoms, _) in enumerate(sizes):
        cell = lambda n: (f"{1e3 * results[n][i]['step_s']:.2f} ({results[n][i]['compile_s']:.1f})"  # noqa: E731
                          if i < len(results[n]) else "—")
        lines.append(f"| {atoms} | " + " | ".join(cell(n) for n in names) + " |")
    lines.append("| log-log slope, ≥ 375 atoms (all sizes) | " + " | ".join(
        f"{slopes[n]['from_375_atoms']:.2f} ({slopes[n]['all_sizes']:.2f})" for n in names) + " |")
    lines.append("| parameters | " + " | ".join(str(n_params[n]) for n in names) + " |")
    big = sizes[-1][0]
    thr = ", ".join(f"{n} {results[n][-1]['atom_steps_per_s']:.3g} (at {results[n][-1]['atoms']} atoms)"
                    for n in names)
    text = "\n".join(lines) + (
        f"\n\nThroughput (atom-steps/s, largest size run; {big} atoms for qdyn's models): {thr}. Time per step is the minimum over "
        f"{args.repeats + 1} runs (one when a run takes > 10 s) of a compiled block of {args.steps} NVE steps "
        "(1 for JAX-MD's BP; energy, forces, neighbour-list update), float64, on a 2-core machine shared "
        "with other jobs (compare ratios, not absolute times). Plot: results/bench_scaling.png.")
    print(text)
    if not suffix:
        update_readme_section("bench_scaling", "Time per MD step vs system size (periodic water boxes, neighbour "
                              "lists): hybrid, hybrid with the quantum symmetry function, the classical control "
                              "of equal width, and JAX-MD's built-in Behler–Parrinello network.", text)


if __name__ == "__main__":
    main()
