"""What every per-atom descriptor offers, and the one factory models build them with.

Both descriptors — :class:`~qdyn.descriptors.symmetry_functions.SymmetryFunctions` (Behler
G2/G4) and :func:`~qdyn.descriptors.power_spectrum.power_spectrum` (ACE-like B2) — are
called the same way, on all pairs or a JAX-MD neighbour list, so a model is written once
for either.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> from qdyn.structures import water
    >>> species, d = make_descriptor((8, 1), kind="power_spectrum", n_radial=4)
    >>> R, system = water()
    >>> species, d(R, system.species, system.mask).shape == (3, d.size)
    ((1, 8), True)
"""

from __future__ import annotations

from typing import Literal, Protocol, Sequence

import jax

from ..validation import QdynInputError
from .power_spectrum import power_spectrum
from .symmetry_functions import SymmetryFunctions

DESCRIPTORS = ("symmetry", "power_spectrum")


class Descriptor(Protocol):
    """A per-atom invariant descriptor with static settings only (no parameters).

    Attributes:
        species: atomic numbers distinguished (sorted).
        cutoff: r_c [Å].
        n_radial: radial channels.
        size: invariants per atom.
    """

    species: tuple
    cutoff: float
    n_radial: int

    @property
    def size(self) -> int: ...

    def __call__(self, R, species, mask, box=None, neighbor=None) -> jax.Array:
        """G [n_atoms, size] from R [n, 3] Å, species int [n], mask bool [n], an optional box
        [3, 3] Å (columns = lattice vectors) and an optional JAX-MD neighbour list."""


def make_descriptor(species: Sequence[int], *, kind: Literal["symmetry", "power_spectrum"] = "symmetry",
                    cutoff: float = 5.0, n_radial: int = 8, zetas: Sequence[float] = (1.0, 4.0),
                    eta_angular: float = 0.1, l_max: int = 2,
                    radial_basis: Literal["bessel", "gaussian"] = "bessel") -> tuple[tuple, Descriptor]:
    """(sorted species, descriptor): every model (and training's descriptor statistics) builds
    its descriptor here, so they agree.

    Args:
        species: atomic numbers.
        kind: "symmetry" (Behler G2/G4) or "power_spectrum".
        cutoff: r_c [Å].
        n_radial: radial functions per species.
        zetas: angular exponents ζ of the symmetry functions (dimensionless).
        eta_angular: Gaussian width η of the angular symmetry functions [Å⁻²].
        l_max: highest spherical-harmonic degree (1..3) of the power spectrum.
        radial_basis: radial basis of the power spectrum ("bessel" or "gaussian").

    Raises:
        QdynInputError: an unknown kind (or bad power-spectrum settings).
    """
    species = tuple(sorted(int(z) for z in species))
    if kind == "symmetry":
        return species, SymmetryFunctions(species=species, cutoff=cutoff, n_radial=n_radial, zetas=tuple(zetas),
                                          eta_angular=eta_angular)
    if kind == "power_spectrum":
        return species, power_spectrum(species, cutoff=cutoff, n_radial=n_radial, l_max=l_max, radial=radial_basis)
    raise QdynInputError(f"unknown descriptor {kind!r}; choose one of {DESCRIPTORS}")
