"""Live training logs: what a batch job without a terminal can watch while it runs.

* ``history.csv``: one row per epoch, appended and flushed as soon as the epoch ends
  (``tail -f`` works; pandas reads it at any moment).
* ``history.json``: refreshed (atomically) at every checkpoint and at the end of the run;
  ``learning_curve.png`` with it, but at most once every :data:`PLOT_EVERY_S` seconds (a
  matplotlib figure costs more than a short run's epoch), at an interruption and at the end.

On resume the CSV is rewritten (atomically) from the checkpoint's history, so epochs run
after the last checkpoint of a killed run are not listed twice.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Sequence

from ..data.io import atomic_write_text
from .metrics import learning_curve

#: the CSV's columns; an epoch without validation frames leaves the val_* cells empty
COLUMNS = ("epoch", "stage", "train_loss", "val_loss", "val_energy_mae_meV", "val_force_mae_meV_per_A", "lr",
           "wall_s")
#: seconds between two redrawings of the learning curve during a run
PLOT_EVERY_S = 30.0


def _rows_text(records, *, header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    for r in records:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


class HistoryLog:
    """The run's per-epoch log files in ``out``, starting from ``history`` (resumed epochs),
    and the optional live trackers (:mod:`qdyn.train.trackers`) each row also goes to."""

    def __init__(self, out: Path, history: list[dict], trackers: Sequence = ()):
        self.out = Path(out)
        self.csv_path = self.out / "history.csv"
        self.trackers = list(trackers)
        self._last_plot = time.monotonic()
        atomic_write_text(self.csv_path, _rows_text(history, header=True))

    def append(self, record: dict) -> None:
        """Add one epoch's row, flush it to the file and pass it to the trackers."""
        with open(self.csv_path, "a") as fh:
            fh.write(_rows_text([record], header=False))
            fh.flush()
        for tracker in self.trackers:
            tracker.log_epoch(record)

    def close(self) -> None:
        """Close the trackers (the CSV is closed after every row)."""
        for tracker in self.trackers:
            tracker.close()

    def refresh(self, history: list[dict], *, plot_now: bool = False) -> None:
        """Rewrite ``history.json``; redraw the learning curve when ``plot_now`` or when
        :data:`PLOT_EVERY_S` have passed since the last drawing."""
        plot = plot_now or time.monotonic() - self._last_plot >= PLOT_EVERY_S
        refresh_history(self.out, history, plot=plot)
        if plot:
            self._last_plot = time.monotonic()


def refresh_history(out: Path, history: list[dict], *, plot: bool = True) -> None:
    """Rewrite ``history.json`` (and, with ``plot``, the learning curve) in ``out`` from the
    full history."""
    atomic_write_text(Path(out) / "history.json", json.dumps(history, indent=1))
    if history and plot:
        learning_curve(Path(out) / "learning_curve.png", history)
