"""The ``qdyn`` command. Entry point: float64 is switched on here, never on import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .execution_opts import BACKEND_OPT, DEVICE_OPT, DIFF_OPT, SEED_OPT, SHOTS_OPT, execution_flags

app = typer.Typer(
    name="qdyn",
    help="Quantum-classical machine-learned force fields and molecular dynamics in JAX.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _entry(
    float32: bool = typer.Option(False, "--float32", help="Use float32 instead of float64."),
    no_cache: bool = typer.Option(False, "--no-cache", envvar="QDYN_NO_CACHE",
                                  help="Do not use the persistent compilation cache (env QDYN_NO_CACHE=1)."),
):
    from ..precision import enable_compilation_cache, enable_x64

    enable_x64(not float32)
    if not no_cache:
        enable_compilation_cache()


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
    from ..quickstart import run

    run(out=out, small=small, seed=seed)


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see `qdyn template`)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model family: sivqlm, generic, bpnn or hybrid."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset file or shipped:NAME."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Run directory."),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's latest checkpoint."),
    from_prev: bool = typer.Option(False, "--from-prev", help="With --resume: use the previous good checkpoint."),
):
    """Train a model on energies and forces; writes checkpoints, params, metrics and plots."""
    from ..train import ConfigError, load_config, parse_config
    from ..train import train as run_train
    from ..checkpoint import CheckpointError

    try:
        raw = {}
        if config is not None:
            raw = load_config(config).model_dump(mode="json", exclude_unset=True)
        if resume and config is None and (out / "config.yaml").exists():
            import yaml

            raw = yaml.safe_load((out / "config.yaml").read_text())
        if model is not None:
            raw["model"] = {"family": model, **({} if raw.get("model", {}).get("family") != model else raw["model"])}
        if data is not None:
            raw.setdefault("data", {})["path"] = data
        if epochs is not None:
            raw["epochs"] = epochs
        cfg = parse_config(raw, source=str(config) if config else "<flags>")
        result = run_train(cfg, out, resume=resume, from_prev=from_prev)
    except (ConfigError, CheckpointError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    if result.interrupted:
        typer.echo(f"interrupted: checkpoint saved in {out / 'checkpoints'}; continue with --resume", err=True)
        raise typer.Exit(130)
    typer.echo(json.dumps({k: result.metrics.get(k) for k in ("model", "n_params", "test", "sizes")}, indent=2))


@app.command("eval")
def evaluate(
    model: Path = typer.Option(..., "--model", help="A finished run directory."),
    data: str = typer.Option(..., "--data", help="Any file the data layer reads, or shipped:NAME."),
    energy_unit: Optional[str] = typer.Option(None, "--energy-unit"),
    length_unit: Optional[str] = typer.Option(None, "--length-unit"),
    backend: Optional[str] = BACKEND_OPT, device: Optional[str] = DEVICE_OPT, diff_method: Optional[str] = DIFF_OPT,
    shots: Optional[int] = SHOTS_OPT, shots_seed: Optional[int] = SEED_OPT,
):
    """Print JSON metrics of a trained model on a dataset (total energies, eV and eV/Å)."""
    from ..quantum.execution import require_for_model
    from ..train import evaluate as run_eval
    from ..train import load_run
    from ..train.config import DataConfig
    from ..train.trainer import load_data
    from ..validation import QdynInputError

    try:
        m, params, _ = load_run(model, execution=execution_flags(backend, device, diff_method, shots, shots_seed))
        require_for_model(m.config, "forces")
    except QdynInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    ds = load_data(DataConfig(path=data, energy_unit=energy_unit, length_unit=length_unit))
    metrics = run_eval(m, params, ds)
    if "execution" in m.config:
        metrics["execution"] = m.config["execution"]
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def template(out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of stdout.")):
    """Write a commented default training config."""
    from ..train import template_yaml

    text = template_yaml()
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text)


def _register_optional():
    # Sub-command groups that live in their own modules register themselves here.
    import importlib
    import importlib.util

    for name in ("data_cmds", "md_cmds", "namd_cmds", "circuit_cmds"):
        if importlib.util.find_spec(f"qdyn.cli.{name}") is not None:
            importlib.import_module(f"qdyn.cli.{name}").register(app)


_register_optional()


def main():
    app()


if __name__ == "__main__":
    main()
