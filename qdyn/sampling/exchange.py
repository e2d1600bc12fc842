"""Replica exchange across the batched replicas: swaps of the per-replica Hamiltonians
(bias states) between neighbouring rungs of a ladder, attempted on the host between compiled
blocks.

Every replica r feels ``u_r(x) = β0 (scale_r E_model(x) + bias_r(x))`` (β0 = 1/kT of the
thermostat). Parallel tempering is the special case ``scale_r = T0 / T_r``: the
configurational distribution ``exp(-β0 scale_r E) = exp(-E / kT_r)`` is the one at T_r,
with every replica thermostatted at T0 so no momentum rescaling is needed after a swap
(the dynamics of hot rungs is slowed, which sampling does not care about). Umbrella windows
exchange their restraint centres (Hamiltonian replica exchange) the same way.

A swap between the replicas i, j holding rungs k, k+1 is accepted with probability
``min(1, exp(-Δ))``, ``Δ = u_k(x_j) + u_{k+1}(x_i) - u_k(x_i) - u_{k+1}(x_j)`` (detailed
balance for the joint distribution); even and odd rung pairs alternate between attempts.
The states are swapped, not the configurations, so trajectories stay continuous and each
replica index is a *walker* whose rung history gives the round trips (bottom → top →
bottom). The counts, rung history and the generator of the acceptance draws are saved with
every MD checkpoint (:meth:`ReplicaExchange.state`), so a resumed run reports the same
statistics as an uninterrupted one.

Example:
    >>> tempering_scales(300.0, 600.0, 3).round(4).tolist()  # T0 / T_r, geometric ladder
    [1.0, 0.7071, 0.5]
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..validation import QdynInputError
from .bias import Bias, BiasState


def tempering_scales(T_min_K: float, T_max_K: float, n: int) -> np.ndarray:
    """Model-energy scales ``T_min / T_r`` of a geometric temperature ladder of ``n`` rungs
    from T_min to T_max [K] (the thermostat runs at T_min)."""
    if not (0 < T_min_K <= T_max_K) or n < 1:
        raise QdynInputError(f"need 0 < T_min ≤ T_max and n ≥ 1, got {T_min_K}, {T_max_K}, {n}")
    T = T_min_K * (T_max_K / T_min_K) ** (np.arange(n) / max(n - 1, 1))
    return T_min_K / T


class ReplicaExchange:
    """Hamiltonian / temperature replica exchange between neighbouring rungs.

    Rung k starts on replica k (pass bias states ordered along the ladder: increasing
    temperature or window centre).

    Args:
        bias: the run's :class:`~qdyn.sampling.bias.Bias`.
        temperature_K: the thermostat temperature T0 [K] (β0).
        seed: seed of the acceptance draws.
    """

    def __init__(self, bias: Bias, *, temperature_K: float, seed: int = 0):
        self.bias = bias
        self.beta0 = 1.0 / units.temperature_to_energy(float(temperature_K))
        self.rng = np.random.default_rng(seed)
        # bias energy of every configuration under every replica's state: [Rp(state), Rp(config)]
        per_config = jax.vmap(bias.energy, in_axes=(0, 0, None))
        self._cross = jax.jit(jax.vmap(per_config, in_axes=(None, None, 0)))
        free = jax.vmap(lambda r, st: bias.energy(r, None, st), in_axes=(0, None))
        self._cross_free = jax.jit(jax.vmap(free, in_axes=(None, 0)))
        self.rung_of: Optional[np.ndarray] = None  # [Rp] rung held by each replica (walker)
        self.n_attempts: Optional[np.ndarray] = None  # [K-1] per rung pair
        self.n_accepted: Optional[np.ndarray] = None
        self.n_calls = 0
        self.history: list[np.ndarray] = []
        self._last_end: Optional[np.ndarray] = None  # per walker: -1 none, 0 bottom, 1 top
        self.round_trips: Optional[np.ndarray] = None

    def _start(self, n: int) -> None:
        self.rung_of = np.arange(n)
        self.n_attempts = np.zeros(max(n - 1, 0), int)
        self.n_accepted = np.zeros(max(n - 1, 0), int)
        self._last_end = np.full(n, -1)
        self.round_trips = np.zeros(n, int)

    def reduced_energies(self, states: BiasState, E_model, R, box=None) -> np.ndarray:
        """``u[s, c] = β0 (scale_s E(x_c) + bias_s(x_c))``: [state replica, configuration replica]."""
        R = jnp.asarray(R)
        b = self._cross_free(R, states) if box is None else self._cross(R, jnp.asarray(box), states)
        scale = np.asarray(states.scale)
        return self.beta0 * (scale[:, None] * np.asarray(E_model)[None, :] + np.asarray(b))

    def attempt(self, states: BiasState, E_model, R, box=None) -> BiasState:
        """One round of swaps (even or odd rung pairs, alternating) on the current
        configurations R [Rp, n, 3] with model energies E_model [Rp] eV; returns the
        (permuted) bias states."""
        n = len(E_model)
        if self.rung_of is None:
            self._start(n)
        u = self.reduced_energies(states, E_model, R, box)
        holder = np.argsort(self.rung_of)  # replica holding each rung
        perm = np.arange(n)  # new state of replica r = old state of replica perm[r]
        for k in range(self.n_calls % 2, n - 1, 2):
            i, j = holder[k], holder[k + 1]
            delta = u[j, i] + u[i, j] - u[i, i] - u[j, j]  # states swapped minus as they are
            self.n_attempts[k] += 1
            if delta <= 0 or self.rng.random() < np.exp(-delta):
                self.n_accepted[k] += 1
                perm[i], perm[j] = perm[j], perm[i]
                self.rung_of[i], self.rung_of[j] = self.rung_of[j], self.rung_of[i]
        self.n_calls += 1
        self._count_round_trips(n)
        self.history.append(self.rung_of.copy())
        if np.all(perm == np.arange(n)):
            return states
        idx = jnp.asarray(perm)
        return jax.tree_util.tree_map(lambda x: x[idx], states)

    def _count_round_trips(self, n: int) -> None:
        if n < 2:
            return
        bottom, top = self.rung_of == 0, self.rung_of == n - 1
        # a round trip: bottom -> top -> bottom
        self.round_trips += bottom & (self._last_end == 1)
        self._last_end = np.where(bottom, 0, np.where(top & (self._last_end == 0), 1, self._last_end))

    def state(self) -> dict:
        """Everything a restart needs to continue the statistics and the acceptance draws
        exactly: rungs, counts, round-trip bookkeeping, history and the generator's state
        (JSON-friendly; :func:`qdyn.md.run.run_md` stores it in the checkpoint's meta)."""
        if self.rung_of is None:
            return {"rng": self.rng.bit_generator.state}
        return {"rung_of": self.rung_of.tolist(), "n_attempts": self.n_attempts.tolist(),
                "n_accepted": self.n_accepted.tolist(), "n_calls": int(self.n_calls),
                "last_end": self._last_end.tolist(), "round_trips": self.round_trips.tolist(),
                "history": np.asarray(self.history, dtype=int).tolist(), "rng": self.rng.bit_generator.state}

    def restore(self, saved: dict, *, replicas: int) -> None:
        """Continue from :meth:`state` (a run resumed from its checkpoint).

        Raises:
            QdynInputError: the saved statistics are for another number of replicas.
        """
        self.rng.bit_generator.state = saved["rng"]
        if "rung_of" not in saved:  # saved before the first attempt
            self.rung_of = None
            return
        if len(saved["rung_of"]) != replicas:
            raise QdynInputError(f"the checkpoint's replica-exchange statistics are for {len(saved['rung_of'])} "
                                 f"replicas, this run has {replicas}")
        self.rung_of = np.asarray(saved["rung_of"], int)
        self.n_attempts = np.asarray(saved["n_attempts"], int)
        self.n_accepted = np.asarray(saved["n_accepted"], int)
        self.n_calls = int(saved["n_calls"])
        self._last_end = np.asarray(saved["last_end"], int)
        self.round_trips = np.asarray(saved["round_trips"], int)
        self.history = [np.asarray(h, int) for h in saved["history"]]

    def statistics(self) -> dict:
        """Attempts, acceptance rate per rung pair, round trips per walker and in total, and
        the rung history [attempts, Rp] (JSON-friendly lists)."""
        if self.rung_of is None:
            return {"attempts": 0}
        rate = np.where(self.n_attempts > 0, self.n_accepted / np.maximum(self.n_attempts, 1), np.nan)
        return {"attempts": int(self.n_calls), "pair_attempts": self.n_attempts.tolist(),
                "acceptance": rate.tolist(), "round_trips": int(self.round_trips.sum()),
                "round_trips_per_walker": self.round_trips.tolist(),
                "rung_history": np.asarray(self.history).tolist()}


def by_rung(values, rung_history, *, initial: bool = False) -> np.ndarray:
    """Per-frame values [F, Rp, ...] of replicas reordered by the rung (state) each replica
    held when the frame was sampled: ``out[f, k]`` comes from the replica holding rung k.

    ``rung_history`` [B, Rp] is :attr:`ReplicaExchange.history` (rungs after each of the B
    blocks' exchange attempts); the F frames are split evenly over the B blocks, and block b
    ran with the rungs left by attempt b - 1 (the identity for the first block).
    ``initial``: ``values[0]`` is the run's initial state (:func:`~qdyn.md.run.run_md` stores
    it as frame 0, step 0), sampled before any exchange: pass ``res.step[0] == 0``.
    """
    v = np.asarray(values)
    if initial:
        return np.concatenate([v[:1], by_rung(v[1:], rung_history)])
    hist = np.asarray(rung_history, dtype=int)
    F, n = v.shape[0], v.shape[1]
    if F % len(hist):
        raise QdynInputError(f"{F} frames do not split into {len(hist)} exchange blocks")
    per_block = F // len(hist)
    during = np.concatenate([np.arange(n)[None], hist[:-1]])  # [B, Rp] rungs while block b ran
    out = np.empty_like(v)
    for b in range(len(hist)):
        holder = np.argsort(during[b])
        out[b * per_block:(b + 1) * per_block] = v[b * per_block:(b + 1) * per_block][:, holder]
    return out
