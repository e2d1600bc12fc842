"""Integrators: qdyn energy functions driven by JAX-MD's NVE, Langevin and Nosé–Hoover.

Everything here is a factory returning a NamedTuple of pure functions; nothing is jitted
(the MD block in :mod:`qdyn.md.run` is the one jit boundary). Units at the boundary are
qdyn's (eV, Å, amu, fs, K); inside, JAX-MD integrates in the natural time unit of that
system, Å·sqrt(amu/eV) = :data:`qdyn.units.TIME_UNIT_FS` fs, so momenta are amu·Å/time
unit and ``kT`` is in eV. The conversion happens once, in :func:`make_integrator`.

The MD energy function has the signature ``energy_fn(R, *, params, system, neighbor)``:
JAX-MD forwards call-time keyword arguments of its step functions to the energy (and to
the shift function), so the trained parameters, the :class:`~qdyn.system.System` and the
neighbour list travel as arguments and one compiled block serves any params of the same
shape.

References:
    Velocity Verlet: Swope, Andersen, Berens, Wilson, J. Chem. Phys. 76, 637 (1982).
    BAOAB Langevin: Leimkuhler & Matthews, Appl. Math. Res. Express 2013, 34 (2013).
    Nosé–Hoover chains: Martyna, Klein, Tuckerman, J. Chem. Phys. 97, 2635 (1992).
"""

from __future__ import annotations

import functools
from typing import Callable, Literal, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np
from jax_md import simulate, space

from .. import elements, units
from ..system import System
from ..validation import QdynInputError

Ensemble = Literal["nve", "nvt", "nvt-langevin", "nvt-nose-hoover"]
ENSEMBLES = ("nve", "nvt", "nvt-langevin", "nvt-nose-hoover")


class Space(NamedTuple):
    """Displacement and shift functions of a simulation cell (JAX-MD conventions).

    Attributes:
        displacement_fn: ``(Ra [3], Rb [3]) -> Ra - Rb`` [Å], minimum image when periodic.
        shift_fn: ``(R [n, 3], dR [n, 3]) -> R + dR`` [Å], wrapped into the box when periodic.
        box_side: [3] Å sides of an orthorhombic box, or None in free space.
    """

    displacement_fn: Callable
    shift_fn: Callable
    box_side: Optional[np.ndarray]


class Integrator(NamedTuple):
    """One ensemble's pure ``(init, step)`` pair, in qdyn units at the boundary.

    Attributes:
        init: ``init(key, R [n, 3] Å, *, mass [n] amu, momenta [n, 3] | None, params,
            system, neighbor) -> state`` (a JAX-MD state dataclass, a pytree).
        step: ``step(state, *, params, system, neighbor) -> state``, one time step.
        ensemble: "nve", "nvt-langevin" or "nvt-nose-hoover".
        dt_fs: time step [fs].
        temperature_K: target temperature [K] (None for NVE).
        conserves_momentum: whether the total momentum is a constant of motion (NVE and
            Nosé–Hoover; Langevin noise is per atom), which sets the degrees of freedom.
    """

    init: Callable
    step: Callable
    ensemble: str
    dt_fs: float
    temperature_K: Optional[float]
    conserves_momentum: bool


def make_space(system: System) -> Space:
    """Free space for ``system.box is None``, else an orthorhombic periodic box.

    The same box gives the same (cached) functions, so compiled MD blocks are reused.

    Raises:
        QdynInputError: for a triclinic box (not supported by the MD layer yet).
    """
    if system.box is None:
        return _space(None)
    box = np.asarray(system.box, dtype=float)
    if box.ndim != 2:
        raise QdynInputError(f"make_space needs one System (box [3, 3]), got box of shape {box.shape}")
    if not np.allclose(box, np.diag(np.diag(box))):
        raise QdynInputError("qdyn.md supports orthorhombic boxes only (box must be diagonal); got\n" f"{box}")
    side = np.diag(box).copy()
    if np.any(side <= 0):
        raise QdynInputError(f"box sides must be positive, got {side}")
    return _space(tuple(float(x) for x in side))


@functools.lru_cache(maxsize=32)
def _space(side: Optional[tuple]) -> Space:
    if side is None:
        d, s = space.free()
        return Space(d, s, None)
    d, s = space.periodic(jnp.asarray(side))
    return Space(d, s, np.asarray(side))


def masses(system: System) -> np.ndarray:
    """Atomic masses [amu], float64 [n_atoms], from the element table.

    Raises:
        QdynInputError: if the system has padding atoms (masks are not supported in MD: a
            padding atom has no mass to move with).
    """
    mask = np.asarray(system.mask)
    if not mask.all():
        raise QdynInputError(
            f"MD needs a System without padding atoms; this one has {int((~mask).sum())} masked atoms"
        )
    return np.array([elements.mass(int(z)) for z in np.asarray(system.species)], dtype=np.float64)


@functools.lru_cache(maxsize=64)
def model_energy_fn(apply: Callable) -> Callable:
    """Adapt an :class:`~qdyn.models.base.EnergyModel` ``apply`` to the MD signature.

    Dense molecular models ignore the neighbour list (they see every atom). Cached on
    ``apply``, so runs with the same model reuse their compiled MD blocks.

    Returns:
        ``energy_fn(R [n, 3] Å, *, params, system, neighbor=None) -> E`` [eV].
    """

    def energy_fn(R, *, params, system, neighbor=None):
        del neighbor  # dense model: every pair is seen, no list needed
        return apply(params, R, system)

    return energy_fn


