"""MD runs: one jitted block (``lax.scan`` of steps) inside the shared host loop.

The block advances every replica by ``frames × stride`` steps (vmapped over replicas, the
neighbour list updated inside) and returns the sampled frames. :func:`run_md` wires it into
:func:`qdyn.md.host_loop.host_loop`, which redoes a block after a neighbour-list overflow,
checks the *new* state (here: finite positions, momenta and energies; temperature below a
blow-up threshold), keeps the last good state, writes checkpoints and reports progress;
the MD side adds trajectory frames (extxyz, H5MD) and ``md.json``.

Params, systems and neighbour lists are arguments of the compiled block, never constants
in it, so one compilation serves any params of the same shape.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from .. import parallel, units
from ..checkpoint import arrays_sha256, load_state, save_state
from ..compiled import shared_executable, shared_jit
from ..data.io import atomic_write_text
from ..system import System, stack
from ..validation import QdynInputError
from . import momenta
from .host_loop import host_loop
from .integrators import RUNTIME_CONTROLS, Integrator, make_integrator, make_space, masses
from .settings import MDOutput, MDSettings
from .watchdog import Watchdog, WatchLog, over_threshold


class Frames(NamedTuple):
    """Frames sampled inside one block (leading axes: frame, replica).

    Attributes:
        position: [F, Rp, n, 3] Å.  momentum: [F, Rp, n, 3] amu·Å/τ.
        potential: [F, Rp] eV.  overflow: [Rp] bool, neighbour list overflowed in the block.
        box: [F, Rp, 3, 3] Å, the cell of each frame (None in free space).
        cv: [F, Rp, n_cv] collective variables (biased runs; None otherwise).
        bias: [F, Rp] eV bias energy (biased runs; None otherwise); potential stays the
            model's own (unscaled) energy.
        energy_std: [F, Rp] eV, the watchdog's energy σ of every frame (None without one;
            NaN on frames of a replica stopped before them).
        force_std: [F, Rp] eV/Å, its largest per-atom force σ.
        stopped: [F, Rp] bool, the replica is frozen at this frame (:mod:`qdyn.md.watchdog`).
    """

    position: jax.Array
    momentum: jax.Array
    potential: jax.Array
    overflow: jax.Array
    box: Optional[jax.Array] = None
    cv: Optional[jax.Array] = None
    bias: Optional[jax.Array] = None
    energy_std: Optional[jax.Array] = None
    force_std: Optional[jax.Array] = None
    stopped: Optional[jax.Array] = None


class MDResult(NamedTuple):
    """What :func:`run_md` returns (host NumPy arrays).

    Attributes:
        state: the final batched JAX-MD state.
        step: [F] step index of every frame; frame 0 of a fresh run is the initial state
            (step 0, t = 0), as in the trajectory files; a restart returns the frames it ran.
        time_fs: [F] fs.
        potential, kinetic, total: [F, Rp] eV.  temperature: [F, Rp] K.
        position, velocity: [F, S, n, 3] Å and Å/fs for the S stored replicas.
        stored_replicas: their indices.
        volume: [F, Rp] Å³ cell volume of every frame (periodic runs; None in free space).
        cell: [F, S, 3, 3] Å cell of the stored replicas (periodic runs; None in free space).
        energy_std: [F, Rp] eV, the watchdog's energy σ of every frame of every replica (NaN
            where a replica is stopped); None without a watchdog.
        force_std: [F, Rp] eV/Å, its largest per-atom force σ.
        watchdog: thresholds, stopped replicas, stop events (when, why, the frame file) and σ
            per block (:class:`qdyn.md.watchdog.WatchLog`); None without a watchdog.
        dof: degrees of freedom used for temperatures.
        n_reallocations: neighbour-list reallocations (each redid a block).
        timings: compile_s, run_s, steps_per_s, molecule_steps_per_s, ns_per_day.
        out_dir: output directory or None.
        cv: [F, Rp, n_cv] CVs of every frame (biased runs only; None otherwise).
        bias_energy: [F, Rp] eV bias energy of every frame.
        bias_state: the final :class:`~qdyn.sampling.bias.BiasState` (batched).
        exchange: replica-exchange statistics (runs with exchange only).
    """

    state: object
    step: np.ndarray
    time_fs: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    total: np.ndarray
    temperature: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    stored_replicas: list
    dof: int
    n_reallocations: int
    timings: dict
    out_dir: Optional[Path]
    volume: Optional[np.ndarray] = None
    cell: Optional[np.ndarray] = None
    cv: Optional[np.ndarray] = None
    bias_energy: Optional[np.ndarray] = None
    bias_state: object = None
    exchange: Optional[dict] = None
    energy_std: Optional[np.ndarray] = None
    force_std: Optional[np.ndarray] = None
    watchdog: Optional[dict] = None


def make_block(integrator: Integrator, energy_fn: Callable, *, stride: int, frames: int, bias=None,
               sigma_fn: Optional[Callable] = None) -> Callable:
    """The MD block, a pure function to jit: ``block(states, neighbors, params, systems, controls, watch)``.

    Args:
        integrator: from :func:`~qdyn.md.integrators.make_integrator`.
        energy_fn: the MD energy ``(R, *, params, system, neighbor) -> E`` [eV] (for the
            potential energy of sampled frames).
        stride: steps between sampled frames.
        frames: frames per block (the block runs ``stride × frames`` steps).
        bias: a :class:`qdyn.sampling.bias.Bias`; then the integrator's energy must be
            :func:`qdyn.sampling.bias.biased_energy_fn` and params are
            ``(model_params, bias_states)`` with a replica axis on the bias states, which
            the block carries through the scan (``bias.update`` after every step).
        sigma_fn: the uncertainty of one configuration (:class:`qdyn.md.watchdog.Watchdog`);
            with it, every sampled frame is checked and a replica past a threshold is frozen
            at its last trusted frame.

    Returns:
        ``block(states, neighbors, params, systems, controls, watch=None) -> (states, neighbors,
        Frames)`` where states, neighbours (or None) and systems carry a leading replica axis and
        params do not (shared by all replicas); ``controls`` (:meth:`Integrator.controls
        <qdyn.md.integrators.Integrator.controls>`, or None for the integrator's own) are the time
        step, temperature or pressure, shared by all replicas; with a bias, params is
        ``(model_params, bias_states)`` and the result ``(states, neighbors, Frames, bias_states)``; ``watch`` is
        ``(stopped [Rp] bool, thresholds [2], sigma_params)`` when ``sigma_fn`` is given.
    """

    from ..sampling.bias import REPLICA_AXIS

    def one(state, nbr, system, params, bst, controls, watch):
        def step(carry, _):
            state, nbr, bst = carry
            state = integrator.step(state, params=params if bias is None else (params, bst), system=system,
                                    neighbor=nbr, controls=controls)
            if nbr is not None:
                nbr = nbr.update(state.position)
            if bias is not None:
                R, system_now = integrator.observe(state, system)
                bst = bias.update(bst, R, system_now.box)
            return (state, nbr, bst), None

        def frame(carry, _):
            state0, nbr0, bst0, stopped = carry
            (state, nbr, bst), _ = jax.lax.scan(step, (state0, nbr0, bst0), None, length=stride)
            sigma = None
            if sigma_fn is not None:
                state, nbr, bst, stopped, sigma = _watch_frame((state0, nbr0, bst0), (state, nbr, bst), stopped,
                                                               system, params, watch)
            # Cartesian positions and the current cell (NPT integrates fractional ones)
            R, system_now = integrator.observe(state, system)
            pe = energy_fn(R, params=params, system=system_now, neighbor=nbr)
            biased = None if bias is None else (bias.cv(R, system_now.box), bias.energy(R, system_now.box, bst))
            return (state, nbr, bst, stopped), (R, state.momentum, pe, system_now.box, biased, sigma, stopped)

        stopped0 = watch[0] if sigma_fn is not None else jnp.zeros((), bool)
        (state, nbr, bst, _), out = jax.lax.scan(frame, (state, nbr, bst, stopped0), None, length=frames)
        overflow = nbr.did_buffer_overflow if nbr is not None else jnp.zeros((), bool)
        return state, nbr, bst, overflow, out

    def _watch_frame(before, after, stopped, system, params, watch):
        """σ of the new frame; a replica past a threshold goes back to the frame before (its
        state, neighbour list and bias) and stays there (frames of an already stopped replica
        report σ NaN)."""
        _, thresholds, sigma_params = watch
        state, nbr, _ = after
        R, system_now = integrator.observe(state, system)
        s_E, s_F = sigma_fn(sigma_params, params, R, system_now, nbr)
        bad, max_F = over_threshold(s_E, jnp.where(system.mask, s_F, 0.0), jnp.sum(system.mask), thresholds)
        frozen = stopped | bad
        state, nbr, bst = jax.tree_util.tree_map(lambda old, new: jnp.where(frozen, old, new), before, after)
        nan = jnp.full_like(s_E, jnp.nan)
        return state, nbr, bst, frozen, (jnp.where(stopped, nan, s_E), jnp.where(stopped, nan, max_F))

    def block(states, neighbors, params, systems, controls=None, watch=None):
        model_params, bsts = (params, None) if bias is None else params
        w_axes = (0, None, None) if sigma_fn is not None else None
        # the replica axis is named: shared metadynamics walkers gather their CVs over it
        state, nbr, bst, overflow, out = jax.vmap(one, in_axes=(0, 0, 0, None, 0, None, w_axes),
                                                  axis_name=REPLICA_AXIS)(
            states, neighbors, systems, model_params, bsts, controls, watch)
        # frames first, then replicas
        R, P, PE, box, biased, sigma, stopped = jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), out)
        cv, bias_energy = (None, None) if bias is None else biased
        s_E, s_F = (None, None) if sigma_fn is None else sigma
        frames_out = Frames(R, P, PE, overflow, box, cv=cv, bias=bias_energy, energy_std=s_E, force_std=s_F,
                            stopped=None if sigma_fn is None else stopped)
        return (state, nbr, frames_out) if bias is None else (state, nbr, frames_out, bst)

    return block


class _Dynamics(NamedTuple):
    """The dynamics of a run. Its :meth:`program` is what a compiled program depends on
    besides the energy, the cell and the block shape: hashable, so the programs are cached on
    it (not on ``n_steps``, the output, or the values the ensemble takes at call time)."""

    ensemble: str
    dt_fs: float
    temperature_K: Optional[float]  # None: no thermostat (NVE)
    friction_per_fs: float
    tau_fs: float
    pressure_bar: Optional[float]
    barostat_tau_fs: float
    remove_com: bool
    remove_rotation: bool
    dof: int

    @classmethod
    def of(cls, settings: MDSettings, n_atoms: int, periodic: bool) -> "_Dynamics":
        # removed momentum / rotation stay zero where they are conserved (NVE, and Nosé–Hoover,
        # whose uniform momentum scaling keeps them zero); Langevin noise thermalises all 3N
        conserves = settings.ensemble in ("nve", "nvt-nose-hoover")
        rot = bool(settings.remove_rotation and not periodic)
        dof = momenta.degrees_of_freedom(n_atoms, remove_com=conserves, remove_rotation=rot and conserves)
        return cls(settings.ensemble, float(settings.dt_fs),
                   float(settings.temperature_K) if settings.ensemble != "nve" else None,
                   float(settings.friction_per_fs), float(settings.tau_fs),
                   None if settings.pressure_bar is None else float(settings.pressure_bar),
                   float(settings.barostat_tau_fs), conserves, rot, dof)

    def program(self) -> "_Dynamics":
        """These dynamics with the time step, temperature and pressure that the ensemble takes
        at call time (:data:`~qdyn.md.integrators.RUNTIME_CONTROLS`) set to fixed values: runs
        that differ only in those share the compiled programs, and :meth:`controls` carries
        the run's own values into every call."""
        runtime = RUNTIME_CONTROLS[self.ensemble]
        return self._replace(**{field: _PROGRAM_VALUES[field] for control, field in _CONTROL_FIELDS.items()
                                if control in runtime})

    def controls(self, integrator: Integrator) -> dict:
        return integrator.controls(dt_fs=self.dt_fs, temperature_K=self.temperature_K,
                                   pressure_bar=self.pressure_bar)


# which _Dynamics field each call-time control replaces, and the value programs are built with:
# never used, every call passes the run's own; chosen apart from the values tests run at, so a
# call that forgot its controls would show
_CONTROL_FIELDS = {"dt": "dt_fs", "kT": "temperature_K", "pressure": "pressure_bar"}
_PROGRAM_VALUES = {"dt_fs": 1.0, "temperature_K": 1000.0, "pressure_bar": 1000.0}


class _Programs:
    """The jitted functions of one (energy, cell, dynamics, sampling, optional parts) combination.

    Cached, so repeated runs (tests, notebooks, new params of the same shape) compile once;
    the AOT-compiled block is kept per argument signature so compile time is measured on
    its own. With a bias, params are ``(model params, per-replica bias states)``.
    """

    def __init__(self, energy_fn, shift_fn, dyn: _Dynamics, stride: int, frames: int, bias, sigma_fn,
                 single_device: bool):
        md_energy_fn = energy_fn
        if bias is not None:
            from ..sampling.bias import biased_energy_fn

            md_energy_fn = biased_energy_fn(energy_fn, bias)
        self.integ = integ = make_integrator(
            md_energy_fn, shift_fn, ensemble=dyn.ensemble, dt_fs=dyn.dt_fs, temperature_K=dyn.temperature_K,
            friction_per_fs=dyn.friction_per_fs, tau_fs=dyn.tau_fs, degrees_of_freedom=dyn.dof,
            pressure_bar=dyn.pressure_bar, barostat_tau_fs=dyn.barostat_tau_fs)
        model_params = (lambda params: params) if bias is None else (lambda params: params[0])  # noqa: E731

        def init_one(vel_key, int_key, R, m, system, nbr, params, T0, controls):
            p = momenta.maxwell_boltzmann(vel_key, R, m, temperature_K=T0, remove_com=dyn.remove_com,
                                          remove_rotation=dyn.remove_rotation)
            state = integ.init(int_key, R, mass=m, momenta=p, params=params, system=system, neighbor=nbr,
                               controls=controls)
            return state, energy_fn(R, params=model_params(params), system=system, neighbor=nbr)

        def potential(state, system, nbr, params):
            R, system_now = integ.observe(state, system)
            return energy_fn(R, params=model_params(params), system=system_now, neighbor=nbr)

        p_axes = None if bias is None else (None, 0)
        # On one device the programs come from qdyn.compiled's table: a run of a model rebuilt
        # with the same config (each active-learning round, a restart, a reloaded run) has new
        # closures, so jax.jit alone would compile the same init and block again. A sharded
        # program also depends on its device assignment, which its text does not show.
        self.single_device = single_device
        jit = shared_jit if single_device else jax.jit
        self.init = jit(jax.vmap(init_one, in_axes=(0, 0, 0, 0, 0, 0, p_axes, None, None)))
        self.potential = jit(jax.vmap(potential, in_axes=(0, 0, 0, p_axes)))
        # Cartesian positions and cell of a batched state (the initial frame; NPT integrates
        # fractional positions)
        self.observe = jax.jit(jax.vmap(integ.observe, in_axes=(0, 0)))
        self.block = jax.jit(make_block(integ, energy_fn, stride=stride, frames=frames, bias=bias, sigma_fn=sigma_fn))
        self.kinetic = jax.jit(momenta.kinetic_energy)
        self.compiled = {}

    def compiled_block(self, *args):
        """(compiled block, seconds spent compiling now)."""
        leaves, treedef = jax.tree_util.tree_flatten(args)
        sig = (treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves))
        if sig in self.compiled:
            return self.compiled[sig], 0.0
        t = time.perf_counter()
        lowered = self.block.lower(*args)
        self.compiled[sig] = shared_executable(lowered) if self.single_device else lowered.compile()
        return self.compiled[sig], time.perf_counter() - t


