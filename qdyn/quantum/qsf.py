"""The quantum symmetry function: an SU(2)-equivariant circuit on an atom's neighbour vectors.

Per atom i the circuit reads ``n`` equivariant vectors v_c (c = 1..n, one per qubit: in the
hybrid model, learnable radial-and-species-weighted sums Σ_j w_c(r_ij, Z_j) r̂_ij over the
neighbours, so neighbour permutations leave them unchanged by construction). Following the
siVQLM (Le et al., New J. Phys. 27, 023015, 2025):

* start in a product of singlets on qubit pairs (0,1), (2,3), …, invariant under U^{⊗n};
* each of ``layers`` data re-uploading layers applies, on qubit c,
  ``exp(-i α_{d,c} (x_c·σ)/2)`` with the bounded vector ``x_c = tanh(|v_c|) v̂_c`` (|x_c| < 1,
  smooth at v → 0), then Heisenberg exchanges ``exp(-i J_{d,k} (XX+YY+ZZ))`` on a ring of
  pairs; a rotation Q of the vectors maps every encoding gate to U(Q)·gate·U(Q)†, the
  exchanges commute with U(Q)^{⊗n} and the singlets absorb it;
* measure every pair's exchange ⟨(XX+YY+ZZ)_{pq}⟩, p < q: n(n-1)/2 SU(2)-invariant numbers in
  [-3, 1] — the atom's "quantum symmetry function" features.

Reflections: SU(2) sees only proper rotations. With ≥ 3 vectors the circuit can depend on
triple products v_a·(v_b×v_c), which flip sign under inversion, so by default the features
are averaged over x → -x (``parity_average``, as the siVQLM does for the water dimer), which
makes them O(3)-invariant at twice the cost.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from ..geometry import safe_norm
from ..precision import complex_for
from ..validation import QdynInputError
from ._pennylane import qml
from . import gates
from .circuit import Circuit, exchange_native, heisenberg, jax_qnode, noise_of, ring, singlet, su2_encoding_native
from .execution import Execution
from .statevector import apply_1q_all, apply_exchange_pair, expect_heisenberg, run_layers, singlet_state


def bounded_vectors(v):
    """x = tanh(|v|) v̂ for v [..., 3]: |x| < 1, smooth (tanh(r)/r is even in r), no NaN
    gradient at v = 0 (double-where)."""
    r, ok = safe_norm(v, tiny=1e-24)
    return v * jnp.where(ok, jnp.tanh(r) / r, 1.0)[..., None]


def _read_vectors(features, parity_average: bool):
    """``(cparams, vecs) -> features(cparams, x)`` of the bounded vectors x, averaged over
    x → -x if ``parity_average``."""

    def fn(cparams, vecs):
        x = bounded_vectors(vecs)
        out = features(cparams, x)
        return 0.5 * (out + features(cparams, -x)) if parity_average else out

    return fn


def qsf_circuit(n_qubits: int, layers: int, *, parity_average: bool = True) -> Circuit:
    """The quantum symmetry function on ``n_qubits`` vectors (even, 2..10), ``layers`` layers:
    ``expval({"alpha": [D, n], "J": [D, n_ring]}, vecs [n, 3]) -> [n(n-1)/2]`` pair exchanges.

    Raises:
        QdynInputError: odd or out-of-range qubit count, layers < 1.
    """
    if n_qubits % 2 or not 2 <= n_qubits <= 10:
        raise QdynInputError(f"the quantum symmetry function needs an even number of qubits in 2..10 "
                             f"(singlet pairs), got {n_qubits}")
    if layers < 1:
        raise QdynInputError(f"layers must be ≥ 1, got {layers}")
    n = n_qubits
    singlets = tuple((q, q + 1) for q in range(0, n, 2))
    pairs = ring(n)
    observables = tuple((p, q) for p in range(n) for q in range(p + 1, n))

    def statevector(cparams, x):
        state = singlet_state(n, singlets, complex_for(x.dtype, cparams))

        def encode(state, p):
            return apply_1q_all(state, gates.su2_encoding(x, p[0]))

        def exchange_ring(state, p):  # the same gates for every sample
            for k, (p_, q_) in enumerate(pairs):
                state = apply_exchange_pair(state, p[1][k], p_, q_)
            return state

        state = run_layers(encode, exchange_ring, state, (cparams["alpha"], cparams["J"]))
        return jnp.stack([expect_heisenberg(state, p, q) for p, q in observables])

    def qnode(execution: Optional[Execution] = None):
        noise = noise_of(execution)

        def program(cparams, x):
            for p, q in singlets:
                singlet([p, q])
            for d in range(layers):
                for q in range(n):
                    su2_encoding_native(x[q], cparams["alpha"][d, q], q)
                for k, (p, q) in enumerate(pairs):
                    exchange_native(cparams["J"][d, k], [p, q])
                noise.after_layer(range(n))
            noise.before_measurement(range(n))
            return [qml.expval(heisenberg(p, q)) for p, q in observables]

        circuit = jax_qnode(program, n, execution)
        return _read_vectors(lambda cparams, x: jnp.stack(circuit(cparams, x)), parity_average)

    return Circuit(name=f"qsf[{n}q, {layers}L]", n_qubits=n,
                   param_shapes={"alpha": (layers, n), "J": (layers, len(pairs))}, out_shape=(len(observables),),
                   expval=_read_vectors(statevector, parity_average), qnode=qnode)
