"""Small classical potentials that use neighbour lists (periodic boxes, tests, examples).

The learned models take a neighbour list too (``apply(..., neighbor=nbrs)``); these
potentials are cheap references for periodic boxes. :func:`flexible_water` is a toy
rigid-topology water model (harmonic O–H and H–H springs inside molecules, Lennard-Jones
between oxygens of different molecules through a JAX-MD neighbour list) whose energy
signature is the MD one,
``energy_fn(R, *, params, system, neighbor)``, with the parameters as call-time arguments.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._jax_md import partition
from ..descriptors.neighbors import allow_rank_promotion
from ..validation import QdynInputError


class NeighborPotential(NamedTuple):
    """A potential with its neighbour-list factory.

    Attributes:
        energy_fn: ``(R [n, 3] Å, *, params, system, neighbor) -> E`` [eV]; ``neighbor=None``
            sums every pair densely (the reference for tests).
        neighbor_fn: JAX-MD ``NeighborListFns`` (``allocate`` outside jit, ``update`` inside).
        init_params: ``() -> params`` (a dict of float64 arrays).
    """

    energy_fn: Callable
    neighbor_fn: partition.NeighborListFns
    init_params: Callable


def _smooth_cutoff(r, r_on, r_off):
    # C¹ switch from 1 at r_on to 0 at r_off, so energy is conserved when pairs cross.
    x = jnp.clip((r - r_on) / (r_off - r_on), 0.0, 1.0)
    return 1.0 - x * x * (3.0 - 2.0 * x)


def flexible_water(displacement_fn: Callable, box_side, *, n_molecules: int, cutoff: float = 4.0,
                   skin: float = 0.5, capacity_multiplier: float = 1.25) -> NeighborPotential:
    """Toy flexible water for boxes of ``n_molecules`` molecules ordered O H H O H H ...

    Args:
        displacement_fn: the cell's displacement function (:func:`qdyn.md.integrators.make_space`).
        box_side: [3] Å orthorhombic box sides.
        n_molecules: molecules in the box.
        cutoff: O–O Lennard-Jones cutoff [Å] (smoothly switched off over the last 0.5 Å).
        skin: neighbour-list skin [Å]; the list is rebuilt when an atom moved skin/2.
        capacity_multiplier: spare capacity of a newly allocated list (1.0 = none, so the
            first new neighbour overflows it: used by tests).
    """
    n = 3 * n_molecules
    side = np.asarray(box_side, dtype=float)
    if side.shape != (3,) or np.any(side <= 0):
        raise QdynInputError(f"box_side must be three positive lengths, got {box_side!r}")
    mol = jnp.arange(n) // 3
    is_o = (jnp.arange(n) % 3) == 0
    o_idx = jnp.arange(0, n, 3)
    h1, h2 = o_idx + 1, o_idx + 2
    pair_disp = jax.vmap(jax.vmap(displacement_fn, (None, 0)), (0, 0))

    neighbor_fn = allow_rank_promotion(partition.neighbor_list(
        displacement_fn, jnp.asarray(side), cutoff, dr_threshold=skin,
        capacity_multiplier=capacity_multiplier, format=partition.Dense,
    ))

    def init_params():
        return {"k_oh": jnp.asarray(45.0), "r_oh": jnp.asarray(0.9572), "k_hh": jnp.asarray(4.0),
                "r_hh": jnp.asarray(1.5139), "eps_oo": jnp.asarray(0.0067), "sigma_oo": jnp.asarray(3.1506)}

    def bonded(R, params):
        d = jax.vmap(displacement_fn)
        r1 = jnp.linalg.norm(d(R[h1], R[o_idx]), axis=-1)
        r2 = jnp.linalg.norm(d(R[h2], R[o_idx]), axis=-1)
        r3 = jnp.linalg.norm(d(R[h2], R[h1]), axis=-1)
        return (0.5 * params["k_oh"] * jnp.sum((r1 - params["r_oh"]) ** 2 + (r2 - params["r_oh"]) ** 2)
                + 0.5 * params["k_hh"] * jnp.sum((r3 - params["r_hh"]) ** 2))

    def lj(r, valid, params):
        r = jnp.where(valid, r, 1.0)  # double-where: no inf/NaN gradient on empty slots
        s6 = (params["sigma_oo"] / r) ** 6
        e = 4.0 * params["eps_oo"] * (s6 * s6 - s6) * _smooth_cutoff(r, cutoff - 0.5, cutoff)
        return jnp.where(valid, e, 0.0)

    def energy_fn(R, *, params, system, neighbor=None):
        del system  # topology is fixed by the atom order
        if neighbor is None:
            idx = jnp.broadcast_to(jnp.arange(n)[None, :], (n, n))
        else:
            idx = neighbor.idx
        safe = jnp.minimum(idx, n - 1)  # empty slots hold n
        dR = pair_disp(R, R[safe])
        d2 = jnp.sum(dR * dR, axis=-1)
        valid = (idx < n) & is_o[:, None] & is_o[safe] & (mol[:, None] != mol[safe]) & (d2 < cutoff**2)
        r = jnp.sqrt(jnp.where(valid, d2, 1.0))
        # every O–O pair appears twice (i→j and j→i)
        return bonded(R, params) + 0.5 * jnp.sum(lj(r, valid, params))

    return NeighborPotential(energy_fn, neighbor_fn, init_params)


def spring_network(R_ref, *, cutoff: float = 2.0) -> tuple[Callable, Callable]:
    """Springs between every pair of atoms closer than ``cutoff`` in a reference geometry.

    A free-space toy with known harmonic frequencies (tests of integrators, thermostats and
    spectra): ``E = ½ k Σ_(i<j) (|R_i - R_j| - d_ij)²``.

    Args:
        R_ref: reference positions [n, 3] Å (the minimum).
        cutoff: pairs closer than this [Å] get a spring.

    Returns:
        ``(energy_fn, init_params)``: ``energy_fn(R, *, params, system, neighbor=None)`` [eV]
        with ``params = {"k": eV/Å²}``; ``init_params(k=10.0)``.
    """
    R_ref = np.asarray(R_ref, dtype=float)
    d = np.linalg.norm(R_ref[:, None] - R_ref[None], axis=-1)
    i, j = np.nonzero(np.triu(d < cutoff, 1))
    if len(i) == 0:
        raise QdynInputError(f"no atom pairs closer than cutoff={cutoff} Å")
    i, j, d0 = jnp.asarray(i), jnp.asarray(j), jnp.asarray(d[i, j])

    def energy_fn(R, *, params, system, neighbor=None):
        del system, neighbor  # fixed topology, free space
        r = jnp.linalg.norm(R[i] - R[j], axis=-1)
        return 0.5 * params["k"] * jnp.sum((r - d0) ** 2)

    def init_params(k: float = 10.0):
        return {"k": jnp.asarray(float(k))}

    return energy_fn, init_params
