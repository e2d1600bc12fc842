"""``qdyn md``: molecular dynamics of a trained model from the command line.

Registered by :mod:`qdyn.cli.app` through :func:`register`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .execution_opts import BACKEND_OPT, DEVICE_OPT, DIFF_OPT, SEED_OPT, SHOTS_OPT, execution_flags
from .parallel_opts import DEVICES_OPT, devices_value


def md(
    config: Optional[Path] = typer.Option(None, "--config", help="An MD config (YAML, keys as in qdyn.md.config."
                                                                 "MDConfig); the flags below override it."),
    model: Optional[Path] = typer.Option(None, "--model", help="A finished training run directory (qdyn train --out)."),
    structure: Optional[Path] = typer.Option(None, "--structure",
                                             help="Start structure: a file (any format qdyn reads), shipped:NAME or "
                                                  "a preset (water, lih, water_dimer); default: the model's reference "
                                                  "molecule."),
    frame: Optional[int] = typer.Option(None, "--frame", help="Frame of --structure to start from [0]."),
    length_unit: Optional[str] = typer.Option(None, "--length-unit", help="Length unit of --structure if the file "
                                                                           "does not record it (Angstrom, Bohr)."),
    ensemble: Optional[str] = typer.Option(None, "--ensemble", help="nve, nvt (Langevin) [default], nvt-nose-hoover "
                                                                    "or npt (periodic structures)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Temperature [K] [300]."),
    dt: Optional[float] = typer.Option(None, "--dt", help="Time step [fs] [0.5]."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Number of steps, a multiple of --stride [2000]."),
    replicas: Optional[int] = typer.Option(None, "--replicas", help="Independent replicas run at once (vmapped) [1]."),
    stride: Optional[int] = typer.Option(None, "--stride", help="Steps between trajectory frames [10]."),
    friction: Optional[float] = typer.Option(None, "--friction", help="Langevin friction [1/fs] [0.01]."),
    tau: Optional[float] = typer.Option(None, "--tau", help="Nosé–Hoover time constant [fs] (nvt-nose-hoover, npt) "
                                                            "[100]."),
    pressure: Optional[float] = typer.Option(None, "--pressure", help="NPT target pressure [bar]."),
    barostat_tau: Optional[float] = typer.Option(None, "--barostat-tau", help="NPT barostat time constant [fs] [1000]."),
    store_replicas: Optional[int] = typer.Option(None, "--store-replicas", help="Replicas written to the trajectory [1]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of initial velocities and thermostat noise [0]."),
    restart: Optional[bool] = typer.Option(None, "--restart/--no-restart", help="Continue from OUT/checkpoint.npz."),
    spectrum: Optional[bool] = typer.Option(None, "--spectrum/--no-spectrum",
                                            help="Also relax, compute harmonic frequencies and the NVE spectrum."),
    neighbor_list: Optional[str] = typer.Option(None, "--neighbor-list",
                                                help="auto [default]: periodic systems use a neighbour list when the "
                                                     "model reads one; on; off."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory [runs/md]."),
    bias: Optional[Path] = typer.Option(None, "--bias", help="Enhanced sampling: a bias YAML (qdyn template --kind bias; "
                                                             "CVs in Å/radians, energies in eV)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the MD run already in --out."),
    max_force_std: Optional[float] = typer.Option(None, "--max-force-std",
                                                  help="Uncertainty watchdog: stop a replica (keeping its last trusted "
                                                       "frame) when an atom's force σ exceeds this [eV/Å]; needs a model "
                                                       "trained with an ensemble or Laplace uncertainty."),
    max_energy_std: Optional[float] = typer.Option(None, "--max-energy-std",
                                                   help="Uncertainty watchdog: stop a replica when the energy σ per "
                                                        "atom exceeds this [eV/atom]."),
    no_plausibility_check: bool = typer.Option(False, "--no-plausibility-check",
                                               help="Accept temperatures and structures outside any chemistry."),
    backend: Optional[str] = BACKEND_OPT, device: Optional[str] = DEVICE_OPT, diff_method: Optional[str] = DIFF_OPT,
    shots: Optional[int] = SHOTS_OPT, shots_seed: Optional[int] = SEED_OPT,
    devices: Optional[str] = DEVICES_OPT,
):
    """Run MD of a trained model: trajectory (extxyz + H5MD), checkpoints, energies plot, md.json."""
    devices = devices_value(devices, (config,))  # first: on CPU the device count is set before JAX starts
    from ..md.config import load_md_config
    from ..train import ConfigError

    overrides = {"model": model, "structure": structure, "frame": frame, "length_unit": length_unit, "ensemble": ensemble,
                 "temperature_K": temperature, "dt_fs": dt, "n_steps": steps, "replicas": replicas, "stride": stride,
                 "friction_per_fs": friction, "tau_fs": tau, "pressure_bar": pressure,
                 "barostat_tau_fs": barostat_tau, "store_replicas": store_replicas, "seed": seed, "restart": restart,
                 "spectrum": spectrum, "neighbor_list": neighbor_list, "out": out, "bias": bias,
                 "check_plausibility": False if no_plausibility_check else None, "devices": devices,
                 "max_force_std": max_force_std, "max_energy_std_per_atom": max_energy_std}
    try:
        cfg = load_md_config(config, overrides)  # validated before anything loads or compiles
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    run_md_config(cfg, overwrite=overwrite, execution=execution_flags(backend, device, diff_method, shots, shots_seed))


def _echo_progress(info):
    sigma = ""
    if "max_force_std" in info:
        s = info["max_force_std"]
        sigma = f"  max σ_F = {'–' if s is None else f'{s:.3f}'} eV/Å  stopped {info['stopped']}"
    typer.echo(f"step {info['step']:>9d}  t = {info['time_ps']:8.3f} ps  T = {info['temperature_K']:7.1f} K  "
               f"ΔE_tot = {info['drift_eV']:+.2e} eV  {info['ns_per_day']:.2f} ns/day{sigma}", err=True)


def _start(m, cfg):
    """(R, system) to start from: cfg.structure's frame, else the model's reference molecule."""
    from ..structures import load_structure, reference_structure

    if cfg.structure is None:
        return reference_structure(m)

    R, system = load_structure(cfg.structure, frame=cfg.frame, length_unit=cfg.length_unit)
    m.check(R, system)
    return R, system


def run_md_config(cfg, *, overwrite: bool = False, execution: Optional[dict] = None) -> None:
    """Claim the output directory, load the model (``execution``: PennyLane settings replacing
    the model's), pick the start structure and neighbour list, run, report."""
    import jax

    from ..md import BlowUpError, analysis, model_energy_fn, run_md
    from ..parallel import make_mesh, process_out_dir
    from ..quickstart import quickstart_md
    from ..md.adapters import model_neighbor_fn
    from ..checkpoint import params_record
    from ..rundir import RunDirError, claim
    from ..quantum.execution import require_for_model
    from ..train import load_run
    from ..validation import QdynInputError

    try:
        m, params, _ = load_run(cfg.model, execution=execution)
        require_for_model(m.config, "forces")
    except Exception as exc:  # a clear one-line message instead of a traceback
        raise typer.BadParameter(f"--model {cfg.model}: {exc}") from None
    out = process_out_dir(cfg.out)  # multi-host: process k > 0 writes out.process<k>
    try:
        mesh = make_mesh(None if cfg.devices == 1 else cfg.devices)
    except QdynInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        claim(out, "MD", overwrite=overwrite, continue_flag="--restart", continuing=cfg.restart)
    except RunDirError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    provenance = {"model": {"run": str(Path(cfg.model).resolve()),
                            "params_file_sha256": params_record(Path(cfg.model) / "params.msgpack")["sha256"]}}
    try:
        R, system = _start(m, cfg)
        if cfg.spectrum:
            summary = quickstart_md(m, params, out, small=cfg.n_steps < 4000, seed=cfg.seed, R=R, system=system)
            typer.echo(json.dumps(summary, indent=2))
            return
        watchdog = _watchdog(m, params, cfg)
        neighbor_fn = None
        if cfg.neighbor_list != "off" and cfg.ensemble != "npt":
            neighbor_fn = model_neighbor_fn(m, params, R, system, skin=cfg.neighbor_skin_A,
                                            required=cfg.neighbor_list == "on")
        biased = {}
        if cfg.bias is not None:
            from ..sampling.report import run_kwargs

            biased = run_kwargs(cfg)
        res = run_md(model_energy_fn(m.apply), params, R, system, cfg.md_settings(),
                     output=cfg.output(out, progress=_echo_progress, provenance=provenance),
                     key=jax.random.PRNGKey(cfg.seed), neighbor_fn=neighbor_fn, mesh=mesh, watchdog=watchdog, **biased)
    except QdynInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    except BlowUpError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    analysis.plot_energies(res, out / "energies.png")
    report = {"out": str(out), "mean_temperature_K": float(res.temperature.mean()),
              "n_reallocations": res.n_reallocations, "neighbor_list": neighbor_fn is not None,
              "timings": res.timings}
    if res.volume is not None:
        report["mean_volume_A3"] = float(res.volume.mean())
    if biased:
        from ..sampling.report import write_report

        report["sampling"] = write_report(res, cfg, biased, out)
    if res.watchdog is not None:
        report["watchdog"] = {k: res.watchdog[k] for k in ("max_force_std_eV_per_A", "max_energy_std_per_atom_eV",
                                                            "stopped", "events")}
        for ev in res.watchdog["events"]:
            typer.echo(f"watchdog: replica {ev['replica']} stopped at {ev['time_fs']:.1f} fs ({ev['reason']}); last "
                       f"trusted frame ({ev['last_trusted_time_fs']:.1f} fs) in {out / ev.get('frame_file', '')}",
                       err=True)
    typer.echo(json.dumps(report, indent=2))


def _watchdog(model, params, cfg):
    """The uncertainty watchdog asked for by --max-force-std / --max-energy-std, or None."""
    if cfg.max_force_std is None and cfg.max_energy_std_per_atom is None:
        return None
    from ..md import make_watchdog
    from ..uncertainty import load_estimator

    return make_watchdog(model, load_estimator(cfg.model, params), max_force_std=cfg.max_force_std,
                         max_energy_std_per_atom=cfg.max_energy_std_per_atom)


def register(app: typer.Typer) -> None:
    """Add ``md`` to the qdyn app."""
    app.command("md")(md)
