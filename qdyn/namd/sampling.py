"""Initial conditions for surface hopping: ``sample(key) -> (R, V)`` samplers.

Each sampler is a pure function of one PRNG key (vmap it over per-trajectory keys), built
once on the host:

* :func:`wavepacket_sampler` — the Wigner distribution of a 1D Gaussian wavepacket (model
  problems): x ~ N(x₀, σ_x²), ħk ~ N(ħk₀, (ħ/2σ_x)²).
* :func:`normal_mode_sampler` — molecules: harmonic normal modes of an adiabatic state at
  its minimum (Hessian by ``jax.hessian`` of the adiabatic energy, modes from
  :func:`qdyn.data.samplers.vibrational_analysis`), either the harmonic **Wigner**
  distribution at temperature T (zero-point motion included; T = 0 is the ground
  vibrational state) or the classical **Boltzmann** distribution (positions from the
  harmonic modes, momenta Maxwell–Boltzmann from :func:`qdyn.md.momenta.maxwell_boltzmann`).

Velocities are in Å/fs (what :mod:`qdyn.namd.fssh` propagates).
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..data.samplers import mode_std, vibrational_analysis, wavenumber_to_omega
from ..md import momenta
from ..validation import QdynInputError


def velocity_from_wavenumber(k, mass):
    """v = ħk/m [Å/fs] for a wavenumber k [1/Å] and mass [amu]."""
    return units.HBAR_EV_FS * k / mass / units.AMU_A2_FS2_EV


def wavepacket_sampler(*, x0: float, k0: float, sigma_x: float, mass: float) -> Callable:
    """Wigner sampler of ψ ∝ exp(ik₀x − (x − x₀)²/(4σ_x²)) in 1D.

    Args:
        x0: centre [Å].  k0: mean wavenumber [1/Å].  sigma_x: position standard deviation
            [Å] (the momentum standard deviation is ħ/(2σ_x)).  mass: [amu].

    Returns:
        ``sample(key) -> (R [1] Å, V [1] Å/fs)``.
    """
    if not sigma_x > 0 or not mass > 0:
        raise QdynInputError(f"sigma_x and mass must be > 0, got sigma_x={sigma_x!r}, mass={mass!r}")
    sigma_k = 1.0 / (2.0 * sigma_x)

    def sample(key):
        zx, zk = jax.random.normal(key, (2,))
        x = x0 + sigma_x * zx
        k = k0 + sigma_k * zk
        return jnp.reshape(x, (1,)), jnp.reshape(velocity_from_wavenumber(k, mass), (1,))

    return sample


def adiabatic_energy_fn(W_fn: Callable, state: int) -> Callable:
    """``E(params, R) -> eV``, the ``state``-th adiabatic energy of a diabatic model."""

    def energy(params, R):
        return jnp.linalg.eigvalsh(W_fn(params, R))[state]

    return energy


def minimize_adiabatic(W_fn: Callable, params, R0, *, state: int = 0, fmax: float = 1e-6,
                       max_steps: int = 2000) -> np.ndarray:
    """Minimum [Å] of one adiabatic surface from ``R0`` (BFGS on the exact gradient).

    Raises:
        QdynInputError: if it does not converge to max |∇E| < ``fmax`` eV/Å.
    """
    from scipy.optimize import minimize

    R0 = np.asarray(R0, dtype=np.float64)
    e_and_g = jax.jit(jax.value_and_grad(adiabatic_energy_fn(W_fn, state), argnums=1))

    def fun(x):
        e, g = e_and_g(params, jnp.asarray(x.reshape(R0.shape)))
        return float(e), np.asarray(g, dtype=np.float64).ravel()

    opt = minimize(fun, R0.ravel(), jac=True, method="BFGS", options={"gtol": fmax, "maxiter": max_steps})
    R = opt.x.reshape(R0.shape)
    g = np.abs(fun(opt.x)[1]).max()
    if g > 10 * fmax:
        raise QdynInputError(f"minimize_adiabatic: max |∇E| = {g:.2e} eV/Å after {opt.nit} steps ({opt.message})")
    return R


def normal_mode_sampler(
    W_fn: Callable,
    params,
    R0,
    Z,
    *,
    state: int = 0,
    distribution: Literal["wigner", "boltzmann"] = "wigner",
    temperature_K: float = 0.0,
    min_wavenumber: float = 50.0,
    max_gradient: float = 1e-3,
) -> Callable:
    """Sampler of molecular initial conditions around the minimum ``R0`` of one adiabatic state.

    Args:
        W_fn: ``W_fn(params, R) -> [n, n]`` eV.  params: its parameters.
        R0: [n_atoms, 3] Å, a minimum of adiabatic state ``state``
            (:func:`minimize_adiabatic` finds one).
        Z: [n_atoms] atomic numbers (masses and, for clusters, molecule detection).
        state: whose Hessian defines the modes (0: the ground state).
        distribution: ``"wigner"`` (harmonic Wigner function at ``temperature_K``; 0 K is the
            vibrational ground state) or ``"boltzmann"`` (classical thermal sampling at
            ``temperature_K`` > 0).
        temperature_K: K.
        min_wavenumber: softer modes [cm⁻¹] are stiffened to this (bounded amplitudes).
        max_gradient: refuse an ``R0`` whose max |∇E| exceeds this [eV/Å] (not a minimum:
            the harmonic picture would be wrong).

    Returns:
        ``sample(key) -> (R [n_atoms, 3] Å, V [n_atoms, 3] Å/fs)``. Only internal
        vibrations are excited: no overall translation or rotation.
    """
    if distribution not in ("wigner", "boltzmann"):
        raise QdynInputError(f"distribution must be 'wigner' or 'boltzmann', got {distribution!r}")
    if distribution == "boltzmann" and not temperature_K > 0:
        raise QdynInputError(f"boltzmann sampling needs temperature_K > 0, got {temperature_K!r}")
    if temperature_K < 0:
        raise QdynInputError(f"temperature_K must be ≥ 0, got {temperature_K!r}")
    R0 = np.asarray(R0, dtype=np.float64)
    energy = adiabatic_energy_fn(W_fn, state)
    # jitted: eager jax.hessian of a descriptor-based model dispatches op by op (32 s vs 7 s, CaH2)
    g = np.asarray(jax.jit(jax.grad(energy, argnums=1))(params, jnp.asarray(R0)))
    if np.abs(g).max() > max_gradient:
        raise QdynInputError(
            f"R0 is not a minimum of adiabatic state {state}: max |∇E| = {np.abs(g).max():.2e} eV/Å "
            f"> {max_gradient} (use qdyn.namd.minimize_adiabatic first)")
    n3 = R0.size
    H = np.asarray(jax.jit(jax.hessian(energy, argnums=1))(params, jnp.asarray(R0))).reshape(n3, n3)
    va = vibrational_analysis(np.asarray(Z), R0, H)
    mass = va.masses
    inv_sq = np.repeat(1.0 / np.sqrt(mass), 3)
    modes = va.modes_intra * inv_sq[:, None]  # [3N, k] Cartesian displacement per unit q
    floor = float(wavenumber_to_omega(min_wavenumber))
    # T = 0 is the limit coth → 1; a tiny kT keeps the shared formula finite
    kT = max(units.temperature_to_energy(temperature_K), 1e-12)
    omega = np.maximum(np.abs(va.omega_intra), floor)
    if distribution == "wigner":
        sq = mode_std(va.omega_intra, kT, "wigner", floor)
        sp = omega * sq  # Wigner: σ_p = ω σ_q for each harmonic mode (mass-weighted)
    else:
        sq = mode_std(va.omega_intra, kT, "classical", floor)
        sp = None
    modes_j = jnp.asarray(modes)
    sq_j = jnp.asarray(sq)
    mass_j = jnp.asarray(mass)
    R0_j = jnp.asarray(R0)
    shape = R0.shape

    def sample(key):
        kq, kp = jax.random.split(key)
        q = sq_j * jax.random.normal(kq, sq_j.shape, R0_j.dtype)
        R = R0_j + (modes_j @ q).reshape(shape)
        if sp is None:
            p = momenta.maxwell_boltzmann(kp, R, mass_j, temperature_K=float(temperature_K), remove_com=True,
                                          remove_rotation=True, rescale=False)
            V = momenta.velocities_A_per_fs(p, mass_j)
        else:
            P = jnp.asarray(sp) * jax.random.normal(kp, sq_j.shape, R0_j.dtype)
            V = (modes_j @ P).reshape(shape) / units.TIME_UNIT_FS  # Å/τ -> Å/fs
        return R, V

    return sample


def sample_batch(sampler: Callable, keys) -> tuple[jax.Array, jax.Array]:
    """(R [N, ...], V [N, ...]) from one key per trajectory."""
    return jax.vmap(sampler)(keys)