@functools.lru_cache(maxsize=16)
def _programs(*key) -> _Programs:
    return _Programs(*key)


class _Parts(NamedTuple):
    """The optional parts of a run and everything each adds around the block; an absent part
    adds nothing.

    bias: an energy term whose per-replica states the block carries (checkpointed with the MD
    state, in the initial frame's CVs); exchange: swaps of those states after every block;
    watchdog: σ checked at every frame inside the block; mesh: replicas split over devices.
    """

    bias: object = None
    exchange: object = None
    watchdog: Optional[Watchdog] = None
    mesh: object = None

    @property
    def sigma_fn(self) -> Optional[Callable]:
        return None if self.watchdog is None else self.watchdog.sigma_fn

    def params(self, params, bias_states):
        """The block's params argument."""
        return params if self.bias is None else (params, bias_states)

    def saved(self, carry):
        """What a checkpoint holds of the carry (the bias continues on restart)."""
        states, _, bias_states = carry
        return states if self.bias is None else (states, bias_states)

    def restored(self, saved, bias_states):
        """(states, bias states) from what :meth:`saved` wrote."""
        return (saved, bias_states) if self.bias is None else saved

    def shard(self, tree):
        return parallel.put_sharded(tree, self.mesh)

    def initial_bias(self, R, box, bias_states):
        """(CVs [1, Rp, n_cv], bias energy [1, Rp]) of the initial frame, or (None, None)."""
        if self.bias is None:
            return None, None
        box_axis = None if box is None else 0
        cv = np.asarray(jax.vmap(self.bias.cv, in_axes=(0, box_axis))(R, box))[None]
        energy = np.asarray(jax.vmap(self.bias.energy, in_axes=(0, box_axis, 0))(R, box, bias_states))[None]
        return cv, energy

    def exchanged(self, bias_states, host: "_HostFrames"):
        """Bias states after the exchange attempts on the block's last frame (the state the
        next block starts from)."""
        if self.exchange is None:
            return bias_states
        return self.exchange.attempt(bias_states, host.PE[-1], host.R[-1], None if host.box is None else host.box[-1])

    def finish(self, result: MDResult, bias_states, watch: Optional[WatchLog]) -> MDResult:
        if self.bias is not None:
            result = result._replace(bias_state=bias_states,
                                     exchange=None if self.exchange is None else self.exchange.statistics())
        if watch is not None:
            result = result._replace(watchdog=watch.summary())
        return result


