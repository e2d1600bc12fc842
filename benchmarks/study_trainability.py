"""Study: trainability (barren plateaus) of the invariant vs the generic circuit.

For each circuit (the siVQLM's SU(2)-invariant circuit and its hardware-efficient control, both
reading the H2O template with ``rep = n/2`` parallel encodings, so n = 4…16 qubits), depth D
and initialisation, the gradient of the circuit output at one fixed water geometry is taken
w.r.t. every circuit weight for many random parameter draws; the table reports
Var_draws[∂⟨O⟩/∂θ_k] averaged over the weights k. An exponential decay with n is a barren
plateau.

* ``random``: every angle uniform over its period (α, a, Rot angles in [0, 2π); J in [0, π));
* ``near-identity``: the models' own initialisation (α, a = 1 + 0.1 N(0,1); J, W = 0.01 N(0,1)).

Observables as the models use them, both normalised to norm 1: the invariant circuit's mean
singlet-pair exchange divided by 3 (its spectrum lies in [-1, 1/3]), the control's mean Z.
Pure-JAX statevector path (layers in ``lax.scan``), float64.

Usage: python benchmarks/study_trainability.py [--quick]
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
from jax.flatten_util import ravel_pytree  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from _studies import load_average, markdown_table  # noqa: E402
from qdyn.data.shipped import load_shipped  # noqa: E402
from qdyn.quantum.hardware_efficient import hardware_efficient_circuit  # noqa: E402
from qdyn.quantum.invariant import invariant_circuit  # noqa: E402
from qdyn.quantum.layout import build_layout  # noqa: E402
from qdyn.quantum.templates import TEMPLATES  # noqa: E402

NAME = "study_trainability"
CIRCUITS = ("invariant", "generic")
INITS = ("random", "near-identity")


def make_circuit(kind: str, n_qubits: int, layers: int):
    """(expval normalised to norm 1, param_shapes) of a circuit reading H2O on n_qubits."""
    rep = n_qubits // 2
    if kind == "invariant":
        circuit = invariant_circuit(build_layout(TEMPLATES["H2O"], rep=rep, layers=layers))
        return (lambda p, v: circuit.expval(p, v) / 3.0), circuit.param_shapes
    circuit = hardware_efficient_circuit(2, rep=rep, layers=layers, blocks=1)
    return circuit.expval, circuit.param_shapes


def draw_params(kind: str, init: str, shapes: dict, key) -> dict:
    """One parameter draw (see the module docstring for the two initialisations)."""
    keys = dict(zip(sorted(shapes), jax.random.split(key, len(shapes))))
    if init == "random":
        period = {"alpha": 2 * np.pi, "J": np.pi, "a": 2 * np.pi, "W": 2 * np.pi}
        return {k: jax.random.uniform(keys[k], s, minval=0.0, maxval=period[k]) for k, s in shapes.items()}
    near_one = {"alpha", "a"}
    return {k: (1.0 + 0.1 * jax.random.normal(keys[k], s)) if k in near_one else 0.01 * jax.random.normal(keys[k], s)
            for k, s in shapes.items()}


def gradient_variance(kind: str, init: str, n_qubits: int, layers: int, draws: int, vecs) -> dict:
    """Mean over weights of the variance over draws of ∂⟨O⟩/∂θ, plus its spread and cost."""
    expval, shapes = make_circuit(kind, n_qubits, layers)
    grad = jax.jit(lambda p: ravel_pytree(jax.grad(expval)(p, vecs))[0])
    keys = jax.random.split(jax.random.PRNGKey(1000 * n_qubits + layers), draws)
    t0 = time.perf_counter()
    grads = np.stack([np.asarray(grad(draw_params(kind, init, shapes, k))) for k in keys])
    per_weight = grads.var(axis=0)
    # the standard error of the mean over weights of a variance estimated from `draws` samples
    return {"circuit": kind, "init": init, "n_qubits": n_qubits, "layers": layers, "draws": draws,
            "n_weights": int(grads.shape[1]), "grad_variance": float(per_weight.mean()),
            "grad_variance_median": float(np.median(per_weight)),
            "grad_variance_sem": float(per_weight.std() / np.sqrt(len(per_weight))),
            "seconds": round(time.perf_counter() - t0, 1)}


def draws_for(n_qubits: int, quick: bool) -> int:
    if quick:
        return 8
    return {4: 100, 6: 100, 8: 100, 10: 60, 12: 40, 14: 24, 16: 16}[n_qubits]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 and 6 qubits, depth 2, 8 draws (smoke run)")
    ap.add_argument("--depth", type=int, default=8, help="depth D of the qubit sweep")
    ap.add_argument("--depth-qubits", type=int, default=6, help="qubits of the depth sweep")
    args = ap.parse_args()
    vecs = _water_vectors()
    qubits = (4, 6) if args.quick else (4, 8, 12, 16)
    depths = (2,) if args.quick else (1, 2, 4, 8, 16, 32)
    sweep_depth = 2 if args.quick else args.depth
    points = [(n, sweep_depth) for n in qubits] + [(args.depth_qubits if not args.quick else 4, d) for d in depths]
    rows = []
    for n, d in dict.fromkeys(points):  # keep order, drop the repeated (n, D)
        for kind in CIRCUITS:
            for init in INITS:
                row = gradient_variance(kind, init, n, d, draws_for(n, args.quick), vecs)
                row["load"] = load_average()
                rows.append(row)
                print(f"{kind:9s} {init:13s} n={n:2d} D={d:2d}  Var[dO/dθ] = {row['grad_variance']:.3e} "
                      f"(± {row['grad_variance_sem']:.1e})  {row['seconds']:.0f} s", flush=True)
    results = {"rows": rows, "qubit_sweep_depth": sweep_depth, "depth_sweep_qubits": args.depth_qubits,
               **machine_info()}
    if args.quick:
        return
    save(NAME, results)
    write_report(results)


def _water_vectors():
    ds = load_shipped("H2O")
    R = jnp.asarray(ds.R[0])
    return jnp.stack([R[1] - R[0], R[2] - R[0]])


def _decay_rate(rows, kind, init, depth):
    pts = [(r["n_qubits"], r["grad_variance"]) for r in rows
           if r["circuit"] == kind and r["init"] == init and r["layers"] == depth]
    n, v = np.array(pts).T
    return float(np.polyfit(n, np.log2(v), 1)[0])  # log2 Var per added qubit


def write_report(results: dict) -> None:
    rows = results["rows"]
    D, nq = results["qubit_sweep_depth"], results["depth_sweep_qubits"]
    table = markdown_table(
        ["circuit", "init", "qubits", "depth D", "draws", "weights", "mean Var[∂⟨O⟩/∂θ]", "± (s.e.)"],
        [[r["circuit"], r["init"], r["n_qubits"], r["layers"], r["draws"], r["n_weights"],
          f"{r['grad_variance']:.2e}", f"{r['grad_variance_sem']:.1e}"] for r in rows])
    slopes = "; ".join(f"{k} / {i}: {_decay_rate(rows, k, i, D):+.2f}" for k in CIRCUITS for i in INITS)
    text = (f"`python benchmarks/study_trainability.py` on {results['date']}, {results['machine']['cpu']}, jax "
            f"{results['versions']['jax']}, float64, statevector path. Gradient of the (norm-1) circuit output at one "
            f"H2O geometry w.r.t. every circuit weight; variance over random draws, averaged over weights. Qubit sweep "
            f"at D = {D} (H2O template, rep = n/2), depth sweep at {nq} qubits.\n\n"
            f"Fitted slope of log2 Var against qubits (D = {D}): {slopes} (−1 would halve the variance per qubit).\n\n"
            + table + "\n\n![trainability](results/study_trainability.png)")
    update_readme_section(NAME, "### Trainability: gradient variance vs qubits and depth", text)
    plot(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, D, nq = results["rows"], results["qubit_sweep_depth"], results["depth_sweep_qubits"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    style = {("invariant", "random"): ("C0", "-o"), ("invariant", "near-identity"): ("C0", "--s"),
             ("generic", "random"): ("C3", "-o"), ("generic", "near-identity"): ("C3", "--s")}
    for (kind, init), (color, fmt) in style.items():
        for ax, key, fixed, xkey in ((axes[0], "layers", D, "n_qubits"), (axes[1], "n_qubits", nq, "layers")):
            sel = sorted((r[xkey], r["grad_variance"], r["grad_variance_sem"]) for r in rows
                         if r["circuit"] == kind and r["init"] == init and r[key] == fixed)
            if sel:
                x, y, e = np.array(sel).T
                ax.errorbar(x, y, yerr=e, fmt=fmt, color=color, label=f"{kind}, {init}", capsize=2)
    axes[0].set(xlabel="qubits", ylabel="mean Var[∂⟨O⟩/∂θ]", yscale="log", title=f"depth D = {D}")
    axes[1].set(xlabel="depth D (layers)", xscale="log", yscale="log", title=f"{nq} qubits")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
