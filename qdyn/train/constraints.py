"""Physics constraints in the training loss: terms that change a fit where the data say nothing.

Energies and forces near the sampled configurations leave two things free that a user often
knows (docs/training.md, "Constraints"):

* **a dissociation limit** (``dissociation``): far apart, a complex's energy is the sum of its
  fragments' energies. A model trained only on bound dimers puts E(R → ∞) wherever its
  per-species shifts and extrapolation happen to land. The constraint builds fixed *probe*
  configurations: fragments taken from their own labelled datasets (same level of theory),
  randomly oriented and placed ``separation`` Å apart, each with the target
  ``Σ_k E_k`` — and penalises ``((E_model - Σ_k E_k)/N_atoms/σ_E)²`` there.
* **a repulsive wall** (``repulsive_wall``): below some distance two atoms only repel, so the
  energy must rise as the pair is compressed. Probes take training frames, pick the
  closest pair of the given species and move the two atoms (each with the atoms bonded to
  it, so molecules move rigidly) to distances between ``r_min`` and ``below``; the penalty
  is ``(relu(∂E/∂r)/σ_F)²``: zero wherever the energy already rises on compression.
* **an energy order of conformers** (``energy_order``): which of two conformers is lower is
  often known (trans below gauche ethanol, a cyclic water trimer below an open one, from a
  higher level, from experiment or from labels) when their energies are not in the training
  set, and a model fit to a few frames may invert them. The constraint takes the conformers
  from a dataset and either the user's order (``groups``, each listed from lowest to highest)
  or the order of that dataset's energies (pairs further apart than ``min_gap``), and adds a
  hinge ``(relu(E_lower - E_higher + margin)/N_atoms/σ_E)²`` per pair: zero wherever the
  model already has the order right, so only the order is imposed, not the gap.

Probes are built once on the host from the training data (seeded, so a resumed run has the
same ones) and are part of the loss's definition, like σ_E and σ_F: the loss closes over them.

The net-force penalty of earlier versions (``loss.net_force_weight``) is kept only so old
configs load: every qdyn model is translation invariant, so its forces sum to zero and the
penalty is identically zero (``qdyn.testing.assert_net_force_zero``); a non-zero weight warns.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .. import elements
from ..models.core_repulsion import pair_key
from ..system import System
from ..validation import QdynInputError

__all__ = ["DissociationConstraint", "RepulsiveWallConstraint", "EnergyOrderConstraint", "ConstraintsConfig",
           "Probes", "dissociation_probes", "wall_probes", "order_probes", "make_constraint_loss"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DissociationConstraint(_Strict):
    """E(fragments far apart) = Σ fragment energies."""

    fragments: list[list[int]] = Field(description="atom indices of each fragment in the training frames, e.g. "
                                                   "[[0, 1, 2], [3, 4, 5]]")
    fragment_data: list[str] = Field(description="one labelled dataset per fragment (shipped:NAME or a file) at the "
                                                 "training data's level of theory, atoms in the fragment's order")
    separation: float = Field(20.0, gt=0, description="distance between fragment centroids in the probes, Å "
                                                      "(beyond the model's cutoff)")
    n_probes: int = Field(32, ge=1, description="probe configurations (fixed for the run)")
    weight: float = Field(1.0, ge=0, description="weight of the squared per-atom energy error at the probes "
                                                 "(relative to σ_E, as the energy term)")


class RepulsiveWallConstraint(_Strict):
    """Energy rises monotonically as a pair is compressed below ``below``."""

    pair: str = Field(description="species pair, e.g. O-O")
    below: float = Field(gt=0, description="largest probed distance, Å (where the data stop)")
    r_min: float = Field(gt=0, description="smallest probed distance, Å")
    n_probes: int = Field(32, ge=1, description="probe configurations (fixed for the run)")
    weight: float = Field(1.0, ge=0, description="weight of the squared slope violation relu(dE/dr)/σ_F")


class EnergyOrderConstraint(_Strict):
    """E(lower conformer) < E(higher conformer) for known pairs."""

    data: str = Field(description="the conformers: a dataset (shipped:NAME or a file) with the training data's atoms "
                                  "(any order of frames; energies needed only without groups)")
    groups: Optional[list[list[int]]] = Field(
        None, description="frame indices of data, each group listed from lowest to highest energy (every pair in a "
                          "group is imposed); null: the order of data's own energies over frames")
    frames: Optional[list[int]] = Field(None, description="without groups: the frames of data whose label order is "
                                                          "imposed (null: all)")
    min_gap: float = Field(0.01, ge=0, description="without groups: pairs whose label energies differ by less than "
                                                   "this are left free, eV")
    margin: float = Field(0.0, ge=0, description="the model's gap must reach this before the hinge is zero, eV")
    weight: float = Field(1.0, ge=0, description="weight of the squared per-atom order violation (relative to σ_E, "
                                                 "as the energy term)")


class ConstraintsConfig(_Strict):
    dissociation: Optional[DissociationConstraint] = Field(None, description="known dissociation limit (null: off)")
    repulsive_wall: Optional[RepulsiveWallConstraint] = Field(None, description="monotone repulsive wall (null: off)")
    energy_order: Optional[EnergyOrderConstraint] = Field(None, description="known energy order of conformers "
                                                                            "(null: off)")
    seed: int = Field(0, description="seed of the probe configurations")

    @property
    def active(self) -> bool:
        return any(c is not None for c in (self.dissociation, self.repulsive_wall, self.energy_order))


class Probes(NamedTuple):
    """Fixed probe configurations of one constraint: ``R [P, A, 3]`` Å, a batched System, and
    per constraint ``target`` [P] (energies, eV), ``direction`` [P, A, 3] (dR/dr) or ``pairs``
    int [K, 2] (probe indices: lower, higher energy)."""

    R: np.ndarray
    system: System
    target: Optional[np.ndarray] = None
    direction: Optional[np.ndarray] = None
    pairs: Optional[np.ndarray] = None


def _random_rotations(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def dissociation_probes(c: DissociationConstraint, train_Z: np.ndarray, fragment_sets, *, seed: int) -> Probes:
    """Fragments from ``fragment_sets`` (one Dataset each, matching ``c.fragments``) placed
    ``c.separation`` Å apart along random directions, randomly oriented; targets Σ E_k."""
    if len(c.fragments) != len(fragment_sets) or len(c.fragments) < 2:
        raise QdynInputError(f"constraints.dissociation: {len(c.fragments)} fragments and {len(fragment_sets)} "
                             "fragment_data sets: give at least two fragments and one dataset for each")
    order = np.concatenate(c.fragments)
    z_frame = train_Z[0][train_Z[0] > 0]
    if sorted(order.tolist()) != list(range(len(z_frame))):
        raise QdynInputError(f"constraints.dissociation: fragments {c.fragments} must cover the {len(z_frame)} atoms "
                             "of the training frames exactly once")
    for k, (idx, ds) in enumerate(zip(c.fragments, fragment_sets)):
        z_frag = ds.Z[0][ds.Z[0] > 0]
        if list(z_frag) != list(z_frame[idx]):
            raise QdynInputError(f"constraints.dissociation: fragment {k} has atoms {list(z_frame[idx])} in the "
                                 f"training frames but {list(z_frag)} in {ds.source}")
    rng = np.random.default_rng(seed)
    n_atoms = len(z_frame)
    R = np.zeros((c.n_probes, n_atoms, 3))
    E = np.zeros(c.n_probes)
    for p in range(c.n_probes):
        centre = np.zeros(3)
        for k, (idx, ds) in enumerate(zip(c.fragments, fragment_sets)):
            f = rng.integers(ds.n_frames)
            Rk = ds.R[f][: len(idx)]
            Rk = (Rk - Rk.mean(0)) @ _random_rotations(rng, 1)[0].T
            R[p, idx] = Rk + centre
            E[p] += ds.E[f]
            step = rng.normal(size=3)
            centre = centre + c.separation * step / np.linalg.norm(step)
    Z = np.broadcast_to(z_frame, (c.n_probes, n_atoms))
    return Probes(R, System(species=jnp.asarray(Z), mask=jnp.asarray(Z > 0), box=None), target=E)


def _bonded_group(R, Z, i, j):
    """Atom i and every atom bonded to it (within 1.2 × the covalent radii), leaving out j."""
    radii = np.array([elements.covalent_radius(z) for z in Z])
    d = np.linalg.norm(R - R[i], axis=1)
    group = d < 1.2 * (radii + radii[i])
    group[j] = False
    group[i] = True
    return group


def wall_probes(c: RepulsiveWallConstraint, train_ds, *, seed: int) -> Probes:
    """Training frames with their closest ``c.pair`` pair moved (rigidly with bonded atoms) to
    distances in [r_min, below]; ``direction`` is dR/dr of that motion."""
    if train_ds.cell is not None:
        raise QdynInputError("constraints.repulsive_wall: probes are built for molecules and clusters, not periodic "
                             "frames")
    if not c.r_min < c.below:
        raise QdynInputError(f"constraints.repulsive_wall: r_min {c.r_min} Å must be below {c.below} Å")
    try:
        want = pair_key(*(elements.atomic_number(x.strip()) for x in c.pair.split("-")))
    except (TypeError, elements.UnknownElementError) as exc:
        raise QdynInputError(f"constraints.repulsive_wall: pair {c.pair!r} is not two element symbols like O-O "
                             f"({exc})") from None
    rng = np.random.default_rng(seed)
    Rs, Zs, Ds = [], [], []
    frames = rng.permutation(train_ds.n_frames)
    for f in frames:
        R, Z = train_ds.R[f], train_ds.Z[f]
        real = np.flatnonzero(Z > 0)
        pairs = [(i, j) for a, i in enumerate(real) for j in real[a + 1:] if pair_key(Z[i], Z[j]) == want]
        if not pairs:
            continue
        i, j = min(pairs, key=lambda ij: np.linalg.norm(R[ij[1]] - R[ij[0]]))
        u = (R[j] - R[i]) / np.linalg.norm(R[j] - R[i])
        gi, gj = _bonded_group(R, Z, i, j), _bonded_group(R, Z, j, i)
        if np.any(gi & gj):
            continue  # i and j are bonded to a common atom: no rigid compression of this pair
        r_new = rng.uniform(c.r_min, c.below)
        shift = 0.5 * (r_new - np.linalg.norm(R[j] - R[i]))
        direction = 0.5 * (gj[:, None] * u - gi[:, None] * u)  # dR/dr: each side moves half
        Rs.append(R + 2 * shift * direction)
        Zs.append(Z)
        Ds.append(direction * (Z > 0)[:, None])
        if len(Rs) == c.n_probes:
            break
    if not Rs:
        raise QdynInputError(f"constraints.repulsive_wall: no training frame has a {c.pair} pair of separate groups")
    Z = np.stack(Zs)
    return Probes(np.stack(Rs), System(species=jnp.asarray(Z), mask=jnp.asarray(Z > 0), box=None),
                  direction=np.stack(Ds))


def _ordered_pairs(c: EnergyOrderConstraint, conformers) -> list[tuple[int, int]]:
    """(lower, higher) frame pairs of ``conformers``: every pair of each group, or every label
    pair more than ``c.min_gap`` apart."""
    n = conformers.n_frames
    if c.groups is not None:
        flat = [i for g in c.groups for i in g]
        bad = [i for i in flat if not 0 <= i < n]
        if bad or any(len(g) < 2 for g in c.groups):
            raise QdynInputError(f"constraints.energy_order: groups need ≥ 2 frame indices each, within the {n} "
                                 f"frames of {conformers.source}" + (f" (out of range: {bad})" if bad else ""))
        return [(g[a], g[b]) for g in c.groups for a in range(len(g)) for b in range(a + 1, len(g))]
    if conformers.E is None:
        raise QdynInputError(f"constraints.energy_order: {conformers.source} has no energies; give the order as groups")
    frames = list(range(n)) if c.frames is None else list(c.frames)
    if any(not 0 <= i < n for i in frames):
        raise QdynInputError(f"constraints.energy_order: frames must lie within the {n} frames of {conformers.source}")
    E = conformers.E
    return [(i, j) if E[i] < E[j] else (j, i) for a, i in enumerate(frames) for j in frames[a + 1:]
            if abs(E[i] - E[j]) >= c.min_gap]


def order_probes(c: EnergyOrderConstraint, conformers, train_Z: np.ndarray) -> Probes:
    """The conformer frames of ``conformers`` (a Dataset) that enter a pair, and the pairs."""
    pairs = _ordered_pairs(c, conformers)
    if not pairs:
        raise QdynInputError(f"constraints.energy_order: no pair of frames in {conformers.source} is more than "
                             f"min_gap {c.min_gap} eV apart: nothing to impose")
    used = sorted({i for p in pairs for i in p})
    Z = conformers.Z[used]
    want = np.sort(train_Z[0][train_Z[0] > 0])
    for k, z in zip(used, Z):
        if not np.array_equal(np.sort(z[z > 0]), want):
            raise QdynInputError(f"constraints.energy_order: frame {k} of {conformers.source} has other atoms than "
                                 "the training frames")
    where = {f: k for k, f in enumerate(used)}
    return Probes(np.asarray(conformers.R[used], float), System(species=jnp.asarray(Z), mask=jnp.asarray(Z > 0),
                                                                 box=None),
                  pairs=np.array([(where[i], where[j]) for i, j in pairs], dtype=np.int32))


def make_constraint_loss(apply: Callable, config: ConstraintsConfig, *, dissociation: Optional[Probes],
                         wall: Optional[Probes], sigma_E: float, sigma_F: float,
                         order: Optional[Probes] = None) -> Callable:
    """``terms(params) -> (weighted sum, {"loss_dissociation", "loss_wall", "loss_order": ...})``
    (the active ones)."""
    energy = jax.vmap(apply, in_axes=(None, 0, 0))

    def slope(params, R, system, direction):
        return jax.jvp(lambda x: apply(params, x, system), (R,), (direction,))[1]

    slopes = jax.vmap(slope, in_axes=(None, 0, 0, 0))

    def terms(params):
        total, aux = 0.0, {}
        if dissociation is not None:
            n_at = jnp.sum(dissociation.system.mask, axis=1)
            dE = (energy(params, jnp.asarray(dissociation.R), dissociation.system) - dissociation.target) / n_at
            aux["loss_dissociation"] = jnp.mean((dE / sigma_E) ** 2)
            total = total + config.dissociation.weight * aux["loss_dissociation"]
        if wall is not None:
            s = slopes(params, jnp.asarray(wall.R), wall.system, jnp.asarray(wall.direction))
            aux["loss_wall"] = jnp.mean((jax.nn.relu(s) / sigma_F) ** 2)
            total = total + config.repulsive_wall.weight * aux["loss_wall"]
        if order is not None:
            E = energy(params, jnp.asarray(order.R), order.system)
            lo, hi = order.pairs[:, 0], order.pairs[:, 1]
            n_at = jnp.sum(order.system.mask[lo], axis=1)
            inversion = jax.nn.relu(E[lo] - E[hi] + config.energy_order.margin) / n_at
            aux["loss_order"] = jnp.mean((inversion / sigma_E) ** 2)
            total = total + config.energy_order.weight * aux["loss_order"]
        return total, aux

    return terms


def with_constraints(loss: Callable, terms: Callable) -> Callable:
    """A batch loss ``(params, batch, w_E, w_F, w_net) -> (loss, aux)`` plus the constraint terms."""

    def constrained(params, batch, w_E, w_F, w_net):
        value, aux = loss(params, batch, w_E, w_F, w_net)
        extra, extra_aux = terms(params)
        return value + extra, {**aux, **extra_aux}

    return constrained
