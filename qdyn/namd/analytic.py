"""A small analytic diabatic model of a bent triatomic (A–B–A), for tests and benchmarks.

Independent of any trained model: each diabat is two Morse stretches plus a harmonic term
in the bond-angle cosine, with its own equilibrium geometry and offset; diabats are
coupled by Gaussians centred on a symmetric-stretch seam,

    W_kk = T_k + Σ_{b=1,2} D_k (1 − e^{−a_k (r_b − r0_k)})² + ½ K_k (cos θ − cos θ0_k)²
    W_kl = c_kl exp(−((r_1 + r_2)/2 − r_c)² / w²)          (k ≠ l)

with r_b the B–A bond lengths [Å] (atom 0 is the centre B) and θ the A–B–A angle. ``W``
depends on distances and an angle only, so it is invariant under rotations, reflections
and translations of R, and gradients and NACs rotate as vectors — which the tests check.
The default parameters (water-like masses, eV, Å) put the upper diabat's minimum at
longer bonds, so a trajectory started on an excited state at the ground-state geometry
relaxes through the coupling region and hops.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..validation import QdynInputError

Z = (8, 1, 1)  # centre atom first


def _params(n_states: int) -> dict:
    base = {
        "T": [0.0, 0.5, 0.8],
        "D": [5.0, 4.0, 4.5],
        "a": [2.2, 2.0, 2.1],
        "r0": [0.96, 1.06, 0.90],
        "K": [4.0, 3.0, 3.5],
        "cos0": [np.cos(np.deg2rad(104.5)), np.cos(np.deg2rad(120.0)), np.cos(np.deg2rad(95.0))],
    }
    c = np.array([[0.0, 0.10, 0.05], [0.10, 0.0, 0.08], [0.05, 0.08, 0.0]])
    p = {k: jnp.asarray(v[:n_states]) for k, v in base.items()}
    p["c"] = jnp.asarray(c[:n_states, :n_states])
    p["rc"] = jnp.asarray(1.02)
    p["w"] = jnp.asarray(0.15)
    return p


def diabatic(params, R):
    """``W(params, R [3, 3] Å) -> [n, n]`` eV (n from the parameters); see the module docstring."""
    v1 = R[1] - R[0]
    v2 = R[2] - R[0]
    r1 = jnp.sqrt(jnp.sum(v1 * v1))
    r2 = jnp.sqrt(jnp.sum(v2 * v2))
    cos = jnp.sum(v1 * v2) / (r1 * r2)
    morse = lambda r: params["D"] * (1.0 - jnp.exp(-params["a"] * (r - params["r0"]))) ** 2  # noqa: E731
    diag = params["T"] + morse(r1) + morse(r2) + 0.5 * params["K"] * (cos - params["cos0"]) ** 2
    seam = jnp.exp(-((0.5 * (r1 + r2) - params["rc"]) / params["w"]) ** 2)
    return jnp.diag(diag) + params["c"] * seam


def triatomic(n_states: int = 2):
    """The model with ``n_states`` (2 or 3) diabats.

    Returns:
        ``(W_fn, params, Z, R_guess)``: ``W_fn(params, R [3, 3] Å) -> [n, n]`` eV, its
        default parameters (dict of float arrays), atomic numbers (for masses), and a
        starting geometry [3, 3] Å near the ground-state minimum.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> W, p, Z, R = triatomic(2)
        >>> W(p, jnp.asarray(R)).shape
        (2, 2)
    """
    if n_states not in (2, 3):
        raise QdynInputError(f"triatomic model has 2 or 3 states, got {n_states!r}")

    theta = np.deg2rad(104.5)
    R = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [0.96 * np.cos(theta), 0.96 * np.sin(theta), 0.0]])
    return diabatic, _params(n_states), Z, R
