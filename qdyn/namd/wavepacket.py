"""Exact 1D multistate wavepacket dynamics (split operator, FFT) and scattering probabilities.

The reference against which surface hopping is judged on model problems. The nuclear
wavefunction ψ(x) = Σ_a ψ_a(x)|a⟩ in the diabatic basis is propagated with the symmetric
Trotter splitting

    ψ(t + dt) = e^{−iV dt/2ħ} F⁻¹ e^{−iT(k) dt/ħ} F e^{−iV dt/2ħ} ψ(t),

where the potential factor is applied exactly at every grid point from the
eigen-decomposition ``W(x) = U diag(E) Uᵀ`` (``U e^{−iE dt/2ħ} Uᵀ``) and the kinetic factor
``T(k) = ħ²k²/2m`` in k-space. Outgoing density is removed by a smooth quadratic complex
absorbing potential (CAP) in a band of width ``absorber_width`` at each end of the grid.
What is absorbed at each step is projected on the local **adiabatic** states and summed,
separately for the left (reflected) and right (transmitted) side, until the density left
on the grid falls below ``tol`` — so the probabilities need no asymptotic analysis of the
final state and the grid can be short.

Units: x in Å, W in eV, mass in amu, time in fs, k in 1/Å (ħ = ``units.HBAR_EV_FS``).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..validation import QdynInputError


class Scattering(NamedTuple):
    """Asymptotic outcome of one wavepacket (host NumPy values).

    Attributes:
        transmission: [n_states] probability absorbed at the right end on each adiabatic state.
        reflection: [n_states] probability absorbed at the left end on each adiabatic state.
        remaining: norm still on the grid when the run stopped (unresolved; ≤ tol unless
            ``t_max_fs`` was reached).
        time_fs: propagation time.
        norm_error: |1 − (transmitted + reflected + remaining)|, the bookkeeping error.
    """

    transmission: np.ndarray
    reflection: np.ndarray
    remaining: float
    time_fs: float
    norm_error: float


def kinetic_energy_ev(k, mass):
    """ħ²k²/2m [eV] for a wavenumber k [1/Å] and mass [amu]."""
    return (units.HBAR_EV_FS * k) ** 2 / (2.0 * mass) / units.AMU_A2_FS2_EV


def gaussian_packet(x, *, x0: float, k0: float, sigma_x: float):
    """ψ(x) ∝ exp(ik₀x − (x − x₀)²/(4σ_x²)), normalised on the grid x [Å] (Σ|ψ|²dx = 1)."""
    psi = jnp.exp(1j * k0 * x - (x - x0) ** 2 / (4.0 * sigma_x**2))
    dx = x[1] - x[0]
    return psi / jnp.sqrt(jnp.sum(jnp.abs(psi) ** 2) * dx)


@functools.partial(jax.jit, static_argnames=("W_fn", "chunk"))
def _run(W_fn, params, x, psi0, mass, dt, cap, t_max, tol, chunk):
    n_grid = x.shape[0]
    dx = x[1] - x[0]
    hbar = units.HBAR_EV_FS
    W = jax.vmap(lambda r: W_fn(params, r[None]))(x)  # [N, n, n]
    E, U = jnp.linalg.eigh(0.5 * (W + jnp.swapaxes(W, 1, 2)))
    half = jnp.einsum("xai,xi,xbi->xab", U, jnp.exp(-0.5j * E * dt / hbar), U)  # [N, n, n]
    k = 2.0 * jnp.pi * jnp.fft.fftfreq(n_grid, d=dx)
    kin = jnp.exp(-1j * kinetic_energy_ev(k, mass) * dt / hbar)
    damp = jnp.exp(-cap * dt)  # [N], 1 in the interior
    lost = 1.0 - damp**2
    right = (x > 0).astype(x.dtype)

    def step(carry, _):
        psi, trans, refl = carry  # psi [n, N]
        psi = jnp.einsum("xab,bx->ax", half, psi)
        psi = jnp.fft.ifft(kin[None, :] * jnp.fft.fft(psi, axis=1), axis=1)
        psi = jnp.einsum("xab,bx->ax", half, psi)
        ad = jnp.einsum("xai,ax->ix", U, psi)  # adiabatic components
        out = jnp.abs(ad) ** 2 * lost[None, :] * dx
        trans = trans + jnp.sum(out * right[None, :], axis=1)
        refl = refl + jnp.sum(out * (1.0 - right)[None, :], axis=1)
        return (psi * damp[None, :], trans, refl), None

    def cond(c):
        psi, _, _, t = c
        return (t < t_max) & (jnp.sum(jnp.abs(psi) ** 2) * dx > tol)

    def body(c):
        psi, trans, refl, t = c
        (psi, trans, refl), _ = jax.lax.scan(step, (psi, trans, refl), None, length=chunk)
        return psi, trans, refl, t + chunk * dt

    n = psi0.shape[0]
    zero = jnp.zeros(n, x.dtype)
    psi, trans, refl, t = jax.lax.while_loop(cond, body, (psi0, zero, zero, jnp.zeros((), x.dtype)))
    return trans, refl, jnp.sum(jnp.abs(psi) ** 2) * dx, t


def scattering(
    W_fn: Callable,
    params,
    *,
    mass: float,
    k0: float,
    x0: float,
    sigma_x: float,
    initial_state: int = 0,
    x_range: tuple[float, float],
    n_grid: int = 2048,
    absorber_width: float,
    cap_strength: float = 0.5,
    dt_fs: float,
    t_max_fs: float,
    tol: float = 1e-4,
    chunk: int = 200,
) -> Scattering:
    """Transmission and reflection probabilities of a Gaussian packet on each adiabatic state.

    Args:
        W_fn: ``W_fn(params, R [1] Å) -> [n, n]`` eV.  params: its parameters.
        mass: amu.  k0: initial mean wavenumber [1/Å] (> 0: moving right).
        x0: packet centre [Å], in the asymptotic region on the left.
        sigma_x: position standard deviation [Å].
        initial_state: adiabatic state the packet starts on (evaluated at each grid point).
        x_range: (x_min, x_max) of the periodic grid [Å].
        n_grid: grid points (a power of two; resolve k up to π/dx ≫ k0).
        absorber_width: CAP band at each end [Å].
        cap_strength: CAP rate at the grid edge [1/fs]; rises quadratically from the band's
            inner edge.
        dt_fs: time step [fs].  t_max_fs: give up after this long.
        tol: stop when less than this norm remains on the grid.
        chunk: steps between stopping checks.

    Returns:
        :class:`Scattering`.

    Raises:
        QdynInputError: a packet that starts inside the absorber or too close to the grid
            resolution limit.
    """
    x_min, x_max = map(float, x_range)
    if not x_max > x_min or n_grid < 16:
        raise QdynInputError(f"bad grid: x_range={x_range}, n_grid={n_grid}")
    x = jnp.linspace(x_min, x_max, int(n_grid), endpoint=False)
    dx = (x_max - x_min) / n_grid
    inner_l, inner_r = x_min + absorber_width, x_max - absorber_width
    if not inner_l + 4 * sigma_x < x0 < inner_r - 4 * sigma_x:
        raise QdynInputError(f"packet at x0={x0} Å (σ={sigma_x} Å) overlaps the absorbers "
                             f"(interior [{inner_l:.3g}, {inner_r:.3g}] Å): widen x_range")
    k_max = np.pi / dx
    if abs(k0) + 6.0 / (2 * sigma_x) > 0.7 * k_max:
        raise QdynInputError(f"grid too coarse: k0={k0:.3g}/Å with spread needs π/dx ≫ {abs(k0):.3g}; "
                             f"π/dx = {k_max:.3g}/Å (raise n_grid)")
    s = jnp.clip(jnp.maximum(inner_l - x, x - inner_r) / absorber_width, 0.0, 1.0)
    cap = cap_strength * s**2
    W = jax.vmap(lambda r: W_fn(params, r[None]))(x)
    _, U = jnp.linalg.eigh(0.5 * (W + jnp.swapaxes(W, 1, 2)))
    g = gaussian_packet(x, x0=x0, k0=k0, sigma_x=sigma_x)
    # each grid point's adiabatic state, signs aligned to the one at x0 (eigh's signs are
    # arbitrary point by point, which would imprint random phase jumps on the packet)
    u = U[:, :, initial_state]
    u = u * jnp.sign(u @ u[int(np.argmin(np.abs(np.asarray(x) - x0)))])[:, None]
    psi0 = u.T * g[None, :]
    trans, refl, rem, t = _run(W_fn, params, x, psi0, float(mass), float(dt_fs), cap, float(t_max_fs),
                               float(tol), int(chunk))
    trans, refl = np.asarray(trans), np.asarray(refl)
    rem = float(rem)
    return Scattering(trans, refl, rem, float(t), abs(1.0 - trans.sum() - refl.sum() - rem))
