"""The model contract: one pure JAX energy function per model.

An :class:`EnergyModel` is a pair of pure functions ``init(key) -> params`` and
``apply(params, R, system, neighbor=None) -> energy`` [eV], plus a host-side
``check(R, system)`` that rejects bad input before anything is traced. Forces are
``-jax.grad(apply)``: :func:`energy_and_forces_fn` for training, evaluation and the ASE
calculator; MD hands the energy to JAX-MD's integrators, which take the same gradient.
"""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..elements import make_species_table
from ..system import System

Params = Any


# Parameter groups (top-level parameter keys → group), declared by each model: optimisers
# schedule, scale or freeze them per group (staged training: classical first, then all).
QUANTUM = "quantum"  # the branch under study: circuit angles, encodings, and what stands in for them
CLASSICAL = "classical"  # networks, integration layers, scale and shifts
FIXED = "fixed"  # data statistics set by training before the first step (never optimised)


class EnergyModel(NamedTuple):
    """A qdyn energy model: every family, single- or multistate, is one of these.

    Attributes:
        init: ``init(key) -> params`` (a plain dict of float arrays).
        apply: ``apply(params, R [n_atoms, 3] Å, system, neighbor=None) -> energy`` [eV], pure
            and jittable; ``neighbor`` is an optional JAX-MD neighbour list (periodic boxes),
            ignored by models that see every pair. For a multistate model: the adiabatic
            ground state.
        check: ``check(R, system)`` host-side validation raising a clear error.
        name: short name for reports.
        species: atomic numbers the model was built for.
        config: the settings that rebuild it (JSON; :func:`qdyn.models.config.build_model`).
        atom_energies: ``(params, R, system, neighbor=None) -> [n_atoms]`` [eV] where the model
            has them.
        groups: ``{top-level parameter key: QUANTUM | CLASSICAL | FIXED}`` (keys absent from a
            model's params are ignored; unlisted keys count as CLASSICAL).
        features: ``(R, system) -> G [n_atoms, n_features]``, the raw per-atom descriptor whose
            mean and spread training stores in the FIXED ``g_mean``/``g_std`` before the first
            step; None for models without one.
        diabatic: multistate models: ``(params, R, system, neighbor=None) -> W [n, n]`` eV,
            symmetric; None for single-state models.
        adiabatic: multistate models: ``(params, R, system, neighbor=None) -> E [n]`` eV,
            ascending (the eigenvalues of W).
        n_states: electronic states (1 for a single potential energy surface).
        member: for a deep ensemble (:func:`qdyn.uncertainty.ensemble_model`), the model each
            member is; its parameters carry a leading member axis and ``apply`` is the
            member mean. None for a single model.
        charges: models with long-range electrostatics (:mod:`qdyn.models.electrostatics`):
            ``(params, R, system) -> q [n_atoms]`` e, summing exactly to the total charge; None
            otherwise.
        atom_terms: ``(params, R, system, neighbor=None) -> (e [n_atoms] eV, G [n_atoms, n_features])``:
            the per-atom energies and the standardised descriptor they were read from, from one
            descriptor evaluation (the electrostatic charge head reads G instead of recomputing
            it); None for models without a per-atom descriptor.
    """

    init: Callable
    apply: Callable
    check: Callable
    name: str
    species: tuple
    config: dict
    atom_energies: Optional[Callable] = None
    groups: Mapping[str, str] = MappingProxyType({})
    features: Optional[Callable] = None
    diabatic: Optional[Callable] = None
    adiabatic: Optional[Callable] = None
    n_states: int = 1
    member: Optional["EnergyModel"] = None
    charges: Optional[Callable] = None
    atom_terms: Optional[Callable] = None

    @property
    def is_multistate(self) -> bool:
        return self.diabatic is not None

    def param_labels(self, params: dict) -> dict:
        """A pytree of group labels matching ``params`` (for ``optax.multi_transform``)."""
        return {k: jax.tree_util.tree_map(lambda _, g=self.groups.get(k, CLASSICAL): g, v)
                for k, v in params.items()}


def energy_and_forces_fn(apply: Callable) -> Callable:
    """``(params, R, system) -> (E, F)`` with ``F = -∂E/∂R`` (pure, not jitted)."""
    vg = jax.value_and_grad(apply, argnums=1)

    def fn(params, R, system):
        # float32 positions with float64 on are cast here, at the boundary: one precision inside
        E, g = vg(params, jnp.asarray(R, dtype=jnp.result_type(float)), system)
        return E, -g

    return fn


