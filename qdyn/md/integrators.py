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

from .._jax_md import simulate, space
from .. import elements, units
from ..precision import rank_promotion_allowed
from ..system import System
from ..validation import QdynInputError

Ensemble = Literal["nve", "nvt", "nvt-langevin", "nvt-nose-hoover", "npt"]
ENSEMBLES = ("nve", "nvt", "nvt-langevin", "nvt-nose-hoover", "npt")


class Space(NamedTuple):
    """Displacement and shift functions of a simulation cell (JAX-MD conventions).

    Attributes:
        displacement_fn: ``(Ra [3], Rb [3]) -> Ra - Rb`` [Å], minimum image when periodic.
        shift_fn: ``(R [n, 3], dR [n, 3]) -> R + dR`` [Å], wrapped into the cell when
            periodic; with ``variable_cell`` it also takes ``box=`` (the current cell).
        box: [3, 3] Å lattice vectors as columns, or None in free space.
    """

    displacement_fn: Callable
    shift_fn: Callable
    box: Optional[np.ndarray] = None

    def wrap(self, R):
        """Host-side: positions [..., n, 3] Å wrapped into the cell (unchanged in free space)."""
        R = np.asarray(R, dtype=np.float64)
        if self.box is None:
            return R
        frac = R @ np.linalg.inv(self.box).T
        return (frac - np.floor(frac)) @ self.box.T

class Integrator(NamedTuple):
    """One ensemble's pure ``(init, step)`` pair, in qdyn units at the boundary.

    Attributes:
        init: ``init(key, R [n, 3] Å, *, mass [n] amu, momenta [n, 3] | None, params,
            system, neighbor, controls=None) -> state`` (a JAX-MD state dataclass, a pytree).
            ``R`` is always Cartesian.
        step: ``step(state, *, params, system, neighbor, controls=None) -> state``, one time
            step. ``controls`` (from :meth:`Integrator.controls`) replaces the time step,
            temperature or pressure the integrator was built with, as traced values: runs that
            differ only in those share one compiled program.
        ensemble: "nve", "nvt-langevin", "nvt-nose-hoover" or "npt".
        dt_fs: time step [fs].
        temperature_K: target temperature [K] (None for NVE).
        conserves_momentum: whether the total momentum is a constant of motion (NVE and
            Nosé–Hoover; Langevin noise is per atom), which sets the degrees of freedom.
        observe: ``observe(state, system) -> (R [n, 3] Å, system)``: Cartesian positions and
            the system with the current cell (it changes under NPT).
        pressure_bar: NPT target pressure [bar] (None otherwise).
    """

    init: Callable
    step: Callable
    ensemble: str
    dt_fs: float
    temperature_K: Optional[float]
    conserves_momentum: bool
    observe: Callable = None
    pressure_bar: Optional[float] = None

    def controls(self, *, dt_fs: float, temperature_K: Optional[float] = None,
                 pressure_bar: Optional[float] = None) -> dict:
        """The call-time ``controls`` of this ensemble (:data:`RUNTIME_CONTROLS`), in JAX-MD's
        units, as float64 scalars: ``{"dt": …}`` for NVE; dt and kT for Langevin; kT for
        Nosé–Hoover; kT and the pressure for NPT. The others stay what the integrator was built
        with. Checked as :func:`make_integrator` checks them."""
        _check_controls(self.ensemble, dt_fs, temperature_K, pressure_bar)
        values = {"dt": float(dt_fs) / units.TIME_UNIT_FS,
                  "kT": None if temperature_K is None else _kT(temperature_K),
                  "pressure": None if pressure_bar is None else float(pressure_bar) * units.BAR_EV_PER_A3}
        return {name: np.float64(values[name]) for name in RUNTIME_CONTROLS[self.ensemble]}


#: what each ensemble (each name of :data:`ENSEMBLES`, "nvt" = "nvt-langevin") takes at call
#: time (JAX-MD reads these from the step's keyword arguments); the Nosé–Hoover chains and the
#: NPT barostat are built for one time step.
RUNTIME_CONTROLS = {"nve": ("dt",), "nvt": ("dt", "kT"), "nvt-langevin": ("dt", "kT"), "nvt-nose-hoover": ("kT",),
                    "npt": ("kT", "pressure")}


