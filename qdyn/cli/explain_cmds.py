"""``qdyn explain``: which training frames drive one prediction (influence functions).

Registered by :mod:`qdyn.cli.app` through :func:`register`. The library is
:mod:`qdyn.influence`; docs/influence.md says what the numbers mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def explain(
    model: Path = typer.Option(..., "--model", help="A finished training run directory (qdyn train --out)."),
    data: str = typer.Option(..., "--data", help="File holding the query frame (any file qdyn reads, or shipped:NAME)."),
    frame: int = typer.Option(..., "--frame", help="Index of the query frame in --data."),
    target: str = typer.Option("energy", "--target", help="energy | force:ATOM:COMP (COMP x, y, z) | loss (needs "
                                                          "the frame's labels)."),
    top: int = typer.Option(10, "--top", min=1, help="Training frames reported."),
    method: str = typer.Option("exact", "--method", help="exact (Hessian; few parameters) | cg (conjugate gradients "
                                                         "on Hessian-vector products) | arnoldi (top eigenpairs)."),
    damping: Optional[float] = typer.Option(None, "--damping", min=0.0,
                                            help="λ added to the Hessian [loss/param²] (default: 1e-4 × its largest "
                                                 "eigenvalue, more where it is indefinite)."),
    train_data: Optional[str] = typer.Option(None, "--train-data",
                                             help="The run's full dataset, when its config.yaml cannot reload it."),
    energy_unit: Optional[str] = typer.Option(None, "--energy-unit", help="For --data files without unit records."),
    length_unit: Optional[str] = typer.Option(None, "--length-unit", help="For --data files without unit records "
                                                                           "(Angstrom, Bohr)."),
    out: Path = typer.Option(Path("qdyn-explain"), "--out", help="Directory for the plot and explain.json."),
):
    """Rank the run's training frames by their influence on one prediction; JSON on stdout, a plot in --out.

    Influence of a training frame = the predicted change of the target if that frame were
    removed and the model retrained (positive: removing it raises the target).
    """
    from ..checkpoint import CheckpointError
    from ..influence import METHODS, InfluenceError, parse_target
    from ..train import ConfigError
    from ..units import UnitError
    from ..validation import QdynInputError

    try:
        if method not in METHODS:
            raise InfluenceError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
        tgt = parse_target(target)
        query_ds = _load(data, energy_unit, length_unit)
        if not -query_ds.n_frames <= frame < query_ds.n_frames:
            raise QdynInputError(f"--frame {frame}: {data} has {query_ds.n_frames} frames")
        report = run_explain(model, query_ds, frame % query_ds.n_frames, tgt, top=top, method=method,
                             damping=damping, train_data=None if train_data is None else _load(train_data, None, None),
                             out=out, data_name=data)
    except (CheckpointError, ConfigError, InfluenceError, QdynInputError, UnitError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(report, indent=2))


def _load(path: str, energy_unit, length_unit):
    from ..train.config import DataConfig
    from ..train.data import load_data

    return load_data(DataConfig(path=path, energy_unit=energy_unit, length_unit=length_unit))


def run_explain(run_dir: Path, query_ds, frame: int, target, *, top: int, method: str, damping, train_data, out: Path,
                data_name: str) -> dict:
    """Influence of every training frame of ``run_dir`` on ``target`` at ``query_ds[frame]``;
    writes ``out/explain.json`` and ``out/explain.png``; returns the report."""
    import numpy as np

    from .. import influence as inf
    from ..data.io import atomic_write_text

    run = inf.objective_of_run(run_dir, data=train_data)
    obj = run.objective
    R, system = query_ds.to_system(frame)
    obj.model.check(R, system)
    labelled = query_ds.E is not None and query_ds.F is not None
    if target.kind == "loss" and not labelled:
        raise inf.InfluenceError(f"--target loss: frame {frame} of {data_name} has no energy and force labels")
    labels = {"E": query_ds.E[frame], "F": query_ds.F[frame][query_ds.mask[frame]]} if labelled else {}
    q = inf.query_function(obj, target, R, system, **labels)
    value = float(q(obj.theta))
    res = inf.influence(obj, inf.query_gradient(obj, target, R, system, **labels), method=method, damping=damping)
    order = res.top(min(top, obj.n_frames))
    ds = run.train_ds
    rows = [{"rank": r + 1, "train_frame": int(j), "data_frame": int(run.train_indices[j]),
             "influence": float(res.scores[j]), "energy_eV": float(ds.E[j])} for r, j in enumerate(order)]
    report = {
        "model": str(run_dir), "n_params": obj.n_params, "n_train_frames": obj.n_frames,
        "query": {"data": data_name, "frame": frame, "target": str(target), "value": value,
                  "unit": {"energy": "eV", "force": "eV/Å", "loss": "training loss"}[target.kind]},
        "influence": "predicted change of the target if the training frame were removed and the model retrained",
        "method": res.method, "damping": res.damping, "hessian_eigenvalue_max": res.eigenvalue_max,
        "hessian_eigenvalue_min": res.eigenvalue_min, "cg_relative_residual": res.residual,
        "sum_of_all_influences": float(np.sum(res.scores)), "top": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    _plot(out / "explain.png", res.scores, order, run, R, query_ds, frame, report)
    report["plot"] = str(out / "explain.png")
    atomic_write_text(out / "explain.json", json.dumps(report, indent=2))
    return report


def _distance_to(R_query, ds):
    """RMS difference [Å] of the sorted interatomic distances of every frame of ``ds`` to the
    query's (a rotation- and permutation-free measure of how far a frame's geometry is);
    None when the frames do not have the query's atom count."""
    import numpy as np

    n = R_query.shape[0]
    if ds.R.shape[1] != n or not ds.mask.all():
        return None
    iu = np.triu_indices(n, 1)

    def dists(R):
        return np.sort(np.linalg.norm(R[:, :, None] - R[:, None, :], axis=-1)[:, iu[0], iu[1]], axis=-1)

    return np.sqrt(np.mean((dists(ds.R) - dists(R_query[None])) ** 2, axis=-1))