@dataclasses.dataclass
class _Run:
    """One run's prepared pieces (replicas on axis 0); a restart may shorten ``fpb`` so
    every remaining block has the compiled length."""

    settings: MDSettings
    output: MDOutput
    parts: _Parts
    energy_fn: Callable
    space: object
    R: np.ndarray  # [Rp, n, 3] Å, wrapped into the cell
    systems: list
    batched_sys: System
    mass: np.ndarray  # [Rp, n] amu
    dyn: _Dynamics
    n_frames: int
    fpb: int
    stored: list
    neighbor_fn: object

    @property
    def programs(self) -> _Programs:
        return _programs(self.energy_fn, self.space.shift_fn, self.dyn.program(), int(self.output.stride),
                         int(self.fpb), self.parts.bias, self.parts.sigma_fn, self.parts.mesh is None)

    @property
    def controls(self) -> dict:
        """This run's time step, temperature, pressure as call-time arguments of its programs."""
        return self.dyn.controls(self.programs.integ)

    def meta(self, params_sha256: str, step: int, frames: int) -> dict:
        return {"ensemble": self.programs.integ.ensemble, "dt_fs": float(self.settings.dt_fs),
                "replicas": self.settings.replicas, "stride": self.output.stride, "params_sha256": params_sha256,
                "initial_frame": True, "step": int(step), "frames": int(frames),
                "units": f"Å, amu, eV; momentum amu·Å/τ, τ = {units.TIME_UNIT_FS} fs"}


