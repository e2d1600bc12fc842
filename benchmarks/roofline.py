"""Roofline of qdyn's circuit families: flops per sample, measured time, and the distance between.

For each circuit family (siVQLM invariant at 4–16 qubits, the generic hardware-efficient
control, the hybrid's re-uploading circuit and the quantum symmetry function) this script

* counts the real floating-point operations per sample of the batched energy (E) and energy +
  input gradient (E+F) from the traced program itself: every primitive of the jaxpr, scan
  bodies times their length, complex arithmetic at its real cost (a complex multiply = 6 flops,
  a complex add = 2, a complex dot = 4 real ones per multiply-add), divided by the batch (what
  the samples share, the layer matrices of ``statevector.run_layers``, counts once); matrix
  products apart from elementwise work; sin, cos, sqrt, exp apart as transcendentals;
  traced with the gates' own arithmetic (:func:`gates_as_needed`: exchanges elementwise, no
  recomputation), whatever formulation the timed program uses;
* measures the steady-state time per sample of the jitted, vmapped E and E+F at a batch that
  fills the caches the way training and MD do;
* measures, at the same state size, the rate this machine sustains on the simplest statevector
  kernel (``a·x + b·y`` over complex arrays of batch × 2^n amplitudes): the attainable rate
  for elementwise complex work, the roof; and the rate of the batch's product with a
  2^n × 2^n matrix, the roof of the matrix products;
* reports achieved GFLOP/s and the ratio measured time / (flops / attainable rate): 1 means the
  circuit runs as fast as its arithmetic allows on this machine; above 1 is waste.

Usage: python benchmarks/roofline.py [--quick] [--max-qubits 16] [--no-readme]
Prints a table, writes benchmarks/results/roofline.json and updates benchmarks/README.md.
On a shared machine the absolute rates are low; ratios hold better (both sides suffer).
"""

from __future__ import annotations

import argparse
import contextlib
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

from _common import machine_info, save, time_compiled, update_readme_section  # noqa: E402
from qdyn.quantum import invariant, statevector  # noqa: E402
from qdyn.quantum.hardware_efficient import hardware_efficient_circuit  # noqa: E402
from qdyn.quantum.invariant import invariant_circuit  # noqa: E402
from qdyn.quantum.layout import build_layout  # noqa: E402
from qdyn.quantum.qsf import qsf_circuit  # noqa: E402
from qdyn.quantum.reupload import reupload_circuit  # noqa: E402
from qdyn.quantum.statevector import DENSE_MAX_QUBITS  # noqa: E402
from qdyn.quantum.templates import resolve_template  # noqa: E402

# real flops per output element of elementwise primitives: (real dtype, complex dtype)
ELEMENTWISE = {"add": (1, 2), "sub": (1, 2), "neg": (1, 2), "mul": (1, 6), "div": (1, 11), "max": (1, 1),
               "min": (1, 1), "abs": (1, 4), "integer_pow": (1, 6), "square": (1, 3), "sign": (1, 1)}
TRANSCENDENTAL = {"sin", "cos", "exp", "log", "sqrt", "rsqrt", "tanh", "atan2", "pow", "tan", "expm1", "log1p",
                  "logistic", "erf", "asin", "acos", "atan"}
REDUCTIONS = {"reduce_sum": (1, 2), "reduce_max": (1, 1), "reduce_min": (1, 1), "cumsum": (1, 2)}


def _size(aval) -> int:
    return int(np.prod(aval.shape)) if aval.shape else 1


def _is_complex(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.complexfloating)


def _sub_jaxprs(params):
    for v in params.values():
        for item in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def count_flops(jaxpr) -> tuple[int, int, int]:
    """(elementwise real flops, matrix-product real flops, transcendental calls) of a jaxpr; scan
    bodies count ``length`` times, ``cond`` its costliest branch."""
    flops = dots = trans = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        subs = list(_sub_jaxprs(eqn.params))
        if subs:
            counts = [count_flops(s) for s in subs]
            if name == "cond":
                f, d, t = max(counts)
            else:
                f, d, t = (sum(c[i] for c in counts) for i in range(3))
            reps = eqn.params.get("length", 1) if name == "scan" else 1
            flops, dots, trans = flops + reps * f, dots + reps * d, trans + reps * t
            continue
        out = eqn.outvars[0].aval
        if name in ELEMENTWISE:
            flops += _size(out) * ELEMENTWISE[name][_is_complex(out) or any(_is_complex(v.aval) for v in eqn.invars
                                                                             if hasattr(v, "aval"))]
        elif name in REDUCTIONS:
            inp = eqn.invars[0].aval
            flops += _size(inp) * REDUCTIONS[name][_is_complex(inp)]
        elif name == "dot_general":
            (lc, _), _ = eqn.params["dimension_numbers"]
            k = int(np.prod([eqn.invars[0].aval.shape[i] for i in lc])) if lc else 1
            dots += 2 * _size(out) * k * (4 if _is_complex(out) else 1)
        elif name in TRANSCENDENTAL:
            trans += _size(out)
    return flops, dots, trans


