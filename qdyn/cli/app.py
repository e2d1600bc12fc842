"""The ``qdyn`` command. Entry point: float64 is switched on here, never on import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .errors import QdynGroup, setup_cli
from .execution_opts import BACKEND_OPT, DEVICE_OPT, DIFF_OPT, SEED_OPT, SHOTS_OPT, execution_flags
from .parallel_opts import DEVICES_OPT, devices_value

app = typer.Typer(
    name="qdyn",
    cls=QdynGroup,  # user errors: one line `error: ...`, exit 2 (qdyn/cli/errors.py)
    help="Quantum-classical machine-learned force fields and molecular dynamics in JAX.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help text: rich markup would swallow the units written as [fs], [K], [bar].
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"qdyn {__version__}")
        raise typer.Exit()


@app.callback()
def _entry(
    float32: bool = typer.Option(False, "--float32", help="Compute in float32 instead of float64 (faster, less "
                                                          "accurate: docs/parallel.md#float32 has the measured cost)."),
    no_cache: bool = typer.Option(False, "--no-cache", envvar="QDYN_NO_CACHE",
                                  help="Do not use the persistent compilation cache on GPU/TPU (env QDYN_NO_CACHE=1; "
                                       "on CPU it is always off). Cache: $QDYN_CACHE_DIR/jax or ~/.cache/qdyn/jax."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the qdyn version and exit."),
    debug: bool = typer.Option(False, "--debug", envvar="QDYN_DEBUG",
                               help="Show tracebacks of input errors instead of one line (env QDYN_DEBUG=1)."),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", envvar="QDYN_COORDINATOR",
                                              help="Multi-host run: host:port of process 0 (jax.distributed; env "
                                                   "QDYN_COORDINATOR). Every process runs the same command."),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", envvar="QDYN_NUM_PROCESSES",
                                                help="Multi-host run: number of processes (env QDYN_NUM_PROCESSES)."),
    process_id: Optional[int] = typer.Option(None, "--process-id", envvar="QDYN_PROCESS_ID",
                                             help="Multi-host run: this process's index, 0 .. --num-processes - 1 "
                                                  "(env QDYN_PROCESS_ID)."),
):
    from ..parallel import initialize_distributed
    from ..precision import accelerator_plugin_installed, enable_compilation_cache, enable_x64

    setup_cli(debug=debug)
    initialize_distributed(coordinator, num_processes, process_id)  # before anything touches a device
    enable_x64(not float32)
    # The cache is for accelerators, and deciding needs a started backend; on a machine with
    # no accelerator plugin nothing is started here, so a subcommand's --devices can still
    # give the CPU backend one device per core (qdyn.parallel.use_cpu_cores).
    if not no_cache and accelerator_plugin_installed():
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
    seed: int = typer.Option(0, "--seed", help="Random seed of data split, initialisation and MD."),
):
    """The main job: build the H2O siVQLM, evaluate it, verify its physics, plot, report."""
    from ..quickstart import run

    run(out=out, small=small, seed=seed)


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (see `qdyn template`)."),
    family: Optional[str] = typer.Option(None, "--family", help="Model family: sivqlm, generic, bpnn, hybrid or "
                                                                  "multistate (overrides model.family of --config)."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset file or shipped:NAME."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Run directory."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training set (overrides --config)."),
    energy_key: Optional[str] = typer.Option(None, "--energy-key", help="extxyz: the comment key holding the energy "
                                                                         "(e.g. REF_energy; data.energy_key)."),
    forces_key: Optional[str] = typer.Option(None, "--forces-key", help="extxyz: the per-atom property holding the "
                                                                         "forces (e.g. REF_forces; data.forces_key)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's latest checkpoint (same config; "
                                                        "only epochs, checkpoint_every, early_stopping_patience may change)."),
    from_prev: bool = typer.Option(False, "--from-prev", help="With --resume: use the previous good checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the training run already in --out."),
    no_plausibility_check: bool = typer.Option(False, "--no-plausibility-check",
                                               help="Accept data outside any chemistry in its declared units."),
    devices: Optional[str] = DEVICES_OPT,
):
    """Train a model on energies and forces; writes checkpoints, params, metrics and plots,
    and a per-epoch log (history.csv) while it runs."""
    # first: on CPU the device count must be set before anything starts JAX
    devices = devices_value(devices, (config, out / "config.yaml" if resume else None))
    from ..train import ConfigError, load_config, parse_config
    from ..train import train as run_train
    from ..checkpoint import CheckpointError
    from ..parallel import process_out_dir
    from ..rundir import RunDirError, claim

    out = process_out_dir(out)  # multi-host: process k > 0 writes out.process<k>

    if from_prev and not resume:
        typer.echo("error: --from-prev only goes with --resume (it picks the checkpoint a resume starts from)", err=True)
        raise typer.Exit(2)
    try:
        claim(out, "training", overwrite=overwrite, continue_flag="--resume", continuing=resume)
        raw = {}
        if config is not None:
            raw = load_config(config).model_dump(mode="json", exclude_unset=True)
        if resume and config is None and (out / "config.yaml").exists():
            import yaml

            raw = yaml.safe_load((out / "config.yaml").read_text())
        if family is not None:
            raw["model"] = {"family": family, **({} if raw.get("model", {}).get("family") != family else raw["model"])}
        for key, value in (("path", data), ("energy_key", energy_key), ("forces_key", forces_key)):
            if value is not None:
                raw.setdefault("data", {})[key] = value
        if epochs is not None:
            raw["epochs"] = epochs
        if devices is not None:
            raw["devices"] = devices
        if no_plausibility_check:
            raw.setdefault("data", {})["check_plausibility"] = False
        cfg = parse_config(raw, source=str(config) if config else "<flags>")
        result = run_train(cfg, out, resume=resume, from_prev=from_prev)
    except (ConfigError, CheckpointError, RunDirError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    if result.interrupted:
        typer.echo(f"interrupted: checkpoint saved in {out / 'checkpoints'}; continue with --resume", err=True)
        raise typer.Exit(130)
    summary = {k: result.metrics.get(k) for k in ("model", "n_params", "test", "sizes")}
    if "uncertainty" in result.metrics:
        summary["uncertainty"] = result.metrics["uncertainty"]
    typer.echo(json.dumps(summary, indent=2))


@app.command("eval")
def evaluate(
    model: Path = typer.Option(..., "--model", help="A finished run directory."),
    data: str = typer.Option(..., "--data", help="Any file the data layer reads, or shipped:NAME."),
    energy_unit: Optional[str] = typer.Option(None, "--energy-unit", help="Energy unit of files that do not record "
                                                                           "it (eV, Hartree, kcal/mol, ...)."),
    length_unit: Optional[str] = typer.Option(None, "--length-unit", help="Length unit of files that do not record "
                                                                           "it (Angstrom, Bohr)."),
    energy_key: str = typer.Option("energy", "--energy-key", help="extxyz: the comment key holding the energy."),
    forces_key: str = typer.Option("forces", "--forces-key", help="extxyz: the per-atom property holding the forces."),
    no_plausibility_check: bool = typer.Option(False, "--no-plausibility-check",
                                               help="Accept data outside any chemistry in its declared units."),
    backend: Optional[str] = BACKEND_OPT, device: Optional[str] = DEVICE_OPT, diff_method: Optional[str] = DIFF_OPT,
    shots: Optional[int] = SHOTS_OPT, shots_seed: Optional[int] = SEED_OPT,
    per_frame: bool = typer.Option(False, "--per-frame", help="Add every frame's energy, error and (with an "
                                                              "uncertainty estimate) energy σ and per-atom force σ."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of predicted σ against actual error (runs "
                                                             "trained with an uncertainty estimate)."),
):
    """Print JSON metrics of a trained model on a dataset (total energies, eV and eV/Å); with
    an uncertainty estimate (ensemble or Laplace) also its calibration on these frames."""
    from ..quantum.execution import require_for_model
    from ..train import evaluate as run_eval
    from ..train import load_run
    from ..train.config import DataConfig
    from ..train.data import load_data
    from ..uncertainty.cli import uncertainty_report

    # a damaged or unfinished run, or an execution that cannot give forces: one line from the
    # CLI's error handler (qdyn/cli/errors.py), a traceback with --debug
    m, params, _ = load_run(model, execution=execution_flags(backend, device, diff_method, shots, shots_seed))
    require_for_model(m.config, "forces")
    ds = load_data(DataConfig(path=data, energy_unit=energy_unit, length_unit=length_unit, energy_key=energy_key,
                              forces_key=forces_key, check_plausibility=not no_plausibility_check))
    result = run_eval(m, params, ds)
    if "execution" in m.config:
        result["execution"] = m.config["execution"]
    try:
        result.update(uncertainty_report(model, m, params, ds, per_frame=per_frame, plot=plot))
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(result, indent=2))


def _register_optional():
    # Every module named qdyn/cli/*_cmds.py registers its own sub-commands: adding a command
    # group means adding one module, not editing this file.
    import importlib
    import pkgutil

    import qdyn.cli as cli_package

    for module in sorted(m.name for m in pkgutil.iter_modules(cli_package.__path__)):
        if module.endswith("_cmds"):
            importlib.import_module(f"qdyn.cli.{module}").register(app)


_register_optional()


def main():
    app()


if __name__ == "__main__":
    main()