def _prepare(energy_fn, R, system, settings: MDSettings, output: MDOutput, parts: _Parts, neighbor_fn) -> _Run:
    """Check the arguments and lay out the replicas, before anything compiles."""
    replicas, stride = settings.replicas, int(output.stride)
    if settings.n_steps % stride:
        raise QdynInputError(f"n_steps must be a positive multiple of stride={stride}, got {settings.n_steps}")
    if settings.ensemble == "npt" and neighbor_fn is not None:
        raise QdynInputError("npt runs dense models only: a neighbour list would have to follow the changing cell")
    Rs, systems = _as_replicas(R, system, replicas)
    parallel.check_divisible(replicas, parts.mesh, "replicas", "replicas")
    if settings.check_plausibility:
        from ..data.plausibility import check_positions_scale

        check_positions_scale(Rs, source="initial positions")
    sp = make_space(systems[0], variable_cell=settings.ensemble == "npt")
    n_frames = settings.n_steps // stride
    return _Run(settings, output, parts, energy_fn, sp, sp.wrap(Rs),  # JAX-MD's periodic spaces expect wrapped R
                systems, parts.shard(stack(systems)), np.stack([masses(s) for s in systems]),
                _Dynamics.of(settings, Rs.shape[1], sp.box is not None), n_frames,
                _frames_per_block(n_frames, output.frames_per_block),
                list(range(min(output.store_replicas, replicas))), neighbor_fn)


def _initial_carry(run: _Run, params, bias_states, key, replica_keys, neighbor):
    """((states, neighbour lists, bias states), initial potential energy [Rp] eV)."""
    vel_keys, int_keys = _replica_keys(key, replica_keys, run.settings.replicas)
    nbrs = None
    if run.neighbor_fn is not None:
        nbrs = _spread(run.neighbor_fn, neighbor, run.R) if neighbor is not None else _allocate(run.neighbor_fn, run.R)
    vel_keys, int_keys, nbrs, Rs, mass, bias_states = run.parts.shard(
        (vel_keys, int_keys, nbrs, jnp.asarray(run.R), jnp.asarray(run.mass), bias_states))
    states, pe0 = run.programs.init(vel_keys, int_keys, Rs, mass, run.batched_sys, nbrs,
                                    run.parts.params(params, bias_states), float(run.settings.start_temperature_K),
                                    run.controls)
    return (states, nbrs, bias_states), pe0


class _Resumed(NamedTuple):
    carry: tuple
    pe0: jax.Array
    frames_start: int
    initial_frame: bool  # the trajectory files start with the initial frame
    watch: Optional[dict]  # the watchdog's checkpointed state


def _resume(run: _Run, carry, params, params_sha256: str) -> _Resumed:
    """The carry of ``out_dir/checkpoint.npz``, checked against this run; the block length
    adjusted so every remaining block has the compiled length."""
    out = run.output.path
    saved, frames_start, initial_frame, watch, exchange_state = _restore(
        out / "checkpoint.npz", run.parts.saved(carry), run.meta(params_sha256, 0, 0))
    states, bias_states = run.parts.restored(saved, carry[2])
    if run.parts.exchange is not None and exchange_state is not None:  # swap statistics continue too
        run.parts.exchange.restore(exchange_state, replicas=run.settings.replicas)
    if frames_start > run.n_frames:
        done = frames_start * run.output.stride
        raise QdynInputError(f"{out / 'checkpoint.npz'}: the run has done {done} steps; "
                             f"n_steps = {run.settings.n_steps} is fewer (ask for at least {done})")
    _check_restart_files(out, run.output.trajectory_formats, run.stored)
    if (run.n_frames - frames_start) % run.fpb:
        run.fpb = _frames_per_block(run.n_frames - frames_start, run.output.frames_per_block)
    nbrs = None if carry[1] is None else _allocate(run.neighbor_fn, np.asarray(states.position))
    carry = run.parts.shard((states, nbrs, bias_states))
    pe0 = run.programs.potential(carry[0], run.batched_sys, carry[1], run.parts.params(params, carry[2]))
    return _Resumed(carry, pe0, frames_start, initial_frame, watch)


def _watch_log(run: _Run, restored: Optional[dict]) -> Optional[WatchLog]:
    watchdog = run.parts.watchdog
    if watchdog is None:
        return None
    system = run.systems[0]
    return WatchLog(watchdog, replicas=run.settings.replicas, n_atoms=int(np.sum(system.mask)),
                    stride=run.output.stride, dt_fs=float(run.settings.dt_fs), species=np.asarray(system.species),
                    masses=run.mass, box=run.space.box, out=run.output.path, restored=restored)


