"""A molecular template model around a user's PennyLane circuit (family ``custom``).

The siVQLM's slot with the circuit replaced by the user's quantum function
(:mod:`qdyn.quantum.user`): the circuit reads the template's difference vectors from the
central atom (so the model is translation invariant by construction) and the energy is
``E = scale · ⟨O⟩ + Σ_i shift_{Z_i}`` with ⟨O⟩ the mean of the observable's terms. Rotation,
reflection and like-atom permutation invariance are up to the circuit:
:func:`qdyn.testing.check_circuit` says which it has. With ``parity_average`` the model averages
the circuit over x → -x (reflection invariance for a rotation-invariant circuit).

The default execution is PennyLane's ``default.qubit`` with backprop (second order exact, so
force training works); ``execution: {backend: statevector}`` runs the same operations on
qdyn's pure-JAX statevector (unitary gates only), proven equal by the tests.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from qdyn.models import custom
    >>> from qdyn.structures import water
    >>> model = custom.build(template="H2O", circuit={
    ...     "qfunc": "qdyn.quantum.examples:water_exchange", "wires": 2,
    ...     "weight_shapes": {"alpha": [2], "J": [2]}, "init": {"alpha": {"mean": 1.0}}})
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> R, system = water()
    >>> E = model.apply(params, R, system)
"""

from __future__ import annotations

from typing import ClassVar, Literal, Sequence

import jax
import jax.numpy as jnp
from pydantic import Field, field_validator

from ..quantum.execution import Execution
from ..quantum.templates import resolve_template, template_check
from ..quantum.user import UserCircuit, init_weights, user_circuit
from ..system import System
from .base import CLASSICAL, QUANTUM, EnergyModel, species_shift, template_arrays
from .config import ModelConfig, QuantumSettings, TemplateSettings, keyword_builder

# what `family: custom` alone trains (and `qdyn template --full --family custom` shows): the
# shipped invariant H2O example, 2 layers
EXAMPLE_CIRCUIT = UserCircuit(qfunc="qdyn.quantum.examples:water_exchange", wires=2,
                              weight_shapes={"alpha": [2], "J": [2]}, init={"alpha": {"mean": 1.0, "std": 0.1}})


class CustomConfig(ModelConfig, TemplateSettings, QuantumSettings):
    """Settings of a template model whose circuit is the user's quantum function."""

    derived: ClassVar[frozenset] = frozenset({"n_qubits"})

    family: Literal["custom"] = "custom"
    circuit: UserCircuit = Field(default_factory=lambda: EXAMPLE_CIRCUIT.model_copy(deep=True), description=(
        "the user's qfunc (import path), wires, weight shapes, observable; default: the shipped example "
        "qdyn.quantum.examples:water_exchange (H2O)"))
    parity_average: bool = Field(False, description="average the circuit over x -> -x (reflection invariance)")
    # user circuits are arbitrary: PennyLane's default.qubit with backprop is the path that
    # runs any of them with exact second order (docs/own_circuit.md)
    execution: Execution = Field(default_factory=lambda: Execution(backend="pennylane"), description=(
        "backend (pennylane: default.qubit backprop by default | statevector: qdyn's pure-JAX path), device, "
        "diff_method, shots, seed, noise"))

    @field_validator("rep")
    @classmethod
    def _no_rep(cls, value):
        if value is not None:
            raise ValueError("the user's circuit decides how it encodes the vectors (circuit.wires); drop rep")
        return value

    @field_validator("circuit")
    @classmethod
    def _inputs_are_the_vectors(cls, value: UserCircuit):
        if value.input_shape is not None:
            raise ValueError("input_shape is for the hybrid's branch; a template circuit receives the template's "
                             "vectors [n_vectors, 3]")
        return value

    def build(self, species: Sequence[int] = ()) -> EnergyModel:
        del species  # the template fixes the atoms
        return _build(self)


def _build(cfg: CustomConfig) -> EnergyModel:
    """Build the model (see :class:`CustomConfig`)."""
    template, _ = resolve_template(cfg.template, cfg.rep)
    circuit = user_circuit(cfg.circuit, (len(template.vectors), 3), reduce="mean")
    run_circuit = cfg.circuit_fn(circuit)
    species, table, n_atoms, heads, tails = template_arrays(template)

    def init(key):
        dtype = jnp.result_type(float)
        return {"qweights": init_weights(key, cfg.circuit, dtype), "scale": jnp.ones((), dtype),
                "shift": jnp.zeros((len(species),), dtype)}

    def circuit_energy(qweights, vecs):
        if cfg.parity_average:
            return jnp.mean(jax.vmap(run_circuit, in_axes=(None, 0))(qweights, jnp.stack([vecs, -vecs])))
        return run_circuit(qweights, vecs)

    def apply(params, R, system: System, neighbor=None):
        del neighbor  # the circuit reads the molecule's own vectors (dense)
        R = jnp.asarray(R)[:n_atoms]
        e = params["scale"] * circuit_energy(params["qweights"], R[heads] - R[tails])
        return e + species_shift(params["shift"], table, system)

    config = {**cfg.settings(), "n_qubits": circuit.n_qubits}
    return EnergyModel(init=init, apply=apply, check=template_check(template),
                       name=f"Custom[{template.name}, {cfg.circuit.qfunc}]", species=species, config=config,
                       groups={"qweights": QUANTUM, "scale": CLASSICAL, "shift": CLASSICAL})


build = keyword_builder(CustomConfig)


def circuit_of(model: EnergyModel):
    """The user :class:`~qdyn.quantum.circuit.Circuit` of a built ``custom`` model (drawing)."""
    cfg = CustomConfig.model_validate({k: v for k, v in model.config.items() if k not in CustomConfig.derived})
    template, _ = resolve_template(cfg.template, cfg.rep)
    return user_circuit(cfg.circuit, (len(template.vectors), 3), reduce="mean"), template