def _observe_fixed_cell(state, system):
    return state.position, system


def make_space(system: System, *, variable_cell: bool = False) -> Space:
    """Free space for ``system.box is None``, else a periodic cell: JAX-MD's orthorhombic
    ``periodic`` for a diagonal box, ``periodic_general`` (Cartesian coordinates) for a
    triclinic one or a cell that changes (``variable_cell``, which NPT needs).

    The same box gives the same (cached) functions, so compiled MD blocks are reused.

    Raises:
        QdynInputError: a singular or left-handed box, or a variable cell in free space.
    """
    if system.box is None:
        if variable_cell:
            raise QdynInputError("a variable cell (NPT) needs a periodic box; this system has none")
        return _space(None, False)
    box = np.asarray(system.box, dtype=float)
    if box.shape != (3, 3):
        raise QdynInputError(f"make_space needs one System (box [3, 3]), got box of shape {box.shape}")
    det = float(np.linalg.det(box))
    if not det > 0:
        raise QdynInputError(f"box must be non-singular and right-handed (det > 0), got det = {det:.4g} Å³:\n{box}")
    return _space(tuple(map(float, box.ravel())), bool(variable_cell))


@functools.lru_cache(maxsize=32)
def _space(box: Optional[tuple], variable_cell: bool) -> Space:
    if box is None:
        d, s = space.free()
        return Space(d, s)
    b = np.asarray(box).reshape(3, 3)
    if np.allclose(b, np.diag(np.diag(b))) and not variable_cell:
        d, s = space.periodic(jnp.asarray(np.diag(b).copy()))
        return Space(d, rank_promotion_allowed(s), b)  # jax-md's shift: mod([n, 3], [3])
    # JAX-MD and qdyn share the convention: lattice vectors are the columns of the box.
    # Cartesian coordinates throughout: forces are then -dE/dR in Å, which is what JAX-MD's
    # integrators (NPT's MTK position update included) assume.
    d, s = space.periodic_general(jnp.asarray(b), fractional_coordinates=False)
    return Space(d, s, b)


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
    pressure_bar: Optional[float] = None,
    barostat_tau_fs: float = 1000.0,
) -> Integrator:
    """Build an integrator for ``ensemble``.

    Args:
        energy_fn: ``(R, *, params, system, neighbor) -> E`` [eV] (see
            :func:`qdyn.md.adapters.model_energy_fn`).
        shift_fn: the cell's shift function (:func:`make_space`).
        ensemble: "nve" (velocity Verlet), "nvt" or "nvt-langevin" (BAOAB Langevin),
            "nvt-nose-hoover" (Nosé–Hoover chain), "npt" (isotropic MTK barostat with
            Nosé–Hoover chains on particles and cell; ``shift_fn`` must come from
            ``make_space(system, variable_cell=True)``).
        dt_fs: time step [fs], > 0.
        temperature_K: target temperature [K] (thermostats only; > 0).
        friction_per_fs: Langevin friction γ [1/fs] (0.01/fs = 100 fs relaxation time).
        tau_fs: Nosé–Hoover chain time constant [fs].
        chain_length: thermostats in the Nosé–Hoover chain.
        pressure_bar: NPT target pressure [bar].
        barostat_tau_fs: NPT barostat time constant [fs] (volume fluctuations are slower
            than the thermostat's).
        degrees_of_freedom: what the Nosé–Hoover chain thermostats; default 3N (JAX-MD's).
            Pass 3N − 3 when the centre-of-mass momentum is removed (a uniform momentum
            scaling conserves it, so those modes never exchange energy): with 3N the chain
            would heat the remaining modes by 3N/(3N − 3).

    Returns:
        An :class:`Integrator`.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> from qdyn.structures import water
        >>> from qdyn.models import bpnn
        >>> from qdyn.md.adapters import model_energy_fn
        >>> model = bpnn.build(species=(1, 8), hidden=(8,))
        >>> R, system = water()
        >>> sp = make_space(system)
        >>> integ = make_integrator(model_energy_fn(model.apply), sp.shift_fn, ensemble="nve", dt_fs=0.5)
    """
    if ensemble not in ENSEMBLES:
        raise QdynInputError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    _check_controls(ensemble, dt_fs, temperature_K, pressure_bar)
    dt = float(dt_fs) / units.TIME_UNIT_FS
    if ensemble == "nve":
        init_fn, step_fn = simulate.nve(energy_fn, shift_fn, dt)

        def init(key, R, *, mass, momenta, params, system, neighbor=None, controls=None):
            # kT only seeds momenta when none are given; qdyn always passes momenta.
            return init_fn(key, R, 0.0, mass=mass, momenta=momenta, params=params, system=system,
                           neighbor=neighbor)

        def step(state, *, params, system, neighbor=None, controls=None):
            return step_fn(state, params=params, system=system, neighbor=neighbor, **(controls or {}))

        return Integrator(init, step, "nve", float(dt_fs), None, True, _observe_fixed_cell)

    kT = _kT(temperature_K)
    if ensemble in ("nvt", "nvt-langevin"):
        if not friction_per_fs > 0:
            raise QdynInputError(f"friction_per_fs must be > 0, got {friction_per_fs!r}")
        gamma = float(friction_per_fs) * units.TIME_UNIT_FS  # 1/fs -> 1/time unit
        init_fn, step_fn = simulate.nvt_langevin(energy_fn, shift_fn, dt, kT, gamma=gamma)

        def init(key, R, *, mass, momenta, params, system, neighbor=None, controls=None):
            return init_fn(key, R, mass=mass, momenta=momenta, params=params, system=system, neighbor=neighbor,
                           **_only(controls, "kT"))

        def step(state, *, params, system, neighbor=None, controls=None):
            return step_fn(state, params=params, system=system, neighbor=neighbor, **(controls or {}))

        return Integrator(init, step, "nvt-langevin", float(dt_fs), float(temperature_K), False,
                          _observe_fixed_cell)

    if not tau_fs > 0:
        raise QdynInputError(f"tau_fs must be > 0, got {tau_fs!r}")
    if ensemble == "nvt-nose-hoover":
        # JAX-MD's chain reads kT from the step's keyword arguments and passes them on to the
        # energy: the energy takes it and leaves it
        init_fn, step_fn = simulate.nvt_nose_hoover(
            _ignoring_kT(energy_fn), shift_fn, dt, kT, chain_length=int(chain_length),
            tau=float(tau_fs) / units.TIME_UNIT_FS
        )

        def init(key, R, *, mass, momenta, params, system, neighbor=None, controls=None):
            state = init_fn(key, R, mass=mass, momenta=momenta, params=params, system=system, neighbor=neighbor,
                            **_only(controls, "kT"))
            if degrees_of_freedom is not None:
                # the chain masses are recomputed from this every step (update_mass)
                state = state.set(chain=state.chain.set(degrees_of_freedom=int(degrees_of_freedom)))
            return state

        def step(state, *, params, system, neighbor=None, controls=None):
            return step_fn(state, params=params, system=system, neighbor=neighbor, **_only(controls, "kT"))

        return Integrator(init, step, "nvt-nose-hoover", float(dt_fs), float(temperature_K), True,
                          _observe_fixed_cell)

    return _npt(energy_fn, shift_fn, dt, kT, dt_fs=float(dt_fs), temperature_K=float(temperature_K),
                pressure_bar=pressure_bar, tau_fs=float(tau_fs), barostat_tau_fs=float(barostat_tau_fs),
                chain_length=int(chain_length), degrees_of_freedom=degrees_of_freedom)


