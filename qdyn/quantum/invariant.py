"""Execution of the symmetry-invariant (siVQLM) circuit in pure JAX.

Layer structure (repeated D = ``layers`` times, data re-uploading):
``SU(2) encoding(x, α_d) → B × [exchange orbits, J_{d,b}] → RZ(ε_d) (optional)``, starting
from the singlet product state and ending with the mean Heisenberg exchange over the singlet
pairs. Layers run in ``lax.scan`` so that compile time does not grow with depth.

The PennyLane reference (:func:`invariant_qnode`, layers unrolled, ``default.qubit`` by
default, ``diff_method="backprop"``) comes in two styles of the same circuit:

* ``"native"``: native gates (``Rot`` encodings in a fixed frame, IsingXX·IsingYY·IsingZZ
  exchanges; the model's PennyLane backend on any device, also for drawing, resource counts
  and OpenQASM);
* ``"expm"``: every gate as ``qml.QubitUnitary(jax.scipy.linalg.expm(...))``, the way
  PennyLane's public ``eqnn_force_field`` demo writes it. This is the reference the fast
  paths are proven equal to, and the baseline of the benchmarks.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..precision import complex_for
from ._pennylane import qml
from . import gates, statevector
from .circuit import Circuit, exchange_native, frame_rz, jax_qnode, noise_of, singlet, su2_encoding_native
from .execution import Execution
from .layout import InvariantLayout
from .statevector import (
    apply_1q_all,
    apply_cyclic,
    apply_dense,
    apply_exchange_pair,
    expect_heisenberg,
    run_layers,
    singlet_state,
    z_signs,
)


def cluster_generators(layout: InvariantLayout):
    """Per exchange orbit: (qubits, Σ (XX+YY+ZZ) over its pairs) for each cluster of a
    non-matching orbit (empty for matchings)."""
    return [[(qs, gates.heisenberg_sum([(qs.index(p), qs.index(q)) for p, q in prs], len(qs)))
             for qs, prs in orbit.clusters] for orbit in layout.exchange]


def cluster_spectra(layout: InvariantLayout):
    """Per exchange orbit: (qubits, λ, V) for each cluster generator, taken once at build time."""
    return [[(qs, *gates.spectral(H)) for qs, H in orbit] for orbit in cluster_generators(layout)]


def exchange_period(layout: InvariantLayout):
    """``(shift, pairs of the first orbits)`` when the exchange orbits repeat around the qubits,
    else None: the orbits fall into n / shift consecutive groups (n / shift ≥ 2), group g being
    group 0 with every qubit shifted by g·shift (mod n), and all are matchings. The ring
    coupling of a template's replicas has this form (H2O: shift 2, two orbits per group)."""
    n, orbits = layout.n_qubits, layout.exchange
    if not orbits or not all(o.is_matching for o in orbits):
        return None

    def shifted(pairs, d):  # as a set of unordered pairs: an exchange gate is symmetric
        return frozenset(frozenset((q + d) % n for q in pair) for pair in pairs)

    for shift in range(1, n // 2 + 1):
        steps = n // shift
        if n % shift or len(orbits) % steps:
            continue
        size = len(orbits) // steps
        if all(shifted(orbits[g * size + j].pairs, 0) == shifted(orbits[j].pairs, g * shift)
               for g in range(steps) for j in range(size)):
            return shift, tuple(o.pairs for o in orbits[:size])
    return None


WINDOW_MIN_QUBITS = 12
"""From this many qubits, a layer whose exchange orbits repeat around the qubits
(:func:`exchange_period`) runs as n / shift *window steps* (:func:`window_schedule`): each step
is one product of a small matrix (the step's group of exchange gates times the encodings of the
qubits that enter the window, 16 × 16 for H2O) with the state, then the state is rotated by
``shift``. A step's gates, each one pass over the state plus the transposes XLA puts around a
contraction, become one pass. H2O siVQLM, D = 6 (new / gates): 16 qubits, batch 2: E 0.42,
E+F 0.69, training step 0.47; 12 qubits, batch 8: 0.76, 0.88, 0.67; 10 qubits: E+F 1.10,
training step 0.81; 8 qubits: E+F 1.65, training step 1.22, since building the per-sample
matrices then costs as much as applying them (docs/performance.md)."""

WINDOW_MAX_QUBITS = 5
"""Widest window for :data:`WINDOW_MIN_QUBITS` (a 32 × 32 matrix per step and sample)."""


def window_schedule(n_qubits: int, shift: int, first):
    """``(w, encode)`` of the window steps of an exchange period, or None when the window would be
    wider than :data:`WINDOW_MAX_QUBITS`.

    Step g acts on the w consecutive qubits g·shift, ..., g·shift + w - 1 (mod n), w the span of
    the first group's pairs (at least ``shift``), which hold group g's exchange gates. A qubit's
    encoding runs in the first step whose window holds it (it commutes with every gate before):
    ``encode[g, j]`` is the qubit encoded at window position j of step g, or n for none.
    """
    w = max(1 + max(q for orbit in first for pair in orbit for q in pair), shift)
    if w > WINDOW_MAX_QUBITS or w >= n_qubits:
        return None
    encode = np.full((n_qubits // shift, w), n_qubits)
    encode[0] = np.arange(w)
    for g in range(1, n_qubits // shift):
        for j in range(w - shift, w):
            if g * shift + j < n_qubits:  # later positions wrapped round to qubits step 0 encoded
                encode[g, j] = g * shift + j
    return w, encode


def apply_matchings(state, J, orbits):
    """The exchange gates of orbits (each a tuple of disjoint pairs), orbit k with coupling J[k]."""
    for k, pairs in enumerate(orbits):
        for p, q in pairs:
            state = apply_exchange_pair(state, J[k], p, q)
    return state


def invariant_circuit(layout: InvariantLayout, *, scan_unroll: Optional[int] = None) -> Circuit:
    """The siVQLM circuit of a layout: ``expval(circuit_params, vecs [n_vec, 3] Å) -> ⟨O⟩``.

    ``circuit_params`` holds ``alpha`` [D, n_alpha], ``J`` [D, B, n_exchange] and, with
    symmetry breaking, ``eps`` [D, n_alpha]; ``scan_unroll`` is the number of layers per
    ``lax.scan`` iteration (default: :func:`~qdyn.quantum.statevector.run_layers`'s choice).
    ``qnode`` is :func:`invariant_qnode` (takes ``style``).
    """
    n = layout.n_qubits
    qv = np.asarray(layout.qubit_vector)
    ai = np.asarray(layout.alpha_index)
    spectra = cluster_spectra(layout)
    zs = z_signs(n) if layout.symmetry_breaking else None

    period = exchange_period(layout) if n >= statevector.LOOP_MIN_QUBITS else None
    windows = window_schedule(n, *period) if period is not None else None

    def window_steps(state, J_b, Us):
        """One exchange block as window steps, with the encodings Us [n, 2, 2] (or none)."""
        (shift, first), (w, encode) = period, windows
        group = lambda s, J_g: apply_matchings(s, J_g, first)  # noqa: E731
        G = jax.vmap(lambda J_g: statevector.block_matrix(lambda s: group(s, J_g), w, state.dtype))(
            J_b.reshape(-1, len(first)))  # [steps, 2^w, 2^w], shared by all samples
        if Us is not None:
            Us = jnp.concatenate([Us, jnp.eye(2, dtype=Us.dtype)[None]])  # index n: no encoding
            G = G @ gates.kron_1q(Us[encode])
        return apply_cyclic(state, statevector.apply_first, G, shift)

    def apply_exchange_block(state, J_b):
        if period is not None:  # one traced group of orbits, run around the qubits
            shift, first = period
            return apply_cyclic(state, partial(apply_matchings, orbits=first), J_b.reshape(-1, len(first)), shift)
        for k, orbit in enumerate(layout.exchange):
            if orbit.is_matching:
                state = apply_matchings(state, J_b[k:k + 1], (orbit.pairs,))
            else:
                for qs, lam, V in spectra[k]:
                    state = apply_dense(state, gates.exp_from_spectrum(J_b[k], lam, V), qs)
        return state

    def expval(cparams, vecs):
        vq = vecs[qv]  # [n, 3]: the vector each qubit reads
        window = windows is not None and n >= WINDOW_MIN_QUBITS  # read when traced, as statevector's switches

        def encodings(p):
            return gates.su2_encoding(vq, p["alpha"][ai])

        def encode(state, p):
            if window:  # run inside the first block's window steps
                return state
            return apply_1q_all(state, encodings(p))

        def couplings(state, p):  # the gates after the encoding (with window steps, the encodings too)
            for b in range(layout.blocks):
                if window:
                    state = window_steps(state, p["J"][b], encodings(p) if b == 0 else None)
                else:
                    state = apply_exchange_block(state, p["J"][b])
            if layout.symmetry_breaking:
                # Π_q RZ(ε_q) is diagonal: one elementwise phase.
                theta = jnp.tensordot(p["eps"][ai], zs, axes=1)
                state = state * jnp.exp(-0.5j * theta)
            return state

        xs = {k: cparams[k] for k in ("alpha", "J", "eps") if k in cparams}
        state = singlet_state(n, layout.singlets, complex_for(vecs.dtype, cparams))
        state = run_layers(encode, couplings, state, xs, scan_unroll)
        obs = [expect_heisenberg(state, p, q) for p, q in layout.observable]
        return sum(obs) / len(obs)

    return Circuit(name=f"invariant[{layout.template.name}, {n}q, {layout.layers}L]", n_qubits=n,
                   param_shapes=layout.param_shapes(), out_shape=(), expval=expval,
                   qnode=partial(invariant_qnode, layout))


def invariant_qnode(layout: InvariantLayout, execution: Optional[Execution] = None, *,
                    style: Literal["native", "expm"] = "native"):
    """QNode ``circuit(cparams, vecs) -> ⟨O⟩`` for an invariant layout (layers unrolled).

    ``style="native"``: encodings as two ``Rot`` gates in a fixed frame
    (:func:`~qdyn.quantum.circuit.su2_encoding_native`), exchange pairs as
    IsingXX·IsingYY·IsingZZ; the clusters of a non-matching orbit (pairs sharing qubits, the
    water dimer) have no exact native product and stay one ``QubitUnitary`` each.
    ``style="expm"``: every gate ``QubitUnitary(expm(...))``, PennyLane's demo style.
    """
    if style not in ("native", "expm"):
        raise ValueError(f"style must be 'native' or 'expm', got {style!r}")
    n = layout.n_qubits
    noise = noise_of(execution)
    terms = [P(p) @ P(q) for p, q in layout.observable for P in (qml.PauliX, qml.PauliY, qml.PauliZ)]
    observable = qml.Hamiltonian([1.0 / len(layout.observable)] * len(terms), terms)  # mean exchange
    if style == "native":
        spectra = cluster_spectra(layout)
        encode = lambda x, a, q: su2_encoding_native(x, a, q)  # noqa: E731
        pair_gate = exchange_native
        cluster_gate = lambda J, k, c: gates.exp_from_spectrum(J, *spectra[k][c][1:])  # noqa: E731
        rz = frame_rz
    else:  # every gate the matrix exponential of its generator
        expm, generators = jax.scipy.linalg.expm, cluster_generators(layout)
        paulis, heis = jnp.asarray(gates.PAULIS), jnp.asarray(gates.HEISENBERG)
        encode = lambda x, a, q: qml.QubitUnitary(expm(-0.5j * a * jnp.einsum("i,ijk->jk", x, paulis)), q)  # noqa: E731
        pair_gate = lambda J, wires: qml.QubitUnitary(expm(-1j * J * heis), wires=wires)  # noqa: E731
        cluster_gate = lambda J, k, c: expm(-1j * J * jnp.asarray(generators[k][c][1]))  # noqa: E731
        rz = lambda angle, q: qml.RZ(angle, wires=q)  # noqa: E731

    def exchange(J, k):
        orbit = layout.exchange[k]
        if orbit.is_matching:
            for p, q in orbit.pairs:
                pair_gate(J, [p, q])
        for c, (qs, _) in enumerate(orbit.clusters):
            qml.QubitUnitary(cluster_gate(J, k, c), wires=list(qs))

    def program(cparams, vecs):
        for p, q in layout.singlets:
            singlet([p, q])
        for d in range(layout.layers):
            for q in range(n):
                encode(vecs[layout.qubit_vector[q]], cparams["alpha"][d, layout.alpha_index[q]], q)
            for b in range(layout.blocks):
                for k in range(layout.n_exchange):
                    exchange(cparams["J"][d, b, k], k)
            if layout.symmetry_breaking:
                for q in range(n):
                    rz(cparams["eps"][d, layout.alpha_index[q]], q)
            noise.after_layer(range(n))
        noise.before_measurement(range(n))
        return qml.expval(observable)

    return jax_qnode(program, n, execution)