@contextlib.contextmanager
def gates_as_needed():
    """Trace the circuits with their gates' minimal arithmetic: exchanges elementwise (6 flops per
    amplitude; from statevector.CONTRACT_MIN_QUBITS they run as 4×4 contractions, 32) and no
    recomputation in the backward pass (statevector.REMAT_LAYERS), and gate by gate rather than
    in window steps (invariant.WINDOW_MIN_QUBITS: a 16 × 16 matrix per step, 128 flops per
    amplitude where the gates need ~50). The timed programs keep all three: the ratio is the time
    taken over the time the circuit's own arithmetic needs."""
    saved = statevector.CONTRACT_MIN_QUBITS, statevector.REMAT_LAYERS, invariant.WINDOW_MIN_QUBITS
    statevector.CONTRACT_MIN_QUBITS, statevector.REMAT_LAYERS, invariant.WINDOW_MIN_QUBITS = 10**6, False, 10**6
    try:
        yield
    finally:
        statevector.CONTRACT_MIN_QUBITS, statevector.REMAT_LAYERS, invariant.WINDOW_MIN_QUBITS = saved


def per_sample_counts(fn, params, X) -> tuple[float, float, int]:
    """count_flops of the batched program divided by the batch: what the circuit shares across
    samples (the layer matrices of statevector.run_layers) is counted once per batch, as it runs."""
    batch = X.shape[0]
    with gates_as_needed():
        f, d, t = count_flops(jax.make_jaxpr(lambda p, X: jax.vmap(fn, (None, 0))(p, X))(params, X).jaxpr)
    return f / batch, d / batch, t // batch


def families(max_qubits: int, quick: bool):
    """(label, circuit, example inputs, batch) for every family and size measured."""
    rows = []
    h2o, _ = resolve_template("H2O", 2)
    sizes = [(2, 256), (4, 32), (6, 4), (8, 2)]
    for rep, batch in sizes:
        if 2 * rep > max_qubits:
            continue
        layout = build_layout(h2o, rep=rep, layers=6, blocks=1)
        rows.append((f"siVQLM H2O D=6 ({2 * rep} q)", invariant_circuit(layout), np.ones((2, 3)) * 0.6, batch))
    rows.append(("hardware-efficient H2O D=6 (4 q)", hardware_efficient_circuit(2, rep=2, layers=6, blocks=1),
                 np.ones((2, 3)) * 0.6, 256))
    rows.append(("re-uploading D=4 (4 q)", reupload_circuit(4, 4), np.ones((4, 4)) * 0.3, 256))
    rows.append(("QSF D=4 (4 q, parity-averaged)", qsf_circuit(4, 4), np.ones((4, 3)) * 0.4, 256))
    if quick:
        rows = [r for r in rows if r[1].n_qubits <= 8]
    return rows


def random_params(circuit, key):
    keys = jax.random.split(key, len(circuit.param_shapes))
    return {k: 0.5 * jax.random.normal(kk, s, jnp.float64) for kk, (k, s) in zip(keys, circuit.param_shapes.items())}


def attainable_gflops(n_qubits: int, batch: int) -> float:
    """GFLOP/s of ``a·x + b·y`` over complex [batch, 2^n] arrays (per-sample a, b): the roof."""
    rng = np.random.default_rng(0)
    shape = (batch, 2**n_qubits)
    x, y = (jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape)) for _ in range(2))
    a, b = (jnp.asarray(rng.normal(size=(batch, 1)) + 1j * rng.normal(size=(batch, 1))) for _ in range(2))
    _, t = time_compiled(lambda a, b, x, y: a * x + b * y, a, b, x, y, repeats=20, min_time=0.5)
    return 14 * x.size / t / 1e9  # two complex multiplies (6) and one complex add (2) per amplitude


def gemm_gflops(n_qubits: int, batch: int) -> float:
    """GFLOP/s of the complex [batch, 2^n] × [2^n, 2^n] product: the roof of the layer matrices."""
    rng = np.random.default_rng(0)
    dim = 2**n_qubits
    x = jnp.asarray(rng.normal(size=(batch, dim)) + 1j * rng.normal(size=(batch, dim)))
    M = jnp.asarray(rng.normal(size=(dim, dim)) + 1j * rng.normal(size=(dim, dim)))
    _, t = time_compiled(lambda M, x: x @ M.T, M, x, repeats=20, min_time=0.5)
    return 8 * batch * dim * dim / t / 1e9


