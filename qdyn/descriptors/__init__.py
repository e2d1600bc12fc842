"""Invariant descriptors of atomic environments."""

from .neighbors import Edges, make_edges, neighbor_list_fn
from .power_spectrum import Descriptor, power_spectrum
from .radial import RadialBasis, radial_basis
from .spherical import real_spherical_harmonics
from .symmetry_functions import SymmetryFunctions, cutoff_fn, pair_geometry

__all__ = ["SymmetryFunctions", "cutoff_fn", "pair_geometry", "Descriptor", "power_spectrum", "RadialBasis",
           "radial_basis", "real_spherical_harmonics", "Edges", "make_edges", "neighbor_list_fn"]
