"""A trained model's circuit for one configuration: drawing, native-gate resources, OpenQASM.

The configuration is one geometry (the model's reference molecule unless the caller gives
another): its difference vectors and the trained circuit parameters are bound into the
family's native-gate PennyLane program (:mod:`qdyn.quantum.circuit`), so what is drawn,
counted and exported is exactly the circuit the model evaluates there. Template families
(siVQLM, generic) have one circuit per molecule; with ``parity_average`` the model averages it
with the circuit of the inverted vectors, which has the same gates.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ..plotting import save_figure
from ..validation import QdynInputError
from ._pennylane import qml
from .execution import Execution


class BoundCircuit(NamedTuple):
    """A circuit with its arguments for one configuration."""

    name: str
    qnode: object
    cparams: dict
    inputs: object
    n_trainable: int


def model_circuit(model, params, R) -> BoundCircuit:
    """The circuit a template model (siVQLM, generic, custom) runs at positions ``R`` [Å].

    Raises:
        QdynInputError: a family whose circuits are per atom (hybrid, multistate) or absent.
    """
    from ..models.generic import GenericConfig
    from ..models.sivqlm import SiVQLMConfig, layout_of
    from .hardware_efficient import hardware_efficient_circuit
    from .invariant import invariant_circuit
    from .templates import resolve_template

    family = model.config.get("family")
    settings = {k: v for k, v in model.config.items() if k != "n_qubits"}
    if family == "sivqlm":
        cfg = SiVQLMConfig.model_validate({k: v for k, v in settings.items() if k not in SiVQLMConfig.derived})
        circuit = invariant_circuit(layout_of(model))
    elif family == "custom":  # a user's qfunc (qdyn.quantum.user)
        from ..models.custom import CustomConfig, circuit_of

        cfg = CustomConfig.model_validate({k: v for k, v in settings.items() if k not in CustomConfig.derived})
        circuit, _ = circuit_of(model)
        params = params["qweights"]
    elif family == "generic":
        cfg = GenericConfig.model_validate(settings)
        template, rep = resolve_template(cfg.template, cfg.rep)
        circuit = hardware_efficient_circuit(len(template.vectors), rep=rep, layers=cfg.layers, blocks=cfg.blocks)
    else:
        raise QdynInputError(f"qdyn circuit works on molecule-template models (sivqlm, generic, custom); {family!r} "
                             "runs one circuit per atom, which has no single circuit to show")
    template, _ = resolve_template(cfg.template, cfg.rep)
    R = np.asarray(R)
    vecs = jnp.asarray([R[h] - R[t] for h, t in template.vectors])
    cparams = {k: jnp.asarray(params[k]) for k in circuit.param_shapes}
    execution = cfg.execution
    shown = Execution(backend="pennylane", device=execution.device if execution.uses_pennylane else "default.qubit",
                      noise=execution.noise)  # the same gates and channels, exact (no sampling)
    n_trainable = int(sum(np.size(v) for v in cparams.values()))
    return BoundCircuit(circuit.name, circuit.qnode(shown), cparams, vecs, n_trainable)


def resources(bound: BoundCircuit) -> dict:
    """Qubits, depth, gate counts by native gate type and trainable parameters (JSON)."""
    specs = qml.specs(bound.qnode)(bound.cparams, bound.inputs)
    res = specs.resources
    return {"circuit": bound.name, "n_qubits": int(specs.num_device_wires), "depth": int(res.depth),
            "n_gates": int(res.num_gates), "gate_types": {k: int(v) for k, v in sorted(res.gate_counts.items())},
            "trainable_parameters": bound.n_trainable}


def draw_text(bound: BoundCircuit, *, decimals: int = 2) -> str:
    return qml.draw(bound.qnode, decimals=decimals, max_length=120)(bound.cparams, bound.inputs)


def draw_png(bound: BoundCircuit, path) -> None:
    """The drawing as a PNG (matplotlib's Agg canvas, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, _ = qml.draw_mpl(bound.qnode, decimals=2)(bound.cparams, bound.inputs)
    FigureCanvasAgg(fig)
    save_figure(fig, path)


def openqasm(bound: BoundCircuit) -> str:
    """OpenQASM 2.0 of the state preparation, measuring every qubit in the computational basis.

    The observable's terms (e.g. XX, YY, ZZ of the Heisenberg exchange) need basis changes
    per commuting group, so they are not baked in (``rotations=False``); the header says what
    to measure. PennyLane writes global phases of decomposed matrices as ``gphase``, which
    OpenQASM 2.0 does not have and no measurement can see: those lines are dropped.
    """
    text = qml.to_openqasm(bound.qnode, rotations=False, measure_all=True)(bound.cparams, bound.inputs)
    lines = [ln for ln in text.splitlines() if not ln.startswith("gphase")]
    header = f"// qdyn {bound.name}: measure the model's observable on this state (see `qdyn circuit specs`)"
    return "\n".join([lines[0], header, *lines[1:]]) + "\n"
