"""``qdyn md``: molecular dynamics of a trained model from the command line.

Registered by :mod:`qdyn.cli.app` through :func:`register`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

_ENSEMBLES = ("nve", "nvt", "nvt-langevin", "nvt-nose-hoover", "npt")


def md(
    model: Path = typer.Option(..., "--model", help="A finished training run directory (qdyn train --out)."),
    structure: Optional[Path] = typer.Option(None, "--structure",
                                             help="Start structure: any file qdyn's data layer reads "
                                                  "(default: the model's reference molecule)."),
    frame: int = typer.Option(0, "--frame", help="Frame of --structure to start from."),
    ensemble: str = typer.Option("nvt", "--ensemble", help="nve, nvt (Langevin), nvt-nose-hoover or npt "
                                                                  "(periodic structures)."),
    temperature: float = typer.Option(300.0, "--temperature", help="Temperature [K]."),
    dt: float = typer.Option(0.5, "--dt", help="Time step [fs]."),
    steps: int = typer.Option(2000, "--steps", help="Number of steps (a multiple of --stride)."),
    replicas: int = typer.Option(1, "--replicas", help="Independent replicas run at once (vmapped)."),
    stride: int = typer.Option(10, "--stride", help="Steps between trajectory frames."),
    friction: float = typer.Option(0.01, "--friction", help="Langevin friction [1/fs]."),
    tau: float = typer.Option(100.0, "--tau", help="Nosé–Hoover thermostat time constant [fs] (nvt-nose-hoover, npt)."),
    pressure: Optional[float] = typer.Option(None, "--pressure", help="NPT target pressure [bar]."),
    barostat_tau: float = typer.Option(1000.0, "--barostat-tau", help="NPT barostat time constant [fs]."),
    store_replicas: int = typer.Option(1, "--store-replicas", help="Replicas written to the trajectory."),
    seed: int = typer.Option(0, "--seed"),
    restart: bool = typer.Option(False, "--restart", help="Continue from OUT/checkpoint.npz."),
    spectrum: bool = typer.Option(False, "--spectrum",
                                  help="Also relax, compute harmonic frequencies and the NVE spectrum."),
    out: Path = typer.Option(Path("runs/md"), "--out", help="Output directory."),
):
    """Run MD of a trained model: trajectory (extxyz + H5MD), checkpoints, energies plot, md.json."""
    import jax

    from ..md import BlowUpError, analysis, model_energy_fn, quickstart_md, run_md
    from ..train import load_run
    from ..validation import QdynInputError

    if ensemble not in _ENSEMBLES:
        raise typer.BadParameter(f"--ensemble must be one of {', '.join(_ENSEMBLES)}, got {ensemble!r}")
    if (ensemble == "npt") != (pressure is not None):
        raise typer.BadParameter("--pressure [bar] is needed with --ensemble npt and only there")
    try:
        m, params, _ = load_run(model)
    except Exception as exc:  # a clear one-line message instead of a traceback
        raise typer.BadParameter(f"--model {model}: {exc}") from None
    try:
        if structure is not None:
            from ..md import load_structure

            R, system = load_structure(structure, frame=frame)
            m.check(R, system)
        else:
            from ..md.quickstart import reference_structure

            R, system = reference_structure(m)
        if spectrum:
            summary = quickstart_md(m, params, out, small=steps < 4000, seed=seed, R=R, system=system)
            typer.echo(json.dumps(summary, indent=2))
            return

        def progress(info):
            typer.echo(f"step {info['step']:>9d}  t = {info['time_ps']:8.3f} ps  T = {info['temperature_K']:7.1f} K  "
                       f"drift = {info['drift_eV']:+.2e} eV  {info['ns_per_day']:.2f} ns/day", err=True)

        res = run_md(model_energy_fn(m.apply), params, R, system, ensemble=ensemble, dt_fs=dt, n_steps=steps,
                     temperature_K=temperature, replicas=replicas, stride=stride, friction_per_fs=friction,
                     tau_fs=tau, pressure_bar=pressure, barostat_tau_fs=barostat_tau,
                     store_replicas=store_replicas, key=jax.random.PRNGKey(seed), out_dir=out, restart=restart,
                     progress=progress)
    except QdynInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    except BlowUpError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    analysis.plot_energies(res, out / "energies.png")
    report = {"out": str(out), "mean_temperature_K": float(res.temperature.mean()),
              "n_reallocations": res.n_reallocations, "timings": res.timings}
    if res.volume is not None:
        report["mean_volume_A3"] = float(res.volume.mean())
    typer.echo(json.dumps(report, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``md`` to the qdyn app."""
    app.command("md")(md)