def _block_runner(run: _Run, params, watch: Optional[WatchLog], clock: "_Clock") -> Callable:
    """``run_block(carry, frames) -> (new carry, host frames, overflowed)`` for the host loop."""
    progs, parts, mass = run.programs, run.parts, jnp.asarray(run.mass)
    dof, controls = run.dyn.dof, run.controls

    def run_block(carry, frames):
        # on a mesh: the carry back on the replica split the block was compiled for (a no-op
        # when the last block left it there)
        states, nbrs, bias_states = parts.shard(carry)
        args = (states, nbrs, parts.params(params, bias_states), run.batched_sys, controls)
        args += (watch.watch_args(),) if watch is not None else ()
        fn, compile_s = progs.compiled_block(*args)
        clock.compiled(compile_s)
        new_states, new_nbrs, fr, *new_bias_states = fn(*args)
        fr = parallel.tree_to_host(fr)
        if nbrs is not None and bool(np.any(fr.overflow)):
            return carry, None, True
        KE = np.asarray(progs.kinetic(fr.momentum, mass[None]))
        host = _HostFrames(fr.position, fr.momentum, fr.potential, KE, 2.0 * KE / (dof * units.KB_EV_PER_K), fr.box,
                           fr.cv, fr.bias, fr.energy_std, fr.force_std, fr.stopped)
        new_bias_states = parts.exchanged(new_bias_states[0] if new_bias_states else None, host)
        return (new_states, new_nbrs, new_bias_states), host, False

    return run_block


def _loop(run: _Run, carry, params, recorder: "_Recorder", frames_start: int, params_sha256: str):
    """The shared host loop around this run's block."""
    out, watch = run.output.path, recorder.watch

    def reallocate(carry, attempt):
        # the first retry sizes the list for the block's start positions, later ones add 25 %
        states, nbrs, bias_states = carry
        extra = int(nbrs.idx.shape[-1] * 0.25) if attempt > 1 else 0
        return states, _allocate(run.neighbor_fn, parallel.to_host(states.position), extra), bias_states

    def save(name):
        def write(carry, frames):
            meta = run.meta(params_sha256, frames * run.output.stride, frames)
            if watch is not None:
                meta["watchdog"] = watch.state()
            if run.parts.exchange is not None:
                meta["exchange"] = run.parts.exchange.state()
            return save_state(out / name, parallel.tree_to_host(run.parts.saved(carry)), meta)

        return write

    max_T = run.settings.blow_up_temperature_K
    return host_loop(
        carry, run_block=_block_runner(run, params, watch, recorder.clock), n_frames=run.n_frames,
        frames_per_block=run.fpb, stride=run.output.stride, frames_done=frames_start, reallocate=reallocate,
        state_of=lambda carry: carry[0], check=lambda carry, host: _check_new_state(host.R, host.P, host.PE, host.T,
                                                                                    max_T),
        record=recorder, what="MD", hint="Try a smaller dt_fs, check the model on this geometry, or lower the "
        "temperature.", save_last_good=None if out is None else save("last_good.npz"),
        checkpoint=None if out is None else save("checkpoint.npz"), checkpoint_every=run.output.checkpoint_every,
        stop_when=None if watch is None else (lambda _state: watch.all_stopped),
        progress=run.output.progress, progress_every_s=run.output.progress_every_s)


def run_md(
    energy_fn: Callable,
    params,
    R,
    system: Union[System, Sequence[System]],
    settings: MDSettings,
    *,
    output: MDOutput = MDOutput(),
    key: Optional[jax.Array] = None,
    replica_keys: Optional[jax.Array] = None,
    neighbor_fn=None,
    neighbor=None,
    bias=None,
    bias_states=None,
    exchange=None,
    watchdog: Optional[Watchdog] = None,
    mesh=None,
) -> MDResult:
    """Run MD of ``settings.replicas`` independent copies with any qdyn energy function.

    Args:
        energy_fn: ``(R, *, params, system, neighbor) -> E`` [eV]; for an
            :class:`~qdyn.models.base.EnergyModel` use
            :func:`~qdyn.md.adapters.model_energy_fn` ``(model.apply)``.
        params: the model parameters (call-time argument of the compiled block).
        R: initial positions [n, 3] Å (all replicas) or [replicas, n, 3].
        system: one :class:`~qdyn.system.System` or one per replica (same atom count and
            box; no padding atoms).
        settings: the physics (:class:`~qdyn.md.settings.MDSettings`: ensemble, dt_fs,
            n_steps, temperatures, thermostat, barostat, replicas, blow-up threshold).
        output: what is written and reported (:class:`~qdyn.md.settings.MDOutput`: out_dir,
            formats, stride, frames_per_block, checkpoints, restart, progress, provenance).
        key: PRNG key; replica i uses ``jax.random.split(key, replicas)[i]``.
        replica_keys: [replicas] keys instead of ``key`` (to reproduce single replicas).
        neighbor_fn: JAX-MD ``NeighborListFns`` for energies that need a neighbour list.
        neighbor: an already allocated neighbour list (of one replica) to start from.
        bias: a :class:`qdyn.sampling.bias.Bias` added to the model's energy inside the
            compiled loop (metadynamics, umbrella restraints, tempering scale).
        bias_states: its per-replica :class:`~qdyn.sampling.bias.BiasState` (leading axis
            ``replicas``; default ``bias.init`` for every replica); checkpointed with the MD
            state, so a restart continues the bias.
        exchange: a :class:`qdyn.sampling.exchange.ReplicaExchange` attempting swaps of the
            bias states between neighbouring replicas after every block (needs ``bias``).
        watchdog: uncertainty thresholds (:func:`qdyn.md.watchdog.make_watchdog`): σ is
            checked at every sampled frame inside the compiled block; a replica past a
            threshold is frozen at its last trusted frame (written to
            ``out_dir/stopped_rNNNN.xyz``), the others go on, and the run ends when all
            have stopped. σ per block and the stop events go to ``md.json`` and the result.
        mesh: a device mesh (:func:`qdyn.parallel.make_mesh`) to split the replicas over
            (the same compiled block, partitioned by XLA; params replicated); ``replicas``
            must be a multiple of its size. None: one device.

    The checkpoints and ``md.json`` record a checksum of ``params``: a restart with other
    parameters is refused, as is one whose trajectory files are missing or hold fewer
    frames than the checkpoint, or whose ``n_steps`` is below the steps already done.

    Returns:
        :class:`MDResult`.

    Raises:
        QdynInputError: bad arguments (before anything compiles).
        BlowUpError: a block produced a non-finite or blown-up state.
    """
    t_start = time.perf_counter()
    if neighbor_fn is None and neighbor is not None:
        raise QdynInputError("neighbor given without neighbor_fn")
    parts = _Parts(bias, exchange, watchdog, mesh)
    run = _prepare(energy_fn, R, system, settings, output, parts, neighbor_fn)
    bias_states = _bias_states(bias, bias_states, exchange, settings.replicas, run.R, run.systems[0])
    params = parallel.put_replicated(params, mesh)
    carry, pe0 = _initial_carry(run, params, bias_states, key, replica_keys, neighbor)
    params_sha256 = arrays_sha256(parallel.to_host(x) for x in jax.tree_util.tree_leaves(params))
    # frame 0 is the initial state (t = 0); checkpoints written before it was stored record
    # no "initial_frame", and their trajectory files continue without one
    start = _Resumed(carry, pe0, 0, True, None)
    if output.restart:
        start = _resume(run, carry, params, params_sha256)
    writers = _open_writers(output.path, output.trajectory_formats, run.stored, np.asarray(run.systems[0].species),
                            run.space.box, variable_cell=settings.ensemble == "npt",
                            keep_frames=start.frames_start + int(start.initial_frame and output.restart))
    recorder = _recorder(run, start, writers)
    if not output.restart:  # a restart continues files that already hold frame 0
        recorder.initial(*_initial_frame(run, params, start.carry, pe0))
    try:
        loop = _loop(run, start.carry, params, recorder, start.frames_start, params_sha256)
    finally:
        for _, w in writers:
            w.close()
    steps_run = (loop.frames_done - start.frames_start) * output.stride
    result = recorder.result(loop.carry[0], loop.n_reallocations, steps_run, settings.replicas, t_start,
                             output.path)
    result = parts.finish(result, loop.carry[2], recorder.watch)
    if output.path is not None:
        _write_summary(output.path / "md.json", result, run, provenance={
            **(output.provenance or {}), "params_sha256": params_sha256,
            **({} if result.watchdog is None else {"watchdog": result.watchdog})})
    return result


