"""Classical baseline: Behler–Parrinello atomic networks (Flax) on symmetry functions.

``E = Σ_i [scale · NN_{Z_i}(G_i) + shift_{Z_i}]`` with one MLP per element, descriptors
from :class:`qdyn.descriptors.SymmetryFunctions` (normalised by fixed statistics that
training sets from data; all pairs or a JAX-MD neighbour list), per-atom energies available. Trained by the same code as the
quantum models, so every quantum number sits next to a classical one.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from qdyn.models import bpnn
    >>> from qdyn.structures import water
    >>> model = bpnn.build(species=(1, 8), hidden=(16, 16))
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> R, system = water()
    >>> E = model.apply(params, R, system)
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import jax.numpy as jnp
from pydantic import Field

from ..elements import make_species_table
from ..nn import species_mlp
from ..system import System
from ..validation import make_local_check
from .base import CLASSICAL, FIXED, EnergyModel
from .config import DescriptorSettings, ModelConfig, keyword_builder, resolve_species
from .electrostatics import ElectrostaticsField, with_electrostatics


class BPNNConfig(ModelConfig, DescriptorSettings, ElectrostaticsField):
    """Settings of the Behler–Parrinello network baseline."""

    family: Literal["bpnn"] = "bpnn"
    species: Optional[list[int]] = Field(None, description="atomic numbers modelled (default: the dataset's)")
    hidden: list[int] = Field(default_factory=lambda: [32, 32], description="hidden widths of each element's MLP")

    def build(self, species: Sequence[int] = ()) -> EnergyModel:
        short = _build(self.model_copy(update={"species": resolve_species(self.species, species, "bpnn")}))
        return with_electrostatics(short, self.electrostatics)


def _build(cfg: BPNNConfig) -> EnergyModel:
    """Build a BP network model (see :class:`BPNNConfig`)."""
    species, sf = cfg.make_descriptor(cfg.species)
    table = make_species_table(species)
    hidden = tuple(int(h) for h in cfg.hidden)

    nets = species_mlp(species, hidden, out=1)

    def init(key):
        dtype = jnp.result_type(float)
        return {
            "nets": nets.init(key, sf.size, dtype),
            # descriptor standardisation (set from data by training; kept as params so it
            # travels with checkpoints — training freezes it)
            "g_mean": jnp.zeros((sf.size,), dtype),
            "g_std": jnp.ones((sf.size,), dtype),
            "scale": jnp.ones((), dtype),
            "shift": jnp.zeros((len(species),), dtype),
        }

    def features(R, system: System, neighbor=None):
        return sf(R, system.species, system.mask, system.box, neighbor)

    def atom_terms(params, R, system: System, neighbor=None):
        R = jnp.asarray(R)
        G = features(R, system, neighbor)
        G = (G - params["g_mean"][None, :]) / params["g_std"][None, :]
        idx = table[system.species]
        e = params["scale"] * nets.apply(params["nets"], G, idx, R.dtype) + params["shift"][jnp.maximum(idx, 0)]
        return jnp.where(system.mask, e, 0.0), G

    def atom_energies(params, R, system: System, neighbor=None):
        return atom_terms(params, R, system, neighbor)[0]

    def apply(params, R, system: System, neighbor=None):
        return jnp.sum(atom_energies(params, R, system, neighbor))

    check = make_local_check(species, cfg.cutoff)
    config = {**cfg.settings(), "descriptor_size": sf.size}
    groups = {"nets": CLASSICAL, "scale": CLASSICAL, "shift": CLASSICAL, "g_mean": FIXED, "g_std": FIXED}
    return EnergyModel(init=init, apply=apply, check=check, name="BPNN", species=species, config=config,
                       atom_energies=atom_energies, groups=groups, features=features, atom_terms=atom_terms)


build = keyword_builder(BPNNConfig)
