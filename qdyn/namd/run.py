"""Host-side surface-hopping driver: sample, run jitted blocks of vmapped steps, summarise.

:func:`run_fssh` is the public entry. The one jit boundary is a block: ``lax.scan`` over
``frames`` frames of ``stride`` steps each, vmapped over trajectories (replicas), with the
model parameters a call-time argument (one compiled block serves any params of the same
shape, so a trained multistate model plugs in with its params, not closed over). Between
blocks the shared host loop (:func:`qdyn.md.host_loop.host_loop`, the same as MD's) checks
the new state for non-finite values, reports progress and asks an optional ``stop_when``
whether to finish early.

Reproducibility: trajectory i uses ``jax.random.split(key, replicas)[i]`` (split again into
a sampling key and a dynamics key), so running trajectory i alone with that key gives the
same trajectory as in the batch.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import parallel
from ..md.host_loop import host_loop
from ..validation import QdynInputError
from .electronic import DEFAULT_GAP_REGULARIZATION_EV
from .fssh import EDC_C_EV, FSSH, FSSHState, fssh


class FSSHResult(NamedTuple):
    """What :func:`run_fssh` returns (host NumPy arrays; F frames, N trajectories, n states).

    Attributes:
        time_fs: [F] fs (frame 0 is the initial state).
        active_fraction: [F, n] fraction of trajectories on each surface.
        coefficient_population: [F, n] mean |c_i|² over trajectories.
        active: [F, N] int, active state of every trajectory.
        potential, kinetic, total: [F, N] eV.
        attempted, accepted, frustrated: [N] int hop counts per trajectory.
        final_state: the final batched :class:`~qdyn.namd.fssh.FSSHState`.
        energies: [F, N, n] eV, every adiabatic energy of every trajectory.
        positions: [F, N, ...] Å when ``run_fssh(keep_positions=True)``, else None.
    """

    time_fs: np.ndarray
    active_fraction: np.ndarray
    coefficient_population: np.ndarray
    active: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    total: np.ndarray
    attempted: np.ndarray
    accepted: np.ndarray
    frustrated: np.ndarray
    final_state: FSSHState
    energies: np.ndarray
    positions: Optional[np.ndarray] = None

    def hop_statistics(self) -> dict:
        """Totals over all trajectories: attempted, accepted (successful), frustrated."""
        return {"attempted": int(self.attempted.sum()), "accepted": int(self.accepted.sum()),
                "frustrated": int(self.frustrated.sum())}


@functools.lru_cache(maxsize=32)
def make_fssh(W_fn: Callable, masses: tuple, dt_fs: float, n_substeps: int, decoherence: str, edc_C_eV: float,
              frustrated: str, gap_regularization: float) -> FSSH:
    """Cached :func:`~qdyn.namd.fssh.fssh` (same settings → same functions → compiled blocks reused)."""
    return fssh(W_fn, np.asarray(masses), dt_fs, n_substeps=n_substeps, decoherence=decoherence, edc_C_eV=edc_C_eV,
                frustrated=frustrated, gap_regularization=gap_regularization)


@functools.lru_cache(maxsize=64)
def _block(sim: FSSH, stride: int, frames: int, keep_positions: bool):
    def one(state, params):
        def frame(s, _):
            s = jax.lax.fori_loop(0, stride, lambda _, x: sim.step(x, params=params), s)
            obs = sim.observe(s)
            # positions are only stacked over frames when asked for
            return s, obs if keep_positions else obs._replace(R=None)

        return jax.lax.scan(frame, state, None, length=frames)

    # trajectories on axis 0 of the state, frames on axis 0 of the observables
    return jax.jit(jax.vmap(one, in_axes=(0, None), out_axes=(0, 1)))


@functools.lru_cache(maxsize=32)
def _init(sim: FSSH, sampler: Optional[Callable]):
    def one(key, R, V, params, active):
        k_sample, k_dyn = jax.random.split(key)
        if sampler is not None:
            R, V = sampler(k_sample)
        return sim.init(k_dyn, R, V, params=params, active=active)

    axes_RV = None if sampler is not None else 0
    return jax.jit(jax.vmap(one, in_axes=(0, axes_RV, axes_RV, None, None)))


def init_batch(sim: FSSH, params, keys, *, active: int, R0=None, V0=None, sampler: Optional[Callable] = None):
    """Batched initial states: one per key; R, V from ``sampler(k_sample)`` or given arrays."""
    if sampler is None:
        return _init(sim, None)(keys, jnp.asarray(R0), jnp.asarray(V0), params, active)
    return _init(sim, sampler)(keys, None, None, params, active)


def _check_finite(state: FSSHState) -> Optional[str]:
    """What is wrong with a new batched state (non-finite R, V or c), or None."""
    for name in ("R", "V", "c"):
        x = np.asarray(getattr(state, name))
        bad = ~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
        if bad.any():
            return f"non-finite {name} in trajectory {int(np.argmax(bad))}"
    return None


def _check_diabatic(W_fn: Callable, params, R) -> None:
    """Refuse a ``W_fn`` that does not return a square [n_states, n_states] matrix (before
    anything compiles; shapes only, nothing is evaluated)."""
    try:
        W = jax.eval_shape(W_fn, params, R)
    except IndexError as exc:  # e.g. a model that reads R as [A, 3] given something else
        raise QdynInputError(f"W_fn(params, R) failed for R of shape {np.shape(R)}: {exc}") from None
    shape = tuple(getattr(W, "shape", ()))
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 2:
        raise QdynInputError(
            f"W_fn(params, R) must return a square diabatic matrix [n_states, n_states] with n_states ≥ 2 "
            f"for R of shape {tuple(np.shape(R))}, got shape {shape}; a multistate model plugs in through "
            "qdyn.md.diabatic_fn(model, system), not its apply (the ground-state energy)")


def _default_progress(info: dict) -> None:
    pops = " ".join(f"{f:.2f}" for f in info["active_fraction"])
    print(f"step {info['step']:>9d} / {info['n_steps']}  t = {info['time_ps']:9.4f} ps  on surfaces {pops}",
          file=sys.stderr, flush=True)


def run_fssh(
    W_fn: Callable,
    params,
    *,
    masses,
    dt_fs: float,
    n_steps: int,
    key,
    initial_state: int,
    replicas: Optional[int] = None,
    sampler: Optional[Callable] = None,
    R0=None,
    V0=None,
    stride: int = 10,
    frames_per_block: int = 50,
    n_substeps: int = 20,
    decoherence: str = "edc",
    edc_C_eV: float = EDC_C_EV,
    frustrated: str = "keep",
    gap_regularization: float = DEFAULT_GAP_REGULARIZATION_EV,
    stop_when: Optional[Callable[[FSSHState], bool]] = None,
    keep_positions: bool = False,
    progress: Optional[Callable[[dict], None]] = _default_progress,
    progress_every_s: float = 5.0,
    mesh=None,
) -> FSSHResult:
    """Run an ensemble of fewest-switches surface-hopping trajectories.

    Args:
        W_fn: ``W_fn(params, R) -> [n_states, n_states]`` diabatic matrix [eV], R in Å
            (for a multistate model: :func:`qdyn.md.adapters.diabatic_fn`).
        params: its parameters (call-time argument of the compiled block).
        masses: [n] amu (one per leading index of R).
        dt_fs: nuclear time step [fs].
        n_steps: steps to run (a multiple of ``stride``).
        key: PRNG key; trajectory i uses ``jax.random.split(key, replicas)[i]``.
        initial_state: adiabatic state every trajectory starts on (c = that unit vector).
        replicas: number of trajectories (required with ``sampler``; else from ``R0``).
        sampler: ``sample(key) -> (R, V)`` (:mod:`qdyn.namd.sampling`), or
        R0: [replicas, ...] Å, explicit initial positions.
        V0: [replicas, ...] Å/fs, explicit initial velocities.
        stride: steps between recorded frames.
        frames_per_block: frames per compiled block (between host checks).
        n_substeps: electronic substeps per nuclear step (see :func:`qdyn.namd.fssh.fssh`).
        decoherence: ``"edc"`` (energy-based decoherence) or ``"none"``.
        edc_C_eV: the EDC parameter C [eV].
        frustrated: frustrated-hop policy, ``"keep"``, ``"reverse"`` or ``"gradV"``.
        gap_regularization: ε [eV] of the regularised inverse gap in the NACs.
        stop_when: host callable on the batched state after each block; True ends the run
            early (e.g. every trajectory has left the interaction region).
        keep_positions: return every recorded frame's positions (``positions``; host memory
            F × N × the size of R), e.g. to see where trajectories hop.
        progress: callback with a dict (step, n_steps, time_ps, active_fraction), or None
            for silence.
        progress_every_s: seconds between progress calls.
        mesh: a device mesh (:func:`qdyn.parallel.make_mesh`) to split the trajectories
            over (the same compiled block, partitioned by XLA; params replicated);
            ``replicas`` must be a multiple of its size. None: one device.

    Returns:
        :class:`FSSHResult`.

    Raises:
        QdynInputError: bad arguments, or a ``W_fn`` that does not return [n, n] (before
            anything compiles).
        qdyn.md.BlowUpError: a block produced a non-finite state.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> import jax
        >>> from qdyn.namd import tully
        >>> W, p = tully.model(1)
        >>> res = run_fssh(W, p, masses=[tully.MASS_AMU], dt_fs=0.2, n_steps=100, key=jax.random.PRNGKey(0),
        ...                initial_state=0, replicas=8, sampler=tully.sampler(20.0, -8.0), progress=None)
        >>> res.active_fraction.shape
        (11, 2)
    """
    replicas = _check_arguments(replicas, sampler, R0, V0, n_steps, stride)
    parallel.check_divisible(replicas, mesh, "trajectories", "replicas")
    _check_diabatic(W_fn, params, np.asarray(R0)[0] if sampler is None else jax.eval_shape(sampler, key)[0])
    masses_t = tuple(float(m) for m in np.atleast_1d(np.asarray(masses, dtype=np.float64)))
    sim = make_fssh(W_fn, masses_t, float(dt_fs), int(n_substeps), decoherence, float(edc_C_eV), frustrated,
                    float(gap_regularization))
    keys = jax.random.split(key, int(replicas))
    params = parallel.put_replicated(params, mesh)
    keys, R0, V0 = parallel.put_sharded((keys, R0, V0), mesh)
    state = init_batch(sim, params, keys, active=int(initial_state), R0=R0, V0=V0, sampler=sampler)
    n_states = int(state.c.shape[-1])
    if not 0 <= initial_state < n_states:
        raise QdynInputError(f"initial_state must be in [0, {n_states}), got {initial_state}")
    obs0 = jax.vmap(sim.observe)(state)
    if not keep_positions:
        obs0 = obs0._replace(R=None)
    records = [jax.tree_util.tree_map(lambda a: parallel.to_host(a)[None], obs0)]

    def run_block(state, frames):
        # on a mesh: the state back on the trajectory split the block was compiled for
        state = parallel.put_sharded(state, mesh)
        new_state, obs = _block(sim, int(stride), frames, bool(keep_positions))(state, params)
        return new_state, parallel.tree_to_host(obs), False

    def record(state, obs, frames_done):
        records.append(obs)
        frac = np.bincount(parallel.to_host(state.active), minlength=n_states) / replicas
        step = frames_done * stride
        return {"step": step, "n_steps": n_steps, "time_ps": step * float(dt_fs) / 1e3,
                "active_fraction": frac.tolist()}

    loop = host_loop(state, run_block=run_block, n_frames=n_steps // stride, frames_per_block=frames_per_block,
                     stride=stride, check=lambda state, obs: _check_finite(parallel.tree_to_host(state)), record=record,
                     what="surface hopping", hint="Try a smaller dt_fs (or more n_substeps), or check the model "
                     "near degeneracies.", stop_when=stop_when, progress=progress, progress_every_s=progress_every_s)
    return _result(records, loop.carry, n_states, stride, dt_fs)


def _check_arguments(replicas, sampler, R0, V0, n_steps, stride) -> int:
    """The number of trajectories, after refusing inconsistent arguments."""
    if (sampler is None) == (R0 is None):
        raise QdynInputError("run_fssh needs exactly one of sampler= or R0=/V0=")
    if sampler is None:
        if V0 is None or np.shape(V0) != np.shape(R0):
            raise QdynInputError(f"V0 must have the shape of R0 {np.shape(R0)}, got {np.shape(V0)}")
        replicas = np.shape(R0)[0] if replicas is None else replicas
        if np.shape(R0)[0] != replicas:
            raise QdynInputError(f"R0 holds {np.shape(R0)[0]} trajectories but replicas={replicas}")
    elif replicas is None or replicas < 1:
        raise QdynInputError(f"replicas must be a positive integer with sampler=, got {replicas!r}")
    if n_steps < 0 or stride < 1 or n_steps % stride:
        raise QdynInputError(f"n_steps ({n_steps}) must be a non-negative multiple of stride ({stride})")
    return int(replicas)


def _result(records, state, n_states, stride, dt_fs) -> FSSHResult:
    obs = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *records)
    active = obs.active
    frac = np.stack([(active == i).mean(axis=1) for i in range(n_states)], axis=1)
    t = np.arange(active.shape[0]) * stride * float(dt_fs)
    final = parallel.tree_to_host(state)
    return FSSHResult(t, frac, obs.population.mean(axis=1), active, obs.potential, obs.kinetic, obs.total,
                      final.attempted, final.accepted, final.frustrated, state, obs.energies, obs.R)
