"""The ``qdyn`` command. Entry point: float64 is switched on here, never on import."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    name="qdyn",
    help="Quantum-classical machine-learned force fields and molecular dynamics in JAX.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _entry(float32: bool = typer.Option(False, "--float32", help="Use float32 instead of float64.")):
    from ..precision import enable_x64

    enable_x64(not float32)


@app.command()
def info():
    """Print versions, devices and precision as JSON."""
    import jax

    from .. import __version__

    import flax
    import optax
    import pennylane

    typer.echo(json.dumps({
        "qdyn": __version__, "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "pennylane": pennylane.__version__, "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.read("jax_enable_x64")),
    }, indent=2))


@app.command()
def quickstart(
    out: Path = typer.Option(Path("qdyn-quickstart"), "--out", help="Output directory."),
    small: bool = typer.Option(False, "--small", help="Tiny sizes (for tests and CI)."),
    seed: int = typer.Option(0, "--seed"),
):
    """The main job: build the H2O siVQLM, evaluate it, verify its physics, plot, report."""
    from .quickstart import run

    run(out=out, small=small, seed=seed)


def _register_optional():
    # Sub-command groups that live in their own modules register themselves here.
    import importlib
    import importlib.util

    for name in ("data_cmds",):
        if importlib.util.find_spec(f"qdyn.cli.{name}") is not None:
            importlib.import_module(f"qdyn.cli.{name}").register(app)


_register_optional()


def main():
    app()


if __name__ == "__main__":
    main()
