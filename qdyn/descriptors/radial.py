"""Smooth radial bases for atomic environments, each with a C² cutoff at r_c.

Every basis function is a shape ``g_k(r)`` times the polynomial envelope
``f_c(x) = 1 - 10x³ + 15x⁴ - 6x⁵`` (x = r/r_c, :func:`qdyn.geometry.cutoff_fn`):
``f_c`` and its first two derivatives vanish at r_c, so energies, forces and force
derivatives (what training differentiates) are continuous when a neighbour crosses the
cutoff; beyond r_c everything is exactly zero.

Kinds:

* ``"bessel"`` (DimeNet, Gasteiger et al., ICLR 2020): ``g_k(r) = sqrt(2/r_c) sin(kπ r/r_c) / r``,
  k = 1..K — orthogonal on [0, r_c], finite at r → 0 (limit ``sqrt(2/r_c) kπ/r_c``);
* ``"gaussian"`` (Behler's G2 shapes): ``g_k(r) = exp(-η (r - μ_k)²)``, μ_k evenly spaced on
  [0.5 Å, r_c], η = (K/r_c)².

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax.numpy as jnp
    >>> rb = radial_basis("bessel", n=6, cutoff=5.0)
    >>> rb.fn(jnp.array([1.0, 4.9])).shape
    (2, 6)
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..validation import QdynInputError
from ..geometry import cutoff_fn

RadialKind = Literal["bessel", "gaussian"]


class RadialBasis(NamedTuple):
    """A radial basis with its envelope.

    Attributes:
        fn: ``fn(r [...] Å) -> [..., size]`` (pure, no parameters; zero for r ≥ cutoff).
        size: number of basis functions K.
        cutoff: r_c [Å].
        kind: "bessel" or "gaussian".
    """

    fn: Callable
    size: int
    cutoff: float
    kind: str


def _last_axis(a: np.ndarray, ndim: int) -> np.ndarray:
    """``a`` [K] as [1, ..., 1, K] with ``ndim`` axes: the broadcast against ``r[..., None]``
    written out (tests run with rank promotion raising)."""
    return a.reshape((1,) * (ndim - 1) + a.shape)


@jax.custom_jvp
def _sin_cos(x):
    """[..., 2] (sin x, cos x), evaluated once per element and stored.

    Why the product with the identity: XLA's CPU fusion copies an elementwise producer into
    every consumer fusion and evaluates it there once per *output* element, so a sine read by
    a [..., K] radial block and by the force fusions was evaluated K times per pair in each
    of them (half of the hybrid's MD step at 3000 atoms). A dot is never fused into its
    consumers (``optimization_barrier`` is removed before fusion on CPU), and ``x·1 + y·0``
    is exact. The derivative reuses the stored pair instead of evaluating both again.
    """
    return jnp.stack([jnp.sin(x), jnp.cos(x)], axis=-1) @ jnp.eye(2, dtype=x.dtype)


@_sin_cos.defjvp
def _sin_cos_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    sc = _sin_cos(x)
    return sc, jnp.stack([sc[..., 1], -sc[..., 0]], axis=-1) * dx[..., None]


def _sin_multiples(x, n: int):
    """[..., n] sin(k x) for k = 1..n from one sine and one cosine of x (:func:`_sin_cos`).

    ``sin(kx) = sin(x) U_{k-1}(cos x)`` with the Chebyshev polynomials of the second kind from
    their recurrence ``U_k = 2c U_{k-1} - U_{k-2}`` (absolute error ~k·ε; the monomial form of
    U loses digits from k ≈ 12). The recurrence runs on the whole [..., n] block, column k
    stopping after k - 1 steps: no stack of n separately computed columns, which XLA would
    evaluate per output element.
    """
    sc = _sin_cos(x)
    shape = x.shape + (n,)
    two_cos = 2.0 * jnp.broadcast_to(sc[..., 1:], shape)
    previous, u = jnp.zeros(shape, x.dtype), jnp.ones(shape, x.dtype)  # U_{-1}, U_0
    degree = _last_axis(np.arange(n), len(shape))  # column k - 1 holds U_{k-1}
    for step in range(1, n):
        advance = degree >= step
        previous, u = jnp.where(advance, u, previous), jnp.where(advance, two_cos * u - previous, u)
    return sc[..., :1] * u


def radial_basis(kind: RadialKind, *, n: int, cutoff: float) -> RadialBasis:
    """Build a radial basis of ``n`` functions that is C² at ``cutoff`` [Å].

    Raises:
        QdynInputError: unknown kind, n < 1 or a non-positive cutoff.
    """
    if n < 1:
        raise QdynInputError(f"radial basis needs n ≥ 1 functions, got {n}")
    if not cutoff > 0:
        raise QdynInputError(f"radial cutoff must be positive, got {cutoff} Å")
    rc = float(cutoff)
    if kind == "bessel":
        freq = np.pi * np.arange(1, n + 1) / rc
        norm = float(np.sqrt(2.0 / rc))

        def fn(r):
            # r enters only through sin(kr)/r: callers keep r > 0 (double-where on empty slots)
            envelope = norm * cutoff_fn(r, rc) / r
            return _sin_multiples(float(freq[0]) * r, n) * envelope[..., None]

    elif kind == "gaussian":
        mu = np.linspace(0.5, rc, n)
        eta = (n / rc) ** 2

        def fn(r):
            r = r[..., None]
            return jnp.exp(-eta * (r - _last_axis(mu, r.ndim)) ** 2) * cutoff_fn(r, rc)

    else:
        raise QdynInputError(f"unknown radial basis {kind!r}; choose 'bessel' or 'gaussian'")
    return RadialBasis(fn=fn, size=int(n), cutoff=rc, kind=kind)
