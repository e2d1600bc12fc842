"""``qdyn export`` (a run as one ``.qdyn`` file) and ``qdyn serve-ipi`` (a qdyn model as an
i-PI force client, so i-PI, and LAMMPS through it, drive qdyn). docs/deployment.md.

Registered by :mod:`qdyn.cli.app` through :func:`register`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def export(
    model: Path = typer.Option(..., "--model", help="A finished run directory (qdyn train --out)."),
    out: Path = typer.Option(..., "--out", help="The model file to write (conventionally NAME.qdyn)."),
):
    """Write a trained model as one self-contained file: the exported energy, forces (and stress)
    programs plus parameters; it loads with qdyn.deploy.load without the run directory."""
    from ..checkpoint import CheckpointError
    from ..deploy import load, save
    from ..train import load_run
    from ..validation import QdynInputError

    try:
        m, params, _ = load_run(model)
        out.parent.mkdir(parents=True, exist_ok=True)
        save(out, m, params, source=str(model))
        exported = load(out)
    except (CheckpointError, QdynInputError) as e:
        _fail(f"--model {model}: {e}")
    manifest = exported.manifest
    typer.echo(json.dumps({"out": str(out), "bytes": out.stat().st_size, "name": manifest["name"],
                           "species": manifest["species"], "n_atoms": manifest["n_atoms"] or "any",
                           "periodic": manifest["periodic"]}, indent=2))


def _calculator(model: Path):
    from ..md.ase_calculator import QdynCalculator

    return QdynCalculator.from_run(model) if model.is_dir() else QdynCalculator.from_file(model)


def _connect(make_client, wait: float, where: str):
    """The client, retrying every 0.2 s for ``wait`` seconds while the server is not up yet
    (i-PI and its clients are usually started together)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            return make_client()
        except OSError as e:
            if time.monotonic() > deadline:
                _fail(f"cannot connect to the i-PI server at {where} (waited {wait:g} s): {e}")
            time.sleep(0.2)


def serve_ipi(
    model: Path = typer.Option(..., "--model", help="A finished run directory or an exported .qdyn file."),
    structure: Path = typer.Option(..., "--structure",
                                   help="The atoms i-PI simulates, in i-PI's order (any file ASE reads; only "
                                        "elements and order are used: i-PI sends positions and cell)."),
    unix: Optional[str] = typer.Option(None, "--unix",
                                       help="UNIX socket NAME (i-PI <address>NAME</address>, the file /tmp/ipi_NAME)."),
    host: str = typer.Option("localhost", "--host", help="Server host for an inet socket."),
    port: Optional[int] = typer.Option(None, "--port", help="Server port for an inet socket (default 31415)."),
    timeout: Optional[float] = typer.Option(None, "--timeout",
                                            help="Socket timeout once connected, in seconds (default: none)."),
    wait: float = typer.Option(60.0, "--wait",
                               help="Keep trying to connect this many seconds while the server starts."),
):
    """Serve energies, forces and virial to an i-PI server (or ASE's SocketIOCalculator)
    through ASE's socket client, until the server sends EXIT."""
    import ase.io

    from ase.calculators.socketio import SocketClient

    from ..checkpoint import CheckpointError
    from ..validation import QdynInputError

    try:
        calc = _calculator(model)
    except (CheckpointError, QdynInputError) as e:
        _fail(f"--model {model}: {e}")
    try:
        atoms = ase.io.read(str(structure))
    except Exception as e:  # ASE raises many types for unreadable files
        _fail(f"--structure {structure}: ASE could not read it ({type(e).__name__}: {e})")
    atoms.calc = calc
    where = f"/tmp/ipi_{unix}" if unix else f"{host}:{port or 31415}"
    client = _connect(lambda: SocketClient(host=host, port=port, unixsocket=unix, timeout=timeout), wait, where)
    typer.echo(f"connected to {where}; serving {len(atoms)} atoms", err=True)
    try:
        client.run(atoms, use_stress=bool(atoms.pbc.any()))
    except QdynInputError as e:
        _fail(str(e))


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``serve-ipi`` to the qdyn app."""
    app.command("export")(export)
    app.command("serve-ipi")(serve_ipi)
