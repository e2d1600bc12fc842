"""The Müller–Brown surface as a qdyn MD energy: one particle, V(x, y) from Müller & Brown
(Theor. Chim. Acta 53, 75 (1979)) times an energy scale, plus a harmonic spring on z so the
3D particle stays in the plane (z decouples, so the free energy of (x, y) is V up to a
constant, and that of x alone is ``-kT ln ∫ exp(-V/kT) dy``: :func:`exact_fes_x`).

Positions in Å, energies in eV: ``E = scale_eV · V_MB(x, y) + ½ k_z z²``.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import numpy as np
    >>> round(float(potential(np.array([-0.558, 1.442]))), 1)  # the deepest minimum, MB units
    -146.7
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..system import System

# the four Gaussian terms A exp(a (x-x0)² + b (x-x0)(y-y0) + c (y-y0)²)
A = (-200.0, -100.0, -170.0, 15.0)
a = (-1.0, -1.0, -6.5, 0.7)
b = (0.0, 0.0, 11.0, 0.6)
c = (-10.0, -10.0, -6.5, 0.7)
x0 = (1.0, 0.0, -0.5, -1.0)
y0 = (0.0, 0.5, 1.5, 1.0)
#: the three minima (x, y) Å, deepest first
MINIMA = ((-0.558, 1.442), (0.623, 0.028), (-0.050, 0.467))


def potential(xy):
    """V_MB at points xy [..., 2] (Müller–Brown units); NumPy or JAX arrays."""
    xp = jnp if not isinstance(xy, np.ndarray) else np
    x, y = xy[..., 0], xy[..., 1]
    v = 0.0
    for k in range(4):
        dx, dy = x - x0[k], y - y0[k]
        v = v + A[k] * xp.exp(a[k] * dx * dx + b[k] * dx * dy + c[k] * dy * dy)
    return v


def energy_fn(*, scale_eV: float, k_z: float = 5.0):
    """The MD energy ``(R, *, params, system, neighbor) -> eV`` of one particle R [1, 3] Å
    (params unused: pass ``{}``); ``k_z`` eV/Å² is the spring holding z at 0."""

    def energy(R, *, params, system, neighbor=None):
        return scale_eV * potential(R[0, :2]) + 0.5 * k_z * R[0, 2] ** 2

    return energy


def system() -> System:
    """One hydrogen-mass particle in free space."""
    return System.create([1])


def grid(n: int = 101, *, x=(-1.5, 1.2), y=(-0.3, 2.0)):
    """(xs [n], ys [n], V [n, n] MB units with V[i, j] = V(xs[i], ys[j]))."""
    xs, ys = np.linspace(*x, n), np.linspace(*y, n)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    return xs, ys, potential(np.stack([X, Y], axis=-1))


def exact_fes_x(xs, kT_mb: float, *, y=(-1.0, 3.0), n_y: int = 2001):
    """Exact F(x) = -kT ln ∫ exp(-V(x, y)/kT) dy [MB units], minimum shifted to 0."""
    ys = np.linspace(*y, n_y)
    X, Y = np.meshgrid(np.asarray(xs), ys, indexing="ij")
    v = potential(np.stack([X, Y], axis=-1))
    vmin = v.min()
    F = -kT_mb * np.log(np.trapezoid(np.exp(-(v - vmin) / kT_mb), ys, axis=1)) + vmin
    return F - F.min()
