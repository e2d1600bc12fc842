"""The generic (non-invariant) quantum model: a control for the siVQLM.

Same contract, same difference vectors from the central atom (so it is translation
invariant), but the coordinates are angle-encoded component by component and the trainable
layers are hardware-efficient (Rot + CNOT ring): it is neither rotation nor permutation
invariant. See :mod:`qdyn.quantum.generic`.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from pydantic import Field

from ..quantum.generic import GenericLayout, generic_qnode, make_expval
from ..quantum.layout import MoleculeTemplate
from ..system import System
from . import sivqlm
from .base import CLASSICAL, QUANTUM, EnergyModel, species_shift, template_arrays
from .config import ModelConfig, keyword_builder


class GenericConfig(ModelConfig):
    """Settings of the generic (non-invariant) control circuit."""

    # run directories written before the template became a setting also stored its atoms
    derived: ClassVar[frozenset] = frozenset({"n_qubits", "symbols", "vectors", "symmetries"})

    family: Literal["generic"] = "generic"
    template: Union[str, MoleculeTemplate] = Field("H2O", description="as for the siVQLM")
    rep: Optional[int] = Field(None, ge=1, description="parallel encodings per vector; default per template")
    layers: int = Field(6, ge=1, description="data re-uploading layers")
    blocks: int = Field(1, ge=1, description="hardware-efficient blocks per layer")
    backend: Literal["statevector", "pennylane"] = "statevector"
    scan_unroll: int = Field(1, ge=1, description="layers per scan iteration")
    init_weight_std: float = Field(0.01, ge=0, description="spread of the initial Rot angles")

    def build(self, species: Sequence[int] = ()) -> EnergyModel:
        del species  # the template fixes the atoms
        return _build(self)


def _build(cfg: GenericConfig) -> EnergyModel:
    """Build the generic QNN control for a molecule template (see :class:`GenericConfig`)."""
    template, rep, layers, blocks = cfg.template, cfg.rep, cfg.layers, cfg.blocks
    backend, scan_unroll, init_weight_std = cfg.backend, cfg.scan_unroll, cfg.init_weight_std
    if isinstance(template, str):
        if template not in sivqlm.TEMPLATES:
            raise ValueError(f"unknown template {template!r}; known: {sorted(sivqlm.TEMPLATES)}")
        rep = sivqlm.DEFAULT_REP[template] if rep is None else rep
        template = sivqlm.TEMPLATES[template]
    rep = 2 if rep is None else rep
    layout = GenericLayout(n_vectors=len(template.vectors), rep=rep, layers=layers, blocks=blocks)
    if backend == "statevector":
        expval = make_expval(layout, scan_unroll=scan_unroll)
    elif backend == "pennylane":
        expval = generic_qnode(layout)
    else:
        raise ValueError(f"backend must be 'statevector' or 'pennylane', got {backend!r}")
    species, table, n_atoms, heads, tails = template_arrays(template)
    shapes = layout.param_shapes()
    # The generic model accepts exactly what the siVQLM for the same template accepts.
    check = sivqlm.build(template, rep=rep, layers=1).check

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

    config = {**cfg.model_copy(update={"rep": rep}).settings(), "n_qubits": layout.n_qubits}
    groups = {"a": QUANTUM, "W": QUANTUM, "scale": CLASSICAL, "shift": CLASSICAL}
    return EnergyModel(init=init, apply=apply, check=check, name=f"GenericQNN[{template.name}]",
                       species=species, config=config, groups=groups)


build = keyword_builder(GenericConfig, positional=("template",))
