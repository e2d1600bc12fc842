"""The electronic amplitudes of a surface-hopping trajectory: propagation over one nuclear
step (with the fewest-switches hop probabilities it implies) and the energy-based
decoherence correction. Pure functions of arrays; :func:`qdyn.namd.fssh.fssh` composes them.

Units: energies eV, times fs, ``ħ = units.HBAR_EV_FS`` eV·fs, time-derivative couplings
``T_ij = V·d_ij`` in 1/fs.

References:
    J. C. Tully, J. Chem. Phys. 93, 1061 (1990) (hop probabilities).
    G. Granucci and M. Persico, J. Chem. Phys. 126, 134114 (2007) (decoherence).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import units


def rotate_pairs(c, T, h: float, pairs):
    """exp(−T h) c as a product of Givens rotations, one per state pair (exact for n = 2).

    Args:
        c: [n] complex amplitudes.  T: [n, n] real antisymmetric couplings [1/fs].
        h: time [fs].  pairs: the (i, j) state pairs in the order to apply them.
    """
    for i, j in pairs:
        th = T[i, j] * h
        ci, cj = c[i], c[j]
        c = c.at[i].set(jnp.cos(th) * ci - jnp.sin(th) * cj).at[j].set(jnp.sin(th) * ci + jnp.cos(th) * cj)
    return c


def propagate(c, active, E0, E1, T0, T1, *, dt: float, n_substeps: int):
    """Amplitudes over one nuclear step and the summed hop probabilities ``g`` [n].

    ``iħ ċ = (diag(E) − iħ T) c`` with E [n] eV and T [n, n] 1/fs interpolated linearly
    from the step's start (E0, T0) to its end (E1, T1). Each of the ``n_substeps``
    substeps is the symmetric splitting e^{−iEh/2ħ} e^{−Th} e^{−iEh/2ħ} at the substep
    midpoint, with e^{−Th} a symmetric sweep of Givens rotations: every factor is exactly
    unitary (|c|² sums to one to rounding) and the substep is second order, using only
    elementwise arithmetic (an eigh per substep made the step ~15× slower). The hop
    probability into j ≠ active sums ``max(0, −2h Re(c_j* T_ja c_a) / |c_a|²)`` over substeps.
    """
    h = dt / n_substeps
    n = c.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    not_active = 1.0 - jax.nn.one_hot(active, n, dtype=E0.dtype)
    e_ref = jnp.mean(E0)  # a common phase: keeps the phase arguments small

    def substep(carry, s):
        c, g = carry
        f = (s + 0.5) / n_substeps
        E = E0 + f * (E1 - E0) - e_ref
        T = T0 + f * (T1 - T0)
        half = jnp.exp(-0.5j * E * h / units.HBAR_EV_FS).astype(c.dtype)
        c = half * rotate_pairs(rotate_pairs(half * c, T, 0.5 * h, pairs), T, 0.5 * h, pairs[::-1])
        return (c, g + _hop_rates(c, T, active, h) * not_active), None

    g0 = jnp.zeros(c.shape, E0.dtype)
    (c, g), _ = jax.lax.scan(substep, (c, g0), jnp.arange(n_substeps, dtype=E0.dtype))
    return c, g


def _hop_rates(c, T, active, h):
    """Fewest-switches probabilities of one substep h [fs] out of the active state [n]."""
    pa = jnp.abs(c[active]) ** 2
    flow = -2.0 * jnp.real(jnp.conj(c) * T[:, active] * c[active])  # into j from active
    gj = jnp.where(pa > 1e-30, h * flow / jnp.where(pa > 1e-30, pa, 1.0), 0.0)
    return jnp.maximum(gj, 0.0)


def decohere(c, active, energy, kinetic_eV, *, dt: float, C_eV: float):
    """Energy-based decoherence over one step dt [fs]: every inactive amplitude decays with
    rate ``|E_j − E_a| / ħ · E_kin / (E_kin + C)`` and the active one is renormalised.

    Args:
        c: [n] complex amplitudes.  active: the active state.  energy: [n] eV.
        kinetic_eV: the nuclear kinetic energy [eV].  C_eV: the EDC parameter C [eV].
    """
    rate = jnp.abs(energy - energy[active]) / units.HBAR_EV_FS * kinetic_eV / (kinetic_eV + C_eV)
    damped = c * jnp.exp(-rate * dt)
    others = jnp.sum(jnp.abs(damped) ** 2) - jnp.abs(damped[active]) ** 2
    pa = jnp.abs(c[active]) ** 2
    scale = jnp.sqrt(jnp.maximum(1.0 - others, 0.0) / jnp.where(pa > 0, pa, 1.0))
    ca = jnp.where(pa > 0, c[active] * scale, c[active])
    return damped.at[active].set(ca)
