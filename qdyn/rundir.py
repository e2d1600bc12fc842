"""Run directories: one owner each, no mixed runs, no stale temporaries.

Every qdyn command that writes a directory (``train``, ``md``, ``namd``) claims it first
with :func:`claim`:

* an empty or missing directory is a fresh start;
* a directory that holds the outputs of the *same* kind of run is refused unless the user
  says ``--overwrite`` (the old outputs are then removed first, so nothing of the old run is
  mixed into the new one) or continues it (``train --resume``, ``md --restart``);
* a directory that holds another kind of qdyn run (MD output in a training run, a training
  run as MD output) is always refused: ``--overwrite`` never deletes a different run.

Files that are not qdyn's (notes, a config the user keeps there) are never touched.
Temporaries left by a killed writer (:func:`qdyn.data.io.atomic_write` names them
``.NAME.*.tmp*``) are removed whenever a run (re)starts in the directory.
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import Optional

from .validation import QdynInputError

#: the files (glob patterns) and folders each kind of run writes
OUTPUTS = {
    "training": ("config.yaml", "model.json", "params.msgpack", "params.json", "metrics.json", "history.json",
                 "history.csv", "learning_curve.png", "parity_*.png", "checkpoints"),
    "MD": ("md.json", "md_summary.json", "checkpoint.npz", "last_good.npz", "trajectory.xyz", "trajectory_r*.xyz",
           "trajectory.h5", "energies.png", "spectrum.png"),
    "surface-hopping": ("namd.json", "populations.png"),
    "active-learning": ("learn.json", "report.json", "report.md", "report.png", "round_*"),
}


class RunDirError(QdynInputError):
    """A run directory that this command may not use as asked."""


def outputs_in(directory: Path, kind: str) -> list[Path]:
    """The outputs of a ``kind`` run present in ``directory`` (sorted)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    patterns = OUTPUTS[kind]
    return sorted(p for p in directory.iterdir() if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns))


def kinds_in(directory: Path) -> list[str]:
    """The kinds of qdyn run whose outputs are in ``directory``."""
    return [kind for kind in OUTPUTS if outputs_in(directory, kind)]


def clean_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporaries a killed atomic writer left in ``directory`` (and one level
    below, e.g. ``checkpoints/``); returns what was removed."""
    directory = Path(directory)
    removed = []
    for folder in [directory, *(d for d in directory.iterdir() if d.is_dir())] if directory.is_dir() else []:
        for p in folder.glob(".*.tmp*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def clear(directory: Path, kind: str) -> None:
    """Remove the outputs of a ``kind`` run from ``directory`` (nothing else)."""
    for p in outputs_in(directory, kind):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def claim(directory: Path, kind: str, *, overwrite: bool = False, continue_flag: Optional[str] = None,
          continuing: bool = False) -> None:
    """Make ``directory`` this ``kind`` run's own, or raise :class:`RunDirError`.

    Args:
        directory: the ``--out`` directory.
        kind: a key of :data:`OUTPUTS` ("training", "MD", "surface-hopping").
        overwrite: remove this kind's old outputs and start afresh.
        continue_flag: the option that continues a run of this kind (e.g. ``--resume``),
            named in the refusal; None for kinds that cannot be continued.
        continuing: the user asked to continue the run in ``directory``.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RunDirError(f"--out {directory} is a file, not a directory")
    if overwrite and continuing:
        raise RunDirError(f"--overwrite and {continue_flag} contradict each other: replace the run or continue it")
    foreign = [k for k in kinds_in(directory) if k != kind]
    if foreign:
        raise RunDirError(f"--out {directory} holds a qdyn {foreign[0]} run "
                          f"({', '.join(p.name for p in outputs_in(directory, foreign[0])[:3])}); "
                          f"choose another output directory")
    own = outputs_in(directory, kind)
    if continuing or not own or overwrite:
        clean_stale_temporaries(directory)  # only once the run is ours: a refused one touches nothing
        if overwrite:
            clear(directory, kind)
        return
    again = f", or {continue_flag} to continue it" if continue_flag else ""
    raise RunDirError(f"--out {directory} already holds a qdyn {kind} run "
                      f"({', '.join(p.name for p in own[:4])}{', ...' if len(own) > 4 else ''}); "
                      f"use --overwrite to replace it{again}, or choose another directory")
