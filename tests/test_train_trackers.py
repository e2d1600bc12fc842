"""Optional live trackers (issue 17, item 5): TensorBoard event files written while training,
with the same numbers as history.csv; a selected tracker whose package is missing stops the run
before the run directory is touched."""

import csv
import struct
import sys

import numpy as np
import pytest

from qdyn.data import load_shipped
from qdyn.train import ConfigError, parse_config, train

BPNN = {"family": "bpnn", "hidden": [4], "n_radial": 3, "zetas": [1.0]}


def _cfg(logging: dict):
    return parse_config({"model": BPNN, "data": {"n_train": 12, "n_val": 4, "n_test": 4}, "epochs": 3,
                         "batch_size": 6, "checkpoint_every": 3, "logging": logging})


def _scalars(event_dir):
    """``{tag: {step: value}}`` read back from the TFRecord event files (tensorboardX's protos)."""
    from tensorboardX.proto import event_pb2

    values: dict = {}
    for path in sorted(event_dir.glob("events.out.tfevents.*")):
        blob = path.read_bytes()
        at = 0
        while at < len(blob):
            (length,) = struct.unpack("<Q", blob[at:at + 8])
            event = event_pb2.Event.FromString(blob[at + 12:at + 12 + length])  # skip the length's CRC
            at += 12 + length + 4  # and the data's CRC
            for v in event.summary.value:
                values.setdefault(v.tag, {})[event.step] = v.simple_value
    return values


def test_tensorboard_logs_every_epoch_like_the_csv(tmp_path):
    pytest.importorskip("tensorboardX")
    ds = load_shipped("H2O").subset(np.arange(20))
    train(_cfg({"tensorboard": True}), tmp_path / "run", data=ds, progress=False)
    with open(tmp_path / "run" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    scalars = _scalars(tmp_path / "run" / "tensorboard")
    assert len(rows) == 3
    for column in ("train_loss", "val_loss", "val_force_mae_meV_per_A", "lr"):
        logged = scalars[f"train/{column}"]
        assert sorted(logged) == [1, 2, 3]
        # summaries hold float32
        np.testing.assert_allclose([logged[e] for e in (1, 2, 3)], [float(r[column]) for r in rows], rtol=1e-6)
    assert scalars["train/train_loss"][3] != scalars["train/train_loss"][1]  # a real curve, not a constant


def test_a_selected_tracker_without_its_package_is_refused_before_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    ds = load_shipped("H2O").subset(np.arange(20))
    with pytest.raises(ConfigError, match="logging.mlflow needs the mlflow package: pip install mlflow"):
        train(_cfg({"mlflow": {"enabled": True}}), tmp_path / "run", data=ds, progress=False)
    assert not (tmp_path / "run").exists()


def test_logging_section_is_strict():
    with pytest.raises(ConfigError, match="logging.tensorbord"):
        parse_config({"logging": {"tensorbord": True}})
