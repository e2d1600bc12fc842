"""``qdyn template``, ``qdyn schema`` and ``qdyn validate``: config files without guesswork.

Registered by :mod:`qdyn.cli.app` through :func:`register`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

_KIND_HELP = "Which config: train (qdyn train --config), md (qdyn md --config), bias (qdyn md --bias) or learn (qdyn learn --config)."


def _kind(kind: str) -> str:
    from ..config_tools import KINDS

    if kind not in KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _write(text: str, out: Optional[Path]) -> None:
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    from ..data.io import atomic_write_text

    atomic_write_text(out, text)


def template(
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of stdout."),
    full: bool = typer.Option(False, "--full", help="Every key, each with its description as a comment."),
    family: Optional[str] = typer.Option(None, "--family", help="With --full: the model family of the model "
                                                                "section (sivqlm, generic, bpnn, hybrid, multistate)."),
    kind: str = typer.Option("train", "--kind", help=_KIND_HELP),
):
    """Write a commented default config (training by default)."""
    from ..config_tools import full_template
    from ..train import template_yaml

    kind = _kind(kind)
    if not full and (family is not None or kind != "train"):
        full = True  # only the full template knows families and the MD config
    try:
        text = full_template(kind, family) if full else template_yaml()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _write(text, out)


def schema(
    kind: str = typer.Option("train", "--kind", help=_KIND_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of stdout."),
):
    """Print the JSON schema of a config (for editors and other tools)."""
    from ..config_tools import json_schema

    _write(json.dumps(json_schema(_kind(kind)), indent=2) + "\n", out)


def validate(
    config: Path = typer.Argument(..., help="A YAML config file."),
    kind: str = typer.Option("train", "--kind", help=_KIND_HELP),
):
    """Check a config without running it: "ok" (exit 0), or one line per problem (exit 2)."""
    from ..config_tools import validate_file

    problems = validate_file(config, _kind(kind))
    if not problems:
        typer.echo("ok")
        return
    for line in problems:
        typer.echo(line, err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``template``, ``schema`` and ``validate`` to the qdyn app."""
    app.command("template")(template)
    app.command("schema")(schema)
    app.command("validate")(validate)
