"""Adiabatic electronic structure from a diabatic matrix: energies, gradients, couplings.

Given a symmetric diabatic matrix ``W(R)`` [n_states, n_states] (eV) its eigen-decomposition
``W = U diag(E) Uᵀ`` gives the adiabatic energies ``E`` (ascending) and states (columns of
``U``). Gradients and nonadiabatic coupling vectors (NACs) follow from the Hellmann–Feynman
theorem applied to the Jacobian ``∇W`` (``jax.jacfwd`` of ``W`` with respect to ``R``):

    G_ij = U_iᵀ (∇W) U_j            (a vector field over the nuclear coordinates)
    ∇E_i = G_ii
    d_ij = ⟨i|∇j⟩ = G_ij / (E_j − E_i)      (i ≠ j; d_ji = −d_ij, d_ii = 0)

so no derivative of ``eigh`` is ever taken (its derivative is singular at degeneracies).

**Near degeneracies** ``1/(E_j − E_i)`` is replaced by ``ΔE / (ΔE² + ε²)`` with
``ε = gap_regularization`` (default 1e-4 eV): identical to machine precision for gaps ≫ ε
(relative change ε²/ΔE², 1e-6 at a 0.1 eV gap), finite (at most 1/(2ε)) at an exact
crossing instead of ``inf``/``NaN``. Surface hopping through a true conical intersection is
not resolved by any finite time step anyway; the regularisation only keeps the arithmetic
finite there.

**Phase tracking.** ``eigh`` returns each eigenvector with an arbitrary sign, which would
flip the sign of ``d_ij`` (and of the electronic amplitudes) at random along a trajectory.
:func:`align_phases` multiplies each new eigenvector by the sign of its overlap with the
previous step's eigenvector of the same index, so ``U`` (and hence ``d``) varies smoothly.
This presumes the time step is small enough that states do not swap order between steps
(an exact crossing of two states within one step is not detected).

Everything here is pure and un-jitted; shapes are written for one geometry, with
``R`` of any shape (``[n_atoms, 3]`` for molecules, ``[1]`` for 1D model problems).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

DEFAULT_GAP_REGULARIZATION_EV = 1e-4


class Electronic(NamedTuple):
    """Adiabatic electronic structure at one geometry.

    Attributes:
        energy: [n_states] eV, ascending.
        U: [n_states, n_states] adiabatic states as columns (diabatic components), signs
            aligned to a reference when one was given.
        grad: [n_states, *R.shape] eV/Å, ∇E_i.
        nac: [n_states, n_states, *R.shape] 1/Å, d_ij = ⟨i|∇j⟩ (antisymmetric in i, j).
    """

    energy: jax.Array
    U: jax.Array
    grad: jax.Array
    nac: jax.Array


def align_phases(U, U_ref):
    """Flip the signs of the columns of ``U`` [n, n] so that diag(U_refᵀ U) ≥ 0.

    A zero overlap (states swapped within one step) keeps the sign ``eigh`` gave.
    """
    s = jnp.sign(jnp.sum(U_ref * U, axis=0))
    return U * jnp.where(s == 0, 1.0, s)[None, :]


def regularized_inverse_gap(gap, eps):
    """``gap / (gap² + eps²)``: 1/gap for |gap| ≫ eps, bounded by 1/(2 eps) everywhere."""
    return gap / (gap * gap + eps * eps)


def eigh_symmetric(W):
    """Ascending eigenvalues [n] and eigenvectors [n, n] (columns) of a symmetric matrix.

    Two states take the closed form (a rotation by θ = ½ atan2(2W₁₂, W₁₁ − W₂₂)): a batched
    LAPACK ``eigh`` of 2×2 matrices cost most of an FSSH step on CPU. Larger ``n`` uses
    ``jnp.linalg.eigh``. Signs are arbitrary in both cases (see :func:`align_phases`).
    """
    if W.shape[-1] != 2:
        return jnp.linalg.eigh(W)
    a, b, c = W[0, 0], W[0, 1], W[1, 1]
    mean = 0.5 * (a + c)
    r = jnp.sqrt((0.5 * (a - c)) ** 2 + b * b)
    theta = 0.5 * jnp.arctan2(2.0 * b, a - c)
    cs, sn = jnp.cos(theta), jnp.sin(theta)
    U = jnp.array([[-sn, cs], [cs, sn]])  # columns: lower (mean − r), upper (mean + r)
    return jnp.stack([mean - r, mean + r]), U


def electronic_structure(
    W_fn: Callable,
    params,
    R,
    *,
    U_ref: Optional[jax.Array] = None,
    gap_regularization: float = DEFAULT_GAP_REGULARIZATION_EV,
) -> Electronic:
    """Adiabatic energies, gradients and NACs at ``R`` from a diabatic function.

    Args:
        W_fn: ``W_fn(params, R) -> [n_states, n_states]`` symmetric diabatic matrix [eV],
            differentiable in ``R`` [Å].
        params: call-time parameters of ``W_fn`` (any pytree; never closed over).
        R: nuclear coordinates [Å], any shape.
        U_ref: [n_states, n_states] eigenvectors at the previous geometry; when given, the
            new eigenvectors are sign-aligned to them (phase tracking along a path).
        gap_regularization: ε [eV] of the regularised inverse gap used in the NACs.

    Returns:
        :class:`Electronic`.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> import jax.numpy as jnp
        >>> W = lambda p, R: jnp.array([[R[0], p], [p, -R[0]]])
        >>> el = electronic_structure(W, 0.1, jnp.array([0.2]))
        >>> el.energy.shape, el.nac.shape
        ((2,), (2, 2, 1))
    """
    W = W_fn(params, R)
    # Symmetrise: eigh reads one triangle only, a user matrix that is not exactly symmetric
    # would otherwise give gradients inconsistent with its energies.
    W = 0.5 * (W + W.T)
    dW = jax.jacfwd(lambda r: W_fn(params, r))(R)  # [n, n, *R.shape]
    dW = 0.5 * (dW + jnp.swapaxes(dW, 0, 1))
    energy, U = eigh_symmetric(W)
    if U_ref is not None:
        U = align_phases(U, U_ref)
    n = energy.shape[0]
    flat = dW.reshape(n, n, -1)
    G = jnp.einsum("ai,abk,bj->ijk", U, flat, U)  # U_iᵀ ∇W U_j for every coordinate k
    grad = jnp.einsum("iik->ik", G)
    gap = energy[None, :] - energy[:, None]  # E_j − E_i
    inv = regularized_inverse_gap(gap, gap_regularization) * (1.0 - jnp.eye(n, dtype=energy.dtype))
    nac = G * inv[:, :, None]
    shape = jnp.shape(R)
    return Electronic(energy, U, grad.reshape((n,) + shape), nac.reshape((n, n) + shape))
