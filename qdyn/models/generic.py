"""The generic (non-invariant) quantum model: a control for the siVQLM.

Same contract, same difference vectors from the central atom (so it is translation
invariant), but the coordinates are angle-encoded component by component and the trainable
layers are hardware-efficient (Rot + CNOT ring): it is neither rotation nor permutation
invariant. See :mod:`qdyn.quantum.hardware_efficient`.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Sequence

import jax
import jax.numpy as jnp
from pydantic import Field

from ..quantum.hardware_efficient import hardware_efficient_circuit
from ..quantum.templates import resolve_template, template_check
from ..system import System
from .base import CLASSICAL, QUANTUM, EnergyModel, species_shift, template_arrays
from .config import ModelConfig, QuantumSettings, TemplateSettings, keyword_builder


class GenericConfig(ModelConfig, TemplateSettings, QuantumSettings):
    """Settings of the generic (non-invariant) control circuit."""

    derived: ClassVar[frozenset] = frozenset({"n_qubits"})

    family: Literal["generic"] = "generic"
    layers: int = Field(6, ge=1, description="data re-uploading layers")
    blocks: int = Field(1, ge=1, description="hardware-efficient blocks per layer")
    scan_unroll: Optional[int] = Field(None, ge=1, description="layers per scan iteration (compile time vs "
                                       "speed); default: all layers up to 6 qubits, else 1")
    init_weight_std: float = Field(0.01, ge=0, description="spread of the initial Rot angles")

    def build(self, species: Sequence[int] = ()) -> EnergyModel:
        del species  # the template fixes the atoms
        return _build(self)


def _build(cfg: GenericConfig) -> EnergyModel:
    """Build the generic QNN control for a molecule template (see :class:`GenericConfig`)."""
    layers, blocks, init_weight_std = cfg.layers, cfg.blocks, cfg.init_weight_std
    template, rep = resolve_template(cfg.template, cfg.rep)
    circuit = hardware_efficient_circuit(len(template.vectors), rep=rep, layers=layers, blocks=blocks,
                                         scan_unroll=cfg.scan_unroll)
    expval = cfg.circuit_fn(circuit)
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

    config = {**cfg.model_copy(update={"rep": rep}).settings(), "n_qubits": circuit.n_qubits}
    groups = {"a": QUANTUM, "W": QUANTUM, "scale": CLASSICAL, "shift": CLASSICAL}
    return EnergyModel(init=init, apply=apply, check=template_check(template),
                       name=f"GenericQNN[{template.name}]", species=species, config=config, groups=groups)


build = keyword_builder(GenericConfig, positional=("template",))
