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

import functools
import json
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from .. import parallel, units
from ..checkpoint import arrays_sha256, load_state, save_state
from ..data.io import atomic_write_text
from ..system import System, stack
from ..validation import QdynInputError
from . import momenta
from .host_loop import host_loop
from .integrators import ENSEMBLES, Integrator, make_integrator, make_space, masses
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
    """The MD block, a pure function to jit: ``block(states, neighbors, params, systems, watch)``.

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
        ``block(states, neighbors, params, systems, watch=None) -> (states, neighbors, Frames)``
        where states, neighbours (or None) and systems carry a leading replica axis and params do
        not (shared by all replicas); with a bias, params is ``(model_params, bias_states)``
        and the result ``(states, neighbors, Frames, bias_states)``; ``watch`` is
        ``(stopped [Rp] bool, thresholds [2], sigma_params)`` when ``sigma_fn`` is given.
    """

    from ..sampling.bias import REPLICA_AXIS

    def one(state, nbr, system, params, bst, watch):
        def step(carry, _):
            state, nbr, bst = carry
            state = integrator.step(state, params=params if bias is None else (params, bst), system=system,
                                    neighbor=nbr)
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

    def block(states, neighbors, params, systems, watch=None):
        model_params, bsts = (params, None) if bias is None else params
        w_axes = (0, None, None) if sigma_fn is not None else None
        # the replica axis is named: shared metadynamics walkers gather their CVs over it
        state, nbr, bst, overflow, out = jax.vmap(one, in_axes=(0, 0, 0, None, 0, w_axes), axis_name=REPLICA_AXIS)(
            states, neighbors, systems, model_params, bsts, watch)
        # frames first, then replicas
        R, P, PE, box, biased, sigma, stopped = jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), out)
        cv, bias_energy = (None, None) if bias is None else biased
        s_E, s_F = (None, None) if sigma_fn is None else sigma
        frames_out = Frames(R, P, PE, overflow, box, cv=cv, bias=bias_energy, energy_std=s_E, force_std=s_F,
                            stopped=None if sigma_fn is None else stopped)
        return (state, nbr, frames_out) if bias is None else (state, nbr, frames_out, bst)

    return block


class _Programs:
    """The jitted functions of one (energy, cell, ensemble, dt, sampling) combination.

    Cached, so repeated runs (tests, notebooks, new params of the same shape) compile once;
    the AOT-compiled block is kept per argument signature so compile time is measured on
    its own.
    """

    def __init__(self, energy_fn, shift_fn, ensemble, dt_fs, temperature_K, friction_per_fs, tau_fs, stride, frames,
                 remove_com, remove_rotation, dof, pressure_bar, barostat_tau_fs, bias=None, sigma_fn=None):
        md_energy_fn = energy_fn
        if bias is not None:
            from ..sampling.bias import biased_energy_fn

            md_energy_fn = biased_energy_fn(energy_fn, bias)
        # biased runs: params = (model params, per-replica bias states)
        p_axes = None if bias is None else (None, 0)
        self.integ = make_integrator(md_energy_fn, shift_fn, ensemble=ensemble, dt_fs=dt_fs,
                                     temperature_K=temperature_K, friction_per_fs=friction_per_fs, tau_fs=tau_fs,
                                     degrees_of_freedom=dof, pressure_bar=pressure_bar,
                                     barostat_tau_fs=barostat_tau_fs)
        integ = self.integ

        def init_one(vel_key, int_key, R, m, system, nbr, params, T0):
            p = momenta.maxwell_boltzmann(vel_key, R, m, temperature_K=T0, remove_com=remove_com,
                                          remove_rotation=remove_rotation)
            state = integ.init(int_key, R, mass=m, momenta=p, params=params, system=system, neighbor=nbr)
            pe = energy_fn(R, params=params if bias is None else params[0], system=system, neighbor=nbr)
            return state, pe

        self.init = jax.jit(jax.vmap(init_one, in_axes=(0, 0, 0, 0, 0, 0, p_axes, None)))
        def potential(state, system, nbr, params):
            R, system_now = integ.observe(state, system)
            return energy_fn(R, params=params if bias is None else params[0], system=system_now, neighbor=nbr)

        self.potential = jax.jit(jax.vmap(potential, in_axes=(0, 0, 0, p_axes)))
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
        self.compiled[sig] = self.block.lower(*args).compile()
        return self.compiled[sig], time.perf_counter() - t


