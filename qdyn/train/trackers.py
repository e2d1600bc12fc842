"""Optional live experiment trackers next to ``history.csv``: TensorBoard and MLflow.

Selected in the training config's ``logging:`` section (:class:`~qdyn.train.config.LoggingConfig`)::

    logging:
      tensorboard: true              # event files in RUN/tensorboard/ (tensorboardX)
      mlflow:
        enabled: true
        experiment: qdyn-water       # MLflow experiment name
        tracking_uri: file:./mlruns  # default: MLflow's own (the MLFLOW_TRACKING_URI variable)

Both receive every epoch's record (losses, validation MAEs in meV and meV/Å, learning rate,
wall time [s]) as it is written to ``history.csv``, with the epoch as the step. The packages are
optional (extra ``tracking``) and imported only when selected; a selected tracker whose package
is missing stops the run before anything is written, with the ``pip install`` line to run.

Resuming continues the same logs: TensorBoard purges events from the resumed epoch on (the
epochs a killed run ran after its last checkpoint), MLflow continues the run whose id is kept
in ``RUN/mlflow_run_id``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional, Protocol

from ..data.io import atomic_write_text
from .config import ConfigError, LoggingConfig

#: record fields that are not metrics
_NOT_METRICS = ("epoch", "stage")


class Tracker(Protocol):
    """What the training loop calls: one record per epoch, then close."""

    def log_epoch(self, record: dict) -> None: ...

    def close(self) -> None: ...


def _metrics(record: dict) -> dict[str, float]:
    """The numeric fields of an epoch's record (validation cells are absent without val frames)."""
    return {k: float(v) for k, v in record.items()
            if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _require(module: str, package: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"logging.{what} needs the {package} package: pip install {package} "
                          "(or the qdyn-mlff[tracking] extra), or switch it off in the config") from None


def check_available(cfg: LoggingConfig) -> None:
    """Refuse a selected tracker whose package is missing (before the run directory is touched).

    Raises:
        ConfigError: naming the package and the install command.
    """
    if cfg.tensorboard:
        _require("tensorboardX", "tensorboardX", "tensorboard")
    if cfg.mlflow.enabled:
        _require("mlflow", "mlflow", "mlflow")


class TensorBoardTracker:
    """Scalars ``train/<field>`` per epoch in ``out/tensorboard`` (tensorboardX event files).

    Args:
        out: the run directory.
        first_epoch: epochs already logged (a resume): later events of a killed run are purged.
    """

    def __init__(self, out: Path, *, first_epoch: int = 0):
        tbx = _require("tensorboardX", "tensorboardX", "tensorboard")
        self.writer = tbx.SummaryWriter(logdir=str(Path(out) / "tensorboard"),
                                        purge_step=first_epoch + 1 if first_epoch else None, flush_secs=30)

    def log_epoch(self, record: dict) -> None:
        for name, value in _metrics(record).items():
            self.writer.add_scalar(f"train/{name}", value, global_step=int(record["epoch"]))
        self.writer.flush()  # a batch job's TensorBoard sees each epoch as it ends

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    """One MLflow run per qdyn run: the resolved config as parameters, each epoch's metrics.

    Args:
        out: the run directory (keeps ``mlflow_run_id`` so a resume continues the same run).
        experiment: MLflow experiment name.
        tracking_uri: MLflow tracking URI (None: MLflow's default).
        config: the resolved training config (logged flattened as parameters on a fresh run).
        resume: continue the run recorded in ``out/mlflow_run_id`` if there is one.
    """

    def __init__(self, out: Path, *, experiment: str, tracking_uri: Optional[str], config: dict, resume: bool):
        self.mlflow = _require("mlflow", "mlflow", "mlflow")
        if tracking_uri is not None:
            self.mlflow.set_tracking_uri(tracking_uri)
        self.mlflow.set_experiment(experiment)
        id_file = Path(out) / "mlflow_run_id"
        run_id = id_file.read_text().strip() if resume and id_file.exists() else None
        self.run = self.mlflow.start_run(run_id=run_id, run_name=None if run_id else Path(out).name)
        if run_id is None:
            atomic_write_text(id_file, self.run.info.run_id + "\n")
            self.mlflow.log_params(_flatten(config))

    def log_epoch(self, record: dict) -> None:
        self.mlflow.log_metrics(_metrics(record), step=int(record["epoch"]))

    def close(self) -> None:
        self.mlflow.end_run()


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """``{"optim.learning_rate": "0.01", ...}``: MLflow parameters are flat strings."""
    flat: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = str(value)
    return flat


def open_trackers(cfg: LoggingConfig, out: Path, *, config: dict, first_epoch: int, resume: bool) -> list[Tracker]:
    """The trackers ``cfg`` selects, opened for the run in ``out``.

    Args:
        cfg: the ``logging`` section of the training config.
        out: the run directory.
        config: the resolved training config (MLflow parameters).
        first_epoch: epochs already done (resume).
        resume: whether this call continues a run.

    Returns:
        The open trackers (empty when none is selected).
    """
    trackers: list[Tracker] = []
    if cfg.tensorboard:
        trackers.append(TensorBoardTracker(out, first_epoch=first_epoch))
    if cfg.mlflow.enabled:
        trackers.append(MLflowTracker(out, experiment=cfg.mlflow.experiment, tracking_uri=cfg.mlflow.tracking_uri,
                                      config=config, resume=resume))
    return trackers
