"""Circuit benchmark: the H2O siVQLM (4 qubits, D = 6, B = 1), batch 256, float64.

Compares, in one run and on identical circuits:

* ``qdyn``: pure-JAX statevector, closed-form gates, layers in ``lax.scan`` (the default);
* ``qdyn-pennylane``: PennyLane QNode with closed-form ``QubitUnitary`` gates, unrolled;
* ``demo-style``: every gate ``QubitUnitary(expm(...))``, unrolled layers, as PennyLane's
  public eqnn_force_field demo writes it.

Tasks: energies; energies + forces; one optax (adam) step on an energy + force loss.
Reported: compile time (lower + compile) and steady-state time per call (median).
Then the scaling of the default path with qubit count (4, 8, 12, 16; same structure,
rep = 2, 4, 6, 8 parallel encodings of the two O–H vectors).

Usage: python benchmarks/bench_circuits.py [--quick] [--skip-reference]
Prints a table, writes benchmarks/results/bench_circuits.json and updates the table in
benchmarks/README.md.
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
import optax  # noqa: E402

from _common import machine_info, save, time_compiled, update_readme_section  # noqa: E402
from qdyn.models import count_params, sivqlm  # noqa: E402
from qdyn.structures import water  # noqa: E402


def tasks(model, params, batch: int, seed: int = 0):
    R0, system = water()
    rng = np.random.default_rng(seed)
    R = jnp.asarray(R0[None] + 0.05 * rng.normal(size=(batch, 3, 3)))
    E_ref = jnp.asarray(rng.normal(size=batch))
    F_ref = jnp.asarray(rng.normal(size=(batch, 3, 3)))

    def ef(p, r):
        E, g = jax.value_and_grad(model.apply, argnums=1)(p, r, system)
        return E, -g

    energies = lambda p, R: jax.vmap(model.apply, in_axes=(None, 0, None))(p, R, system)
    energies_forces = lambda p, R: jax.vmap(ef, in_axes=(None, 0))(p, R)
    opt = optax.adam(1e-3)

    def loss(p, R):
        E, F = energies_forces(p, R)
        return jnp.mean((E - E_ref) ** 2) + jnp.mean((F - F_ref) ** 2)

    def train_step(p, s, R):
        val, g = jax.value_and_grad(loss)(p, R)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, val

    return {
        "energies": (energies, (params, R)),
        "energies+forces": (energies_forces, (params, R)),
        "train step": (train_step, (params, opt.init(params), R)),
    }


def run_impl(backend: str, batch: int, *, rep: int = 2, layers: int = 6, only=None):
    model = sivqlm.build("H2O", rep=rep, layers=layers, blocks=1, execution={"backend": backend})
    params = model.init(jax.random.PRNGKey(0))
    out = {"n_qubits": model.config["n_qubits"], "n_params": count_params(params), "batch": batch}
    for name, (fn, args) in tasks(model, params, batch).items():
        if only and name not in only:
            continue
        tc, ts = time_compiled(fn, *args)
        out[name] = {"compile_s": tc, "run_ms": 1e3 * ts, "per_sample_us": 1e6 * ts / batch}
        print(f"  {backend:16s} q={out['n_qubits']:2d} {name:16s} compile {tc:7.2f} s   run {1e3 * ts:9.2f} ms",
              flush=True)
    return out


def table(results: dict) -> str:
    impls = results["h2o"]
    lines = ["| task | " + " | ".join(impls) + " | speed-up qdyn vs demo-style |", "|---" * (len(impls) + 2) + "|"]
    for task in ("energies", "energies+forces", "train step"):
        row = [task + " (run)"]
        for k in impls:
            row.append(f"{impls[k][task]['run_ms']:.2f} ms" if task in impls[k] else "–")
        ref = impls.get("demo-style", {}).get(task)
        row.append(f"{ref['run_ms'] / impls['qdyn'][task]['run_ms']:.0f}×" if ref else "–")
        lines.append("| " + " | ".join(row) + " |")
        row = [task + " (compile)"]
        for k in impls:
            row.append(f"{impls[k][task]['compile_s']:.1f} s" if task in impls[k] else "–")
        row.append(f"{ref['compile_s'] / impls['qdyn'][task]['compile_s']:.0f}×" if ref else "–")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Scaling of the default (`qdyn`) path with qubit count:", "",
              "| qubits | batch | E+F compile | E+F per sample | train-step compile | train step per sample |",
              "|---|---|---|---|---|---|"]
    for s in results["scaling"]:
        lines.append(
            f"| {s['n_qubits']} | {s['batch']} | {s['energies+forces']['compile_s']:.1f} s | "
            f"{s['energies+forces']['per_sample_us']:.0f} µs | {s['train step']['compile_s']:.1f} s | "
            f"{s['train step']['per_sample_us']:.0f} µs |"
        )
    return "\n".join(lines)


def update_readme(text: str, info: dict) -> None:
    update_readme_section(
        "bench_circuits",
        f"Measured {info['date']} on {info['machine']['cpu']} ({info['machine']['cores']} cores), jax "
        f"{info['versions']['jax']}, pennylane {info['versions']['pennylane']}, float64.",
        text,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small batch, 4 and 8 qubits only (smoke run)")
    ap.add_argument("--skip-reference", action="store_true", help="skip the slow demo-style reference")
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args()
    batch = 16 if args.quick else 256
    info = machine_info()
    print(f"H2O siVQLM, 4 qubits, D=6, B=1, batch {batch}, float64 on {info['machine']['cpu']}")
    results = {"h2o": {}, "scaling": [], **info}
    results["h2o"]["qdyn"] = run_impl("statevector", batch)
    results["h2o"]["qdyn-pennylane"] = run_impl("pennylane", batch)
    if not args.skip_reference:
        results["h2o"]["demo-style"] = run_impl("pennylane-expm", batch)
    scaling = [(2, batch), (4, batch)] if args.quick else [(2, 256), (4, 256), (6, 32), (8, 4)]
    for rep, b in scaling:
        results["scaling"].append(run_impl("statevector", b, rep=rep, only=("energies+forces", "train step")))
    text = table(results)
    print()
    print(text)
    path = save("bench_circuits" + ("_quick" if args.quick else ""), results)
    print(f"\nsaved {path}")
    if not args.quick and not args.no_readme:
        update_readme(text, info)


if __name__ == "__main__":
    main()
