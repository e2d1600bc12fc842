"""A user's PennyLane circuit: the pure-JAX statevector path against default.qubit (backprop).

The same qfunc (``qdyn.quantum.examples:water_exchange``, H2O, 2 wires, L layers, model family
``custom``) through both executions of its :class:`~qdyn.quantum.circuit.Circuit`: energies +
forces of a batch (vmap) and one gradient of an E+F loss with respect to the parameters (the
second order training needs); compile time and steady-state time per call. Prints a table,
saves ``benchmarks/results/bench_own_circuit.json`` (with versions, machine and load average)
and rewrites its section of benchmarks/README.md. Ratios are what to compare: the CPU is shared.

    python benchmarks/bench_own_circuit.py [--layers 2 4] [--no-readme | --readme-only]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from _common import RESULTS, machine_info, save, time_compiled, update_readme_section  # noqa: E402
from qdyn.data import load_shipped  # noqa: E402
from qdyn.models import build_model, energy_and_forces_fn  # noqa: E402
from qdyn.structures import water  # noqa: E402

BATCH = 64


def _model(backend: str, layers: int):
    return build_model({"family": "custom", "template": "H2O", "execution": {"backend": backend},
                        "circuit": {"qfunc": "qdyn.quantum.examples:water_exchange", "wires": 2,
                                    "weight_shapes": {"alpha": [layers], "J": [layers]}}})


def measure(backend: str, layers: int) -> dict:
    model = _model(backend, layers)
    params = model.init(jax.random.PRNGKey(0))
    ds = load_shipped("H2O")
    R = jnp.asarray(ds.R[:BATCH])
    _, system = water()  # the shipped frames are O, H, H like the template
    ef = jax.vmap(energy_and_forces_fn(model.apply), in_axes=(None, 0, None))

    def loss(p):
        E, F = ef(p, R, system)
        return jnp.mean(E ** 2) + jnp.mean(F ** 2)

    c_ef, t_ef = time_compiled(lambda p, R: ef(p, R, system), params, R)
    c_tr, t_tr = time_compiled(jax.grad(loss), params)
    return {"backend": backend, "layers": layers, "ef_compile_s": c_ef, "ef_ms": 1e3 * t_ef,
            "train_grad_compile_s": c_tr, "train_grad_ms": 1e3 * t_tr}


def table(rows) -> str:
    lines = ["| layers | execution | E+F batch 64 [ms] | compile [s] | E+F loss gradient [ms] | compile [s] |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        name = "statevector (qdyn)" if r["backend"] == "statevector" else "default.qubit backprop"
        lines.append(f"| {r['layers']} | {name} | {r['ef_ms']:.2f} | {r['ef_compile_s']:.1f} | "
                     f"{r['train_grad_ms']:.2f} | {r['train_grad_compile_s']:.1f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 4], help="circuit layers to measure")
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    ap.add_argument("--readme-only", action="store_true", help="rewrite the README section from the saved results")
    args = ap.parse_args()
    if args.readme_only:
        saved = json.loads((RESULTS / "bench_own_circuit.json").read_text())
        info, rows, (load_before, load_after) = saved, saved["results"], saved["load_average"]
    else:
        info = machine_info()
        load_before = os.getloadavg()[0]
        rows = [measure(b, L) for L in args.layers for b in ("statevector", "pennylane")]  # alternating A/B
        load_after = os.getloadavg()[0]
        save("bench_own_circuit", {**info, "batch": BATCH, "load_average": [load_before, load_after], "results": rows})
    text = table(rows)
    print(text)
    print(f"load average {load_before:.1f} -> {load_after:.1f} on {info['machine']['cores']} cores")
    if not args.no_readme:
        update_readme_section(
            "bench_own_circuit",
            f"Measured {info['date']} on {info['machine']['cpu']} ({info['machine']['cores']} cores, load average "
            f"{load_before:.1f}-{load_after:.1f}: shared, compare ratios), jax {info['versions']['jax']}, "
            f"pennylane {info['versions']['pennylane']}, float64; a user qfunc "
            f"(`qdyn.quantum.examples:water_exchange`, H2O, 2 wires) in the `custom` family.",
            text,
        )


if __name__ == "__main__":
    main()