def _recorder(run: _Run, start: _Resumed, writers) -> "_Recorder":
    progs, mass = run.programs, jnp.asarray(run.mass)
    e_ref = parallel.to_host(start.pe0) + np.asarray(progs.kinetic(parallel.to_host(start.carry[0].momentum), mass))
    recorder = _Recorder(stored=run.stored, mass=run.mass, dt_fs=float(run.settings.dt_fs), stride=run.output.stride,
                         dof=run.dyn.dof, n_steps=run.settings.n_steps, writers=writers, e_ref=e_ref, clock=_Clock(),
                         frames_start=start.frames_start)
    recorder.watch = _watch_log(run, start.watch)
    return recorder


def _bias_states(bias, bias_states, exchange, replicas: int, Rs, system):
    """The per-replica bias states of a biased run (None without a bias), checked."""
    if bias is None:
        if bias_states is not None or exchange is not None:
            raise QdynInputError("bias_states and exchange need a bias")
        return None
    if bias_states is None:
        n_cv = int(np.shape(bias.cv(jnp.asarray(Rs[0]), system.box))[-1])
        from ..sampling.bias import stack_states

        return stack_states([bias.init(n_cv=n_cv)] * replicas)
    lead = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(bias_states)}
    if lead != {replicas}:
        raise QdynInputError(f"bias_states must carry a leading axis of {replicas} replicas")
    return bias_states


def _as_replicas(R, system, replicas: int):
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2:
        R = np.broadcast_to(R, (replicas, *R.shape)).copy()
    if R.ndim != 3 or R.shape[-1] != 3:
        raise QdynInputError(f"R must be [n_atoms, 3] or [replicas, n_atoms, 3] Å, got shape {R.shape}")
    if R.shape[0] != replicas:
        raise QdynInputError(f"R holds {R.shape[0]} structures but replicas={replicas}")
    systems = list(system) if isinstance(system, (list, tuple)) else [system] * replicas
    if len(systems) != replicas:
        raise QdynInputError(f"got {len(systems)} systems for {replicas} replicas")
    n = R.shape[1]
    for i, s in enumerate(systems):
        if s.n_atoms != n:
            raise QdynInputError(f"replica {i}: system has {s.n_atoms} atoms, R has {n}")
    if not np.all(np.isfinite(R)):
        raise QdynInputError("initial positions contain NaN or inf")
    return R, systems


def _frames_per_block(n_frames: int, requested: int) -> int:
    """The largest divisor of the frame count not above the request, so every block has the
    same shape and compiles once."""
    return max(d for d in range(1, min(requested, n_frames) + 1) if n_frames % d == 0)


def _replica_keys(key, replica_keys, replicas: int):
    """(velocity keys, integrator keys), [replicas] each, from ``key`` or per-replica keys."""
    if replica_keys is None:
        key = jax.random.PRNGKey(0) if key is None else key
        replica_keys = jax.random.split(key, replicas)
    replica_keys = jnp.asarray(replica_keys)
    if replica_keys.shape[0] != replicas:
        raise QdynInputError(f"replica_keys holds {replica_keys.shape[0]} keys for {replicas} replicas")
    return (jax.vmap(lambda k: jax.random.fold_in(k, 1))(replica_keys),
            jax.vmap(lambda k: jax.random.fold_in(k, 2))(replica_keys))


def _allocate(neighbor_fn, Rp, extra: int = 0):
    """Neighbour lists for [Rp, n, 3] positions, allocated on the host: one per replica, all
    with the capacity of the fullest."""
    best = None
    for r in range(Rp.shape[0]):
        nb = neighbor_fn.allocate(jnp.asarray(Rp[r]), extra_capacity=extra)
        if best is None or nb.idx.shape[-1] > best.idx.shape[-1]:
            best = nb
    return _spread(neighbor_fn, best, Rp)


def _spread(neighbor_fn, template, Rp):
    return jax.vmap(lambda r: neighbor_fn.update(r, template))(jnp.asarray(Rp))


