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

from typing import Sequence

import jax.numpy as jnp

from ..descriptors import make_descriptor
from ..elements import make_species_table
from ..nn import species_mlp
from ..system import System
from ..validation import make_local_check
from .base import EnergyModel



def build(
    *,
    species: Sequence[int],
    hidden: Sequence[int] = (32, 32),
    cutoff: float = 5.0,
    n_radial: int = 8,
    zetas: Sequence[float] = (1.0, 4.0),
    eta_angular: float = 0.1,
) -> EnergyModel:
    """Build a BP network model for the given elements (atomic numbers)."""
    species, sf = make_descriptor(species, cutoff=cutoff, n_radial=n_radial, zetas=zetas, eta_angular=eta_angular)
    table = make_species_table(species)
    hidden = tuple(int(h) for h in hidden)

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

    def atom_energies(params, R, system: System, neighbor=None):
        R = jnp.asarray(R)
        G = sf(R, system.species, system.mask, system.box, neighbor)
        G = (G - params["g_mean"]) / params["g_std"]
        idx = table[system.species]
        e = params["scale"] * nets.apply(params["nets"], G, idx, R.dtype) + params["shift"][jnp.maximum(idx, 0)]
        return jnp.where(system.mask, e, 0.0)

    def apply(params, R, system: System, neighbor=None):
        return jnp.sum(atom_energies(params, R, system, neighbor))

    check = make_local_check(species, cutoff)

    config = {"family": "bpnn", "species": list(species), "hidden": list(hidden), "cutoff": cutoff,
              "n_radial": n_radial, "zetas": list(zetas), "eta_angular": eta_angular,
              "descriptor_size": sf.size}
    return EnergyModel(init=init, apply=apply, check=check, name="BPNN", species=species, config=config,
                       atom_energies=atom_energies)


def descriptor_fn(model: EnergyModel):
    """The descriptor of a descriptor-based model (BPNN, hybrid, multistate), rebuilt from its config."""
    c = model.config
    return make_descriptor(c["species"], kind=c.get("descriptor", "symmetry"), cutoff=c["cutoff"],
                           n_radial=c["n_radial"], zetas=c["zetas"], eta_angular=c["eta_angular"],
                           l_max=c.get("l_max", 2), radial_basis=c.get("radial_basis", "bessel"))[1]
