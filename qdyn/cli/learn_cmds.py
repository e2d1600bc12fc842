"""``qdyn learn``: the active-learning loop from a config file (library: :mod:`qdyn.learn`).

Registered automatically (a ``*_cmds.py`` module with :func:`register`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def learn(
    config: Path = typer.Option(..., "--config", help="An active-learning config (YAML; `qdyn template --full --kind "
                                                      "learn` lists every key with its unit)."),
    out: Path = typer.Option(Path("runs/learn"), "--out", help="Run directory: one folder per round, learn.json, "
                                                             "report.json/.md/.png."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (after Ctrl-C or a kill): "
                                                        "finished steps are kept, labels come from the cache."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the active-learning run already in --out."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or MD progress lines."),
):
    """Active learning: explore (MD with the uncertainty watchdog) → select → label → retrain, until the MD survives."""
    from ..learn import load_learn_config, run_learning
    from ..rundir import claim

    cfg = load_learn_config(config)  # validated before anything loads or compiles
    claim(out, "active-learning", overwrite=overwrite, continue_flag="--resume", continuing=resume)

    def echo_round(rec):
        ex = rec["explore"]
        typer.echo(f"round {rec['round']}: test force MAE {rec['test']['force_mae_meV_per_A']:.1f} meV/Å, "
                   f"MD {ex['stopped']}/{ex['replicas']} replicas stopped (min time reached "
                   f"{ex['md_time_reached_fs']['min']:.0f} of {ex['target_fs']:.0f} fs), "
                   f"{rec['labels_added']} labels added", err=True)

    try:
        report = run_learning(cfg, out, resume=resume, progress=not quiet, on_round=echo_round)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: finished steps are kept; continue with `qdyn learn --config {config} --out {out} "
                   "--resume`", err=True)
        raise typer.Exit(130)
    typer.echo(json.dumps({"out": str(out), "converged": report["converged"], "labels_total": report["labels_total"],
                           "rounds": report["rounds"]}, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``learn`` to the qdyn app."""
    app.command("learn")(learn)
