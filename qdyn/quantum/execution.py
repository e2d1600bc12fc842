"""How a model's circuit is executed: one settings block shared by every quantum family.

``Execution`` is the ``execution:`` section of a quantum model's config (siVQLM, generic,
hybrid, multistate); it round-trips through ``model.json``. It chooses

* ``backend``: ``statevector`` (pure JAX, the fast default) or ``pennylane`` (the family's
  native-gate PennyLane program as a QNode; ``pennylane-expm`` is the siVQLM's demo-style
  reference);
* ``device`` (``default.qubit``, ``default.mixed``, ``lightning.qubit``, any PennyLane
  device), ``diff_method``, ``shots`` (None = exact expectation values) and the ``seed`` of
  the device's PRNG key (shots are reproducible: the same seed gives the same samples);
* ``noise``: depolarising and amplitude-damping channels on every qubit after each layer,
  and a symmetric readout error before measurement (needs a mixed-state device).

What each command needs is checked by :func:`require` before anything compiles; a device or
differentiation method that cannot give it is refused with one line.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..validation import QdynInputError
from ._pennylane import qml

# devices that differentiate by backprop through JAX (the only path with correct second
# order under jit; stack notes: adjoint second order is silently wrong)
BACKPROP_DEVICES = ("default.qubit", "default.mixed")
MIXED_DEVICES = ("default.mixed",)

Task = Literal["train", "forces", "energy"]


class NoiseModel(BaseModel):
    """Noise channels applied on every qubit (probabilities per qubit).

    ``readout`` is a symmetric bit-flip of each measured qubit with probability p. Every qdyn
    observable is a sum of Pauli products, each measured qubit-by-qubit in its own eigenbasis,
    so a readout flip scales a k-qubit term by (1-2p)^k. The depolarising channel with
    probability 3p/2 scales every non-identity Pauli by exactly 1 - 4(3p/2)/3 = 1-2p, so the
    readout error is applied as ``DepolarizingChannel(1.5 p)`` just before measurement (exact
    for these observables; PennyLane 0.45's ``readout_prob`` fails under JAX on Pauli sums).
    """

    model_config = ConfigDict(extra="forbid")

    depolarizing: float = Field(0.0, ge=0, le=0.75, description="depolarising probability after each layer")
    amplitude_damping: float = Field(0.0, ge=0, le=1, description="amplitude damping γ after each layer")
    readout: float = Field(0.0, ge=0, le=0.5, description="readout bit-flip probability per measured qubit")

    @property
    def is_noiseless(self) -> bool:
        return self.depolarizing == 0 and self.amplitude_damping == 0 and self.readout == 0

    def after_layer(self, wires) -> None:
        """Channels after one circuit layer (inside a PennyLane quantum function)."""
        for w in wires:
            if self.depolarizing:
                qml.DepolarizingChannel(self.depolarizing, wires=w)
            if self.amplitude_damping:
                qml.AmplitudeDamping(self.amplitude_damping, wires=w)

    def before_measurement(self, wires) -> None:
        """The readout error, as its exact depolarising equivalent (class docstring)."""
        if self.readout:
            for w in wires:
                qml.DepolarizingChannel(1.5 * self.readout, wires=w)


NOISELESS = NoiseModel()


class Execution(BaseModel):
    """Backend, device, differentiation, shots and noise of a quantum model."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["statevector", "pennylane", "pennylane-expm"] = Field(
        "statevector", description="statevector (pure JAX, fast) | pennylane (native-gate QNode on `device`) | "
                                   "pennylane-expm (siVQLM only: demo-style QubitUnitary(expm) reference)")
    device: str = Field("default.qubit", description="PennyLane device (pennylane backend): default.qubit, "
                                                     "default.mixed (noise), lightning.qubit, ...")
    diff_method: Literal["backprop", "adjoint", "parameter-shift", "finite-diff"] = Field(
        "backprop", description="PennyLane differentiation; training needs backprop (second order)")
    shots: Optional[int] = Field(None, ge=1, description="measurement shots; None = exact expectation values")
    seed: int = Field(0, description="seed of the device's PRNG key for shots (same seed, same samples)")
    noise: NoiseModel = Field(default_factory=NoiseModel, description="noise channels (device default.mixed)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.backend == "statevector":
            pl_only = {"device": self.device != "default.qubit", "diff_method": self.diff_method != "backprop",
                       "shots": self.shots is not None, "noise": not self.noise.is_noiseless}
            asked = [k for k, v in pl_only.items() if v]
            if asked:
                raise ValueError(f"{', '.join(asked)} need backend 'pennylane' (the statevector backend is exact, "
                                 "noiseless and differentiated by JAX)")
        if not self.noise.is_noiseless and self.device not in MIXED_DEVICES:
            raise ValueError(f"noise needs a mixed-state device ({', '.join(MIXED_DEVICES)}), got {self.device!r}")
        return self

    @property
    def uses_pennylane(self) -> bool:
        return self.backend != "statevector"

    def describe(self) -> str:
        if not self.uses_pennylane:
            return "statevector"
        shots = "exact" if self.shots is None else f"{self.shots} shots"
        return f"{self.backend} on {self.device} ({self.diff_method}, {shots})"


def require(execution: Execution, task: Task) -> None:
    """Refuse, with one line, an execution that cannot give what ``task`` needs.

    ``train``: gradients of a force loss with respect to parameters (second order), exact;
    ``forces``: energies and their gradient with respect to positions, under jit and vmap
    (eval, MD); ``energy``: values only.

    Raises:
        QdynInputError: the reason and what to use instead.
    """
    if not execution.uses_pennylane:
        return
    where = f"execution {execution.describe()}"
    if task == "train":
        if execution.shots is not None:
            raise QdynInputError(f"{where}: training differentiates a force loss twice, which finite shots cannot "
                                 "give (no backprop through sampling); train with shots: null")
        if execution.diff_method != "backprop":
            raise QdynInputError(f"{where}: training needs second-order gradients, which only diff_method 'backprop' "
                                 "gives correctly (adjoint second order is silently wrong in PennyLane)")
    if execution.diff_method == "backprop":
        if execution.device not in BACKPROP_DEVICES:
            raise QdynInputError(f"{where}: device {execution.device!r} has no backprop; use one of "
                                 f"{', '.join(BACKPROP_DEVICES)}, or diff_method 'adjoint' for eval/md")
        if execution.shots is not None and task != "energy":
            raise QdynInputError(f"{where}: backprop cannot differentiate sampled results; for forces with shots use "
                                 "diff_method 'parameter-shift'")
    if execution.diff_method == "adjoint" and execution.shots is not None:
        raise QdynInputError(f"{where}: adjoint differentiation needs exact expectation values (shots: null)")


def make_device(execution: Execution, n_qubits: int):
    """The PennyLane device of an execution, with a seeded PRNG key when it samples."""
    seed = None
    if execution.shots is not None:
        import jax

        seed = jax.random.PRNGKey(execution.seed) if execution.device.startswith("default.") else execution.seed
    try:
        if seed is None:
            return qml.device(execution.device, wires=n_qubits, shots=execution.shots)
        return qml.device(execution.device, wires=n_qubits, shots=execution.shots, seed=seed)
    except Exception as exc:  # unknown device name, missing plugin: one line naming it
        raise QdynInputError(f"PennyLane device {execution.device!r}: {exc}") from None


def require_for_model(model_config: dict, task: Task) -> None:
    """:func:`require` for a built model's ``config`` (models without a circuit pass)."""
    if "execution" in model_config:
        require(Execution.model_validate(model_config["execution"]), task)


def with_execution(model_config: dict, overrides: dict) -> dict:
    """A model config with some execution settings replaced (``None`` values are ignored),
    validated; e.g. ``{"backend": "pennylane", "shots": 1000}`` from ``qdyn eval`` flags.

    Raises:
        QdynInputError: a model without a circuit, or an inconsistent execution.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return model_config
    if "execution" not in model_config:
        raise QdynInputError(f"model family {model_config.get('family')!r} has no circuit: "
                             f"execution settings ({', '.join(overrides)}) do not apply")
    merged = {**model_config["execution"], **overrides}
    if overrides.get("backend") == "statevector":  # back to the exact default: drop PennyLane-only settings
        merged = {"backend": "statevector"}
    try:
        return {**model_config, "execution": Execution.model_validate(merged).model_dump(mode="json")}
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else None
        raise QdynInputError(f"execution: {first['msg'] if first else exc}") from None
