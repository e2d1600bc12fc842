"""Behler–Parrinello atom-centred symmetry functions, dense and padding-safe.

Per atom i and neighbour species s:
  radial  G2[i, s, k] = Σ_{j∈s} exp(-η (r_ij - μ_k)²) f_c(r_ij)
per neighbour-species pair (s ≤ t):
  angular G4[i, st, m] = Σ_{j∈s, k∈t, j≠k} 2^{1-ζ} (1 + λ_m cos θ_jik)^ζ exp(-η_a (r_ij² + r_ik²)) f_c(r_ij) f_c(r_ik)

Invariant under rotations, reflections, translations and permutations of like atoms by
construction. The cutoff ``f_c(x) = 1 - 10x³ + 15x⁴ - 6x⁵`` (x = r/r_c) is C² at r_c, so
forces and their derivatives are continuous when atoms cross it. All pairs are computed
densely (molecules and clusters); distances use the double-where trick so gradients stay
finite on the diagonal and for padding atoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement

import jax.numpy as jnp
import numpy as np

from ..elements import make_species_table
from ..geometry import check_box, cutoff_fn, dense_edges


@dataclass(frozen=True)
class SymmetryFunctions:
    """Configuration of the descriptor; call it on (R [n, 3], species [n], mask [n]).

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

    def __call__(self, R, species, mask, box=None):
        """Descriptors [n_atoms, size] (rows of padding atoms are zero).

        With a periodic ``box`` [3, 3] (columns = lattice vectors) pairs use the minimum
        image, which is exact while the cutoff is below half the box's smallest width
        (:func:`qdyn.geometry.check_box`); this dense form suits small cells, neighbour lists come with
        the scale-out work.
        """
        sidx = make_species_table(self.species)[species]
        onehot = (sidx[:, None] == jnp.arange(len(self.species))[None, :]) & mask[:, None]  # [n, S]
        e = dense_edges(R, mask, box)
        dR, r, valid = e.dR, e.r, e.valid
        fc = jnp.where(valid, cutoff_fn(r, self.cutoff), 0.0)
        mu = jnp.linspace(0.5, self.cutoff, self.n_radial)
        eta = (self.n_radial / self.cutoff) ** 2
        g = jnp.exp(-eta * (r[..., None] - mu) ** 2) * fc[..., None]  # [n, n, K]
        radial = jnp.einsum("ijk,js->isk", g, onehot.astype(R.dtype)).reshape(R.shape[0], -1)

        cos = jnp.einsum("ijx,ikx->ijk", dR, dR) / (r[:, :, None] * r[:, None, :])
        w = jnp.exp(-self.eta_angular * r**2) * fc  # [n, n]
        ww = w[:, :, None] * w[:, None, :]
        n = R.shape[0]
        ww = ww * (~jnp.eye(n, dtype=bool))[None]  # exclude j = k
        feats = []
        oh = onehot.astype(R.dtype)
        for zeta in self.zetas:
            for lam in (1.0, -1.0):
                # b = 1 + λ cos θ ≥ 0 reaches 0 (j = k, or an exactly linear triple), where a float
                # power's second derivative is 0 · inf = NaN (Hessians, normal modes): integer ζ
                # take an integer power (exact derivatives everywhere), others a double where
                b = 1.0 + lam * cos
                if float(zeta).is_integer():
                    powered = b ** int(zeta)
                else:
                    pos = b > 0.0
                    powered = jnp.where(pos, jnp.where(pos, b, 1.0) ** zeta, 0.0)
                term = 2.0 ** (1.0 - zeta) * powered * ww  # [i, j, k]
                per_pair = jnp.einsum("ijk,js,kt->ist", term, oh, oh)  # [n, S, S]
                for s, t in self.pairs:
                    # ordered (j, k) sums count each unordered like-species pair twice
                    feats.append(0.5 * per_pair[:, s, t] if s == t else per_pair[:, s, t])
        out = jnp.concatenate([radial, jnp.stack(feats, axis=-1)], axis=-1) if feats else radial
        return jnp.where(mask[:, None], out, 0.0)


def make_local_check(species, cutoff: float):
    """Host-side ``check(R, system)`` for models built on these descriptors: positions,
    species, and a periodic box large enough for the minimum image."""
    from ..validation import check_positions, check_species

    def check(R, system):
        check_positions(R, n_atoms=system.n_atoms, mask=system.mask)
        check_species(system.species, species, mask=system.mask)
        if system.box is not None:
            check_box(system.box, cutoff)

    return check


def species_and_descriptor(species, *, cutoff: float, n_radial: int, zetas, eta_angular: float):
    """(sorted species tuple, :class:`SymmetryFunctions`) for descriptor-based models, so that
    every model (and training's descriptor statistics) builds the same descriptor."""
    species = tuple(sorted(int(z) for z in species))
    return species, SymmetryFunctions(species=species, cutoff=cutoff, n_radial=n_radial, zetas=tuple(zetas),
                                      eta_angular=eta_angular)