@functools.lru_cache(maxsize=16)
def _programs(*key) -> _Programs:
    return _Programs(*key)


# -- the run ---------------------------------------------------------------------------------
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


def _default_progress(info: dict) -> None:
    print(f"step {info['step']:>9d}  t = {info['time_ps']:9.3f} ps  T = {info['temperature_K']:8.1f} K  "
          f"ΔE_tot = {info['drift_eV']:+.2e} eV  {info['ns_per_day']:8.2f} ns/day", file=sys.stderr, flush=True)


def run_md(
    energy_fn: Callable,
    params,
    R,
    system: Union[System, Sequence[System]],
    *,
    ensemble: str,
    dt_fs: float,
    n_steps: int,
    temperature_K: float = 300.0,
    key: Optional[jax.Array] = None,
    replica_keys: Optional[jax.Array] = None,
    replicas: int = 1,
    stride: int = 10,
    frames_per_block: int = 10,
    friction_per_fs: float = 0.01,
    tau_fs: float = 100.0,
    pressure_bar: Optional[float] = None,
    barostat_tau_fs: float = 1000.0,
    remove_rotation: bool = False,
    initial_temperature_K: Optional[float] = None,
    neighbor_fn=None,
    neighbor=None,
    out_dir: Optional[Union[str, Path]] = None,
    trajectory_formats: Sequence[str] = ("extxyz", "h5md"),
    store_replicas: int = 1,
    checkpoint_every: int = 10,
    restart: bool = False,
    max_temperature_K: Optional[float] = None,
    watchdog: Optional[Watchdog] = None,
    progress: Optional[Callable[[dict], None]] = _default_progress,
    progress_every_s: float = 5.0,
    provenance: Optional[dict] = None,
    check_plausibility: bool = True,
    bias=None,
    bias_states=None,
    exchange=None,
    mesh=None,
) -> MDResult:
    """Run MD of ``replicas`` independent copies with any qdyn energy function.

    Args:
        energy_fn: ``(R, *, params, system, neighbor) -> E`` [eV]; for an
            :class:`~qdyn.models.base.EnergyModel` use
            :func:`~qdyn.md.adapters.model_energy_fn` ``(model.apply)``.
        params: the model parameters (call-time argument of the compiled block).
        R: initial positions [n, 3] Å (all replicas) or [replicas, n, 3].
        system: one :class:`~qdyn.system.System` or one per replica (same atom count and
            box; no padding atoms).
        ensemble: "nve", "nvt" (Langevin), "nvt-langevin", "nvt-nose-hoover" or "npt"
            (isotropic, periodic systems, dense models: no neighbour list).
        dt_fs: time step [fs].
        n_steps: total steps; a multiple of ``stride``.
        temperature_K: thermostat target [K] (and initial temperature by default).
        key: PRNG key; replica i uses ``jax.random.split(key, replicas)[i]``.
        replica_keys: [replicas] keys instead of ``key`` (to reproduce single replicas).
        replicas: number of independent replicas (vmapped).
        stride: steps between sampled frames.
        frames_per_block: frames per compiled block (host checks happen between blocks).
        friction_per_fs: Langevin friction [1/fs].
        tau_fs: Nosé–Hoover time constant [fs] (thermostat of NVT and NPT).
        pressure_bar: NPT target pressure [bar].
        barostat_tau_fs: NPT barostat time constant [fs].
        remove_rotation: remove rigid rotation from initial velocities (free molecules).
        initial_temperature_K: temperature of the initial Maxwell–Boltzmann velocities
            (default ``temperature_K``).
        neighbor_fn: JAX-MD ``NeighborListFns`` for energies that need a neighbour list.
        neighbor: an already allocated neighbour list (of one replica) to start from.
        out_dir: where trajectories, checkpoints and ``md.json`` go (None: nothing written).
        trajectory_formats: any of "extxyz", "h5md".
        store_replicas: how many replicas (the first ones) are written and kept in memory.
        checkpoint_every: blocks between checkpoints.
        restart: continue from ``out_dir/checkpoint.npz``.
        max_temperature_K: blow-up threshold on any replica's temperature (default
            ``max(20 T, 2000 K)``).
        watchdog: uncertainty thresholds (:func:`qdyn.md.watchdog.make_watchdog`): σ is
            checked at every sampled frame inside the compiled block; a replica past a
            threshold is frozen at its last trusted frame (written to
            ``out_dir/stopped_rNNNN.xyz``), the others go on, and the run ends when all
            have stopped. σ per block and the stop events go to ``md.json`` and the result.
        progress: callback with a dict (step, n_steps, time_ps, temperature_K, drift_eV,
            ns_per_day), or None for silence.
        progress_every_s: seconds between progress calls.
        provenance: JSON fields recorded in ``md.json`` (e.g. the model's run directory).
        check_plausibility: refuse temperatures beyond any chemistry and coordinates beyond
            :data:`qdyn.data.plausibility.MAX_COORDINATE` (a typo, a unit mistake).
        bias: a :class:`qdyn.sampling.bias.Bias` added to the model's energy inside the
            compiled loop (metadynamics, umbrella restraints, tempering scale).
        bias_states: its per-replica :class:`~qdyn.sampling.bias.BiasState` (leading axis
            ``replicas``; default ``bias.init`` for every replica); checkpointed with the MD
            state, so a restart continues the bias.
        exchange: a :class:`qdyn.sampling.exchange.ReplicaExchange` attempting swaps of the
            bias states between neighbouring replicas after every block (needs ``bias``).
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
    _check_arguments(n_steps, stride, replicas, trajectory_formats, restart, out_dir, ensemble, neighbor_fn)
    Rs, systems = _as_replicas(R, system, replicas)
    parallel.check_divisible(replicas, mesh, "replicas", "replicas")
    if check_plausibility:
        from ..data.plausibility import check_positions_scale, check_temperature

        check_temperature(temperature_K, where="temperature_K")
        if initial_temperature_K is not None:
            check_temperature(initial_temperature_K, where="initial_temperature_K")
        check_positions_scale(Rs, source="initial positions")
    sp = make_space(systems[0], variable_cell=ensemble == "npt")
    Rs = sp.wrap(Rs)  # JAX-MD's periodic spaces expect wrapped positions
    mass = np.stack([masses(s) for s in systems])  # [Rp, n] amu
    n_frames = n_steps // stride
    fpb = _frames_per_block(n_frames, frames_per_block)
    thermostat = ensemble != "nve"
    conserves = ensemble in ("nve", "nvt-nose-hoover")
    rot = bool(remove_rotation and sp.box is None)
    # removed momentum / rotation stay zero where they are conserved (NVE, and Nosé–Hoover,
    # whose uniform momentum scaling keeps them zero); Langevin noise thermalises all 3N
    dof = momenta.degrees_of_freedom(Rs.shape[1], remove_com=conserves, remove_rotation=rot and conserves)

    bsts = _bias_states(bias, bias_states, exchange, replicas, Rs, systems[0])

    def programs(fpb):
        return _programs(energy_fn, sp.shift_fn, ensemble, float(dt_fs), float(temperature_K) if thermostat else None,
                         float(friction_per_fs), float(tau_fs), int(stride), int(fpb), conserves, rot, dof,
                         None if pressure_bar is None else float(pressure_bar), float(barostat_tau_fs), bias,
                         None if watchdog is None else watchdog.sigma_fn)

    def with_bias(params, bsts):
        return params if bias is None else (params, bsts)

    progs = programs(fpb)
    batched_sys = stack(systems)
    T0 = temperature_K if initial_temperature_K is None else initial_temperature_K
    if max_temperature_K is None:
        max_temperature_K = max(20.0 * max(T0, temperature_K), 2000.0)
    vel_keys, int_keys = _replica_keys(key, replica_keys, replicas)
    if neighbor_fn is None and neighbor is not None:
        raise QdynInputError("neighbor given without neighbor_fn")
    nbrs = None
    if neighbor_fn is not None:
        nbrs = _spread(neighbor_fn, neighbor, Rs) if neighbor is not None else _allocate(neighbor_fn, Rs)
    params = parallel.put_replicated(params, mesh)
    batched_sys = parallel.put_sharded(batched_sys, mesh)
    vel_keys, int_keys, nbrs, Rs_j, mass_j, bsts = parallel.put_sharded(
        (vel_keys, int_keys, nbrs, jnp.asarray(Rs), jnp.asarray(mass), bsts), mesh)
    states, pe0 = progs.init(vel_keys, int_keys, Rs_j, mass_j, batched_sys, nbrs, with_bias(params, bsts), float(T0))

    out = None if out_dir is None else Path(out_dir)
    params_sha256 = arrays_sha256(parallel.to_host(x) for x in jax.tree_util.tree_leaves(params))
    meta = functools.partial(_meta, progs.integ, dt_fs, replicas, stride, params_sha256)
    frames_start = 0
    # frame 0 is the initial state (t = 0); checkpoints written before it was stored record
    # no "initial_frame", and their trajectory files continue without one
    initial_frame = True
    stored = list(range(min(store_replicas, replicas)))
    restored_watch = None
    if restart:
        saved = states if bias is None else (states, bsts)
        saved, frames_start, initial_frame, restored_watch, restored_exchange = _restore(
            out / "checkpoint.npz", saved, meta(0, 0))
        states, bsts = (saved, bsts) if bias is None else saved
        if exchange is not None and restored_exchange is not None:  # swap statistics continue too
            exchange.restore(restored_exchange, replicas=replicas)
        if frames_start > n_frames:
            raise QdynInputError(f"{out / 'checkpoint.npz'}: the run has done {frames_start * stride} steps; "
                                 f"n_steps = {n_steps} is fewer (ask for at least {frames_start * stride})")
        _check_restart_files(out, trajectory_formats, stored)
        if (n_frames - frames_start) % fpb:  # every block of the rest must have the compiled length
            fpb = _frames_per_block(n_frames - frames_start, frames_per_block)
            progs = programs(fpb)
        if nbrs is not None:
            nbrs = _allocate(neighbor_fn, np.asarray(states.position))
        states, nbrs, bsts = parallel.put_sharded((states, nbrs, bsts), mesh)
        pe0 = progs.potential(states, batched_sys, nbrs, with_bias(params, bsts))
    writers = _open_writers(out, trajectory_formats, stored, np.asarray(systems[0].species), sp.box,
                            variable_cell=ensemble == "npt", keep_frames=frames_start + int(initial_frame and restart))
    mass_j = jnp.asarray(mass)
    e_ref = parallel.to_host(pe0) + np.asarray(progs.kinetic(parallel.to_host(states.momentum), mass_j))
    clock = _Clock()
    recorder = _Recorder(stored=stored, mass=mass, dt_fs=float(dt_fs), stride=stride, dof=dof, n_steps=n_steps,
                         writers=writers, e_ref=e_ref, clock=clock, frames_start=frames_start)
    watch = None
    if watchdog is not None:
        watch = WatchLog(watchdog, replicas=replicas, n_atoms=int(np.sum(systems[0].mask)), stride=stride,
                         dt_fs=float(dt_fs), species=np.asarray(systems[0].species), masses=mass, box=sp.box,
                         out=out, restored=restored_watch)
        recorder.watch = watch
    if not restart:  # a restart continues files that already hold frame 0
        sigma0 = None if watch is None else _initial_sigma(progs, watchdog, params, states, batched_sys, nbrs)
        recorder.initial(_initial_frame(progs, states, batched_sys, pe0, mass_j, dof, bias, bsts), sigma0)

    def run_block(carry, frames):
        # on a mesh: the carry back on the replica split the block was compiled for (a no-op
        # when the last block left it there)
        states, nbrs, bsts = parallel.put_sharded(carry, mesh)
        args = (states, nbrs, with_bias(params, bsts), batched_sys) + ((watch.watch_args(),) if watch else ())
        fn, compile_s = progs.compiled_block(*args)
        clock.compiled(compile_s)
        new_states, new_nbrs, fr, *new_bsts = fn(*args)
        fr = parallel.tree_to_host(fr)
        if nbrs is not None and bool(np.any(fr.overflow)):
            return carry, None, True
        KE = np.asarray(progs.kinetic(fr.momentum, mass_j[None]))
        host = _HostFrames(fr.position, fr.momentum, fr.potential, KE, 2.0 * KE / (dof * units.KB_EV_PER_K), fr.box,
                           fr.cv, fr.bias, fr.energy_std, fr.force_std, fr.stopped)
        new_bsts = new_bsts[0] if new_bsts else None
        if exchange is not None:
            # swaps act on the block's last frame, the state the next block starts from
            new_bsts = exchange.attempt(new_bsts, host.PE[-1], host.R[-1], None if host.box is None else host.box[-1])
        return (new_states, new_nbrs, new_bsts), host, False

    def reallocate(carry, attempt):
        # the first retry sizes the list for the block's start positions, later ones add 25 %
        states, nbrs, bsts = carry
        extra = int(nbrs.idx.shape[-1] * 0.25) if attempt > 1 else 0
        return states, _allocate(neighbor_fn, parallel.to_host(states.position), extra), bsts

    def save(name):
        def write(carry, frames):
            saved = carry[0] if bias is None else (carry[0], carry[2])  # the bias continues on restart
            m = meta(frames * stride, frames)
            if watch is not None:
                m["watchdog"] = watch.state()
            if exchange is not None:
                m["exchange"] = exchange.state()
            return save_state(out / name, parallel.tree_to_host(saved), m)

        return write

    try:
        loop = host_loop(
            (states, nbrs, bsts), run_block=run_block, n_frames=n_frames, frames_per_block=fpb, stride=stride,
            frames_done=frames_start, reallocate=reallocate, state_of=lambda carry: carry[0],
            check=lambda carry, host: _check_new_state(host.R, host.P, host.PE, host.T, max_temperature_K),
            record=recorder, what="MD",
            hint="Try a smaller dt_fs, check the model on this geometry, or lower the temperature.",
            save_last_good=None if out is None else save("last_good.npz"),
            checkpoint=None if out is None else save("checkpoint.npz"), checkpoint_every=checkpoint_every,
            stop_when=None if watch is None else (lambda _state: watch.all_stopped),
            progress=progress, progress_every_s=progress_every_s)
    finally:
        for _, w in writers:
            w.close()
    steps_run = (loop.frames_done - frames_start) * stride
    result = recorder.result(loop.carry[0], loop.n_reallocations, steps_run, replicas, t_start, out)
    if bias is not None:
        result = result._replace(bias_state=loop.carry[2],
                                 exchange=None if exchange is None else exchange.statistics())
    extra = {}
    if watch is not None:
        extra["watchdog"] = watch.summary()
        result = result._replace(watchdog=extra["watchdog"])
    if out is not None:
        _write_summary(out / "md.json", result, progs.integ, mass, dt_fs=dt_fs, n_steps=n_steps, replicas=replicas,
                       temperature_K=temperature_K, pressure_bar=pressure_bar,
                       provenance={**(provenance or {}), "params_sha256": params_sha256, **extra})
    return result


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


def _check_arguments(n_steps, stride, replicas, trajectory_formats, restart, out_dir, ensemble, neighbor_fn):
    """Refuse bad arguments before anything compiles."""
    if int(stride) < 1:
        raise QdynInputError(f"stride must be ≥ 1 step, got {stride}")
    if n_steps <= 0 or n_steps % stride:
        raise QdynInputError(f"n_steps must be a positive multiple of stride={stride}, got {n_steps}")
    if replicas < 1:
        raise QdynInputError(f"replicas must be ≥ 1, got {replicas}")
    bad_formats = set(trajectory_formats) - {"extxyz", "h5md"}
    if bad_formats:
        raise QdynInputError(f"unknown trajectory formats {sorted(bad_formats)}; choose extxyz and/or h5md")
    if restart and out_dir is None:
        raise QdynInputError("restart=True needs out_dir (where checkpoint.npz is)")
    if ensemble not in ENSEMBLES:
        raise QdynInputError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if ensemble == "npt" and neighbor_fn is not None:
        raise QdynInputError("npt runs dense models only: a neighbour list would have to follow the changing cell")


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


def _initial_frame(progs: _Programs, states, systems, pe0, mass, dof: int, bias, bias_states) -> _HostFrames:
    """The initial state as one frame (leading axis 1) in the layout of a block's frames."""
    R, system_now = progs.observe(states, systems)
    R, P, box, pe0 = parallel.tree_to_host((R, states.momentum, system_now.box, pe0))
    KE = np.asarray(progs.kinetic(P, mass))
    cv = bias_energy = None
    if bias is not None:  # the CVs and bias of frame 0 too, so they line up with the positions
        box_axis = None if box is None else 0
        cv = np.asarray(jax.vmap(bias.cv, in_axes=(0, box_axis))(R, box))[None]
        bias_energy = np.asarray(jax.vmap(bias.energy, in_axes=(0, box_axis, 0))(R, box, bias_states))[None]
    return _HostFrames(R[None], P[None], pe0[None], KE[None], (2.0 * KE / (dof * units.KB_EV_PER_K))[None],
                       None if box is None else box[None], cv, bias_energy)


