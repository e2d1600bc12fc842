"""``qdyn circuit draw|specs|qasm``: a trained model's circuit in native gates.

The circuit is bound to one configuration: the model's reference molecule, or ``--structure
FILE [--frame i]`` (see :mod:`qdyn.quantum.export`). Registered by :mod:`qdyn.cli.app`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

circuit_app = typer.Typer(help="Draw a trained model's circuit, count its native gates, export OpenQASM 2.0.",
                          no_args_is_help=True)

_MODEL = typer.Option(..., "--model", help="A finished training run directory.")
_STRUCTURE = typer.Option(None, "--structure", help="Geometry to bind (any file the data layer reads); "
                                                    "default: the model's reference molecule.")
_FRAME = typer.Option(0, "--frame", help="Frame of --structure.")


def _bound(model: Path, structure: Optional[Path], frame: int):
    """The model's circuit at the chosen geometry; user errors become one line and exit 2."""
    from ..checkpoint import CheckpointError
    from ..quantum.export import model_circuit
    from ..structures import load_structure, reference_structure
    from ..train import load_run
    from ..validation import QdynInputError

    try:
        m, params, _ = load_run(model)
        R, system = reference_structure(m) if structure is None else load_structure(structure, frame=frame)
        m.check(R, system)
        return model_circuit(m, params, R)
    except (QdynInputError, CheckpointError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@circuit_app.command()
def draw(model: Path = _MODEL, structure: Optional[Path] = _STRUCTURE, frame: int = _FRAME,
         out: Optional[Path] = typer.Option(None, "--out", help="Write a PNG here (else text to stdout).")):
    """Draw the circuit (text, or a PNG with --out)."""
    from ..quantum.export import draw_png, draw_text

    bound = _bound(model, structure, frame)
    if out is None:
        typer.echo(draw_text(bound))
        return
    from ..data.io import atomic_write

    atomic_write(out, lambda tmp: draw_png(bound, tmp), suffix=".png")
    typer.echo(str(out))


@circuit_app.command()
def specs(model: Path = _MODEL, structure: Optional[Path] = _STRUCTURE, frame: int = _FRAME):
    """Resources as JSON: qubits, depth, gate counts by native type, trainable parameters."""
    from ..quantum.export import resources

    typer.echo(json.dumps(resources(_bound(model, structure, frame)), indent=2))


@circuit_app.command()
def qasm(model: Path = _MODEL, structure: Optional[Path] = _STRUCTURE, frame: int = _FRAME,
         out: Optional[Path] = typer.Option(None, "--out", help="Write the .qasm file here (else stdout).")):
    """Export OpenQASM 2.0 of the circuit at this geometry (trained angles bound)."""
    from ..quantum.export import openqasm

    text = openqasm(_bound(model, structure, frame))
    if out is None:
        typer.echo(text, nl=False)
        return
    from ..data.io import atomic_write_text

    atomic_write_text(out, text)
    typer.echo(str(out))


def register(app: typer.Typer) -> None:
    """Add ``circuit`` to the qdyn app."""
    app.add_typer(circuit_app, name="circuit")