def _npt(energy_fn, shift_fn, dt, kT, *, dt_fs, temperature_K, pressure_bar, tau_fs, barostat_tau_fs, chain_length,
         degrees_of_freedom) -> Integrator:
    """Isotropic NPT (Martyna–Tuckerman–Klein via JAX-MD's ``npt_nose_hoover``).

    JAX-MD's NPT asks the energy for the current cell ``box=`` and an isotropic strain
    ``perturbation=`` (whose derivative is the virial). qdyn models read the cell from
    ``system.box``, so the adapter below puts both there: the cell reaches the model's own
    minimum-image code and the pressure is the exact strain derivative of its energy.
    Positions stay Cartesian: JAX-MD's MTK update scales them with the cell and its force is
    the gradient with respect to whatever coordinates the energy takes — with fractional
    ones that is hᵀ·F, and the extended energy drifts at any time step (measured here).
    """
    if not barostat_tau_fs > 0:
        raise QdynInputError(f"barostat_tau_fs must be > 0, got {barostat_tau_fs!r}")

    def energy_cell(R, *, box, perturbation=None, params, system, neighbor=None, kT=None):
        # kT: JAX-MD passes the step's keyword arguments on to the energy (see nvt-nose-hoover)
        if perturbation is not None:  # a uniform strain of positions and cell
            R, box = R * perturbation, box * perturbation
        return energy_fn(R, params=params, system=_with_box(system, box), neighbor=neighbor)

    P = float(pressure_bar) * units.BAR_EV_PER_A3
    init_fn, step_fn = simulate.npt_nose_hoover(
        energy_cell, shift_fn, dt, P, kT,
        barostat_kwargs={"chain_length": int(chain_length), "tau": float(barostat_tau_fs) / units.TIME_UNIT_FS},
        thermostat_kwargs={"chain_length": int(chain_length), "tau": float(tau_fs) / units.TIME_UNIT_FS},
    )

    def init(key, R, *, mass, momenta, params, system, neighbor=None, controls=None):
        state = init_fn(key, R, system.box, mass=mass, momenta=momenta, params=params, system=system,
                        neighbor=neighbor, **_only(controls, "kT"))
        if degrees_of_freedom is not None:
            state = state.set(thermostat=state.thermostat.set(degrees_of_freedom=int(degrees_of_freedom)))
        return state

    def step(state, *, params, system, neighbor=None, controls=None):
        return step_fn(state, params=params, system=system, neighbor=neighbor, **(controls or {}))

    def observe(state, system):
        return state.position, _with_box(system, simulate.npt_box(state))

    return Integrator(init, step, "npt", dt_fs, temperature_K, True, observe, float(pressure_bar))


