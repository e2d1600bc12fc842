"""Real spherical harmonics up to l = 3, written out as polynomials of the unit vector.

Hand-written rather than taken from e3nn-jax (0.21.0 is installed as a jax-md dependency):
the invariants qdyn builds only need ``Σ_m Y_lm(û) Y_lm(v̂)`` per l, which any orthonormal
real basis gives, and 16 fixed polynomials keep the hot loop free of e3nn's Irreps
machinery, keep float64 end to end and add no pinned dependency. Correctness is pinned by
the addition theorem ``Σ_m Y_lm(û) Y_lm(v̂) = (2l+1)/(4π) P_l(û·v̂)`` in the tests (and by a
comparison with e3nn-jax where it is installed).

Layout: index ``l² + (m + l)`` for m = -l..l, i.e. [Y00, Y1-1, Y10, Y11, Y2-2, ...];
normalisation: orthonormal on the unit sphere ("integral" normalisation).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..validation import QdynInputError

L_MAX_SUPPORTED = 3


def n_components(l_max: int) -> int:
    """(l_max + 1)² functions."""
    return (l_max + 1) ** 2


def l_of_component(l_max: int) -> np.ndarray:
    """[n_components] the l of every component."""
    return np.concatenate([np.full(2 * l + 1, l) for l in range(l_max + 1)])


def real_spherical_harmonics(u, l_max: int):
    """Y_lm(û) for unit vectors u [..., 3] → [..., (l_max+1)²] (orthonormal real basis).

    Raises:
        QdynInputError: l_max outside 0..3.
    """
    if not 0 <= l_max <= L_MAX_SUPPORTED:
        raise QdynInputError(f"spherical harmonics are implemented for l_max = 0..{L_MAX_SUPPORTED}, got {l_max}")
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    pi = np.pi
    out = [jnp.full_like(x, 0.5 * np.sqrt(1.0 / pi))]
    if l_max >= 1:
        c1 = np.sqrt(3.0 / (4.0 * pi))
        out += [c1 * y, c1 * z, c1 * x]
    if l_max >= 2:
        c = 0.5 * np.sqrt(15.0 / pi)
        out += [c * x * y, c * y * z, 0.25 * np.sqrt(5.0 / pi) * (3.0 * z * z - 1.0), c * x * z,
                0.5 * c * (x * x - y * y)]
    if l_max >= 3:
        out += [0.25 * np.sqrt(35.0 / (2.0 * pi)) * y * (3.0 * x * x - y * y),
                0.5 * np.sqrt(105.0 / pi) * x * y * z,
                0.25 * np.sqrt(21.0 / (2.0 * pi)) * y * (5.0 * z * z - 1.0),
                0.25 * np.sqrt(7.0 / pi) * z * (5.0 * z * z - 3.0),
                0.25 * np.sqrt(21.0 / (2.0 * pi)) * x * (5.0 * z * z - 1.0),
                0.25 * np.sqrt(105.0 / pi) * z * (x * x - y * y),
                0.25 * np.sqrt(35.0 / (2.0 * pi)) * x * (x * x - 3.0 * y * y)]
    return jnp.stack(out, axis=-1)
