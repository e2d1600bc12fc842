"""The MD uncertainty watchdog: stop a replica before it leaves the data its model was fitted to.

A model trained with an uncertainty estimate (a deep ensemble, or a last-layer Laplace
posterior; :mod:`qdyn.uncertainty`) predicts its own error. Inside the compiled MD block the
watchdog evaluates that σ at **every sampled frame** (every ``stride`` steps), not every
step and not only once per block:

* every step would cost as much again as the dynamics for a Laplace model (its Jacobian) and
  change nothing that matters: a molecule does not leave the data in one 0.5 fs step;
* once per block (``frames × stride`` steps, typically 100) is too coarse: a replica that
  passes the threshold early in a block would run on unsupervised for the rest of it and may
  come apart before the host sees it. At each frame the replica's last trusted state is at
  most ``stride`` steps old.

For an ensemble one σ evaluation is one more force evaluation of the K members (the
dynamics already does one per step), so the cost is ``1/stride`` of the run.

A replica whose σ passes a threshold (or is not finite) is **frozen** at its last trusted
frame, inside the block: its state is put back to that frame and no longer advances (the
other replicas go on: one compiled program, a mask). The host learns which replica stopped,
at which frame and why, writes the frame and ends the run when every replica has stopped.

Thresholds (per-atom force σ [eV/Å], energy σ per atom [eV]) and the calibration factors are
call-time arguments of the compiled block: one compilation serves any threshold.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..validation import QdynInputError


class Watchdog(NamedTuple):
    """What the MD block needs to watch a model's uncertainty.

    Attributes:
        sigma_fn: ``sigma_fn(sigma_params, params, R [n, 3] Å, system, neighbor) ->
            (σ_E [eV], σ_F [n] eV/Å per atom)`` of one configuration; pure, hashable (the
            compiled block is cached on it).
        sigma_params: its call-time arguments (calibration factors, a Laplace covariance).
        max_force_std: threshold on the largest per-atom force σ [eV/Å] (inf: none).
        max_energy_std_per_atom: threshold on σ_E / n_atoms [eV] (inf: none).
        method: "ensemble" or "laplace" (for reports).
    """

    sigma_fn: Callable
    sigma_params: object
    max_force_std: float = math.inf
    max_energy_std_per_atom: float = math.inf
    method: str = "ensemble"

    def thresholds(self):
        """[2] float64: (force σ eV/Å, energy σ per atom eV)."""
        return jnp.asarray([self.max_force_std, self.max_energy_std_per_atom], dtype=jnp.result_type(float))

    def describe(self) -> dict:
        """JSON record of the settings (thresholds, method)."""
        finite = lambda x: None if not math.isfinite(x) else float(x)  # noqa: E731
        return {"method": self.method, "max_force_std_eV_per_A": finite(self.max_force_std),
                "max_energy_std_per_atom_eV": finite(self.max_energy_std_per_atom),
                "checked": "every sampled frame (every stride steps), inside the compiled block"}


@functools.lru_cache(maxsize=16)
def ensemble_sigma_fn(member_apply: Callable) -> Callable:
    """σ of a deep ensemble at one configuration: the population spread of the K members'
    energies and forces (the same measure as :func:`qdyn.uncertainty.predict_with_uncertainty`),
    the members ``vmap``-ed. ``sigma_params`` = [2] (energy, force) calibration factors."""

    def member_ef(p, R, system, neighbor):
        E, g = jax.value_and_grad(lambda r: member_apply(p, r, system, neighbor))(R)
        return E, -g

    members = jax.vmap(member_ef, in_axes=(0, None, None, None))

    def sigma_fn(scales, params, R, system, neighbor=None):
        E, F = members(params, R, system, neighbor)  # [K], [K, n, 3]
        sigma_F = jnp.sqrt(jnp.mean(jnp.var(F, axis=0), axis=-1))
        return scales[0] * jnp.std(E), scales[1] * sigma_F

    return sigma_fn


@functools.lru_cache(maxsize=16)
def laplace_sigma_fn(apply: Callable) -> Callable:
    """σ of a last-layer Laplace posterior at one configuration (the linearised predictive,
    :func:`qdyn.uncertainty.laplace.laplace_std`). ``sigma_params`` = (scales [2],
    covariance [P, P])."""
    from ..uncertainty.laplace import laplace_std, split_readout

    def sigma_fn(sigma_params, params, R, system, neighbor=None):
        scales, cov = sigma_params
        theta, merge = split_readout(params)

        def ef(t):
            E, g = jax.value_and_grad(lambda r: apply(merge(t), r, system, neighbor))(R)
            return E, -g

        J_E, J_F = jax.jacfwd(ef)(theta)
        s_E, s_F = laplace_std(J_E[None], J_F[None], cov)
        return scales[0] * s_E[0], scales[1] * s_F[0]

    return sigma_fn


def make_watchdog(model, estimator=None, *, max_force_std: Optional[float] = None,
                  max_energy_std_per_atom: Optional[float] = None) -> Watchdog:
    """The watchdog of a model with an uncertainty estimate.

    Args:
        model: an :class:`~qdyn.models.base.EnergyModel`; an ensemble
            (:func:`qdyn.uncertainty.ensemble_model`) or a single model with a Laplace
            ``estimator``.
        estimator: a :class:`qdyn.uncertainty.Estimator` (calibration factors, posterior);
            None: an ensemble's uncalibrated spread.
        max_force_std: stop a replica when an atom's force σ exceeds this [eV/Å].
        max_energy_std_per_atom: stop a replica when σ_E / n_atoms exceeds this [eV].

    Raises:
        QdynInputError: no threshold, a threshold ≤ 0, or a model without an estimate.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> from qdyn.models import bpnn
        >>> from qdyn.uncertainty import ensemble_model
        >>> ens = ensemble_model(bpnn.build(species=(1, 8), hidden=(4,)), 3)
        >>> make_watchdog(ens, max_force_std=0.5).describe()["max_force_std_eV_per_A"]
        0.5
    """
    if max_force_std is None and max_energy_std_per_atom is None:
        raise QdynInputError("the watchdog needs a threshold: max_force_std [eV/Å] and/or "
                             "max_energy_std_per_atom [eV]")
    for name, x in (("max_force_std", max_force_std), ("max_energy_std_per_atom", max_energy_std_per_atom)):
        if x is not None and not x > 0:
            raise QdynInputError(f"{name} must be > 0, got {x}")
    method = "ensemble" if estimator is None else estimator.method
    scales = np.asarray([1.0, 1.0] if estimator is None else [estimator.energy_scale, estimator.force_scale])
    if method == "ensemble":
        if model.member is None:
            raise QdynInputError(f"{model.name} has no uncertainty estimate: the watchdog needs a run trained with "
                                 "`uncertainty: {method: ensemble}` or `{method: laplace}`")
        fn, sigma_params = ensemble_sigma_fn(model.member.apply), jnp.asarray(scales)
    elif method == "laplace":
        fn = laplace_sigma_fn(model.apply)
        sigma_params = (jnp.asarray(scales), jnp.asarray(estimator.posterior.covariance))
    else:
        raise QdynInputError(f"unknown uncertainty method {method!r}")
    inf = math.inf
    return Watchdog(fn, sigma_params, inf if max_force_std is None else float(max_force_std),
                    inf if max_energy_std_per_atom is None else float(max_energy_std_per_atom), method)


def over_threshold(sigma_E, sigma_F, n_atoms, thresholds):
    """True where a frame is not trusted: σ past a threshold, or not finite (a NaN σ is a
    state that already came apart). ``sigma_F`` [..., n] per atom."""
    max_F = jnp.max(sigma_F, axis=-1)
    trusted = (max_F <= thresholds[0]) & (sigma_E / n_atoms <= thresholds[1])
    return ~trusted, max_F


def stop_records(newly, frame_in_block, frames_done, frames, stride, dt_fs, sigma_E, max_F, n_atoms,
                 watchdog: Watchdog) -> list[dict]:
    """One record per replica that stopped in a block: when, and why (host side).

    Args:
        newly: [Rp] bool, replicas that stopped in this block.
        frame_in_block: [Rp] index of the frame whose σ passed the threshold.
        frames_done: frames of the run after the block; frames: frames in the block.
        sigma_E: [F, Rp] energy σ at every frame of the block [eV].
        max_F: [F, Rp] largest per-atom force σ at every frame of the block [eV/Å].
    """
    out = []
    first = frames_done - frames
    for r in np.flatnonzero(newly):
        f = int(frame_in_block[r])
        sE, sF = float(sigma_E[f, r]), float(max_F[f, r])
        reasons = []
        if not (np.isfinite(sE) and np.isfinite(sF)):
            reasons.append("σ is not finite")
        if sF > watchdog.max_force_std:
            reasons.append(f"force σ {sF:.3g} eV/Å > {watchdog.max_force_std:.3g} eV/Å")
        if sE / n_atoms > watchdog.max_energy_std_per_atom:
            reasons.append(f"energy σ {sE / n_atoms:.3g} eV/atom > {watchdog.max_energy_std_per_atom:.3g} eV/atom")
        step = (first + f + 1) * stride
        out.append({"replica": int(r), "step": int(step), "time_fs": step * dt_fs,
                    "last_trusted_step": int(step - stride), "last_trusted_time_fs": (step - stride) * dt_fs,
                    "force_std_eV_per_A": sF, "energy_std_per_atom_eV": sE / n_atoms, "reason": "; ".join(reasons)})
    return out


class WatchLog:
    """Host side of the watchdog during one run: which replicas are stopped, the stop events,
    σ per block, and the last trusted frame of each stopped replica (written as extxyz).

    Its :meth:`state` goes into the MD checkpoint's meta, so a restart continues with the same
    replicas stopped.
    """

    def __init__(self, watchdog: Watchdog, *, replicas: int, n_atoms: int, stride: int, dt_fs: float,
                 species, masses, box, out=None, restored: Optional[dict] = None):
        self.watchdog, self.n_atoms, self.stride, self.dt_fs = watchdog, n_atoms, stride, dt_fs
        self.species, self.masses, self.box, self.out = species, masses, box, out
        restored = restored or {}
        self.stopped = np.zeros(replicas, bool)
        self.stopped[list(restored.get("stopped", []))] = True
        self.events: list[dict] = list(restored.get("events", []))
        self.blocks: list[dict] = list(restored.get("blocks", []))
        self.trusted: dict[int, dict] = {}  # replica -> its last trusted frame (this call)

    def watch_args(self):
        """The block's ``watch`` argument: (stopped [Rp], thresholds [2], sigma_params)."""
        return jnp.asarray(self.stopped), self.watchdog.thresholds(), self.watchdog.sigma_params

    @property
    def all_stopped(self) -> bool:
        return bool(self.stopped.all())

    def record(self, sigma_E, max_F, stopped, R, P, PE, frames_done: int) -> np.ndarray:
        """Take one block's σ [F, Rp] and frozen flags [F, Rp]; returns σ_F with frames of
        frozen replicas set to NaN (their positions repeat the last trusted frame)."""
        F = stopped.shape[0]
        newly = stopped[-1] & ~self.stopped
        first = np.argmax(stopped, axis=0)
        events = stop_records(newly, first, frames_done, F, self.stride, self.dt_fs, sigma_E, max_F,
                              self.n_atoms, self.watchdog)
        for ev in events:
            r, f = ev["replica"], int(first[ev["replica"]])
            V = np.asarray(P[f, r]) / self.masses[r][:, None] / units.TIME_UNIT_FS  # amu·Å/τ -> Å/fs
            self.trusted[r] = {"R": np.asarray(R[f, r]), "V": V,
                               "potential_eV": float(PE[f, r]), "event": ev}
            if self.out is not None:
                ev["frame_file"] = self._write_frame(r).name
        self.events.extend(events)
        self.stopped = self.stopped | stopped[-1]
        sigma_F = np.where(stopped, np.nan, max_F)
        sigma_E = np.where(stopped, np.nan, sigma_E)
        max_E = _nanmax(sigma_E)
        self.blocks.append({"step": int(frames_done * self.stride), "max_force_std_eV_per_A": _nanmax(sigma_F),
                            "max_energy_std_per_atom_eV": None if max_E is None else max_E / self.n_atoms,
                            "running": int((~stopped[-1]).sum())})
        return sigma_E, sigma_F

    def _write_frame(self, r: int):
        from .. import elements
        from ..data.extxyz import frame_lines
        from ..data.io import atomic_write_text

        t = self.trusted[r]
        ev = t["event"]
        box = None if self.box is None else np.asarray(self.box, float)
        if box is not None and box.ndim == 1:
            box = np.diag(box)
        info = [f'pbc="{"T T T" if box is not None else "F F F"}"', f"time={ev['last_trusted_time_fs']!r}",
                f"energy={t['potential_eV']!r}", f"stopped_at_fs={ev['time_fs']!r}",
                f"force_std_at_stop={ev['force_std_eV_per_A']!r}",
                'energy_unit=eV length_unit=Angstrom time_unit=fs vel_unit="Angstrom/fs"']
        symbols = [elements.symbol(int(z)) for z in self.species]
        path = self.out / f"stopped_r{r:04d}.xyz"
        atomic_write_text(path, "\n".join(frame_lines(symbols, [("pos", t["R"]), ("vel", t["V"])], info,
                                                      cell=box)) + "\n")
        return path

    def state(self) -> dict:
        """JSON-ready: stopped replicas, stop events, σ per block (checkpoint meta, md.json)."""
        return {"stopped": [int(r) for r in np.flatnonzero(self.stopped)], "events": self.events,
                "blocks": self.blocks}

    def summary(self) -> dict:
        return {**self.watchdog.describe(), **self.state()}


def _nanmax(x) -> Optional[float]:
    x = np.asarray(x, float)
    return float(np.nanmax(x)) if np.isfinite(x).any() else None
