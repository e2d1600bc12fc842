"""Differentiable simulation with a qdyn model: gradient vs finite differences, and memory of
the checkpointed rollout against the plain one.

A BPNN water model (hidden (16, 16), random parameters scaled small so the molecule stays
bound for the short runs) drives NVE from the equilibrium geometry with random momenta. The
observable is the mean O–H distance over the run; its gradient with respect to all model
parameters is compared with a central finite difference along a random parameter direction,
and XLA's memory analysis of the compiled gradient (``temp``: the buffers where reverse-mode
residuals live) is tabulated for several trajectory lengths, with and without
``jax.checkpoint`` per block.

Usage: python benchmarks/diffsim_memory.py [--steps 256 1024 4096]
       python benchmarks/diffsim_memory.py --readme   (rewrite the README section from the JSON)
Writes benchmarks/results/diffsim_memory.json and the diffsim_memory section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
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
from qdyn.diffsim import make_rollout, mean_distance, memory_of  # noqa: E402
from qdyn.md.adapters import model_energy_fn  # noqa: E402
from qdyn.md.integrators import make_space, masses  # noqa: E402
from qdyn.models import bpnn  # noqa: E402
from qdyn.structures import water  # noqa: E402

NAME = "diffsim_memory"


def setup(seed: int = 0):
    R, system = water()
    model = bpnn.build(species=(1, 8), hidden=(16, 16))
    params = model.init(jax.random.PRNGKey(seed))
    mass = jnp.asarray(masses(system))
    V0 = jnp.asarray(np.random.default_rng(seed).normal(scale=0.005, size=(3, 3)))  # Å/fs
    return model, params, R, system, mass, V0


def objective(model, R, system, mass, V0, *, n_frames, stride, checkpoint):
    ro = make_rollout(model_energy_fn(model.apply), make_space(system).shift_fn, dt_fs=0.5, n_frames=n_frames,
                      stride=stride, checkpoint=checkpoint)
    return lambda p: mean_distance(ro.run(p, R, V0, mass, system).position, [0, 0], [1, 2])


def fd_check(model, params, R, system, mass, V0, *, n_steps=128) -> dict:
    f = objective(model, R, system, mass, V0, n_frames=n_steps, stride=1, checkpoint=True)
    t0 = time.perf_counter()
    g = jax.jit(jax.grad(f))(params)
    t_grad = time.perf_counter() - t0
    leaves, tdef = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(1)
    v = tdef.unflatten([jnp.asarray(rng.normal(size=np.shape(x))) for x in leaves])
    directional = float(sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(v))))
    along = jax.jit(lambda e: f(jax.tree_util.tree_map(lambda p, d: p + e * d, params, v)))
    rows = []
    for eps in (1e-3, 1e-4, 1e-5):
        fd = float((along(eps) - along(-eps)) / (2 * eps))
        rows.append({"eps": eps, "finite_difference": fd, "relative_error": abs(directional - fd) / abs(fd)})
    return {"n_steps": n_steps, "dt_fs": 0.5, "n_params": int(sum(np.size(x) for x in leaves)),
            "gradient_along_direction": directional, "rows": rows, "compile_and_run_s": t_grad,
            "observable_A": float(f(params))}


def memory_table(model, params, R, system, mass, V0, steps) -> list[dict]:
    rows = []
    for n in steps:
        row = {"n_steps": int(n)}
        for ck in (False, True):
            t0 = time.perf_counter()
            m = memory_of(jax.grad(objective(model, R, system, mass, V0, n_frames=n, stride=1, checkpoint=ck)),
                          params)
            row["checkpointed" if ck else "plain"] = m["temp"]
            row[f"compile_s_{'checkpointed' if ck else 'plain'}"] = time.perf_counter() - t0
        row["ratio"] = row["plain"] / row["checkpointed"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def readme(payload: dict) -> None:
    fd = payload["fd_check"]
    lines = [f"BPNN water ({fd['n_params']} parameters), NVE dt 0.5 fs, observable: mean O–H distance; "
             f"load average {payload['load_average']}.", "",
             f"Gradient along a random parameter direction over {fd['n_steps']} steps: "
             f"{fd['gradient_along_direction']:.10g}", "", "| ε | central FD | relative error |", "|---|---|---|"]
    lines += [f"| {r['eps']:.0e} | {r['finite_difference']:.10g} | {r['relative_error']:.1e} |" for r in fd["rows"]]
    lines += ["", "XLA temp memory of the compiled gradient (`memory_analysis().temp_size_in_bytes`), "
              "blocks of ≈√n frames:", "", "| steps | plain | checkpointed | plain / checkpointed |", "|---|---|---|---|"]
    lines += [f"| {r['n_steps']} | {r['plain'] / 2**20:.2f} MiB | {r['checkpointed'] / 2**20:.2f} MiB | {r['ratio']:.1f}× |"
              for r in payload["memory"]]
    update_readme_section(NAME, "Gradients through MD: finite differences and memory "
                          "(`python benchmarks/diffsim_memory.py`)", "\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--readme", action="store_true", help="only rewrite the README section from the JSON")
    args = ap.parse_args()
    if args.readme:
        readme(json.loads((RESULTS / f"{NAME}.json").read_text()))
        return
    model, params, R, system, mass, V0 = setup()
    params = jax.tree_util.tree_map(lambda x: 0.3 * x, params)  # a gentle random surface: the molecule stays put
    fd = fd_check(model, params, R, system, mass, V0)
    print(json.dumps(fd, indent=1), flush=True)
    payload = {**machine_info(), "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()), "fd_check": fd,
               "memory": memory_table(model, params, R, system, mass, V0, args.steps)}
    print("saved", save(NAME, payload))
    readme(payload)


if __name__ == "__main__":
    main()
