"""JAX-MD neighbour lists for descriptors and pair terms in periodic boxes.

The edges built from a list (and from all pairs) live in :mod:`qdyn.geometry`; the list only
decides *which* pairs are looked at, so a list that holds every pair within the cutoff gives
exactly the all-pairs result.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._jax_md import partition, space
from ..precision import rank_promotion_allowed
from ..validation import QdynInputError


def neighbor_list_fn(box, cutoff: float, *, skin: float = 0.5, format: str = "dense",
                     capacity_multiplier: float = 1.25) -> partition.NeighborListFns:
    """A JAX-MD neighbour list for descriptors of range ``cutoff`` in a periodic ``box``.

    ``allocate(R)`` on the host (outside jit), ``update(R, nbrs)`` inside compiled code; the
    list holds pairs within ``cutoff + skin`` and is rebuilt when an atom moved ``skin/2``.
    Orthorhombic boxes use cell lists; triclinic ones the all-pairs search (JAX-MD's cell
    lists need fractional coordinates there).

    Args:
        box: [3, 3] Å lattice vectors as columns (or [3] sides of an orthorhombic box).
        cutoff: descriptor cutoff r_c [Å].
        skin: Verlet skin [Å].
        format: "dense" ([n, max_neighbours]) or "sparse" ([2, n_pairs], both directions).
        capacity_multiplier: spare capacity of a fresh allocation.

    Raises:
        QdynInputError: no or a singular box, unknown format, negative skin.
    """
    if box is None:
        raise QdynInputError("neighbour lists are for periodic boxes; free molecules use the all-pairs path")
    b = np.asarray(box, dtype=float)
    if b.shape == (3,):
        b = np.diag(b)
    if b.shape != (3, 3) or abs(np.linalg.det(b)) < 1e-9:
        raise QdynInputError(f"box must be [3, 3] (columns = lattice vectors) and non-singular, got\n{b}")
    if skin < 0:
        raise QdynInputError(f"skin must be ≥ 0 Å, got {skin}")
    fmt = {"dense": partition.Dense, "sparse": partition.Sparse}.get(format)
    if fmt is None:
        raise QdynInputError(f"unknown neighbour-list format {format!r}; choose 'dense' or 'sparse'")
    if np.allclose(b, np.diag(np.diag(b))):
        side = jnp.asarray(np.diag(b))
        disp, _ = space.periodic(side)
        return allow_rank_promotion(partition.neighbor_list(
            disp, side, float(cutoff), dr_threshold=float(skin), capacity_multiplier=capacity_multiplier,
            format=fmt))
    disp, _ = space.periodic_general(jnp.asarray(b), fractional_coordinates=False)
    return allow_rank_promotion(partition.neighbor_list(
        disp, jnp.asarray(b), float(cutoff), dr_threshold=float(skin), capacity_multiplier=capacity_multiplier,
        format=fmt, fractional_coordinates=False, disable_cell_list=True))


def allow_rank_promotion(fns: partition.NeighborListFns) -> partition.NeighborListFns:
    """``fns`` with ``allocate`` and ``update`` run under ``jax.numpy_rank_promotion("allow")``
    (jax_md.partition broadcasts [n, 3] against [3] in its cell hashing). Allocated lists carry
    the wrapped update, so ``nbrs.update(R)`` is covered too."""

    update = rank_promotion_allowed(fns.update)

    @rank_promotion_allowed
    def allocate(position, extra_capacity: int = 0):
        return fns.allocate(position, extra_capacity=extra_capacity).set(update_fn=update)

    return partition.NeighborListFns(allocate, update)