def _restore(path: Path, template, expected: dict):
    """(state, frames done by blocks, whether the trajectory files start with the initial frame,
    watchdog state or None, replica-exchange state or None) from a checkpoint written by this
    kind of run with these params."""
    if not path.exists():
        raise QdynInputError(f"restart=True but {path} does not exist")
    state, meta = load_state(path, template)
    for k in ("ensemble", "dt_fs", "replicas", "stride"):
        if meta.get(k) != expected[k]:
            raise QdynInputError(f"{path}: checkpoint has {k}={meta.get(k)!r}, this run asks for {expected[k]!r}")
    recorded = meta.get("params_sha256")  # absent in checkpoints written before it was recorded
    if recorded is not None and recorded != expected["params_sha256"]:
        raise QdynInputError(f"{path}: the checkpoint was written with another model (params sha256 "
                             f"{recorded[:12]}…, this run's {expected['params_sha256'][:12]}…); restart with the "
                             "model that started the run, or start a new run elsewhere")
    return (state, int(meta["frames"]), bool(meta.get("initial_frame", False)), meta.get("watchdog"),
            meta.get("exchange"))


def _trajectory_files(out: Path, formats, stored) -> list[tuple[Optional[int], Path]]:
    """``(replica, path)``: an extxyz file per stored replica, one H5MD file for all (None)."""
    files = []
    if "extxyz" in formats:
        files += [(r, out / ("trajectory.xyz" if len(stored) == 1 else f"trajectory_r{r:04d}.xyz")) for r in stored]
    if "h5md" in formats:
        files.append((None, out / "trajectory.h5"))
    return files


def _check_restart_files(out: Path, formats, stored) -> None:
    """Refuse a restart whose trajectory files are gone (before any of them is touched);
    the writers then check that each holds the checkpoint's frames."""
    missing = [p.name for _, p in _trajectory_files(out, formats, stored) if not p.exists()]
    if missing:
        raise QdynInputError(f"restart: {', '.join(missing)} missing from {out}; the checkpoint continues a "
                             "trajectory that is no longer there (start a new run instead)")


def _open_writers(out: Optional[Path], formats, stored, species, box, *, variable_cell: bool, keep_frames: int):
    """``(replica, writer)`` pairs: an extxyz file per stored replica, one H5MD file for all
    (replica None); none without an output directory."""
    if out is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    from ..data.extxyz import ExtxyzWriter
    from .trajectory import H5MDWriter

    writers = []
    for r, path in _trajectory_files(out, formats, stored):
        if r is not None:
            writers.append((r, ExtxyzWriter(path, species, box, keep_frames=keep_frames)))
        else:
            writers.append((None, H5MDWriter(path, species, box, replicas=stored, variable_cell=variable_cell,
                                             keep_frames=keep_frames)))
    return writers


class _HostFrames(NamedTuple):
    """One block's frames on the host (leading axes: frame, replica): R, P [F, Rp, n, 3],
    PE, KE [F, Rp] eV, T [F, Rp] K, box [F, Rp, 3, 3] Å or None."""

    R: np.ndarray
    P: np.ndarray
    PE: np.ndarray
    KE: np.ndarray
    T: np.ndarray
    box: Optional[np.ndarray]
    cv: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None
    energy_std: Optional[np.ndarray] = None
    force_std: Optional[np.ndarray] = None
    stopped: Optional[np.ndarray] = None


@functools.lru_cache(maxsize=16)
def _replica_sigma(sigma_fn, single_device: bool):
    """jit of the watchdog's σ over the replicas of one frame: evaluated op by op, the σ of
    the initial frame (a gradient per ensemble member, or a Laplace Jacobian) took longer than
    the compiled MD block itself (42 of 76 s of a notebook's run_md). Shared like the block
    (see :class:`_Programs`)."""
    return (shared_jit if single_device else jax.jit)(jax.vmap(sigma_fn, in_axes=(None, None, 0, 0, 0)))


def _initial_frame(run: _Run, params, carry, pe0) -> tuple[_HostFrames, Optional[tuple]]:
    """The initial state as one frame (leading axis 1) in the layout of a block's frames, and
    the watchdog's σ of it (None without a watchdog)."""
    states, nbrs, bias_states = carry
    progs, mass = run.programs, jnp.asarray(run.mass)
    R_j, systems_now = progs.observe(states, run.batched_sys)
    R, P, box, pe0 = parallel.tree_to_host((R_j, states.momentum, systems_now.box, pe0))
    KE = np.asarray(progs.kinetic(P, mass))
    # the CVs and bias of frame 0 too, so they line up with the positions
    cv, bias_energy = run.parts.initial_bias(R, box, bias_states)
    host = _HostFrames(R[None], P[None], pe0[None], KE[None], (2.0 * KE / (run.dyn.dof * units.KB_EV_PER_K))[None],
                       None if box is None else box[None], cv, bias_energy)
    watchdog = run.parts.watchdog
    if watchdog is None:
        return host, None
    sigma = _replica_sigma(watchdog.sigma_fn, run.parts.mesh is None)
    s_E, s_F = sigma(watchdog.sigma_params, params, R_j, systems_now, nbrs)
    max_F = jnp.max(jnp.where(run.batched_sys.mask, s_F, 0.0), axis=-1)
    return host, (parallel.to_host(s_E)[None], parallel.to_host(max_F)[None])


class _Clock:
    """Compile time apart from run time: the run clock starts after the first compilation."""

    def __init__(self):
        self.compile_s = 0.0
        self.t_loop = None

    def compiled(self, seconds: float):
        self.compile_s += seconds
        if self.t_loop is None:
            self.t_loop = time.perf_counter()

    def run_s(self) -> float:
        return max(time.perf_counter() - (self.t_loop or time.perf_counter()), 1e-9)


