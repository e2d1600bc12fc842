"""A trajectory as one differentiable function of the model parameters.

``frames = rollout.run(params, R0, V0, mass, system)`` runs ``n_frames × stride`` steps of a qdyn
integrator and returns positions and velocities every ``stride`` steps. Reverse-mode
differentiation of a ``lax.scan`` keeps the residuals of every step; with
``checkpoint=True`` the frames are grouped into blocks, each block is wrapped in
``jax.checkpoint``, and the backward pass stores only the state at block boundaries and
recomputes one block at a time: memory O(n_blocks + block length) instead of O(n_steps)
(Griewank & Walther, ACM TOMS 26, 19 (2000); as used for MD by Schoenholz & Cubuk, jax-md,
NeurIPS 2020, and Ingraham et al., ICLR 2019). :func:`memory_of` reads XLA's buffer sizes of
the compiled gradient, so the saving is measured, not assumed.

The integrator is qdyn's own (:func:`qdyn.md.integrators.make_integrator`): the same
velocity Verlet (NVE) or BAOAB Langevin (NVT) the MD command runs, with ``params`` as a
call-time argument. A Langevin trajectory is made a deterministic function of the parameters
by holding its noise fixed: ``run(..., key=key)`` draws every step's noise from ``key``
(JAX-MD splits the state's key each step), and the noise does not depend on the parameters,
so ``d(observable)/d(params)`` is the pathwise (reparameterised) derivative at that noise —
the same key gives the same trajectory, and central finite differences with the same key
check it. Averaging it over keys estimates the gradient of the ensemble average (the
pathwise estimator; cf. the reparameterisation trick, Kingma & Welling, ICLR 2014).
Gradients through chaotic dynamics grow exponentially with the trajectory length
(Metz et al., arXiv:2111.05803): keep differentiated runs short (hundreds of fs for a
molecule), or average observables over many short replicas.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from .. import units
from ..md.integrators import make_integrator
from ..validation import QdynInputError


class Frames(NamedTuple):
    """Sampled frames: positions [F, n, 3] Å and velocities [F, n, 3] Å/fs."""

    position: jnp.ndarray
    velocity: jnp.ndarray


class Rollout(NamedTuple):
    """``run(params, R0 [n, 3] Å, V0 [n, 3] Å/fs, mass [n] amu, system, key=None) -> Frames``,
    with the settings it was built with (``key``: the PRNG key of the Langevin noise; required
    for "nvt-langevin", unused by "nve")."""

    run: Callable
    dt_fs: float
    stride: int
    n_frames: int
    frames_per_block: int
    checkpoint: bool
    ensemble: str = "nve"

    @property
    def dt_frame_fs(self) -> float:
        return self.dt_fs * self.stride


def make_rollout(energy_fn: Callable, shift_fn: Callable, *, dt_fs: float, n_frames: int, stride: int = 1,
                 frames_per_block: Optional[int] = None, checkpoint: bool = True, ensemble: str = "nve",
                 temperature_K: Optional[float] = None, friction_per_fs: float = 0.01) -> Rollout:
    """Build a differentiable rollout.

    Args:
        energy_fn: MD energy ``(R, *, params, system, neighbor) -> E`` [eV]
            (:func:`qdyn.md.adapters.model_energy_fn` of a model's ``apply``).
        shift_fn: the cell's shift function (:func:`qdyn.md.integrators.make_space`).
        dt_fs: time step [fs].
        n_frames: frames returned (the run is ``n_frames * stride`` steps).
        stride: steps between frames.
        frames_per_block: frames per checkpointed block (default ≈ √n_frames, which
            minimises stored states + recomputed block); must divide ``n_frames``.
        checkpoint: wrap each block in ``jax.checkpoint`` (False: plain scan, for comparison).
        ensemble: "nve" (velocity Verlet) or "nvt-langevin" (BAOAB; "nvt" is the same), whose
            noise comes from the ``key`` passed to ``run``.
        temperature_K: Langevin bath temperature [K] (unused for NVE).
        friction_per_fs: Langevin friction γ [1/fs].

    Returns:
        :class:`Rollout`. ``run`` is not jitted: jit the function you differentiate.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> import jax, jax.numpy as jnp
        >>> from qdyn.structures import water
        >>> from qdyn.md.integrators import make_space, masses
        >>> from qdyn.md.potentials import spring_network
        >>> R, system = water()
        >>> energy_fn, init = spring_network(R)
        >>> ro = make_rollout(energy_fn, make_space(system).shift_fn, dt_fs=0.5, n_frames=8, stride=2)
        >>> V0 = jnp.zeros_like(R).at[1, 0].set(0.01)  # Å/fs
        >>> mean_x = lambda p: ro.run(p, R, V0, masses(system), system).position[:, 1, 0].mean()
        >>> bool(jnp.isfinite(jax.grad(mean_x)(init(k=20.0))["k"]))
        True
    """
    if ensemble not in _DIFFERENTIABLE:
        raise QdynInputError(f"differentiable rollouts support ensemble 'nve' or 'nvt-langevin' (noise fixed by a "
                             f"key); got {ensemble!r}")
    ensemble = _DIFFERENTIABLE[ensemble]
    if n_frames < 1 or stride < 1:
        raise QdynInputError(f"n_frames and stride must be ≥ 1, got {n_frames} and {stride}")
    if frames_per_block is None:
        frames_per_block = _divisor_near_sqrt(n_frames)
    if n_frames % frames_per_block:
        raise QdynInputError(f"frames_per_block={frames_per_block} must divide n_frames={n_frames}")
    integ = make_integrator(energy_fn, shift_fn, ensemble=ensemble, dt_fs=dt_fs, temperature_K=temperature_K,
                            friction_per_fs=friction_per_fs)
    n_blocks = n_frames // frames_per_block
    stochastic = ensemble == "nvt-langevin"

    def run(params, R0, V0, mass, system, key=None):
        if stochastic and key is None:
            raise QdynInputError("a Langevin rollout needs key= (the noise it holds fixed)")
        # JAX-MD integrates in Å·sqrt(amu/eV) time units: momenta in amu·Å/τ
        momenta = jnp.asarray(V0) * jnp.asarray(mass)[:, None] * units.TIME_UNIT_FS
        # the Langevin state carries the key and splits it every step: the noise of the whole
        # run is a function of this key alone, never of params
        state = integ.init(jax.random.PRNGKey(0) if key is None else key, R0, mass=mass, momenta=momenta,
                           params=params, system=system)

        def one_step(s, _):
            return integ.step(s, params=params, system=system), None

        def one_frame(s, _):
            s, _ = jax.lax.scan(one_step, s, None, length=stride)
            return s, Frames(s.position, s.momentum / s.mass / units.TIME_UNIT_FS)

        def one_block(s, _):
            return jax.lax.scan(one_frame, s, None, length=frames_per_block)

        block = jax.checkpoint(one_block) if checkpoint else one_block
        _, frames = jax.lax.scan(block, state, None, length=n_blocks)
        return jax.tree_util.tree_map(lambda x: x.reshape((n_frames,) + x.shape[2:]), frames)

    return Rollout(run, float(dt_fs), int(stride), int(n_frames), int(frames_per_block), bool(checkpoint), ensemble)


# ensembles whose trajectory is a deterministic function of (params, initial state, key)
_DIFFERENTIABLE = {"nve": "nve", "nvt-langevin": "nvt-langevin", "nvt": "nvt-langevin"}


def _divisor_near_sqrt(n: int) -> int:
    target = max(1, int(round(n ** 0.5)))
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - target), d))


def memory_of(fn: Callable, *args) -> dict:
    """XLA's buffer sizes [bytes] of ``jax.jit(fn)`` compiled for ``args`` (no run):
    ``temp`` (scratch, where reverse-mode residuals live), ``argument``, ``output``."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    if stats is None:
        raise QdynInputError("this JAX backend reports no memory analysis")
    return {"temp": int(stats.temp_size_in_bytes), "argument": int(stats.argument_size_in_bytes),
            "output": int(stats.output_size_in_bytes)}
