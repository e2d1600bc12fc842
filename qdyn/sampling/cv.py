"""Collective variables (CVs): pure JAX functions of positions, batched and differentiable.

Every CV takes positions ``R [..., n_atoms, 3]`` Å (any leading batch axes: frames,
replicas) and an optional ``box [..., 3, 3]`` Å (columns = lattice vectors; pair vectors use
the minimum image) and returns an array of the leading shape ``[...]``. They are plain
functions, so ``jax.grad`` gives the CV force on the atoms and ``jax.vmap``/leading axes
batch them; every norm goes through :func:`qdyn.geometry.safe_norm`, so no gradient is NaN
even for coincident atoms.

Units: distances Å, angles and dihedrals in radians (dihedrals are periodic on (-π, π]:
:data:`PERIODS` says which CV kinds are periodic, metadynamics and umbrella restraints use it
to wrap differences), coordination numbers are dimensionless.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax, jax.numpy as jnp
    >>> R = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    >>> float(distance(R, 0, 1)), round(float(angle(R, 0, 1, 2)), 6)
    (1.0, 1.570796)
    >>> round(float(dihedral(R, 0, 1, 2, 3)), 6)
    1.570796
    >>> jax.grad(distance)(R, 0, 1)[0].tolist()  # d|R1 - R0| / dR0
    [-1.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax.numpy as jnp

from ..geometry import minimum_image, safe_norm

#: period of each CV kind (None: not periodic); differences of periodic CVs are wrapped
PERIODS: dict[str, Optional[float]] = {
    "distance": None, "angle": None, "dihedral": 2.0 * math.pi, "coordination": None,
    "position": None, "difference": None,
}


def _vector(R, i: int, j: int, box=None):
    """``R_j - R_i`` [..., 3], minimum image when a box is given."""
    d = R[..., j, :] - R[..., i, :]
    if box is None:
        return d
    return minimum_image(d[..., None, :], box)[..., 0, :]


def distance(R, i: int, j: int, box=None):
    """Distance |R_j - R_i| [...] Å (minimum image in a periodic box)."""
    return safe_norm(_vector(R, i, j, box))[0]


def difference(R, i: int, j: int, k: int, l: int, box=None):
    """Difference of two distances ``|R_j - R_i| - |R_l - R_k|`` [...] Å (a proton-transfer
    or exchange coordinate)."""
    return distance(R, i, j, box) - distance(R, k, l, box)


def angle(R, i: int, j: int, k: int, box=None):
    """Angle i-j-k at atom j [...] radians in [0, π].

    Written with ``atan2(|u × v|, u · v)``, which keeps full precision and a finite gradient
    near 0 and π, where ``arccos`` loses both.
    """
    u, v = _vector(R, j, i, box), _vector(R, j, k, box)
    return jnp.arctan2(safe_norm(jnp.cross(u, v))[0] * _nonzero(u, v), jnp.sum(u * v, axis=-1))


def _nonzero(u, v):
    # |u × v| from safe_norm is 1.0 (not 0) when u ∥ v; this factor puts the 0 back
    return jnp.where(jnp.sum(jnp.cross(u, v) ** 2, axis=-1) > 0.0, 1.0, 0.0)


def dihedral(R, i: int, j: int, k: int, l: int, box=None):
    """Dihedral angle i-j-k-l [...] radians in (-π, π] (IUPAC sign convention: positive
    clockwise looking down j → k).

    ``atan2(|b2| b1 · (b2 × b3), (b1 × b2) · (b2 × b3))`` (Blondel & Karplus), with no
    normalisation of the plane normals, so it stays finite wherever the bonds are not
    collinear.
    """
    b1, b2, b3 = _vector(R, i, j, box), _vector(R, j, k, box), _vector(R, k, l, box)
    n1, n2 = jnp.cross(b1, b2), jnp.cross(b2, b3)
    y = safe_norm(b2)[0] * jnp.sum(b1 * n2, axis=-1)
    x = jnp.sum(n1 * n2, axis=-1)
    return jnp.arctan2(y, x)


def switching(r, r0: float, *, n: int = 6, m: int = 12):
    """Rational switching function ``(1 - (r/r0)^n) / (1 - (r/r0)^m)``: 1 at r = 0, n/m at
    r = r0 (removable singularity, handled), → 0 for r ≫ r0 (PLUMED's default form)."""
    x = r / r0
    near = jnp.abs(x - 1.0) < 1e-6
    xs = jnp.where(near, 0.5, x)  # keep the masked branch (and its gradient) finite
    value = (1.0 - xs**n) / (1.0 - xs**m)
    # first-order expansion around x = 1: n/m + n(n-m)/(2m) (x - 1)
    series = n / m + n * (n - m) / (2.0 * m) * (x - 1.0)
    return jnp.where(near, series, value)


def coordination(R, group_a: Sequence[int], group_b: Sequence[int], r0: float, *, n: int = 6, m: int = 12,
                 box=None):
    """Coordination number ``Σ_{a∈A} Σ_{b∈B, b≠a} s(|R_b - R_a|)`` [...] with the rational
    :func:`switching` function (smooth, differentiable count of B atoms within ~r0 Å of A
    atoms; a pair in both groups counts twice, once from each side)."""
    a = jnp.asarray(group_a, dtype=int)
    b = jnp.asarray(group_b, dtype=int)
    d = R[..., b, :][..., None, :, :] - R[..., a, :][..., :, None, :]  # [..., A, B, 3]
    if box is not None:
        d = minimum_image(d, box[..., None, :, :])
    r, ok = safe_norm(d, jnp.broadcast_to(a[:, None] != b[None, :], d.shape[:-1]))
    return jnp.sum(jnp.where(ok, switching(r, r0, n=n, m=m), 0.0), axis=(-2, -1))


def position(R, atom: int, axis: int, box=None):
    """Cartesian coordinate ``R[atom, axis]`` [...] Å: the CVs of an analytic 2D toy surface
    (Müller–Brown) where x and y themselves are the slow coordinates (the box is not used:
    an absolute coordinate has no minimum image)."""
    return R[..., atom, axis]


def stack(cvs: Sequence[Callable]) -> Callable:
    """Several CVs ``cv(R, box)`` as one vector-valued function ``s(R, box) -> [..., n_cv]``."""

    def s(R, box=None):
        return jnp.stack([cv(R, box) for cv in cvs], axis=-1)

    return s


def wrap(delta, period: Optional[float]):
    """A CV difference folded into [-period/2, period/2) for periodic CVs (identity if None)."""
    if period is None:
        return delta
    return delta - period * jnp.round(delta / period)
