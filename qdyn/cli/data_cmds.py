"""``qdyn label`` and ``qdyn data {info, split}``: reference data from the command line.

Registered by :mod:`qdyn.cli.app` through :func:`register`.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Inspect and split datasets.", no_args_is_help=True)

_METHODS = ("HF", "DFT", "MP2", "CCSD", "CCSD(T)", "SA-CASSCF", "TDA")
_XTB = {"GFN2-XTB": "GFN2-xTB", "GFN1-XTB": "GFN1-xTB"}


def _floats(text: Optional[str], name: str, count: Optional[int] = None) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        vals = [float(t) for t in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{name}: expected comma-separated numbers, got {text!r}") from None
    if count is not None and len(vals) != count:
        raise typer.BadParameter(f"{name}: expected {count} numbers, got {text!r}")
    return vals


def _progress_bar():
    """A rich progress bar with ETA; returns (context manager, progress callback)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]labelling"), BarColumn(), MofNCompleteColumn(), TextColumn("•"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                   console=Console(stderr=True))
    state = {}

    def progress(done, total, cached):
        if "task" not in state:
            # Frames from the cache are counted as done up front so the ETA reflects real work.
            state["task"] = bar.add_task("label", total=total, completed=done, note=f"({cached} from cache)" if cached else "")
        bar.update(state["task"], completed=done)

    return bar, progress


def _build_recipe(*, structure, method, xc, basis, charge, spin, grid_level, max_cycle, sampler, n, seed,
                  temperature_range, scan_atoms, scan_range, distance_range, orientation, name, length_unit) -> dict:
    m = method.upper()
    if m in _XTB:
        # semi-empirical tight binding: qdyn's tblite labeller, not a PySCF functional
        labeler = {"labeler": "TBLiteLabeler", "method": _XTB[m], "charge": charge, "multiplicity": spin + 1,
                   "max_iterations": max_cycle}
        return _recipe_for(labeler, structure=structure, sampler=sampler, n=n, seed=seed,
                           temperature_range=temperature_range, scan_atoms=scan_atoms, scan_range=scan_range,
                           distance_range=distance_range, orientation=orientation, name=name, length_unit=length_unit)
    if m not in _METHODS:
        # A functional name given as the method: DFT with that functional.
        xc, m = method, "DFT"
    labeler = {"method": m, "basis": basis, "charge": charge, "spin": spin, "max_cycle": max_cycle}
    if m in ("DFT", "TDA"):
        if not xc:
            raise typer.BadParameter("DFT needs --xc (e.g. --xc B3LYP) or --method B3LYP")
        labeler.update(xc=xc, grid_level=grid_level, grid_response=True)
    return _recipe_for(labeler, structure=structure, sampler=sampler, n=n, seed=seed,
                       temperature_range=temperature_range, scan_atoms=scan_atoms, scan_range=scan_range,
                       distance_range=distance_range, orientation=orientation, name=name, length_unit=length_unit)


def _recipe_for(labeler: dict, *, structure, sampler, n, seed, temperature_range, scan_atoms, scan_range,
                distance_range, orientation, name, length_unit) -> dict:
    from ..data import recipes

    if structure in recipes.STRUCTURE_PRESETS:
        entry = recipes.structure_entry(structure)
    else:  # a file (or shipped:NAME): its first frame
        from ..structures import load_structure
        from ..validation import QdynInputError

        try:
            R0, system = load_structure(structure, frame=0, length_unit=length_unit)
        except QdynInputError as exc:
            raise typer.BadParameter(f"--structure {structure!r} is not a preset "
                                     f"({', '.join(recipes.STRUCTURE_PRESETS)}) and not a readable file: {exc}") from None
        entry = {"name": Path(structure).name, "Z": [int(z) for z in system.species], "R": R0.tolist()}
    if sampler == "single":
        sp = {"kind": "single"}
    elif sampler == "thermal":
        sp = {"kind": "thermal", "n": n, "temperatures": _floats(temperature_range, "--temperature-range", 2), "seed": seed,
              "distribution": "classical", "random_orientation": True, "min_wavenumber": 50.0, "optimize": True, "fmax": 1e-3}
    elif sampler == "scan":
        sp = {"kind": "scan", "atoms": [int(a) for a in _floats(scan_atoms, "--scan-atoms", 2)],
              "start": _floats(scan_range, "--scan-range", 2)[0], "stop": _floats(scan_range, "--scan-range", 2)[1], "n": n}
    elif sampler == "cluster":
        sp = {"kind": "cluster", "n": n, "distance_range": _floats(distance_range, "--distance-range", 2), "seed": seed,
              "orientation": orientation, "rotation_std_deg": 15.0, "reference_atoms": None, "clash_scale": 1.5,
              "optimize": True, "fmax": 5e-3, "monomer_pool": {"n": max(n, 10), "temperatures": [300.0, 1000.0], "seed": seed + 1}}
    else:
        raise typer.BadParameter(f"--sampler must be single, thermal, scan or cluster, got {sampler!r}")
    return {"name": name or entry["name"], "structure": entry, "labeler": labeler, "sampler": sp}