def _plot(path: Path, scores, order, run, R_query, query_ds, frame: int, report: dict) -> None:
    import numpy as np

    from ..plotting import pyplot, save_figure

    plt = pyplot()

    ds = run.train_ds
    dist = _distance_to(R_query, ds)
    fig, axes = plt.subplots(1, 2 if dist is not None else 1, figsize=(11 if dist is not None else 6, 4), squeeze=False)
    ax = axes[0, 0]
    vals = scores[order]
    ax.barh(np.arange(len(order))[::-1], vals, color=np.where(vals > 0, "tab:red", "tab:blue"))
    ax.set_yticks(np.arange(len(order))[::-1], [f"frame {run.train_indices[j]}" for j in order])
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel(f"influence on {report['query']['target']} [{report['query']['unit']}]\n"
                  "(predicted change if the frame were removed)")
    ax.set_title(f"top {len(order)} of {len(scores)} training frames ({report['method']})", fontsize=10)
    if dist is not None:
        ax = axes[0, 1]
        n_at = ds.mask.sum(1)
        sc = ax.scatter(dist, ds.E / n_at, c=scores, cmap="coolwarm", s=18,
                        vmin=-np.abs(scores).max(), vmax=np.abs(scores).max())
        ax.scatter(dist[order], (ds.E / n_at)[order], facecolors="none", edgecolors="k", s=60, label=f"top {len(order)}")
        if query_ds.E is not None:
            ax.axhline(query_ds.E[frame] / R_query.shape[0], color="k", ls="--", lw=0.8, label="query frame energy")
        fig.colorbar(sc, ax=ax, label="influence")
        ax.set_xlabel("geometry distance to the query frame [Å]\n(RMS difference of sorted interatomic distances)")
        ax.set_ylabel("training frame energy per atom [eV]")
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['model']}: {report['query']['target']} of frame {frame} of {report['query']['data']}",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the qdyn app."""
    app.command("explain")(explain)
