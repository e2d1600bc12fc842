"""The hybrid quantum-classical model: classical feature extraction → [per-atom circuit ∥
MLP] → integration layer → atomic energies → total.

Per atom i: invariant descriptors G_i (:class:`qdyn.descriptors.SymmetryFunctions`,
standardised) feed (a) a data re-uploading circuit with a fixed number of qubits — angles
``π · tanh(A_d G_i + b_d)`` (bounded encoding), outputs ``⟨Z_q⟩`` — and (b) a Flax MLP; an
integration layer (one per element) maps the concatenation to the atomic energy.
``E = Σ_i scale · e_i + shift_{Z_i}``. Invariant to rotations, reflections, translations
and permutations of like atoms (the descriptors are), extensive (a sum of local terms) and
smooth (C² cutoff). Qubits do not grow with system size: one small circuit per atom.

Parameter groups for staged training: the encoding (A, b) and circuit weights are
"quantum"; MLP, integration layer, scale and shift are "classical". The integration
weights on the circuit outputs start at zero, so pretraining the classical part first and
switching the circuit on afterwards starts from the classical solution.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from ..descriptors.symmetry_functions import make_local_check, species_and_descriptor
from ..quantum.reupload import make_expvals
from ..nn import MLP
from ..system import System
from .base import EnergyModel, make_species_table



def build(
    *,
    species: Sequence[int],
    n_qubits: int = 4,
    layers: int = 3,
    hidden: Sequence[int] = (16, 16),
    cutoff: float = 5.0,
    n_radial: int = 8,
    zetas: Sequence[float] = (1.0, 4.0),
    eta_angular: float = 0.1,
    init_circuit_std: float = 0.01,
) -> EnergyModel:
    """Build a hybrid model for the given elements (atomic numbers)."""
    species, sf = species_and_descriptor(species, cutoff=cutoff, n_radial=n_radial, zetas=zetas,
                                         eta_angular=eta_angular)
    table = make_species_table(species)
    hidden = tuple(int(h) for h in hidden)
    expvals = make_expvals(n_qubits)
    n_feat = sf.size
    n_int = n_qubits + (hidden[-1] if hidden else n_feat)

    def init(key):
        dtype = jnp.result_type(float)
        k_enc, k_w, k_mlp, k_int = jax.random.split(key, 4)
        mlp = MLP(hidden=hidden, param_dtype=dtype)
        return {
            "enc_A": jax.random.normal(k_enc, (layers, n_qubits, n_feat), dtype) / jnp.sqrt(n_feat),
            "enc_b": jnp.zeros((layers, n_qubits), dtype),
            "qW": init_circuit_std * jax.random.normal(k_w, (layers, n_qubits, 3), dtype),
            "mlp": mlp.init(k_mlp, jnp.zeros((1, n_feat), dtype))["params"],
            # integration layer per element; weights on circuit outputs start at 0 (see module doc)
            "int_q": jnp.zeros((len(species), n_qubits), dtype),
            "int_c": jax.random.normal(k_int, (len(species), n_int - n_qubits), dtype) / jnp.sqrt(n_int),
            "int_b": jnp.zeros((len(species),), dtype),
            "g_mean": jnp.zeros((n_feat,), dtype),
            "g_std": jnp.ones((n_feat,), dtype),
            "scale": jnp.ones((), dtype),
            "shift": jnp.zeros((len(species),), dtype),
        }

    def atom_energies(params, R, system: System):
        R = jnp.asarray(R)
        G = (sf(R, system.species, system.mask, system.box) - params["g_mean"]) / params["g_std"]
        angles = jnp.pi * jnp.tanh(jnp.einsum("dqf,af->adq", params["enc_A"], G) + params["enc_b"])
        zq = jax.vmap(expvals, in_axes=(None, 0))(params["qW"], angles)  # [A, n_qubits]
        hc = MLP(hidden=hidden, param_dtype=R.dtype).apply({"params": params["mlp"]}, G)
        idx = jnp.maximum(table[system.species], 0)
        e = jnp.sum(params["int_q"][idx] * zq, -1) + jnp.sum(params["int_c"][idx] * hc, -1) + params["int_b"][idx]
        e = params["scale"] * e + params["shift"][idx]
        return jnp.where(system.mask, e, 0.0)

    def apply(params, R, system: System):
        return jnp.sum(atom_energies(params, R, system))

    check = make_local_check(species, cutoff)

    config = {"family": "hybrid", "species": list(species), "n_qubits": n_qubits, "layers": layers,
              "hidden": list(hidden), "cutoff": cutoff, "n_radial": n_radial, "zetas": list(zetas),
              "eta_angular": eta_angular, "descriptor_size": n_feat}
    return EnergyModel(init=init, apply=apply, check=check, name=f"Hybrid[{n_qubits}q]", species=species,
                       config=config, atom_energies=atom_energies)
