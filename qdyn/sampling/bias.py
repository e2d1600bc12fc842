"""Biases carried through the compiled MD loop: harmonic restraints (umbrella windows),
well-tempered metadynamics (a sum of Gaussians in a static-size buffer) and a scale on the
model energy (replica exchange in temperature, see :mod:`qdyn.sampling.exchange`).

A bias is a pair of pure functions on a per-replica :class:`BiasState` pytree: ``energy``
(added to the model's energy inside the integrator, so forces are ``-grad(model + bias)``
in the one place JAX-MD takes the gradient) and ``update`` (called after every MD step
inside ``lax.scan``: deposits a hill every ``pace`` steps). The MD wiring lives in
:func:`qdyn.md.run.run_md` (``bias=``); this module knows nothing about integrators.

The total energy a replica feels is ``scale · E_model(R) + U_restraint(s) + V_hills(s)``
with ``s = cv(R, box)``:

- ``U_restraint = Σ_k ½ κ_k wrap(s_k − s0_k)²`` (κ = 0: no restraint on that CV).
- ``V_hills = Σ_h w_h exp(−Σ_k wrap(s_k − c_hk)² / 2σ_k²)``; a new hill's height is
  ``w0 · exp(−V_hills(s) / (kT (γ − 1)))`` (well-tempered, bias factor γ; γ = inf gives
  plain metadynamics), so the bias converges to ``−(1 − 1/γ) F(s)``.

Multiple walkers (``walkers="shared"``; Raiteri, Laio, Gervasio, Micheletti & Parrinello,
J. Phys. Chem. B 110, 3533 (2006)): every replica is a walker of one common bias. Each
replica still carries its own copy of the hill buffer (so the state keeps its per-replica
shape and checkpoints, exchange and the watchdog are unchanged), but ``update`` gathers the
CVs of all walkers across the replica axis of :func:`qdyn.md.run.run_md`'s block
(``jax.lax.all_gather`` over the vmap axis named :data:`REPLICA_AXIS`) and deposits all W
hills, each with the well-tempered height of the common bias at its walker's CV, into every
copy: the copies stay identical, and the bias fills W times faster per step.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax.numpy as jnp
    >>> from qdyn.sampling import cv
    >>> bias = make_bias(cv.stack([lambda R, box: cv.position(R, 0, 0)]), sigma=(0.1,), height_eV=0.01,
    ...                  pace=1, bias_factor=10.0, temperature_K=300.0, max_hills=8)
    >>> st = bias.init(n_cv=1)
    >>> R = jnp.zeros((1, 3))
    >>> st = bias.update(bias.update(st, R, None), R, None)  # two hills at x = 0
    >>> int(st.n_hills), float(bias.energy(R, None, st)) > 0.019
    (2, True)
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..validation import QdynInputError
from .cv import wrap

#: The name of the replica axis of run_md's vmapped block: shared walkers gather over it.
REPLICA_AXIS = "replicas"
WALKERS = ("independent", "shared")


class BiasState(NamedTuple):
    """The bias of one replica (a pytree; a leading replica axis when batched).

    Attributes:
        scale: [] factor on the model energy (β_i/β_0 of a tempering replica; 1 otherwise).
        center: [n_cv] restraint centres (CV units).  kappa: [n_cv] spring constants
            [eV / CV unit²] (0: no restraint).
        hill_center: [H, n_cv] deposited hill centres.  hill_height: [H] eV (0 in empty slots).
        n_hills: [] int32 hills deposited.  step: [] int32 MD steps seen by ``update``.
    """

    scale: jax.Array
    center: jax.Array
    kappa: jax.Array
    hill_center: jax.Array
    hill_height: jax.Array
    n_hills: jax.Array
    step: jax.Array


class Bias(NamedTuple):
    """Pure functions of a bias (see the module docstring).

    Attributes:
        cv: ``(R, box) -> s [n_cv]``.
        energy: ``(R, box, state) -> eV``: restraint + hills (not the model scale).
        update: ``(state, R, box) -> state`` after every MD step.
        init: ``(*, n_cv, center=None, kappa=None, scale=1.0) -> BiasState``.
        hills: ``(s [..., n_cv], state) -> eV`` the hills' sum at given CV values.
        restraint: ``(s [..., n_cv], state) -> eV`` the restraint at given CV values.
        periods: per-CV period (None: not periodic).
        sigma: Gaussian widths (CV units), temperature_K, bias_factor (γ), pace (steps),
        max_hills (H): the metadynamics settings (height 0: no metadynamics).
        walkers: "independent" (a bias per replica) or "shared" (multiple walkers of one bias).
    """

    cv: Callable
    energy: Callable
    update: Callable
    init: Callable
    hills: Callable
    restraint: Callable
    periods: tuple
    sigma: tuple
    height_eV: float
    temperature_K: float
    bias_factor: float
    pace: int
    max_hills: int
    walkers: str = "independent"


def make_bias(cv_fn: Callable, *, periods: Optional[Sequence[Optional[float]]] = None,
              sigma: Sequence[float] = (), height_eV: float = 0.0, pace: int = 100, bias_factor: float = 10.0,
              temperature_K: float = 300.0, max_hills: int = 0, walkers: str = "independent") -> Bias:
    """Build a :class:`Bias` on the CVs ``cv_fn(R, box) -> [n_cv]``.

    Args:
        cv_fn: the CVs (e.g. :func:`qdyn.sampling.cv.stack` of CV functions).
        periods: period of each CV (None entries: not periodic); default none periodic.
        sigma: metadynamics Gaussian width per CV (CV units).
        height_eV: initial hill height w0 [eV]; 0 switches metadynamics off.
        pace: MD steps between hills.
        bias_factor: well-tempered γ = (T + ΔT)/T > 1 (inf: plain metadynamics).
        temperature_K: the simulation temperature T [K] (sets kT in the tempering factor).
        max_hills: size H of the static hill buffer (deposition stops when it is full: the
            run reports it; size it as n_steps / pace, times the walkers when shared).
        walkers: "independent": each replica deposits into its own bias; "shared": all
            replicas deposit into one bias (multiple-walker metadynamics; ``update`` must then
            run inside a vmap over replicas named :data:`REPLICA_AXIS`, as run_md's block does).
    """
    if walkers not in WALKERS:
        raise QdynInputError(f"walkers must be one of {WALKERS}, got {walkers!r}")
    metad = height_eV > 0.0
    if metad and not (max_hills > 0 and pace > 0 and bias_factor > 1.0 and temperature_K > 0):
        raise QdynInputError("metadynamics needs max_hills > 0, pace > 0 steps, bias_factor > 1 and "
                             f"temperature_K > 0 (got {max_hills}, {pace}, {bias_factor}, {temperature_K})")
    if metad and len(sigma) == 0:
        raise QdynInputError("metadynamics needs a Gaussian width sigma for every CV")
    if metad and any(not (s > 0) for s in sigma):
        raise QdynInputError(f"every metadynamics sigma must be > 0 (CV units), got {tuple(sigma)}")
    H = int(max_hills) if metad else 1  # one empty slot keeps the pytree's shape fixed
    kT = units.temperature_to_energy(temperature_K) if temperature_K > 0 else 1.0
    # ΔT = (γ - 1) T; plain metadynamics (γ = inf) never tempers
    tempering = 0.0 if math.isinf(bias_factor) else 1.0 / (kT * (bias_factor - 1.0))

    def per(n_cv):
        p = tuple(periods) if periods is not None else (None,) * n_cv
        if len(p) != n_cv:
            raise QdynInputError(f"got {len(p)} periods for {n_cv} CVs")
        return p

    def _delta(s, c, n_cv):
        return jnp.stack([wrap(s[..., k] - c[..., k], p) for k, p in enumerate(per(n_cv))], axis=-1)

    def restraint(s, st: BiasState):
        d = _delta(s, _lead(st.center, s.ndim), s.shape[-1])
        return 0.5 * jnp.sum(_lead(st.kappa, d.ndim) * d * d, axis=-1)

    def hills(s, st: BiasState):
        if not metad:
            return jnp.zeros(s.shape[:-1], s.dtype)
        n_cv = s.shape[-1]
        inv2s2 = 1.0 / (2.0 * jnp.asarray(sigma, s.dtype) ** 2)
        d = _delta(s[..., None, :], _lead(st.hill_center, s.ndim + 1), n_cv)  # [..., H, n_cv]
        g = jnp.exp(-jnp.sum(d * d * _lead(inv2s2, d.ndim), axis=-1))  # [..., H]
        return jnp.sum(_lead(st.hill_height, g.ndim) * g, axis=-1)

    def energy(R, box, st: BiasState):
        s = cv_fn(R, box)
        return restraint(s, st) + hills(s, st)

    def update(st: BiasState, R, box):
        step = st.step + 1
        if not metad:
            return st._replace(step=step)
        s = jax.lax.stop_gradient(cv_fn(R, box))
        # the new hills' centres [W, n_cv]: this walker's CV, or every walker's when shared
        s_new = jax.lax.all_gather(s, REPLICA_AXIS) if walkers == "shared" else s[None]
        w = height_eV * jnp.exp(-hills(s_new, st) * tempering)  # [W], tempered by the bias before them
        deposit = (step % pace == 0) & (st.n_hills + s_new.shape[0] <= H)
        start = jnp.minimum(st.n_hills, H - s_new.shape[0])  # in range even when the buffer is full
        centers = jnp.where(deposit, jax.lax.dynamic_update_slice(st.hill_center, s_new, (start, jnp.int32(0))),
                            st.hill_center)
        heights = jnp.where(deposit, jax.lax.dynamic_update_slice(st.hill_height, w, (start,)), st.hill_height)
        n_new = deposit.astype(jnp.int32) * s_new.shape[0]
        return st._replace(hill_center=centers, hill_height=heights, n_hills=st.n_hills + n_new, step=step)

    def init(*, n_cv: int, center=None, kappa=None, scale: float = 1.0) -> BiasState:
        dtype = jnp.result_type(float)
        c = jnp.zeros(n_cv, dtype) if center is None else jnp.asarray(center, dtype).reshape(n_cv)
        k = jnp.zeros(n_cv, dtype) if kappa is None else jnp.asarray(kappa, dtype).reshape(n_cv)
        if metad and len(sigma) != n_cv:
            raise QdynInputError(f"got {len(sigma)} metadynamics sigmas for {n_cv} CVs")
        return BiasState(jnp.asarray(scale, dtype), c, k, jnp.zeros((H, n_cv), dtype), jnp.zeros(H, dtype),
                         jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    return Bias(cv_fn, energy, update, init, hills, restraint, tuple(periods) if periods is not None else (),
                tuple(float(x) for x in sigma), float(height_eV), float(temperature_K), float(bias_factor), int(pace),
                H if metad else 0, walkers)


def _lead(x, ndim: int):
    """``x`` with leading unit axes up to ``ndim`` (explicit broadcasting over batch axes)."""
    return jnp.reshape(x, (1,) * (ndim - jnp.ndim(x)) + jnp.shape(x))


def biased_energy_fn(energy_fn: Callable, bias: Bias) -> Callable:
    """The MD energy ``(R, *, params, system, neighbor)`` of ``scale · model + bias`` with
    ``params = (model_params, BiasState)``: what the integrator differentiates."""

    def total(R, *, params, system, neighbor=None):
        model_params, st = params
        e_model = energy_fn(R, params=model_params, system=system, neighbor=neighbor)
        return st.scale * e_model + bias.energy(R, system.box, st)

    return total


def stack_states(states: Sequence[BiasState]) -> BiasState:
    """Per-replica states with a leading replica axis."""
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)


def umbrella_states(bias: Bias, centers, kappa, *, n_cv: Optional[int] = None) -> BiasState:
    """One restraint window per replica: ``centers`` [Rp, n_cv] (or [Rp] for one CV), spring
    constants ``kappa`` [n_cv] or [Rp, n_cv] eV / CV unit²."""
    c = np.asarray(centers, dtype=float)
    c = c[:, None] if c.ndim == 1 else c
    n = c.shape[1] if n_cv is None else n_cv
    k = np.broadcast_to(np.asarray(kappa, dtype=float), (c.shape[0], n))
    return stack_states([bias.init(n_cv=n, center=c[i], kappa=k[i]) for i in range(c.shape[0])])
