"""Host-side surface-hopping driver: sample, run jitted blocks of vmapped steps, summarise.

:func:`run_fssh` is the public entry. The one jit boundary is a block: ``lax.scan`` over
``frames`` frames of ``stride`` steps each, vmapped over trajectories, with the model
parameters a call-time argument (one compiled block serves any params of the same shape,
so a trained multistate model plugs in with its params, not closed over). Between blocks
the host checks the new state for non-finite values, updates a rich progress bar and asks
an optional ``stop_when`` whether to finish early.

Reproducibility: trajectory i uses ``jax.random.split(key, n_traj)[i]`` (split again into
a sampling key and a dynamics key), so running trajectory i alone with that key gives the
same trajectory as in the batch.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

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


def _check_finite(state: FSSHState, step: int):
    for name in ("R", "V", "c"):
        x = np.asarray(getattr(state, name))
        bad = ~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
        if bad.any():
            raise FloatingPointError(f"surface hopping: non-finite {name} in trajectory {int(np.argmax(bad))} "
                                     f"by step {step} (time step too large, or a singular model)")


def run_fssh(
    W_fn: Callable,
    params,
    *,
    masses,
    dt_fs: float,
    n_steps: int,
    key,
    initial_state: int,
    n_traj: Optional[int] = None,
    sampler: Optional[Callable] = None,
    R0=None,
    V0=None,
    stride: int = 10,
    block_frames: int = 50,
    n_substeps: int = 20,
    decoherence: str = "edc",
    edc_C_eV: float = EDC_C_EV,
    frustrated: str = "keep",
    gap_regularization: float = DEFAULT_GAP_REGULARIZATION_EV,
    stop_when: Optional[Callable[[FSSHState], bool]] = None,
    keep_positions: bool = False,
    progress: bool = True,
) -> FSSHResult:
    """Run an ensemble of fewest-switches surface-hopping trajectories.

    Args:
        W_fn: ``W_fn(params, R) -> [n_states, n_states]`` diabatic matrix [eV], R in Å.
        params: its parameters (call-time argument of the compiled block).
        masses: [n] amu (one per leading index of R).
        dt_fs: nuclear time step [fs].
        n_steps: steps to run (a multiple of ``stride``).
        key: PRNG key; trajectory i uses ``jax.random.split(key, n_traj)[i]``.
        initial_state: adiabatic state every trajectory starts on (c = that unit vector).
        n_traj: number of trajectories (required with ``sampler``; else from ``R0``).
        sampler: ``sample(key) -> (R, V)`` (:mod:`qdyn.namd.initial`), or
        R0, V0: [n_traj, ...] Å and Å/fs, explicit initial conditions.
        stride: steps between recorded frames.
        block_frames: frames per compiled block (between host checks).
        n_substeps, decoherence, edc_C_eV, frustrated, gap_regularization: see
            :func:`qdyn.namd.fssh.fssh`.
        stop_when: host callable on the batched state after each block; True ends the run
            early (e.g. every trajectory has left the interaction region).
        keep_positions: return every recorded frame's positions (``positions``; host memory
            F × N × the size of R), e.g. to see where trajectories hop.
        progress: show a rich progress bar.

    Returns:
        :class:`FSSHResult`.

    Example:
        >>> import jax
        >>> from qdyn.namd import tully
        >>> W, p = tully.model(1)
        >>> res = run_fssh(W, p, masses=[tully.MASS_AMU], dt_fs=0.2, n_steps=100, key=jax.random.PRNGKey(0),
        ...                initial_state=0, n_traj=8, sampler=tully.sampler(20.0, -8.0), progress=False)
        >>> res.active_fraction.shape
        (11, 2)
    """
    if (sampler is None) == (R0 is None):
        raise QdynInputError("run_fssh needs exactly one of sampler= or R0=/V0=")
    if sampler is None:
        if V0 is None or np.shape(V0) != np.shape(R0):
            raise QdynInputError(f"V0 must have the shape of R0 {np.shape(R0)}, got {np.shape(V0)}")
        n_traj = np.shape(R0)[0] if n_traj is None else n_traj
        if np.shape(R0)[0] != n_traj:
            raise QdynInputError(f"R0 holds {np.shape(R0)[0]} trajectories but n_traj={n_traj}")
    elif n_traj is None or n_traj < 1:
        raise QdynInputError(f"n_traj must be a positive integer with sampler=, got {n_traj!r}")
    if n_steps < 0 or stride < 1 or n_steps % stride:
        raise QdynInputError(f"n_steps ({n_steps}) must be a non-negative multiple of stride ({stride})")
    masses_t = tuple(float(m) for m in np.atleast_1d(np.asarray(masses, dtype=np.float64)))
    sim = make_fssh(W_fn, masses_t, float(dt_fs), int(n_substeps), decoherence, float(edc_C_eV), frustrated,
                    float(gap_regularization))
    keys = jax.random.split(key, int(n_traj))
    state = init_batch(sim, params, keys, active=int(initial_state), R0=R0, V0=V0, sampler=sampler)
    n_states = int(state.c.shape[-1])
    if not 0 <= initial_state < n_states:
        raise QdynInputError(f"initial_state must be in [0, {n_states}), got {initial_state}")
    obs0 = jax.vmap(sim.observe)(state)
    if not keep_positions:
        obs0 = obs0._replace(R=None)
    records = [jax.tree_util.tree_map(lambda a: np.asarray(a)[None], obs0)]
    n_frames = n_steps // stride
    done = 0

    def run_blocks(advance):
        nonlocal state, done
        while done < n_frames:
            frames = min(int(block_frames), n_frames - done)
            state, obs = _block(sim, int(stride), frames, bool(keep_positions))(state, params)
            done += frames
            _check_finite(state, done * stride)
            records.append(jax.tree_util.tree_map(np.asarray, obs))
            advance(frames, state)
            if stop_when is not None and bool(stop_when(state)):
                break

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("FSSH {task.fields[pops]}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=False) as bar:
            task = bar.add_task("fssh", total=n_frames, pops="")

            def advance(frames, s):
                frac = np.bincount(np.asarray(s.active), minlength=n_states) / n_traj
                bar.update(task, advance=frames, pops="on surfaces " + " ".join(f"{f:.2f}" for f in frac))

            run_blocks(advance)
    else:
        run_blocks(lambda frames, s: None)

    obs = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *records)
    active = obs.active
    frac = np.stack([(active == i).mean(axis=1) for i in range(n_states)], axis=1)
    t = np.arange(active.shape[0]) * stride * float(dt_fs)
    final = jax.tree_util.tree_map(np.asarray, state)
    return FSSHResult(t, frac, obs.population.mean(axis=1), active, obs.potential, obs.kinetic, obs.total,
                      final.attempted, final.accepted, final.frustrated, state, obs.energies, obs.R)
