"""Spherical-harmonic (ACE-like B2 / SOAP-like power spectrum) invariants per atom.

For centre i, neighbour species s, radial channel k and spherical harmonic (l, m), the
atomic density expansion (the "A basis" of ACE, Drautz, PRB 99, 014104, 2019) is

    A[i, s, k, lm] = Σ_{j ∈ s, r_ij < r_c} R_k(r_ij) Y_lm(r̂_ij)

(:mod:`.radial` basis, C² at r_c; :mod:`.spherical` harmonics). Its rotation invariants are

* radial (body order 2):  G2[i, s, k] = Σ_{j∈s} R_k(r_ij)  (= A[i, s, k, 00] / Y_00),
* power spectrum (body order 3), per neighbour-species pair s ≤ t, channel k and l ≥ 1:
  p[i, st, k, l] = 4π/(2l+1) Σ_m A[i,s,k,lm] A[i,t,k,lm]
                 = Σ_{j∈s, j'∈t} R_k(r_ij) R_k(r_ij') P_l(cos θ_jij')   (addition theorem),

invariant under rotations *and* reflections (Y_l picks up (-1)^l under inversion, squared
away), translations, and permutations of like neighbours (sums). Where the radial G2 sees
only the distance distribution, p sees angles: square-planar and tetrahedral environments
with identical distances differ (a test shows it). The invariants of each atom are written
into the block of its own (centre) species, zero elsewhere, so a shared linear encoding or
network can treat O and H environments differently:

    G[i] = onehot(Z_i) ⊗ [G2 (S·K), p (S(S+1)/2 · K · l_max)].

Works on all pairs (molecules, clusters; padding via the mask) and on JAX-MD neighbour
lists in periodic boxes (:mod:`.neighbors`); both give the same numbers when the list holds
every pair within r_c.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> from qdyn.descriptors.power_spectrum import power_spectrum
    >>> from qdyn.structures import water
    >>> d = power_spectrum((1, 8), cutoff=5.0, n_radial=6, l_max=2)
    >>> R, system = water()
    >>> d(R, system.species, system.mask).shape == (3, d.size)
    True
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Callable, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from ..elements import make_species_table
from ..geometry import aggregate, make_edges
from ..validation import QdynInputError
from .radial import radial_basis
from .spherical import l_of_component, n_components, real_spherical_harmonics

_Y00 = 0.5 / np.sqrt(np.pi)
_C1 = np.sqrt(3.0 / (4.0 * np.pi))


class PowerSpectrum(NamedTuple):
    """Pure functions of the power-spectrum descriptor (static structure only, no parameters).

    A :class:`~qdyn.descriptors.Descriptor`: call it as
    ``descriptor(R [n, 3] Å, species [n], mask [n], box=None, neighbor=None) -> G [n, size]``.

    Attributes:
        expand: ``(R, species, mask, box=None, neighbor=None) -> A [n, S, K, (l_max+1)²]``,
            the density expansion (equivariant; rows of padding atoms are zero).
        invariants: ``(A, species, mask) -> G [n, size]`` (rotation/reflection invariants).
        vectors: ``A -> [n, S, K, 3]`` Å⁰, the Cartesian l = 1 part Σ_j R_k(r_ij) r̂_ij
            (equivariant vectors for the quantum symmetry function).
        size: invariants per atom.
        species: atomic numbers distinguished (sorted).
        cutoff: r_c [Å].
        n_radial: radial channels K.
        l_max: highest l.
    """

    expand: Callable
    invariants: Callable
    vectors: Callable
    size: int
    species: tuple
    cutoff: float
    n_radial: int
    l_max: int

    def __call__(self, R, species, mask, box=None, neighbor=None):
        return self.invariants(self.expand(R, species, mask, box, neighbor), species, mask)


def power_spectrum(species: Sequence[int], *, cutoff: float = 5.0, n_radial: int = 6, l_max: int = 2,
                   radial: str = "bessel") -> PowerSpectrum:
    """Build the radial + power-spectrum descriptor for the given elements.

    Args:
        species: atomic numbers (neighbour and centre channels).
        cutoff: r_c [Å].
        n_radial: radial basis functions K.
        l_max: highest spherical-harmonic degree (1..3).
        radial: "bessel" or "gaussian" (:func:`~qdyn.descriptors.radial.radial_basis`).

    Raises:
        QdynInputError: no species, or l_max outside 1..3.
    """
    species = tuple(sorted(int(z) for z in species))
    if not species:
        raise QdynInputError("the descriptor needs at least one species")
    if not 1 <= l_max <= 3:
        raise QdynInputError(f"l_max must be 1..3 (l = 0 alone is the radial descriptor), got {l_max}")
    rb = radial_basis(radial, n=n_radial, cutoff=cutoff)
    S, K = len(species), n_radial
    table = make_species_table(species)
    pairs = list(combinations_with_replacement(range(S), 2))
    ps, pt = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    ls = l_of_component(l_max)
    # [M, l_max] sums the m of each l ≥ 1, with the 4π/(2l+1) of the addition theorem
    lmat = np.zeros((n_components(l_max), l_max))
    for m, l in enumerate(ls):
        if l >= 1:
            lmat[m, l - 1] = 4.0 * np.pi / (2 * l + 1)
    n_inv = S * K + len(pairs) * K * l_max
    size = S * n_inv

    def onehot(Z, mask):
        return (table[Z][:, None] == jnp.arange(S)[None, :]) & mask[:, None]

    def expand(R, Z, mask, box=None, neighbor=None):
        R = jnp.asarray(R)
        n = R.shape[0]
        e = make_edges(R, mask, box, neighbor)
        w = onehot(Z, mask).astype(R.dtype)[e.neighbour] * e.valid[..., None]  # [..., S]
        Rk = rb.fn(e.r)  # [..., K]
        Y = real_spherical_harmonics(e.dR / e.r[..., None], l_max)  # [..., M]
        if e.centre is None:
            # one batched matmul per centre, [S·K, slots] @ [slots, M]: the three-operand einsum
            # built an [n, slots, S, K] outer product whose transposes dominated the force pass
            wR = (w[..., :, None] * Rk[..., None, :]).reshape(n, -1, S * K)
            return jnp.einsum("ajx,ajm->axm", wR, Y).reshape(n, S, K, -1)
        x = w[:, :, None, None] * Rk[:, None, :, None] * Y[:, None, None, :]
        return aggregate(e, x, n)

    def invariants(A, Z, mask):
        n = A.shape[0]
        g2 = A[..., 0].reshape(n, S * K) / _Y00
        p = jnp.einsum("askm,atkm,ml->astkl", A, A, lmat)[:, ps, pt]  # [n, pairs, K, l_max]
        feats = jnp.concatenate([g2, p.reshape(n, -1)], axis=-1)
        oc = onehot(Z, mask).astype(A.dtype)
        return (oc[:, :, None] * feats[:, None, :]).reshape(n, size)

    def vectors(A):
        # Y_1m = c₁ (y, z, x): reorder to (x, y, z) and divide c₁ out
        return A[..., jnp.array([3, 1, 2])] / _C1

    return PowerSpectrum(expand=expand, invariants=invariants, vectors=vectors, size=size, species=species,
                      cutoff=float(cutoff), n_radial=K, l_max=int(l_max))