def label(
    recipe: Optional[str] = typer.Option(None, "--recipe", help="shipped:NAME, a recipe .json, or a dataset whose metadata holds one."),
    structure: str = typer.Option("water", "--structure", help="Start structure: a preset (water, lih, water_dimer) "
                                                                "or a file's first frame (any format qdyn reads, or shipped:NAME)."),
    length_unit: Optional[str] = typer.Option(None, "--length-unit", help="Unit of --structure coordinates if the file does not record it (e.g. Angstrom)."),
    method: str = typer.Option("DFT", "--method", help="HF, DFT, MP2, CCSD, CCSD(T), GFN2-xTB, GFN1-xTB (tblite), "
                                                       "or a functional name (B3LYP ...)."),
    xc: Optional[str] = typer.Option("B3LYP", "--xc", help="DFT functional (PySCF string)."),
    basis: str = typer.Option("def2-SVP", "--basis", help="Gaussian basis set (PySCF name)."),
    charge: int = typer.Option(0, "--charge", help="Total charge [e]."),
    spin: int = typer.Option(0, "--spin", help="2S, unpaired electrons."),
    grid_level: int = typer.Option(3, "--grid-level", help="DFT integration grid level (PySCF, 0-9)."),
    max_cycle: int = typer.Option(100, "--max-cycle", help="SCF iteration limit."),
    sampler: str = typer.Option("thermal", "--sampler", help="single, thermal, scan or cluster."),
    n: int = typer.Option(10, "--n-configs", help="Number of configurations."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampler."),
    temperature_range: str = typer.Option("300,1000", "--temperature-range", help="T_min,T_max [K] (thermal)."),
    scan_atoms: str = typer.Option("0,1", "--scan-atoms", help="i,j (scan)."),
    scan_range: str = typer.Option("1.2,4.0", "--scan-range", help="start,stop [Å] (scan)."),
    distance_range: str = typer.Option("2.5,6.0", "--distance-range", help="d_min,d_max [Å] (cluster)."),
    orientation: str = typer.Option("random", "--orientation", help="random or template (cluster)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name for metadata."),
    workers: int = typer.Option(1, "--workers", help="Processes, one thread each (0: in this process)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (.npz, .xyz, .db, .traj); required unless --print-recipe."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Per-frame cache (default $QDYN_CACHE_DIR/labels or ~/.cache/qdyn/labels)."),
    print_recipe: bool = typer.Option(False, "--print-recipe", help="Print the recipe as JSON and exit."),
):
    """Sample configurations and label them (PySCF or tblite); cached per frame, so rerunning resumes."""
    from ..data import recipes
    from ..validation import QdynInputError

    if n < 1:
        raise QdynInputError(f"--n-configs: the number of configurations must be at least 1, got {n}")
    if workers < 0:
        raise QdynInputError(f"--workers: must be 0 (in this process) or more, got {workers}")

    if recipe is not None:
        rec = recipes.get_recipe(recipe)
    else:
        rec = _build_recipe(structure=structure, method=method, xc=xc, basis=basis, charge=charge, spin=spin,
                            grid_level=grid_level, max_cycle=max_cycle, sampler=sampler, n=n, seed=seed,
                            temperature_range=temperature_range, scan_atoms=scan_atoms, scan_range=scan_range,
                            distance_range=distance_range, orientation=orientation, name=name,
                            length_unit=length_unit)
    if print_recipe:
        typer.echo(json.dumps(rec, indent=1))
        raise typer.Exit()
    if out is None:
        raise typer.BadParameter("--out is required (where to write the dataset)")
    from ..data.io import output_format

    output_format(out)  # before any frame is computed
    command = " ".join(shlex.quote(a) for a in ["qdyn"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("qdyn") else None
    if command is None:
        command = f"qdyn label --recipe {shlex.quote(recipe)} --out {shlex.quote(str(out))}" if recipe else None
    bar, progress = _progress_bar()
    with bar:
        ds = recipes.run_recipe(rec, out=out, workers=workers, cache_dir=cache_dir, progress=progress,
                                log=lambda s: bar.console.log(s), command=command)
    st = ds.statistics()
    failed = ds.metadata["labelling"]["failures"]
    typer.echo(f"wrote {out}: {st['n_frames']} frames, {len(failed)} not converged")
    for f in failed[:10]:
        typer.echo(f"  frame {f['frame']}: {f['status']}")


_ENERGY_UNIT_HELP = "Energy unit of files that do not record it (eV, Hartree, kcal/mol, ...)."
_LENGTH_UNIT_HELP = "Length unit of files that do not record it (Angstrom, Bohr)."
_FORCE_UNIT_HELP = "Force unit of files that do not record it [default: energy unit / length unit]."
_ENERGY_KEY_HELP = "extxyz: the comment key holding the energy (e.g. REF_energy)."
_FORCES_KEY_HELP = "extxyz: the per-atom property holding the forces (e.g. REF_forces)."
_FILE_HELP = "Dataset file (any format qdyn reads) or shipped:NAME."
_NO_CHECK_HELP = "Accept data outside any chemistry in its declared units."


def _read(file: str, energy_unit, length_unit, force_unit, energy_key, forces_key, check_plausibility: bool = True):
    from ..data import read

    return read(file, energy_unit=energy_unit, length_unit=length_unit, force_unit=force_unit,
                energy_key=energy_key, forces_key=forces_key, check_plausibility=check_plausibility)


@data_app.command("info")
def info(
    file: str = typer.Argument(..., help=_FILE_HELP),
    energy_unit: Optional[str] = typer.Option(None, "--energy-unit", help=_ENERGY_UNIT_HELP),
    length_unit: Optional[str] = typer.Option(None, "--length-unit", help=_LENGTH_UNIT_HELP),
    force_unit: Optional[str] = typer.Option(None, "--force-unit", help=_FORCE_UNIT_HELP),
    energy_key: str = typer.Option("energy", "--energy-key", help=_ENERGY_KEY_HELP),
    forces_key: str = typer.Option("forces", "--forces-key", help=_FORCES_KEY_HELP),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write an energy histogram (PNG)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_plausibility_check: bool = typer.Option(False, "--no-plausibility-check", help=_NO_CHECK_HELP),
):
    """Statistics (energy range, force RMS, element counts) and provenance of a dataset."""
    ds = _read(file, energy_unit, length_unit, force_unit, energy_key, forces_key, not no_plausibility_check)
    st = ds.statistics()
    meta = ds.metadata
    lab = meta.get("labeler", {})
    summary = {"file": str(file), "statistics": st, "fields": ds.fields_present(), "extras": sorted(ds.extras),
               "method": lab.get("method"), "xc": lab.get("xc"), "basis": lab.get("basis"),
               "code_versions": meta.get("code_versions"), "command": meta.get("command"),
               "failures": meta.get("labelling", {}).get("failures", [])}
    if plot is not None:
        ds.plot_energy_distribution(plot)
        summary["plot"] = str(plot)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    typer.echo(f"{file}: {st['n_frames']} frames, {st['n_atoms_min']}-{st['n_atoms_max']} atoms, "
               f"elements {st['element_counts']}")
    typer.echo(f"  fields: {', '.join(summary['fields'])}; extras: {', '.join(summary['extras']) or '-'}")
    if "energy_range_eV" in st:
        typer.echo(f"  energy: {st['energy_min_eV']:.6f} .. {st['energy_max_eV']:.6f} eV (range {st['energy_range_eV']:.4f} eV)")
    if "force_rms_eV_per_A" in st:
        typer.echo(f"  forces: RMS {st['force_rms_eV_per_A']:.4f} eV/Å, max {st['force_max_eV_per_A']:.4f} eV/Å")
    if summary["method"]:
        typer.echo(f"  level: {summary['method']}{'/' + summary['xc'] if summary['xc'] else ''} / {summary['basis']}")
    if summary["command"]:
        typer.echo(f"  regenerate: {summary['command']}")
    typer.echo(f"  not converged: {st['n_not_converged']}")
    if plot is not None:
        typer.echo(f"  plot: {plot}")


@data_app.command("split")
def split(
    file: str = typer.Argument(..., help=_FILE_HELP),
    out_dir: Path = typer.Option(..., "--out-dir", help="Where to write the parts and their index files."),
    fractions: str = typer.Option("0.8,0.1,0.1", "--fractions", help="Comma-separated, summing to 1."),
    names: str = typer.Option("train,val,test", "--names", help="Comma-separated part names (output file suffixes)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random split."),
    index_files: Optional[str] = typer.Option(None, "--index-files", help="Comma-separated index files instead of a random split."),
    drop_failed: bool = typer.Option(True, "--drop-failed/--keep-failed", help="Drop frames whose labels did not converge first."),
    energy_unit: Optional[str] = typer.Option(None, "--energy-unit", help=_ENERGY_UNIT_HELP),
    length_unit: Optional[str] = typer.Option(None, "--length-unit", help=_LENGTH_UNIT_HELP),
    force_unit: Optional[str] = typer.Option(None, "--force-unit", help=_FORCE_UNIT_HELP),
    energy_key: str = typer.Option("energy", "--energy-key", help=_ENERGY_KEY_HELP),
    forces_key: str = typer.Option("forces", "--forces-key", help=_FORCES_KEY_HELP),
    no_plausibility_check: bool = typer.Option(False, "--no-plausibility-check", help=_NO_CHECK_HELP),
):
    """Split a dataset by seed (or index files) into qdyn npz parts plus index files."""
    from ..data import read_index_file, split_indices, write, write_index_file

    ds = _read(file, energy_unit, length_unit, force_unit, energy_key, forces_key, not no_plausibility_check)
    file = Path(file.split(":", 1)[1] if file.startswith("shipped:") else file)  # names the output parts
    import numpy as np

    # Indices always refer to frames of the input file, so index files stay meaningful.
    pool = np.flatnonzero(ds.usable) if drop_failed else np.arange(ds.n_frames)  # as `qdyn train` drops them
    part_names = [s.strip() for s in names.split(",")]
    if index_files:
        idx = [read_index_file(p) for p in index_files.split(",")]
        if drop_failed:
            idx = [ix[np.isin(ix, pool)] for ix in idx]
    else:
        fr = _floats(fractions, "--fractions")
        idx = [pool[ix] for ix in split_indices(len(pool), fr, seed=seed)]
    if len(part_names) != len(idx):
        raise typer.BadParameter(f"--names has {len(part_names)} names for {len(idx)} parts")
    out_dir.mkdir(parents=True, exist_ok=True)
    for nm, ix in zip(part_names, idx):
        part = ds.subset(ix)
        part.metadata["split"] = {"from": str(file), "part": nm, "seed": None if index_files else seed,
                                  "fractions": None if index_files else fractions, "drop_failed": drop_failed}
        write(part, out_dir / f"{file.stem}.{nm}.npz")
        write_index_file(out_dir / f"{file.stem}.{nm}.indices.txt", ix)
        typer.echo(f"{nm}: {len(ix)} frames -> {out_dir / f'{file.stem}.{nm}.npz'}")
    if drop_failed and len(pool) != ds.n_frames:
        typer.echo(f"(left out {ds.n_frames - len(pool)} non-converged frames)")


def register(app: typer.Typer) -> None:
    """Add ``label`` and the ``data`` group to the qdyn app."""
    app.command("label")(label)
    app.add_typer(data_app, name="data")