def measure(label, circuit, example, batch, key):
    params = random_params(circuit, key)
    scalar = lambda p, x: jnp.sum(circuit.expval(p, x))  # noqa: E731  (E: the sum of the outputs)
    e_and_f = jax.value_and_grad(scalar, argnums=1)
    rng = np.random.default_rng(1)
    X = jnp.asarray(example[None] * (1 + 0.2 * rng.normal(size=(batch,) + example.shape)))
    elem_e, dot_e, trans_e = per_sample_counts(scalar, params, X)
    elem_ef, dot_ef, trans_ef = per_sample_counts(e_and_f, params, X)
    tc_e, t_e = time_compiled(lambda p, X: jax.vmap(scalar, (None, 0))(p, X), params, X)
    tc_ef, t_ef = time_compiled(lambda p, X: jax.vmap(e_and_f, (None, 0))(p, X), params, X)
    roof = attainable_gflops(circuit.n_qubits, batch)
    # layer matrices only up to DENSE_MAX_QUBITS; above, the few dots (the observable's inner
    # products) are vector work and count at the elementwise roof
    dense = circuit.n_qubits <= DENSE_MAX_QUBITS
    roof_gemm = gemm_gflops(circuit.n_qubits, batch) if dense else roof
    # the time the arithmetic needs at this machine's rates: elementwise work at the elementwise
    # roof, matrix products at the GEMM roof
    bound = lambda elem, dot: (elem / roof + dot / roof_gemm) / 1e3  # noqa: E731  (µs)
    row = {"family": label, "n_qubits": circuit.n_qubits, "batch": batch,
           "flops_E": elem_e + dot_e, "flops_EF": elem_ef + dot_ef, "gemm_flops_E": dot_e, "gemm_flops_EF": dot_ef,
           "transcendentals_E": trans_e, "transcendentals_EF": trans_ef,
           "E_us": 1e6 * t_e / batch, "EF_us": 1e6 * t_ef / batch, "E_compile_s": tc_e, "EF_compile_s": tc_ef,
           "roof_gflops": roof, "gemm_roof_gflops": roof_gemm if dense else None}
    row["EF_gflops"] = row["flops_EF"] / (row["EF_us"] * 1e3)
    row["E_ratio"] = row["E_us"] / bound(elem_e, dot_e)
    row["EF_ratio"] = row["EF_us"] / bound(elem_ef, dot_ef)
    print(f"{label:34s} E {row['flops_E']:9.3g} fl {row['E_us']:10.2f} µs ×{row['E_ratio']:5.1f} | "
          f"E+F {row['flops_EF']:9.3g} fl {row['EF_us']:10.2f} µs ×{row['EF_ratio']:5.1f} | roof {roof:5.2f} "
          f"(GEMM {roof_gemm:5.2f}) GFLOP/s", flush=True)
    return row


def table(rows) -> str:
    lines = ["| family | batch | flops / sample E (E+F) | of which GEMM | transcendentals E (E+F) | E µs / sample "
             "| E+F µs / sample | E+F GFLOP/s | roof GFLOP/s (GEMM) | × above roof E (E+F) | E+F compile |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gemm_roof = f"{r['gemm_roof_gflops']:.2f}" if r["gemm_roof_gflops"] else "–"
        lines.append(f"| {r['family']} | {r['batch']} | {r['flops_E']:.3g} ({r['flops_EF']:.3g}) | "
                     f"{r['gemm_flops_E']:.3g} ({r['gemm_flops_EF']:.3g}) | "
                     f"{r['transcendentals_E']} ({r['transcendentals_EF']}) | {r['E_us']:.2f} | {r['EF_us']:.2f} | "
                     f"{r['EF_gflops']:.2f} | {r['roof_gflops']:.2f} ({gemm_roof}) | "
                     f"{r['E_ratio']:.1f} ({r['EF_ratio']:.1f}) | {r['EF_compile_s']:.1f} s |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="families up to 8 qubits only")
    ap.add_argument("--max-qubits", type=int, default=16, help="largest siVQLM size measured (qubits)")
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args()
    info = machine_info()
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {info['machine']['cores']} cores")
    rows = [measure(*fam, jax.random.PRNGKey(i)) for i, fam in enumerate(families(args.max_qubits, args.quick))]
    text = table(rows)
    print()
    print(text)
    path = save("roofline" + ("_quick" if args.quick else ""), {"rows": rows, "load_average": load, **info})
    print(f"\nsaved {path}")
    if not args.quick and not args.no_readme:
        update_readme_section(
            "roofline",
            f"Measured {info['date']} on {info['machine']['cpu']} ({info['machine']['cores']} cores), jax "
            f"{info['versions']['jax']}, float64, load average {load[0]:.1f} (other jobs sharing the cores: "
            "absolute rates are low, the × column compares both sides under the same load). Flops are counted "
            "from the traced batched program and divided by the batch, so the layer matrices the batch shares "
            "count once (complex multiply = 6, complex add = 2); the roof is the rate of `a·x + b·y` on complex "
            "arrays of the same size for elementwise work and of a complex [batch, 2^n] × [2^n, 2^n] product for "
            "the layer matrices (statevector.run_layers, up to 6 qubits); × is the measured time over the time "
            "the counted flops need at those rates. Counted with the gates' own arithmetic "
            "(exchanges elementwise, no recomputation in the backward pass); from 7 qubits the timed program "
            "runs exchanges as 4×4 contractions and recomputes each layer in the backward pass.",
            text,
        )


if __name__ == "__main__":
    main()
