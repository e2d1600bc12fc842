"""Backend cost: the siVQLM's native-gate PennyLane QNode (default.qubit, backprop) against the
pure-JAX statevector, for a training step and an MD block, at 4 and 8 qubits.

H2O siVQLM, rep = 2 and 4 (4 and 8 qubits), D = 3 layers, float64. Training step: one adam
step on an energy + force loss over a batch of 64 geometries. MD block: 50 velocity-Verlet
steps (one energy + force evaluation each) of 16 replicas in ``lax.scan``, jitted. The issue's
rule: make PennyLane the default if it costs within 1.3× of the statevector for both.

Usage: python benchmarks/bench_backends.py [--no-readme]
Prints a table, writes benchmarks/results/bench_backends.json and updates its section of
benchmarks/README.md. Ratios are what to compare: the CPU is usually shared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import machine_info, save, time_compiled, update_readme_section  # noqa: E402
from bench_circuits import tasks  # noqa: E402
from qdyn.models import sivqlm  # noqa: E402
from qdyn.structures import water  # noqa: E402

LAYERS, BATCH, MD_STEPS, REPLICAS, DT = 3, 64, 50, 16, 1e-3
RULE = 1.3


def md_block(model, params):
    """``block(params, R [r, 3, 3], V) -> (R, V)``: MD_STEPS velocity-Verlet steps (unit
    masses: the cost, not the physics, is measured) of every replica."""
    R0, system = water()
    force = jax.grad(lambda p, r: -model.apply(p, r, system), argnums=1)

    def one(p, R, V):
        def step(carry, _):
            r, v, f = carry
            v = v + 0.5 * DT * f
            r = r + DT * v
            f = force(p, r)
            return (r, v + 0.5 * DT * f, f), None

        (R, V, _), _ = jax.lax.scan(step, (R, V, force(p, R)), None, length=MD_STEPS)
        return R, V

    rng = np.random.default_rng(0)
    R = jnp.asarray(R0[None] + 0.02 * rng.normal(size=(REPLICAS, 3, 3)))
    V = jnp.asarray(0.01 * rng.normal(size=(REPLICAS, 3, 3)))
    return jax.vmap(one, in_axes=(None, 0, 0)), (params, R, V)


def measure(backend: str, rep: int) -> dict:
    model = sivqlm.build("H2O", rep=rep, layers=LAYERS, execution={"backend": backend})
    params = model.init(jax.random.PRNGKey(0))
    step_fn, step_args = tasks(model, params, BATCH)["train step"]
    block_fn, block_args = md_block(model, params)
    out = {"n_qubits": model.config["n_qubits"]}
    for name, fn, args in (("train step", step_fn, step_args), ("md block", block_fn, block_args)):
        tc, ts = time_compiled(fn, *args, repeats=3, min_time=0.5)
        out[name] = {"compile_s": tc, "run_ms": 1e3 * ts}
        print(f"  {backend:11s} q={out['n_qubits']} {name:10s} compile {tc:6.1f} s  run {1e3 * ts:8.2f} ms", flush=True)
    return out


def table(results: list) -> str:
    lines = ["| qubits | task | statevector | pennylane default.qubit | ratio | compile sv / pl |", "|---|---|---|---|---|---|"]
    for r in results:
        sv, pl = r["statevector"], r["pennylane"]
        for task in ("train step", "md block"):
            ratio = pl[task]["run_ms"] / sv[task]["run_ms"]
            lines.append(f"| {sv['n_qubits']} | {task} | {sv[task]['run_ms']:.1f} ms | {pl[task]['run_ms']:.1f} ms | "
                         f"{ratio:.2f}× | {sv[task]['compile_s']:.1f} s / {pl[task]['compile_s']:.1f} s |")
    worst = max(r["pennylane"][t]["run_ms"] / r["statevector"][t]["run_ms"] for r in results
                for t in ("train step", "md block"))
    verdict = "within" if worst <= RULE else "beyond"
    lines += ["", f"Worst ratio {worst:.2f}×: {verdict} the {RULE}× rule, so the default stays "
                  f"{'pennylane' if worst <= RULE else 'statevector'}."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args()
    info = machine_info()
    results = [{b: measure(b, rep) for b in ("statevector", "pennylane")} for rep in (2, 4)]
    text = table(results)
    print(text)
    save("bench_backends", {**info, "layers": LAYERS, "batch": BATCH, "md_steps": MD_STEPS, "replicas": REPLICAS,
                            "results": results})
    if not args.no_readme:
        update_readme_section(
            "bench_backends",
            f"Measured {info['date']} on {info['machine']['cpu']} ({info['machine']['cores']} cores, shared with "
            f"other jobs), jax {info['versions']['jax']}, pennylane {info['versions']['pennylane']}, float64; "
            f"H2O siVQLM D={LAYERS}; train step = adam on E+F loss, batch {BATCH}; MD block = {MD_STEPS} "
            f"velocity-Verlet steps x {REPLICAS} replicas.",
            text,
        )


if __name__ == "__main__":
    main()
