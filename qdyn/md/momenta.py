"""Momenta: Maxwell–Boltzmann initial momenta at T with COM (and rotation) removed, kinetic
energy, temperature and velocities.

Momenta are in JAX-MD's internal unit amu·Å/τ with τ = :data:`qdyn.units.TIME_UNIT_FS` fs,
so that ``p²/2m`` is in eV. Velocities in Å/fs are ``p / m / TIME_UNIT_FS``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import units


def degrees_of_freedom(n_atoms: int, *, remove_com: bool, remove_rotation: bool) -> int:
    """3N minus the constrained COM translation (3) and rotation (3, or 2 if linear: not
    distinguished here; qdyn's linear molecules in free space are LiH-like diatomics)."""
    dof = 3 * n_atoms - (3 if remove_com else 0)
    if remove_rotation:
        dof -= 2 if n_atoms == 2 else 3
    return max(dof, 1)


def remove_com_momentum(p, mass):
    """Subtract the centre-of-mass velocity: p [n, 3], mass [n] amu -> p with Σp = 0."""
    m = mass[:, None]
    v_com = jnp.sum(p, axis=0) / jnp.sum(mass)
    return p - m * v_com[None, :]


def remove_angular_momentum(R, p, mass):
    """Subtract the rigid rotation about the centre of mass (free molecules).

    Solves I ω = L for the angular velocity (pseudo-inverse, so linear molecules work) and
    removes ``m (ω × r)`` from every momentum.
    """
    m = mass[:, None]
    com = jnp.sum(m * R, axis=0) / jnp.sum(mass)
    r = R - com[None, :]
    L = jnp.sum(jnp.cross(r, p), axis=0)
    r2 = jnp.sum(r * r, axis=1)
    inertia = jnp.sum(mass[:, None, None] * (r2[:, None, None] * jnp.eye(3)[None] - r[:, :, None] * r[:, None, :]), axis=0)
    omega = jnp.linalg.pinv(inertia) @ L
    return p - m * jnp.cross(omega[None, :], r)


def maxwell_boltzmann(key, R, mass, *, temperature_K: float, remove_com: bool = True,
                      remove_rotation: bool = False, rescale: bool = True):
    """Momenta [n, 3] (amu·Å/τ) drawn at ``temperature_K``, pure and jittable.

    Args:
        key: PRNG key.
        R: positions [n, 3] Å (for the rotation removal).
        mass: [n] amu.
        temperature_K: target temperature [K] (0 gives zero momenta).
        remove_com: subtract the centre-of-mass momentum.
        remove_rotation: subtract the rigid rotation (free molecules only).
        rescale: rescale so the instantaneous temperature over the remaining degrees of
            freedom is exactly ``temperature_K`` (small molecules otherwise start far off).

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> import jax, numpy as np
        >>> p = maxwell_boltzmann(jax.random.PRNGKey(0), np.zeros((3, 3)) + np.eye(3), np.array([16.0, 1.0, 1.0]),
        ...                       temperature_K=300.0)
    """
    R = jnp.asarray(R)
    mass = jnp.asarray(mass, R.dtype)
    kT = units.KB_EV_PER_K * temperature_K
    p = jnp.sqrt(mass[:, None] * kT) * jax.random.normal(key, R.shape, R.dtype)
    if remove_com:
        p = remove_com_momentum(p, mass)
    if remove_rotation:
        p = remove_angular_momentum(R, p, mass)
    if rescale:
        dof = degrees_of_freedom(R.shape[0], remove_com=remove_com, remove_rotation=remove_rotation)
        ke = 0.5 * jnp.sum(p * p / mass[:, None])
        t_now = 2.0 * ke / (dof * units.KB_EV_PER_K)
        p = p * jnp.where(t_now > 0, jnp.sqrt(temperature_K / jnp.where(t_now > 0, t_now, 1.0)), 0.0)
    return p


def kinetic_energy(p, mass):
    """Σ p²/2m [eV] for p [..., n, 3] (amu·Å/τ), mass [n] amu."""
    return 0.5 * jnp.sum(p * p / mass[..., :, None], axis=(-2, -1))


def temperature(p, mass, *, dof: int):
    """Instantaneous temperature [K] = 2 KE / (dof k_B)."""
    return 2.0 * kinetic_energy(p, mass) / (dof * units.KB_EV_PER_K)


def velocities_A_per_fs(p, mass):
    """Velocities [..., n, 3] Å/fs from momenta in amu·Å/τ."""
    return p / mass[..., :, None] / units.TIME_UNIT_FS