def _kT(temperature_K: float) -> float:
    return units.KB_EV_PER_K * float(temperature_K)


def make_integrator(
    energy_fn: Callable,
    shift_fn: Callable,
    *,
    ensemble: Ensemble,
    dt_fs: float,
    temperature_K: Optional[float] = None,
    friction_per_fs: float = 0.01,
    tau_fs: float = 100.0,
    chain_length: int = 3,
    degrees_of_freedom: Optional[int] = None,
) -> Integrator:
    """Build an integrator for ``ensemble``.

    Args:
        energy_fn: ``(R, *, params, system, neighbor) -> E`` [eV] (see
            :func:`model_energy_fn`).
        shift_fn: the cell's shift function (:func:`make_space`).
        ensemble: "nve" (velocity Verlet), "nvt" or "nvt-langevin" (BAOAB Langevin),
            "nvt-nose-hoover" (Nosé–Hoover chain).
        dt_fs: time step [fs], > 0.
        temperature_K: target temperature [K] (thermostats only; > 0).
        friction_per_fs: Langevin friction γ [1/fs] (0.01/fs = 100 fs relaxation time).
        tau_fs: Nosé–Hoover chain time constant [fs].
        chain_length: thermostats in the Nosé–Hoover chain.
        degrees_of_freedom: what the Nosé–Hoover chain thermostats; default 3N (JAX-MD's).
            Pass 3N − 3 when the centre-of-mass momentum is removed (a uniform momentum
            scaling conserves it, so those modes never exchange energy): with 3N the chain
            would heat the remaining modes by 3N/(3N − 3).

    Returns:
        An :class:`Integrator`.

    Example:
        >>> from qdyn.structures import water
        >>> from qdyn.models import bpnn
        >>> model = bpnn.build(species=(1, 8), hidden=(8,))
        >>> R, system = water()
        >>> sp = make_space(system)
        >>> integ = make_integrator(model_energy_fn(model.apply), sp.shift_fn, ensemble="nve", dt_fs=0.5)
    """
    if ensemble not in ENSEMBLES:
        raise QdynInputError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if not (np.isfinite(dt_fs) and dt_fs > 0):
        raise QdynInputError(f"dt_fs must be a positive number of femtoseconds, got {dt_fs!r}")
    if dt_fs > 5.0:
        raise QdynInputError(f"dt_fs={dt_fs} fs is too large for molecules with hydrogen (use ≤ 1 fs)")
    dt = float(dt_fs) / units.TIME_UNIT_FS
    if ensemble == "nve":
        init_fn, step_fn = simulate.nve(energy_fn, shift_fn, dt)

        def init(key, R, *, mass, momenta, params, system, neighbor=None):
            # kT only seeds momenta when none are given; qdyn always passes momenta.
            return init_fn(key, R, 0.0, mass=mass, momenta=momenta, params=params, system=system,
                           neighbor=neighbor)

        def step(state, *, params, system, neighbor=None):
            return step_fn(state, params=params, system=system, neighbor=neighbor)

        return Integrator(init, step, "nve", float(dt_fs), None, True)

    if temperature_K is None or not (np.isfinite(temperature_K) and temperature_K > 0):
        raise QdynInputError(f"{ensemble} needs temperature_K > 0, got {temperature_K!r}")
    kT = _kT(temperature_K)
    if ensemble in ("nvt", "nvt-langevin"):
        if not friction_per_fs > 0:
            raise QdynInputError(f"friction_per_fs must be > 0, got {friction_per_fs!r}")
        gamma = float(friction_per_fs) * units.TIME_UNIT_FS  # 1/fs -> 1/time unit
        init_fn, step_fn = simulate.nvt_langevin(energy_fn, shift_fn, dt, kT, gamma=gamma)

        def init(key, R, *, mass, momenta, params, system, neighbor=None):
            return init_fn(key, R, mass=mass, momenta=momenta, params=params, system=system, neighbor=neighbor)

        def step(state, *, params, system, neighbor=None):
            return step_fn(state, params=params, system=system, neighbor=neighbor)

        return Integrator(init, step, "nvt-langevin", float(dt_fs), float(temperature_K), False)

    if not tau_fs > 0:
        raise QdynInputError(f"tau_fs must be > 0, got {tau_fs!r}")
    init_fn, step_fn = simulate.nvt_nose_hoover(
        energy_fn, shift_fn, dt, kT, chain_length=int(chain_length), tau=float(tau_fs) / units.TIME_UNIT_FS
    )

    def init(key, R, *, mass, momenta, params, system, neighbor=None):
        state = init_fn(key, R, mass=mass, momenta=momenta, params=params, system=system, neighbor=neighbor)
        if degrees_of_freedom is not None:
            # the chain masses are recomputed from this every step (update_mass)
            state = state.set(chain=state.chain.set(degrees_of_freedom=int(degrees_of_freedom)))
        return state

    def step(state, *, params, system, neighbor=None):
        return step_fn(state, params=params, system=system, neighbor=neighbor)

    return Integrator(init, step, "nvt-nose-hoover", float(dt_fs), float(temperature_K), True)