def strained(R, system: System, strain):
    """Positions and system under the homogeneous deformation ``x -> (1 + strain) x``
    (``strain`` [3, 3]): every position and, when periodic, every lattice vector (box column)."""
    deform = jnp.eye(3, dtype=strain.dtype) + strain
    box = None if system.box is None else deform @ system.box
    return R @ deform.T, System(species=system.species, mask=system.mask, box=box)


def energy_forces_stress_fn(apply: Callable) -> Callable:
    """``(params, R, system) -> (E, F, stress)`` for a periodic ``system``: ``F = -∂E/∂R``
    [eV/Å] and ``stress = (1/V) ∂E/∂ε`` [eV/Å³], shape ``[3, 3]``, at zero strain ε (positions and cell
    deformed together, :func:`strained`), symmetrised; ASE's sign (negative under
    compression, pressure = -trace/3). Pure, not jitted."""

    def strain_energy(params, R, system, strain):
        return apply(params, *strained(R, system, strain))

    vg = jax.value_and_grad(strain_energy, argnums=(1, 3))

    def fn(params, R, system):
        E, (g_R, g_strain) = vg(params, R, system, jnp.zeros((3, 3), R.dtype))
        volume = jnp.abs(jnp.linalg.det(system.box))
        return E, -g_R, 0.5 * (g_strain + g_strain.T) / volume

    return fn


@functools.lru_cache(maxsize=64)
def _jitted(apply: Callable, batched: bool, system_batched: bool):
    fn = energy_and_forces_fn(apply)
    if batched:
        fn = jax.vmap(fn, in_axes=(None, 0, 0 if system_batched else None))
    return jax.jit(fn)


def energy_and_forces(model: EnergyModel, params, R, system: System):
    """Energy [eV] and forces [eV/Å] of one configuration, validated on the host first."""
    model.check(R, system)
    E, F = _jitted(model.apply, False, False)(params, jnp.asarray(R), system)
    return E, F


@functools.lru_cache(maxsize=64)
def _jitted_stress(apply: Callable):
    return jax.jit(energy_forces_stress_fn(apply))


def energy_forces_stress(model: EnergyModel, params, R, system: System):
    """Energy [eV], forces [eV/Å] and stress [3, 3] eV/Å³ of one periodic configuration
    (:func:`energy_forces_stress_fn`), validated on the host first."""
    if system.box is None:
        raise ValueError("stress needs a periodic box")
    model.check(R, system)
    return _jitted_stress(model.apply)(params, jnp.asarray(R), system)


def batch_energy_and_forces(model: EnergyModel, params, R, system: System, *, chunk: int = 256):
    """Energies [n] and forces [n, n_atoms, 3] for many configurations.

    ``system`` is either one System shared by all frames or a batched System (leading axis
    n). Frames are evaluated in chunks of ``chunk`` (the last one padded by repetition), so
    any number of frames reuses one compiled function.
    """
    R = np.asarray(R)
    if R.ndim != 3:
        raise ValueError(f"R must be [n_frames, n_atoms, 3], got {R.shape}")
    system_batched = system.species.ndim == 2
    for i in range(len(R)):
        sys_i = jax.tree_util.tree_map(lambda a: a[i], system) if system_batched else system
        model.check(R[i], sys_i)
    fn = _jitted(model.apply, True, system_batched)
    n = len(R)
    size = min(chunk, n)
    Es, Fs = [], []
    for start in range(0, n, size):
        idx = np.arange(start, start + size)
        idx = np.minimum(idx, n - 1)  # pad the last chunk by repeating the final frame
        sys_c = jax.tree_util.tree_map(lambda a: a[idx], system) if system_batched else system
        E, F = fn(params, jnp.asarray(R[idx]), sys_c)
        keep = min(size, n - start)
        Es.append(np.asarray(E)[:keep])
        Fs.append(np.asarray(F)[:keep])
    return np.concatenate(Es), np.concatenate(Fs)


def count_params(params) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))


def species_shift(shift, species_table, system: System):
    """Σ over real atoms of the per-species energy shift [eV]."""
    idx = species_table[system.species]
    return jnp.sum(jnp.where(system.mask, shift[jnp.maximum(idx, 0)], 0.0))


def template_arrays(template):
    """(species, species table, n_atoms, heads, tails) of a molecule template: what every
    template-based model needs to read its difference vectors and per-species shifts."""
    species = tuple(sorted(set(template.species)))
    heads = np.array([h for h, _ in template.vectors])
    tails = np.array([t for _, t in template.vectors])
    return species, make_species_table(species), len(template.symbols), heads, tails
