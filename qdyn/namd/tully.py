"""Tully's three one-dimensional two-state model problems, in qdyn units.

J. C. Tully, J. Chem. Phys. 93, 1061 (1990), Section IV. The models are defined in atomic
units (x in bohr, energies in hartree, mass 2000 mₑ). qdyn's dynamics runs in eV, Å, amu,
fs, so the conversion happens here, once: :func:`model` returns ``W_fn(params, R)`` with
``R = [x]`` in Å and ``W`` in eV, while ``params`` hold Tully's constants in atomic units
(call-time arguments, like a trained model's weights). Momenta are quoted in Tully's
``k`` (ħk in a.u., i.e. bohr⁻¹): :func:`wavenumber_per_angstrom` converts.

1. Simple avoided crossing:
   W11 = A(1 − e^{−Bx}) for x > 0, −A(1 − e^{Bx}) for x < 0;  W22 = −W11;  W12 = C e^{−Dx²};
   A = 0.01, B = 1.6, C = 0.005, D = 1.0.
2. Dual avoided crossing:
   W11 = 0;  W22 = −A e^{−Bx²} + E0;  W12 = C e^{−Dx²};
   A = 0.10, B = 0.28, C = 0.015, D = 0.06, E0 = 0.05.
3. Extended coupling with reflection:
   W11 = A;  W22 = −A;  W12 = B e^{Cx} for x < 0, B(2 − e^{−Cx}) for x > 0;
   A = 6·10⁻⁴, B = 0.10, C = 0.90.

Initial wavepacket (both for the exact reference and the sampled trajectories, so they see
the same initial state): ψ(x) ∝ exp(ik₀x − (x − x₀)²/σ²) with σ = 20/k₀ bohr (Tully's
choice), i.e. position standard deviation σ/2 and momentum standard deviation ħ/σ.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax.numpy as jnp
import numpy as np

from .. import units
from ..validation import QdynInputError
from .sampling import wavepacket_sampler

MASS_AU = 2000.0  # nuclear mass in electron masses
MASS_AMU = MASS_AU * units.ELECTRON_MASS_AMU

PARAMS = {
    1: {"A": 0.01, "B": 1.6, "C": 0.005, "D": 1.0},
    2: {"A": 0.10, "B": 0.28, "C": 0.015, "D": 0.06, "E0": 0.05},
    3: {"A": 6e-4, "B": 0.10, "C": 0.90},
}

NAMES = {1: "simple avoided crossing", 2: "dual avoided crossing", 3: "extended coupling with reflection"}


def _w1(p, x):
    # sign(x)·A(1 − e^{−B|x|}) is the two branches in one expression: no exp overflow on
    # the unused side, so gradients stay finite everywhere
    w11 = jnp.sign(x) * p["A"] * (1.0 - jnp.exp(-p["B"] * jnp.abs(x)))
    w12 = p["C"] * jnp.exp(-p["D"] * x * x)
    return jnp.array([[w11, w12], [w12, -w11]])


def _w2(p, x):
    w22 = -p["A"] * jnp.exp(-p["B"] * x * x) + p["E0"]
    w12 = p["C"] * jnp.exp(-p["D"] * x * x)
    return jnp.array([[jnp.zeros_like(x), w12], [w12, w22]])


def _w3(p, x):
    e = jnp.exp(-p["C"] * jnp.abs(x))
    w12 = jnp.where(x < 0, p["B"] * e, p["B"] * (2.0 - e))
    a = p["A"] * jnp.ones_like(x)
    return jnp.array([[a, w12], [w12, -a]])


_W_AU = {1: _w1, 2: _w2, 3: _w3}


def _check(number):
    if number not in _W_AU:
        raise QdynInputError(f"Tully model must be 1, 2 or 3, got {number!r}")


def model(number: int) -> tuple[Callable, dict]:
    """Tully model ``number`` as a qdyn diabatic function.

    Returns:
        ``(W_fn, params)``: ``W_fn(params, R) -> [2, 2]`` eV with ``R`` [1] in Å; ``params``
        a dict of float arrays (Tully's constants, atomic units).

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> W, p = model(1)
        >>> W(p, jnp.array([0.0])).shape
        (2, 2)
    """
    _check(number)
    params = {k: jnp.asarray(v) for k, v in PARAMS[number].items()}
    return _W_fn(number), params


@functools.lru_cache(maxsize=None)
def _W_fn(number: int) -> Callable:
    # one function object per model: compiled FSSH blocks are cached on it
    w_au = _W_AU[number]

    def W_fn(params, R):
        x = R[0] / units.BOHR_ANGSTROM
        return units.HARTREE_EV * w_au(params, x)

    return W_fn


def wavenumber_per_angstrom(k_au):
    """Tully's momentum k (bohr⁻¹, ħ = 1) → wavenumber in Å⁻¹."""
    return np.asarray(k_au) / units.BOHR_ANGSTROM


def bohr(x_bohr):
    """bohr → Å."""
    return np.asarray(x_bohr) * units.BOHR_ANGSTROM


def packet_width_bohr(k_au: float) -> float:
    """Tully's σ = 20/k (bohr); the position standard deviation is σ/2."""
    return 20.0 / float(k_au)


def sampler(k_au: float, x0_bohr: float) -> Callable:
    """Wigner sampler of Tully's initial packet: ``sample(key) -> (R [1] Å, V [1] Å/fs)``."""
    sigma_x = bohr(packet_width_bohr(k_au) / 2.0)
    return wavepacket_sampler(x0=float(bohr(x0_bohr)), k0=float(wavenumber_per_angstrom(k_au)),
                              sigma_x=float(sigma_x), mass=MASS_AMU)
