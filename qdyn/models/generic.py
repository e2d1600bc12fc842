"""The generic (non-invariant) quantum model: a control for the siVQLM.

Same contract, same difference vectors from the central atom (so it is translation
invariant), but the coordinates are angle-encoded component by component and the trainable
layers are hardware-efficient (Rot + CNOT ring): it is neither rotation nor permutation
invariant. See :mod:`qdyn.quantum.hardware_efficient`.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import jax
import jax.numpy as jnp

from ..quantum.hardware_efficient import hardware_efficient_circuit
from ..quantum.templates import MoleculeTemplate, resolve_template, template_check
from ..system import System
from .base import EnergyModel, species_shift, template_arrays


def build(
    template: Union[str, MoleculeTemplate],
    *,
    rep: Optional[int] = None,
    layers: int = 6,
    blocks: int = 1,
    backend: Literal["statevector", "pennylane"] = "statevector",
    scan_unroll: int = 1,
    init_weight_std: float = 0.01,
) -> EnergyModel:
    """Build the generic QNN control for a molecule template (see :func:`sivqlm.build`)."""
    template, rep = resolve_template(template, rep)
    circuit = hardware_efficient_circuit(len(template.vectors), rep=rep, layers=layers, blocks=blocks,
                                         scan_unroll=scan_unroll)
    if backend == "statevector":
        expval = circuit.expval
    elif backend == "pennylane":
        expval = circuit.qnode()
    else:
        raise ValueError(f"backend must be 'statevector' or 'pennylane', got {backend!r}")
    species, table, n_atoms, heads, tails = template_arrays(template)
    shapes = circuit.param_shapes

    def init(key):
        k1, k2 = jax.random.split(key)
        dtype = jnp.result_type(float)
        return {
            "a": 1.0 + 0.1 * jax.random.normal(k1, shapes["a"], dtype),
            "W": init_weight_std * jax.random.normal(k2, shapes["W"], dtype),
            "scale": jnp.ones((), dtype),
            "shift": jnp.zeros((len(species),), dtype),
        }

    def apply(params, R, system: System, neighbor=None):
        del neighbor  # every pair is seen (dense): a neighbour list changes nothing here
        R = jnp.asarray(R)[:n_atoms]
        vecs = R[heads] - R[tails]
        e = params["scale"] * expval({"a": params["a"], "W": params["W"]}, vecs)
        return e + species_shift(params["shift"], table, system)

    config = {
        "family": "generic",
        "template": template.name,
        "rep": rep,
        "layers": layers,
        "blocks": blocks,
        "backend": backend,
        "n_qubits": circuit.n_qubits,
    }
    return EnergyModel(init=init, apply=apply, check=template_check(template),
                       name=f"GenericQNN[{template.name}]", species=species, config=config)
