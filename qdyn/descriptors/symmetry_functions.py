"""Behler–Parrinello atom-centred symmetry functions on all pairs or a neighbour list.

Per atom i and neighbour species s:
  radial  G2[i, s, k] = Σ_{j∈s} exp(-η (r_ij - μ_k)²) f_c(r_ij)
per neighbour-species pair (s ≤ t):
  angular G4[i, st, m] = Σ_{j∈s, k∈t, j≠k} 2^{1-ζ} (1 + λ_m cos θ_jik)^ζ exp(-η_a (r_ij² + r_ik²)) f_c(r_ij) f_c(r_ik)

(Behler, J. Chem. Phys. 134, 074106, 2011.) Invariant under rotations, reflections,
translations and permutations of like atoms by construction. The radial shapes are the
``"gaussian"`` basis of :mod:`.radial` (μ_k evenly spaced on [0.5 Å, r_c], η = (K/r_c)²)
with the C² cutoff of :func:`qdyn.geometry.cutoff_fn`, so forces and their derivatives are
continuous when atoms cross r_c.

Pairs come from :func:`qdyn.geometry.make_edges`: all pairs (molecules, clusters; padding
via the mask) or a JAX-MD ``Dense`` neighbour list in a periodic box (the triplets j, k of
centre i are the pairs of slots in its row). Both give the same numbers when the list holds
every pair within r_c.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> from qdyn.structures import water
    >>> sf = SymmetryFunctions(species=(1, 8), cutoff=5.0, n_radial=4)
    >>> R, system = water()
    >>> sf(R, system.species, system.mask).shape == (3, sf.size)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement

import jax.numpy as jnp

from ..elements import make_species_table
from ..geometry import cutoff_fn, make_edges
from ..validation import QdynInputError
from .radial import radial_basis


@dataclass(frozen=True)
class SymmetryFunctions:
    """The descriptor's settings; call it as ``G = sf(R, species, mask, box=None, neighbor=None)``.

    Attributes:
        species: atomic numbers the descriptor distinguishes (neighbour channels).
        cutoff: r_c [Å].
        n_radial: number of radial Gaussians, centres evenly spaced on [0.5, r_c].
        eta_angular: η for the angular terms [Å⁻²].
        zetas: ζ values of the angular terms (each used with λ = ±1).
    """

    species: tuple[int, ...]
    cutoff: float = 5.0
    n_radial: int = 8
    eta_angular: float = 0.1
    zetas: tuple[float, ...] = (1.0, 4.0)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return list(combinations_with_replacement(range(len(self.species)), 2))

    @property
    def size(self) -> int:
        n_s = len(self.species)
        return n_s * self.n_radial + len(self.pairs) * 2 * len(self.zetas)

    def __call__(self, R, species, mask, box=None, neighbor=None):
        """Descriptors G [n_atoms, size] (rows of padding atoms are zero).

        Args:
            R: [n, 3] Å positions.
            species: int [n] atomic numbers.
            mask: bool [n], False for padding atoms.
            box: optional [3, 3] Å lattice vectors (columns): minimum-image pairs, exact while
                the cutoff is below half the box's smallest width
                (:func:`qdyn.validation.check_box`).
            neighbor: optional JAX-MD neighbour list in ``Dense`` format (``box`` required).

        Raises:
            QdynInputError: a ``Sparse`` neighbour list (triplets need each centre's row).
        """
        R = jnp.asarray(R)
        e = make_edges(R, mask, box, neighbor)
        if e.centre is not None:
            raise QdynInputError("symmetry functions sum over pairs of each atom's neighbours: use a Dense "
                                 "neighbour list (neighbor_list_fn(..., format='dense'))")
        S = len(self.species)
        onehot = make_species_table(self.species)[species][:, None] == jnp.arange(S)[None, :]
        oh = (onehot[e.neighbour] & e.valid[..., None]).astype(R.dtype)  # [n, slots, S] neighbour's channel
        g = radial_basis("gaussian", n=self.n_radial, cutoff=self.cutoff).fn(e.r)  # [n, slots, K]
        radial = jnp.einsum("ijk,ijs->isk", g, oh).reshape(R.shape[0], -1)

        fc = jnp.where(e.valid, cutoff_fn(e.r, self.cutoff), 0.0)
        cos = jnp.einsum("ijx,ikx->ijk", e.dR, e.dR) / (e.r[:, :, None] * e.r[:, None, :])
        w = jnp.exp(-self.eta_angular * e.r**2) * fc  # [n, slots]
        m = e.r.shape[1]
        ww = w[:, :, None] * w[:, None, :] * (~jnp.eye(m, dtype=bool))[None]  # slot j ≠ slot k
        feats = []
        for zeta in self.zetas:
            for lam in (1.0, -1.0):
                term = 2.0 ** (1.0 - zeta) * _power(1.0 + lam * cos, zeta) * ww  # [i, j, k]
                per_pair = jnp.einsum("ijk,ijs,ikt->ist", term, oh, oh)  # [n, S, S]
                for s, t in self.pairs:
                    # ordered (j, k) sums count each unordered like-species pair twice
                    feats.append(0.5 * per_pair[:, s, t] if s == t else per_pair[:, s, t])
        out = jnp.concatenate([radial, jnp.stack(feats, axis=-1)], axis=-1) if feats else radial
        return jnp.where(mask[:, None], out, 0.0)


def _power(b, zeta: float):
    """b^ζ for b = 1 + λ cos θ ≥ 0. b reaches 0 (j = k, or an exactly linear triple), where a
    float power's second derivative is 0 · inf = NaN (Hessians, normal modes): integer ζ take
    an integer power (exact derivatives everywhere), others a double where."""
    if float(zeta).is_integer():
        return b ** int(zeta)
    pos = b > 0.0
    return jnp.where(pos, jnp.where(pos, b, 1.0) ** zeta, 0.0)
