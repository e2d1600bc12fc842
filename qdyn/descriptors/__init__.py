"""Invariant descriptors of atomic environments."""

from .base import DESCRIPTORS, Descriptor, make_descriptor
from .neighbors import neighbor_list_fn
from .power_spectrum import PowerSpectrum, power_spectrum
from .radial import RadialBasis, radial_basis
from .spherical import real_spherical_harmonics
from .symmetry_functions import SymmetryFunctions

__all__ = ["DESCRIPTORS", "Descriptor", "make_descriptor", "SymmetryFunctions", "PowerSpectrum", "power_spectrum",
           "RadialBasis", "radial_basis", "real_spherical_harmonics", "neighbor_list_fn"]
