"""Pair geometry for descriptors: all pairs (molecules, clusters) or a JAX-MD neighbour list
(periodic boxes), in one edge representation.

An :class:`Edges` holds, for every (centre i, neighbour j) slot, the pair vector
``R_j - R_i`` (minimum image in a periodic box), its length and a validity mask. Slots are
laid out either as a rectangle [n_atoms, n_slots] (all pairs, or JAX-MD's ``Dense`` format:
row i lists i's neighbours) or as a flat list [n_edges] (JAX-MD's ``Sparse`` format, both
directions of every pair); :func:`aggregate` sums per-edge features onto centres for either.

Invalid slots — the diagonal, padding atoms, JAX-MD's empty slots (index n_atoms) — get a
distance of 1 before the square root and a zero validity weight (double-where trick), so no
NaN or inf reaches a gradient.

The box is a call-time argument (``system.box``, columns = lattice vectors): pair vectors use
the minimum image, exact while the cutoff is below half the smallest box width (checked on
the host by :func:`~qdyn.descriptors.symmetry_functions.check_box`). The neighbour list only
decides *which* pairs are looked at, so a list that holds every pair within the cutoff gives
exactly the all-pairs result.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition, space

from ..validation import QdynInputError
from .symmetry_functions import minimum_image


class Edges(NamedTuple):
    """Pair slots around every centre.

    Attributes:
        centre: int [n_edges] centre index per edge (flat layout), or None (rectangular
            layout, where row i is centre i).
        neighbour: int [n_atoms, n_slots] or [n_edges], clipped to valid atom indices.
        dR: [..., 3] Å, ``R[neighbour] - R[centre]`` (minimum image when periodic).
        r: [...] Å, |dR| on valid slots and 1.0 elsewhere.
        valid: bool [...].
    """

    centre: Optional[jax.Array]
    neighbour: jax.Array
    dR: jax.Array
    r: jax.Array
    valid: jax.Array


def _finish(R, centre_idx, nbr_idx, valid, box):
    dR = R[nbr_idx] - R[centre_idx]
    if box is not None:
        dR = minimum_image(dR, box)
    d2 = jnp.sum(dR * dR, axis=-1)
    valid = valid & (d2 > 0.0)
    r = jnp.sqrt(jnp.where(valid, d2, 1.0))
    return dR, r, valid


def dense_edges(R, mask, box=None) -> Edges:
    """Every ordered pair (i, j ≠ i) of real atoms: rectangular layout [n, n]."""
    n = R.shape[0]
    i = jnp.arange(n)
    centre_idx = jnp.broadcast_to(i[:, None], (n, n))
    nbr_idx = jnp.broadcast_to(i[None, :], (n, n))
    valid = mask[:, None] & mask[None, :] & (centre_idx != nbr_idx)
    dR, r, valid = _finish(R, centre_idx, nbr_idx, valid, box)
    return Edges(None, nbr_idx, dR, r, valid)


def neighbor_edges(R, mask, box, neighbor) -> Edges:
    """Edges from a JAX-MD neighbour list (``Dense``: rectangular; ``Sparse``: flat).

    Raises:
        ValueError: an ``OrderedSparse`` list (one direction per pair; centres need both).
    """
    n = R.shape[0]
    idx = neighbor.idx
    if neighbor.format is partition.Dense:
        nbr_idx = jnp.minimum(idx, n - 1)
        centre_idx = jnp.broadcast_to(jnp.arange(n)[:, None], idx.shape)
        valid = (idx < n) & mask[:, None] & mask[nbr_idx] & (idx != centre_idx)
        dR, r, valid = _finish(R, centre_idx, nbr_idx, valid, box)
        return Edges(None, nbr_idx, dR, r, valid)
    if neighbor.format is partition.Sparse:
        c = jnp.minimum(idx[0], n - 1)
        j = jnp.minimum(idx[1], n - 1)
        valid = (idx[0] < n) & (idx[1] < n) & mask[c] & mask[j] & (c != j)
        dR, r, valid = _finish(R, c, j, valid, box)
        return Edges(c, j, dR, r, valid)
    raise ValueError(f"neighbour-list format {neighbor.format} is not supported: use Dense or Sparse "
                     "(descriptors need both directions of every pair)")


def make_edges(R, mask, box=None, neighbor=None) -> Edges:
    """All pairs when ``neighbor`` is None, else the neighbour list's pairs."""
    return dense_edges(R, mask, box) if neighbor is None else neighbor_edges(R, mask, box, neighbor)


def aggregate(edges: Edges, x, n_atoms: int):
    """Σ over each centre's edges of per-edge features x [..., F...] → [n_atoms, F...]."""
    if edges.centre is None:
        return jnp.sum(x, axis=1)
    return jax.ops.segment_sum(x, edges.centre, num_segments=n_atoms)


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
        return partition.neighbor_list(disp, side, float(cutoff), dr_threshold=float(skin),
                                       capacity_multiplier=capacity_multiplier, format=fmt)
    disp, _ = space.periodic_general(jnp.asarray(b), fractional_coordinates=False)
    return partition.neighbor_list(disp, jnp.asarray(b), float(cutoff), dr_threshold=float(skin),
                                   capacity_multiplier=capacity_multiplier, format=fmt,
                                   fractional_coordinates=False, disable_cell_list=True)