def _initial_sigma(progs: _Programs, watchdog, params, states, systems, nbrs):
    """The watchdog's σ of the initial state: energy σ [1, Rp] eV and largest force σ [1, Rp] eV/Å."""
    R, systems_now = progs.observe(states, systems)
    one = lambda r, system, nbr: watchdog.sigma_fn(watchdog.sigma_params, params, r, system, nbr)  # noqa: E731
    s_E, s_F = jax.vmap(one)(R, systems_now, nbrs)
    max_F = jnp.max(jnp.where(systems.mask, s_F, 0.0), axis=-1)
    return parallel.to_host(s_E)[None], parallel.to_host(max_F)[None]


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


def _write_summary(path: Path, result: MDResult, integ: Integrator, mass, *, dt_fs, n_steps, replicas,
                   temperature_K, pressure_bar, provenance: dict):
    """``md.json``: the model (``provenance``), settings, degrees of freedom, timings and mean
    temperature (and density)."""
    n = len(result.kinetic)
    summary = {**provenance, "ensemble": integ.ensemble, "dt_fs": dt_fs, "steps": n_steps, "replicas": replicas,
               "temperature_K": temperature_K, "dof": result.dof, "n_reallocations": result.n_reallocations,
               "timings": result.timings, "mean_temperature_K": float(result.temperature.mean()) if n else None}
    if result.volume is not None and n:
        summary["mean_volume_A3"] = float(result.volume.mean())
        summary["mean_density_g_cm3"] = float(mass.sum(-1).mean() / result.volume.mean() * units.AMU_PER_A3_G_CM3)
    if pressure_bar is not None:
        summary["pressure_bar"] = float(pressure_bar)
    atomic_write_text(path, json.dumps(summary, indent=2))


def _meta(integ, dt_fs, replicas, stride, params_sha256, step, frames):
    return {"ensemble": integ.ensemble, "dt_fs": float(dt_fs), "replicas": replicas, "stride": stride,
            "params_sha256": params_sha256, "initial_frame": True,
            "step": int(step), "frames": int(frames), "units": "Å, amu, eV; momentum amu·Å/τ, τ = "
            f"{units.TIME_UNIT_FS} fs"}


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
