"""Pair geometry, written once: the smooth cutoff, the minimum image, a NaN-free norm and the
edges (centre, neighbour) every descriptor and pair term is built on (the host-side box
check is :func:`qdyn.validation.check_box`).

Edges come from all pairs (molecules, clusters) or from a JAX-MD neighbour list (periodic
boxes), in one representation. An :class:`Edges` holds, for every (centre i, neighbour j)
slot, the pair vector ``R_j - R_i`` (minimum image in a periodic box), its length and a
validity mask. Slots are laid out either as a rectangle [n_atoms, n_slots] (all pairs, or
JAX-MD's ``Dense`` format: row i lists i's neighbours) or as a flat list [n_edges] (JAX-MD's
``Sparse`` format, both directions of every pair); :func:`aggregate` sums per-edge features
onto centres for either.

Invalid slots — the diagonal, padding atoms, JAX-MD's empty slots (index n_atoms) — get a
distance of 1 and a zero validity weight (:func:`safe_norm`), so no NaN or inf reaches a
gradient.

The box is a call-time argument (``system.box``, columns = lattice vectors): pair vectors use
the minimum image, exact while the cutoff is below half the smallest box width (checked on
the host by :func:`qdyn.validation.check_box`). The neighbour list only decides *which* pairs
are looked at, so a list that holds every pair within the cutoff gives exactly the all-pairs
result.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax.numpy as jnp
    >>> R = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.5], [9.0, 9.0, 9.0]])
    >>> e = dense_edges(R, jnp.array([True, True, False]))
    >>> float(e.r[0, 1]), bool(e.valid[0, 2])  # the third atom is padding
    (1.5, False)
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._jax_md import partition


def cutoff_fn(r, r_c: float):
    """C² polynomial cutoff ``f_c(x) = 1 - 10x³ + 15x⁴ - 6x⁵`` (x = r/r_c): 1 at r = 0, 0 with
    zero first and second derivative at r_c (forces and their derivatives stay continuous
    when a neighbour crosses it), exactly 0 beyond."""
    x = jnp.clip(r / r_c, 0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def minimum_image(dR, box):
    """Wrap pair vectors dR [..., 3] Å into the periodic box [3, 3] (columns = lattice vectors)."""
    frac = dR @ jnp.linalg.inv(box).T
    return dR - jnp.round(frac) @ box.T


def safe_norm(x, valid=None, *, tiny: float = 0.0):
    """Euclidean norm over the last axis whose gradient is never NaN (double-where trick).

    Args:
        x: [..., d] vectors.
        valid: optional bool [...]; entries where it is False are treated as too short.
        tiny: squared norms at or below this count as zero.

    Returns:
        (r [...], ok [...]): ``r = |x|`` where ``ok = valid & |x|² > tiny`` and exactly 1.0
        elsewhere (so callers may divide by it), with zero gradient through the masked entries.
    """
    r2 = jnp.sum(x * x, axis=-1)
    ok = r2 > tiny if valid is None else valid & (r2 > tiny)
    return jnp.sqrt(jnp.where(ok, r2, 1.0)), ok


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

    def centres(self) -> jax.Array:
        """Centre index of every slot, in the layout of ``neighbour``."""
        if self.centre is not None:
            return self.centre
        return jnp.broadcast_to(jnp.arange(self.neighbour.shape[0])[:, None], self.neighbour.shape)


def _edges(R, centre_idx, nbr_idx, valid, box, centre=None) -> Edges:
    """``centre_idx`` None: rectangular layout, row i is centre i (R broadcast, not gathered:
    a gather's gradient is a scatter-add over every slot, a broadcast's a row sum)."""
    dR = R[nbr_idx] - (R[:, None, :] if centre_idx is None else R[centre_idx])
    if box is not None:
        dR = minimum_image(dR, box)
    r, valid = safe_norm(dR, valid)
    return Edges(centre, nbr_idx, dR, r, valid)


def dense_edges(R, mask, box=None) -> Edges:
    """Every ordered pair (i, j ≠ i) of real atoms: rectangular layout [n, n].

    Args:
        R: [n, 3] Å positions.
        mask: bool [n], False for padding atoms.
        box: optional [3, 3] Å lattice vectors (columns): minimum-image pair vectors.
    """
    n = R.shape[0]
    i = jnp.arange(n)
    centre_idx = jnp.broadcast_to(i[:, None], (n, n))
    nbr_idx = jnp.broadcast_to(i[None, :], (n, n))
    valid = mask[:, None] & mask[None, :] & (centre_idx != nbr_idx)
    return _edges(R, None, nbr_idx, valid, box)


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
        return _edges(R, None, nbr_idx, valid, box)
    if neighbor.format is partition.Sparse:
        c = jnp.minimum(idx[0], n - 1)
        j = jnp.minimum(idx[1], n - 1)
        valid = (idx[0] < n) & (idx[1] < n) & mask[c] & mask[j] & (c != j)
        return _edges(R, c, j, valid, box, centre=c)
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
