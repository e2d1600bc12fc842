"""Execution of the symmetry-invariant (siVQLM) circuit in pure JAX.

Layer structure (repeated D = ``layers`` times, data re-uploading):
``SU(2) encoding(x, α_d) → B × [exchange orbits, J_{d,b}] → RZ(ε_d) (optional)``, starting
from the singlet product state and ending with the mean Heisenberg exchange over the singlet
pairs. Layers run in ``lax.scan`` so that compile time does not grow with depth.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import gates
from .layout import InvariantLayout
from .statevector import (
    apply_1q_all,
    apply_dense,
    apply_exchange_pair,
    expect_heisenberg,
    singlet_state,
    z_signs,
)


def cluster_spectra(layout: InvariantLayout):
    """Per exchange orbit: a list of (qubits, λ, V) for the non-matching clusters."""
    spectra = []
    for orbit in layout.exchange:
        spectra.append(
            [(qs, *gates.spectral(gates.heisenberg_sum([(qs.index(p), qs.index(q)) for p, q in prs], len(qs))))
             for qs, prs in orbit.clusters]
        )
    return spectra


def make_expval(layout: InvariantLayout, *, scan_unroll: int = 1) -> Callable:
    """Return ``expval(circuit_params, vecs [n_vec, 3]) -> ⟨O⟩`` (a pure function).

    ``circuit_params`` holds ``alpha`` [D, n_alpha], ``J`` [D, B, n_exchange] and, with
    symmetry breaking, ``eps`` [D, n_alpha].
    """
    n = layout.n_qubits
    qv = np.asarray(layout.qubit_vector)
    ai = np.asarray(layout.alpha_index)
    spectra = cluster_spectra(layout)
    zs = z_signs(n) if layout.symmetry_breaking else None

    def apply_exchange_block(state, J_b):
        for k, orbit in enumerate(layout.exchange):
            if orbit.is_matching:
                for p, q in orbit.pairs:
                    state = apply_exchange_pair(state, J_b[k], p, q)
            else:
                for qs, lam, V in spectra[k]:
                    state = apply_dense(state, gates.exp_from_spectrum(J_b[k], lam, V), qs)
        return state

    def expval(cparams, vecs):
        vq = vecs[qv]  # [n, 3]: the vector each qubit reads

        def layer(state, p):
            Us = gates.su2_encoding(vq, p["alpha"][ai])
            state = apply_1q_all(state, Us)
            for b in range(layout.blocks):
                state = apply_exchange_block(state, p["J"][b])
            if layout.symmetry_breaking:
                # Π_q RZ(ε_q) is diagonal: one elementwise phase.
                theta = jnp.tensordot(p["eps"][ai], zs, axes=1)
                state = state * jnp.exp(-0.5j * theta)
            return state, None

        xs = {k: cparams[k] for k in ("alpha", "J", "eps") if k in cparams}
        state = singlet_state(n, layout.singlets, jnp.result_type(vecs.dtype, jnp.complex64))
        state, _ = jax.lax.scan(layer, state, xs, unroll=scan_unroll)
        obs = [expect_heisenberg(state, p, q) for p, q in layout.observable]
        return sum(obs) / len(obs)

    return expval