def _check_controls(ensemble: str, dt_fs, temperature_K, pressure_bar) -> None:
    if not (np.isfinite(dt_fs) and dt_fs > 0):
        raise QdynInputError(f"dt_fs must be a positive number of femtoseconds, got {dt_fs!r}")
    if dt_fs > 5.0:
        raise QdynInputError(f"dt_fs={dt_fs} fs is too large for molecules with hydrogen (use ≤ 1 fs)")
    if ensemble != "nve" and (temperature_K is None or not (np.isfinite(temperature_K) and temperature_K > 0)):
        raise QdynInputError(f"{ensemble} needs temperature_K > 0, got {temperature_K!r}")
    if ensemble == "npt" and (pressure_bar is None or not np.isfinite(pressure_bar)):
        raise QdynInputError(f"npt needs a finite pressure_bar, got {pressure_bar!r}")


def _only(controls: Optional[dict], *names: str) -> dict:
    """The named entries of ``controls`` (none when there are no controls)."""
    return {} if controls is None else {name: controls[name] for name in names if name in controls}


def _ignoring_kT(energy_fn: Callable) -> Callable:
    def energy(R, *, params, system, neighbor=None, kT=None):
        return energy_fn(R, params=params, system=system, neighbor=neighbor)

    return energy


def _with_box(system: System, box) -> System:
    return System(species=system.species, mask=system.mask, box=box)


def npt_conserved_quantity(integrator: Integrator, energy_fn: Callable, state, *, params, system,
                           neighbor=None) -> jnp.ndarray:
    """The NPT extended-system energy [eV], constant up to integration error (a test of the
    barostat wiring, like total energy for NVE)."""
    if integrator.ensemble != "npt":
        raise QdynInputError(f"npt_conserved_quantity needs an npt integrator, got {integrator.ensemble}")

    def energy_cell(R, *, box, params, system, neighbor=None):
        return energy_fn(R, params=params, system=_with_box(system, box), neighbor=neighbor)

    return simulate.npt_nose_hoover_invariant(
        energy_cell, state, integrator.pressure_bar * units.BAR_EV_PER_A3,
        units.KB_EV_PER_K * integrator.temperature_K, params=params, system=system, neighbor=neighbor)
