"""``qdyn analyze msd|hbonds|reduce``: analyses of a trajectory written by ``qdyn md``.

Each command reads one replica of ``trajectory.h5`` (H5MD) or ``trajectory.xyz``, writes a
JSON file and a plot into ``--out`` (default: ``analysis/`` beside the trajectory) and
prints the headline numbers. Registered by :mod:`qdyn.cli.app` through :func:`register`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

analyze_app = typer.Typer(help="Analyse a qdyn MD trajectory: diffusion (MSD), water hydrogen bonds, "
                               "PCA/TICA and clustering.", no_args_is_help=True)

_TRAJ = typer.Argument(..., help="trajectory.h5 (H5MD) or trajectory.xyz written by qdyn md.")
_REPLICA = typer.Option(0, "--replica", help="Stored replica to read from an H5MD file.")
_OUT = typer.Option(None, "--out", help="Output directory [TRAJECTORY's directory/analysis].")


def _out_dir(traj_path: Path, out: Optional[Path]) -> Path:
    d = Path(traj_path).parent / "analysis" if out is None else Path(out)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_json(path: Path, payload: dict) -> None:
    from ..data.io import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2))


def _species_atoms(traj, species: Optional[str]):
    """Indices of the atoms of one element (symbol or atomic number), or all atoms."""
    import numpy as np

    from .. import elements
    from ..validation import QdynInputError

    if species is None:
        return np.arange(len(traj.species))
    z = int(species) if species.isdigit() else elements.atomic_number(species)
    idx = np.nonzero(traj.species == z)[0]
    if len(idx) == 0:
        raise QdynInputError(f"no {species} atoms in the trajectory (species present: {sorted(set(traj.species))})")
    return idx


@analyze_app.command("msd")
def msd_cmd(
    trajectory: Path = _TRAJ, replica: int = _REPLICA,
    species: Optional[str] = typer.Option(None, "--species", help="Only atoms of this element (symbol or Z), e.g. O "
                                                                  "for water; default all atoms."),
    fit_start: Optional[float] = typer.Option(None, "--fit-start", help="Start of the MSD fit range [fs] "
                                                                        "[20 % of the longest block lag]."),
    fit_end: Optional[float] = typer.Option(None, "--fit-end", help="End of the MSD fit range [fs] "
                                                                    "[80 % of the longest block lag]."),
    blocks: int = typer.Option(4, "--blocks", help="Independent time blocks for the error of D."),
    remove_drift: bool = typer.Option(True, "--remove-drift/--keep-drift",
                                      help="Subtract the centre-of-mass motion of the selected atoms [Å]."),
    out: Optional[Path] = _OUT,
):
    """Mean-squared displacement and diffusion coefficient (unwrapped in periodic cells)."""
    import numpy as np

    from ..analysis import diffusion_coefficient, load_trajectory, mean_squared_displacement, unwrap
    from ..analysis.plots import plot_msd
    from ..validation import QdynInputError

    traj = load_trajectory(trajectory, replica=replica)
    if blocks < 1:
        raise QdynInputError(f"--blocks must be ≥ 1, got {blocks}")
    atoms = _species_atoms(traj, species)
    X = unwrap(traj.positions, traj.box)[:, atoms]
    if remove_drift:
        X = X - (X.mean(axis=1, keepdims=True) - X[:1].mean(axis=1, keepdims=True))
    dt = traj.dt_frame_fs
    longest = (len(X) // blocks - 1) * dt
    start = 0.2 * longest if fit_start is None else fit_start
    end = 0.8 * longest if fit_end is None else fit_end
    result = diffusion_coefficient(X, dt, fit_start_fs=start, fit_end_fs=end, n_blocks=blocks)
    msd = mean_squared_displacement(X, max_lag=len(X) // 2)
    lag = np.arange(len(msd)) * dt
    d = _out_dir(trajectory, out)
    payload = {"trajectory": str(trajectory), "replica": replica, "species": species, "n_atoms": int(len(atoms)),
               "n_frames": int(len(X)), "dt_frame_fs": dt, "remove_drift": remove_drift, **result,
               "lag_fs": lag.tolist(), "msd_A2": msd.tolist()}
    _write_json(d / "msd.json", payload)
    plot_msd(lag, msd, result, d / "msd.png")
    typer.echo(f"D = {result['D_cm2_per_s']:.4g} ± {result['D_err_cm2_per_s']:.2g} cm²/s "
               f"(fit {result['fit_start_fs']:g}–{result['fit_end_fs']:g} fs, {blocks} blocks) -> {d / 'msd.json'}")


@analyze_app.command("hbonds")
def hbonds_cmd(
    trajectory: Path = _TRAJ, replica: int = _REPLICA,
    r_oo: float = typer.Option(3.5, "--r-oo", help="O–O distance cut-off [Å]."),
    angle: float = typer.Option(30.0, "--angle", help="H–O_donor···O_acceptor angle cut-off [degrees]."),
    max_lag: Optional[float] = typer.Option(None, "--max-lag", help="Longest lag of the lifetime correlations [fs] "
                                                                    "[half the trajectory]."),
    out: Optional[Path] = _OUT,
):
    """Hydrogen bonds of water (geometric criterion): count per molecule, lifetimes."""
    from ..analysis import hydrogen_bonds, load_trajectory
    from ..analysis.plots import plot_hbonds
    from ..validation import QdynInputError

    traj = load_trajectory(trajectory, replica=replica)
    if not (r_oo > 0 and 0 < angle < 180):
        raise QdynInputError(f"need --r-oo > 0 Å and 0 < --angle < 180°, got {r_oo} Å and {angle}°")
    dt = traj.dt_frame_fs if len(traj.time_fs) > 1 else 1.0
    lag_frames = None if max_lag is None else max(1, int(round(max_lag / dt)) + 1)
    result = hydrogen_bonds(traj.positions, traj.species, traj.box, dt_frame_fs=dt, r_oo_max=r_oo,
                            angle_max_deg=angle, max_lag=lag_frames)
    d = _out_dir(trajectory, out)
    _write_json(d / "hbonds.json", {"trajectory": str(trajectory), "replica": replica, **result})
    plot_hbonds(result, traj.time_fs, d / "hbonds.png")
    typer.echo(f"{result['per_molecule_mean']:.3f} H-bonds per molecule; lifetime "
               f"{result['lifetime_intermittent_fs']:.1f} fs (intermittent), {result['lifetime_continuous_fs']:.1f} fs "
               f"(continuous) -> {d / 'hbonds.json'}")


@analyze_app.command("reduce")
def reduce_cmd(
    trajectory: Path = _TRAJ, replica: int = _REPLICA,
    features: str = typer.Option("distances", "--features", help="distances (pair distances [Å], minimum image) or "
                                                                 "positions (superposed on frame 0 [Å], free space)."),
    atoms: Optional[str] = typer.Option(None, "--atoms", help="Comma-separated atom indices to use; default all."),
    method: str = typer.Option("pca", "--method", help="pca (largest variance) or tica (slowest modes)."),
    components: int = typer.Option(2, "--components", help="Components kept."),
    lag: Optional[float] = typer.Option(None, "--lag", help="TICA lag time [fs] [one frame]."),
    clusters: int = typer.Option(0, "--clusters", help="k-means clusters of the projection (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of k-means."),
    out: Optional[Path] = _OUT,
):
    """PCA or TICA of invariant features, optionally k-means clusters; writes reduce.json,
    reduce.npz (projection, labels) and reduce.png."""
    import numpy as np

    from ..analysis import load_trajectory
    from ..analysis.plots import plot_projection
    from ..analysis.reduction import cluster, pca, tica, trajectory_features
    from ..data.io import atomic_savez
    from ..validation import QdynInputError

    traj = load_trajectory(trajectory, replica=replica)
    sel = None
    if atoms is not None:
        try:
            sel = [int(a) for a in atoms.split(",") if a.strip()]
        except ValueError:
            raise QdynInputError(f"--atoms must be comma-separated integers, got {atoms!r}") from None
        n = len(traj.species)
        if not sel or min(sel) < 0 or max(sel) >= n:
            raise QdynInputError(f"--atoms must be indices 0..{n - 1}, got {atoms!r}")
    X = trajectory_features(traj, features, atoms=sel)
    if method == "pca":
        res = pca(X, n_components=components)
        summary = {"explained_variance_ratio": res["explained_variance_ratio"].tolist()}
    elif method == "tica":
        dt = traj.dt_frame_fs
        lag_frames = 1 if lag is None else max(1, int(round(lag / dt)))
        res = tica(X, lag_frames=lag_frames, n_components=components, dt_frame_fs=dt)
        summary = {"lag_fs": lag_frames * dt, "timescales_fs": res["timescales_fs"].tolist(),
                   "eigenvalues": res["eigenvalues"].tolist()}
    else:
        raise QdynInputError(f"--method must be pca or tica, got {method!r}")
    labels = None
    if clusters:
        cl = cluster(res["projection"], n_clusters=clusters, seed=seed)
        labels = cl["labels"]
        summary["cluster_populations"] = cl["populations"].tolist()
        summary["cluster_centers"] = cl["centers"].tolist()
    d = _out_dir(trajectory, out)
    arrays = {"projection": res["projection"], "time_fs": traj.time_fs}
    if labels is not None:
        arrays["labels"] = labels
    atomic_savez(d / "reduce.npz", arrays)
    _write_json(d / "reduce.json", {"trajectory": str(trajectory), "replica": replica, "features": features,
                                    "atoms": sel, "n_features": int(X.shape[1]), "method": method,
                                    "components": components, **summary})
    names = tuple(f"{method.upper()} {i + 1}" for i in range(2))
    plot_projection(res["projection"], d / "reduce.png", labels=labels, time_fs=traj.time_fs, axis_names=names)
    head = summary.get("explained_variance_ratio", summary.get("timescales_fs"))
    what = "explained variance" if method == "pca" else "timescales [fs]"
    typer.echo(f"{method.upper()} of {X.shape[1]} {features} features: {what} "
               f"{', '.join(f'{v:.3g}' for v in head)} -> {d / 'reduce.json'}")


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the qdyn app."""
    app.add_typer(analyze_app, name="analyze")