class _Recorder:
    """Keeps every block's frames (stored replicas' positions and velocities), writes them
    and returns the progress information; at the end, assembles the :class:`MDResult`."""

    def __init__(self, *, stored, mass, dt_fs, stride, dof, n_steps, writers, e_ref, clock, frames_start):
        self.stored, self.mass, self.dt_fs, self.stride, self.dof = stored, mass, dt_fs, stride, dof
        self.n_steps, self.writers, self.e_ref, self.clock = n_steps, writers, e_ref, clock
        self.frames_start = frames_start
        self.watch = None  # a WatchLog when the run has a watchdog
        self.rec = {k: [] for k in ("step", "pe", "ke", "R", "V", "vol", "cell", "cv", "bias", "sE", "sF")}

    def initial(self, host: _HostFrames, sigma=None) -> None:
        """Keep and write the initial state as frame 0 (step 0, t = 0), with its σ
        ``(energy σ, largest force σ)`` [1, Rp] when the run has a watchdog."""
        if sigma is not None:
            self.rec["sE"].append(sigma[0])
            self.rec["sF"].append(sigma[1])
        self._keep(np.zeros(1, dtype=np.int64), host)

    def __call__(self, carry, host: _HostFrames, frames_done: int) -> dict:
        F = host.R.shape[0]
        watched = {}
        if self.watch is not None:
            s_E, s_F = self.watch.record(host.energy_std, host.force_std, host.stopped, host.R, host.P, host.PE,
                                         frames_done)
            self.rec["sE"].append(s_E)
            self.rec["sF"].append(s_F)
            watched = {"max_force_std": self.watch.blocks[-1]["max_force_std_eV_per_A"],
                       "stopped": len(self.watch.events)}
        self._keep(self.stride * (frames_done - F + 1 + np.arange(F)), host)
        step = frames_done * self.stride
        steps_run = (frames_done - self.frames_start) * self.stride
        elapsed = max(time.perf_counter() - self.clock.t_loop, 1e-9)
        return {**watched, "step": int(step), "n_steps": self.n_steps, "time_ps": step * self.dt_fs / 1e3,
                "temperature_K": float(host.T[-1].mean()),
                "drift_eV": float(np.mean(host.PE[-1] + host.KE[-1] - self.e_ref)),
                "ns_per_day": steps_run * self.dt_fs * 1e-6 / (elapsed / 86400.0)}

    def _keep(self, f_steps, host: _HostFrames) -> None:
        stored = self.stored
        V = host.P[:, stored] / self.mass[None, stored, :, None] / units.TIME_UNIT_FS
        cell = None
        if host.box is not None:
            cell = host.box[:, stored]
            self.rec["vol"].append(np.linalg.det(host.box))
            self.rec["cell"].append(cell)
        for k, v in (("step", f_steps), ("pe", host.PE), ("ke", host.KE), ("R", host.R[:, stored]), ("V", V),
                     ("cv", host.cv), ("bias", host.bias)):
            if v is not None:
                self.rec[k].append(v)
        self._write(f_steps, host, V, cell)

    def _write(self, f_steps, host: _HostFrames, V, cell):
        t_fs = f_steps * self.dt_fs
        for r, w in self.writers:
            if r is None:
                s = self.stored
                w.append(step=f_steps, time_fs=t_fs, R=host.R[:, s], V=V, potential=host.PE[:, s],
                         kinetic=host.KE[:, s], temperature=host.T[:, s], cell=cell)
            else:
                i = self.stored.index(r)
                w.append(time_fs=t_fs, R=host.R[:, r], V=V[:, i], energy=host.PE[:, r], temperature=host.T[:, r],
                         cell=None if cell is None else cell[:, i])

    def result(self, state, n_reallocations, steps_run, replicas, t_start, out) -> MDResult:
        rec = self.rec
        cat = (lambda k: np.concatenate(rec[k]) if rec[k] else np.zeros((0,)))
        pe, ke = cat("pe"), cat("ke")
        steps = cat("step").astype(np.int64)
        run_s = self.clock.run_s()
        timings = {
            "compile_s": self.clock.compile_s, "run_s": run_s, "total_s": time.perf_counter() - t_start,
            "steps_per_s": steps_run / run_s, "molecule_steps_per_s": steps_run * replicas / run_s,
            "ns_per_day": steps_run * self.dt_fs * 1e-6 / (run_s / 86400.0),
        }
        return MDResult(
            state=state, step=steps, time_fs=steps * self.dt_fs, potential=pe, kinetic=ke,
            total=pe + ke if len(pe) else pe,
            temperature=2.0 * ke / (self.dof * units.KB_EV_PER_K) if len(ke) else ke,
            position=cat("R"), velocity=cat("V"), stored_replicas=self.stored, dof=self.dof,
            n_reallocations=n_reallocations, timings=timings, out_dir=out,
            volume=cat("vol") if rec["vol"] else None, cell=cat("cell") if rec["cell"] else None,
            cv=cat("cv") if rec["cv"] else None, bias_energy=cat("bias") if rec["bias"] else None,
            energy_std=cat("sE") if rec["sE"] else None, force_std=cat("sF") if rec["sF"] else None)


def _write_summary(path: Path, result: MDResult, run: _Run, *, provenance: dict):
    """``md.json``: the model (``provenance``), settings, degrees of freedom, timings and mean
    temperature (and density)."""
    n, settings = len(result.kinetic), run.settings
    summary = {**provenance, "ensemble": run.programs.integ.ensemble, "dt_fs": settings.dt_fs,
               "steps": settings.n_steps, "replicas": settings.replicas, "temperature_K": settings.temperature_K,
               "dof": result.dof, "n_reallocations": result.n_reallocations, "timings": result.timings,
               "mean_temperature_K": float(result.temperature.mean()) if n else None}
    if result.volume is not None and n:
        summary["mean_volume_A3"] = float(result.volume.mean())
        summary["mean_density_g_cm3"] = float(run.mass.sum(-1).mean() / result.volume.mean()
                                              * units.AMU_PER_A3_G_CM3)
    if settings.pressure_bar is not None:
        summary["pressure_bar"] = float(settings.pressure_bar)
    atomic_write_text(path, json.dumps(summary, indent=2))


def _check_new_state(R, P, PE, T, max_T) -> Optional[str]:
    """Describe what is wrong with a block's frames, or None if all is well."""
    for name, arr, axes in (("positions", R, (2, 3)), ("momenta", P, (2, 3)), ("potential energy", PE, ())):
        finite = np.isfinite(arr).all(axis=axes) if axes else np.isfinite(arr)  # [F, Rp]
        if not finite.all():
            f, r = np.argwhere(~finite)[0]
            return f"replica {r} has non-finite {name} (first at frame {f} of the block)"
    hot = T > max_T
    if hot.any():
        f, r = np.argwhere(hot)[0]
        return f"replica {r} blew up: temperature {T[f, r]:.3g} K > {max_T:.3g} K (frame {f} of the block)"
    return None
