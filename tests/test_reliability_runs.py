"""Run directories (issue 15): one owner per directory, resume checks its config, parameters
checked on every load, MD restarts check what they continue, live training logs.

Each case in the tables runs the CLI on a copy of a finished run and checks the exit code,
one clear message and that nothing on disk was lost (the first run's files byte-identical
after a refused command).
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app

CONFIG = """\
model: {family: bpnn, hidden: [8], n_radial: 4, zetas: [1.0]}
data: {path: "shipped:H2O", n_train: 16, n_val: 4, n_test: 4}
epochs: 3
batch_size: 8
checkpoint_every: 1
"""


def _cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    # rich may wrap a message in a box across lines: compare without whitespace and borders
    return r.exit_code, "".join(r.output.replace("│", "").split()), r


def _squeeze(text: str) -> str:
    return "".join(text.split())


class Finished(NamedTuple):
    config: Path
    run: Path
    rows_seen_while_running: int


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished training run, trained the way a batch job does it: ``qdyn train`` in a
    subprocess whose stdout is a pipe, not a terminal, while this process watches the log.
    Tests copy the run before changing anything."""
    root = tmp_path_factory.mktemp("runs")
    (root / "c.yaml").write_text(CONFIG)
    log = root / "run" / "history.csv"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "qdyn.cli.app", "train", "--config", str(root / "c.yaml"), "--out",
                             str(root / "run")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    seen = 0
    while proc.poll() is None:
        if log.exists():
            with open(log) as fh:
                rows = len(list(csv.DictReader(fh)))
            if proc.poll() is None:  # still running after the read
                seen = max(seen, rows)
        time.sleep(0.05)
    output = proc.stdout.read().decode()
    assert proc.returncode == 0, output
    return Finished(root / "c.yaml", root / "run", seen)


def _copy(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished.run, run)
    return run


def _snapshot(run: Path) -> dict:
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# -- refused: (what is done, how to prepare the copy, extra args, message fragment) ----------
def _unfinish(run):
    for name in ("model.json", "params.msgpack", "params.json", "metrics.json"):
        (run / name).unlink()


def _add_md_output(run):
    (run / "md.json").write_text("{}")


def _bigger_model(run, tmp_path):
    cfg = tmp_path / "bigger.yaml"
    cfg.write_text(CONFIG.replace("hidden: [8]", "hidden: [16]"))
    return cfg


REFUSED_TRAIN = [
    ("train into a finished run", None, [], "alreadyholdsaqdyntrainingrun"),
    ("train into an unfinished run", _unfinish, [], "alreadyholdsaqdyntrainingrun"),
    ("--from-prev without --resume", None, ["--from-prev"], "--from-prevonlygoeswith--resume"),
    ("--resume and --overwrite", None, ["--resume", "--overwrite"], "contradict"),
    ("train into an MD directory", _add_md_output, ["--overwrite"], "holdsaqdynMDrun"),
    ("--resume with fewer epochs", None, ["--resume", "--epochs", "2"], "hasdone3epochs"),
]


@pytest.mark.parametrize("what,prepare,extra,fragment", REFUSED_TRAIN, ids=[c[0] for c in REFUSED_TRAIN])
def test_train_refuses_and_loses_nothing(finished, tmp_path, what, prepare, extra, fragment):
    run = _copy(finished, tmp_path)
    if prepare is not None:
        prepare(run)
    before = _snapshot(run)
    code, text, r = _cli("train", "--config", finished.config, "--out", run, *extra)
    assert code == 2, r.output
    assert fragment in text, r.output
    assert "Traceback" not in r.output
    assert _snapshot(run) == before  # nothing written, nothing removed


def test_resume_with_a_changed_model_names_the_field(finished, tmp_path):
    run = _copy(finished, tmp_path)
    before = _snapshot(run)
    code, text, r = _cli("train", "--config", _bigger_model(run, tmp_path), "--out", run, "--resume")
    assert code == 2 and "model.hidden:[8]->[16]" in text, r.output
    assert _snapshot(run) == before


def test_resume_extends_epochs_and_overwrite_replaces(finished, tmp_path):
    run = _copy(finished, tmp_path)
    stale = run / "checkpoints" / ".latest.msgpack.x1y2.tmp"  # left by a killed writer
    stale.write_bytes(b"half")
    with open(run / "history.csv", "a") as fh:  # as if a killed job had logged an epoch after its checkpoint
        fh.write("4,end-to-end,99.0,,,,0.01,1.0\n")
    code, _, r = _cli("train", "--out", run, "--resume", "--epochs", "4")  # config from the run's config.yaml
    assert code == 0, r.output
    assert not stale.exists()
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert "epochs: 4" in (run / "config.yaml").read_text()  # the run's current config
    with open(run / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]  # each epoch once, the real one
    np.testing.assert_allclose([float(row["train_loss"]) for row in rows], [h["train_loss"] for h in history],
                               rtol=1e-15)
    # --overwrite: the old run's outputs are gone before the new one starts (no stale prev)
    (run / "parity_old.png").write_bytes(b"old plot")
    code, _, r = _cli("train", "--config", finished.config, "--out", run, "--overwrite", "--epochs", "1")
    assert code == 0, r.output
    assert not (run / "parity_old.png").exists() and not (run / "checkpoints" / "prev.msgpack").exists()
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1]


# -- parameters checked on every load ---------------------------------------------------------
def _flip_bit(run):
    blob = bytearray((run / "params.msgpack").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (run / "params.msgpack").write_bytes(bytes(blob))


def _truncate(run):
    blob = (run / "params.msgpack").read_bytes()
    (run / "params.msgpack").write_bytes(blob[: len(blob) // 2])


def _drop_checksum(run):
    (run / "params.json").unlink()


def _other_shapes(run):
    """Another model's parameters, with a valid checksum: only the shape check can tell."""
    from qdyn import checkpoint
    from qdyn.models import bpnn

    model = bpnn.build(species=(1, 8), hidden=(5,), n_radial=4, zetas=(1.0,))
    checkpoint.save_params(run / "params.msgpack", model.init(jax.random.PRNGKey(0)))


BAD_PARAMS = [
    ("eval of an unfinished run", _unfinish, "unfinishedtrainingrun"),
    ("a flipped bit in params.msgpack", _flip_bit, "params.msgpackistruncatedorcorrupted"),
    ("a truncated params.msgpack", _truncate, "params.msgpackistruncatedorcorrupted"),
    ("no checksum record", _drop_checksum, "params.jsonismissing"),
    ("parameters of another shape", _other_shapes, "hasshape(5,)"),
]


@pytest.mark.parametrize("what,damage,fragment", BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_eval_refuses_damaged_or_unfinished_runs(finished, tmp_path, what, damage, fragment):
    run = _copy(finished, tmp_path)
    damage(run)
    code, text, r = _cli("eval", "--model", run, "--data", "shipped:H2O")
    assert code == 2 and fragment in text, r.output
    assert "Traceback" not in r.output


def test_params_load_checks_every_leaf(finished):
    from qdyn.checkpoint import CheckpointError, load_params
    from qdyn.train import load_run

    model, params, _ = load_run(finished.run)
    template = model.init(jax.random.PRNGKey(1))
    reloaded = load_params(finished.run / "params.msgpack", template)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(reloaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # non-trivial: the template's shapes matter (a model with one species shift fewer)
    short = {**template, "shift": template["shift"][:1]}
    with pytest.raises(CheckpointError, match=r"\['shift'\] has shape \(2,\), this model needs \(1,\)"):
        load_params(finished.run / "params.msgpack", short)


# -- MD restarts ----------------------------------------------------------------------------
def _bpnn_run(path: Path, seed: int) -> Path:
    """A finished run directory of a small (untrained) BP network, as training leaves it."""
    from qdyn import checkpoint
    from qdyn.models import bpnn

    model = bpnn.build(species=(1, 8), hidden=(8,))
    path.mkdir(parents=True)
    checkpoint.save_params(path / "params.msgpack", model.init(jax.random.PRNGKey(seed)))
    (path / "model.json").write_text(json.dumps({"model": model.config}))
    return path


MD_ARGS = ["--ensemble", "nvt", "--temperature", "300", "--dt", "0.25", "--stride", "10"]


@pytest.fixture(scope="module")
def md_run(tmp_path_factory):
    """(model run, an MD directory of 20 steps = 3 frames of it: t = 0 and 2 sampled frames)."""
    root = tmp_path_factory.mktemp("md")
    model = _bpnn_run(root / "model", seed=0)
    code, _, r = _cli("md", "--model", model, *MD_ARGS, "--steps", "20", "--out", root / "md")
    assert code == 0, r.output
    return model, root / "md"


def _delete_xyz(md):
    (md / "trajectory.xyz").unlink()


def _cut_xyz(md):
    lines = (md / "trajectory.xyz").read_text().splitlines(keepends=True)
    (md / "trajectory.xyz").write_text("".join(lines[: len(lines) // 2 + 1]))


REFUSED_MD = [
    ("md into an existing MD run", None, [], "alreadyholdsaqdynMDrun"),
    ("--restart with another model", None, ["--restart", "--model", "OTHER"], "writtenwithanothermodel"),
    ("--restart without its trajectory", _delete_xyz, ["--restart"], "trajectory.xyzmissing"),
    ("--restart with a truncated trajectory", _cut_xyz, ["--restart"], "complete frames, fewer than the 3"),
    ("--restart with --steps below the steps done", None, ["--restart", "--steps", "10"], "hasdone20steps"),
    ("--restart and --overwrite", None, ["--restart", "--overwrite"], "contradict"),
]


@pytest.mark.parametrize("what,prepare,extra,fragment", REFUSED_MD, ids=[c[0] for c in REFUSED_MD])
def test_md_refuses_and_loses_nothing(md_run, tmp_path, what, prepare, extra, fragment):
    md = tmp_path / "md"
    shutil.copytree(md_run[1], md)
    if prepare is not None:
        prepare(md)
    before = _snapshot(md)
    extra = [str(_bpnn_run(tmp_path / "other", seed=1)) if a == "OTHER" else a for a in extra]
    code, text, r = _cli("md", "--model", md_run[0], *MD_ARGS, "--steps", "40", "--out", md, *extra)
    assert code == 2, r.output
    assert _squeeze(fragment) in text, r.output
    assert "Traceback" not in r.output
    assert _snapshot(md) == before


def test_md_into_a_training_run_is_refused_even_with_overwrite(finished):
    before = _snapshot(finished.run)
    code, text, r = _cli("md", "--model", finished.run, *MD_ARGS, "--steps", "20", "--out", finished.run,
                         "--overwrite")
    assert code == 2 and "holdsaqdyntrainingrun" in text, r.output
    assert _snapshot(finished.run) == before


def test_md_restart_keeps_the_frames_and_records_the_model(md_run, tmp_path):
    md = tmp_path / "md"
    shutil.copytree(md_run[1], md)
    first = (md / "trajectory.xyz").read_bytes()
    code, _, r = _cli("md", "--model", md_run[0], *MD_ARGS, "--steps", "40", "--out", md, "--restart")
    assert code == 0, r.output
    from qdyn import data

    assert (md / "trajectory.xyz").read_bytes().startswith(first)  # the first run's frames untouched
    assert data.read(md / "trajectory.xyz").n_frames == 5
    times = [float(t) for t in re.findall(r"time=(\S+)", (md / "trajectory.xyz").read_text())]
    np.testing.assert_allclose(times, [0.0, 2.5, 5.0, 7.5, 10.0])  # continued, frame 0 not written again
    summary = json.loads((md / "md.json").read_text())
    record = json.loads((md_run[0] / "params.json").read_text())
    assert summary["model"] == {"run": str(md_run[0].resolve()), "params_file_sha256": record["sha256"]}


# -- live logs --------------------------------------------------------------------------------
def test_training_log_is_written_while_a_batch_job_runs(finished):
    """`qdyn train` with stdout not a terminal: history.csv had rows before the job ended,
    and at the end holds every epoch, as history.json does."""
    assert finished.rows_seen_while_running >= 1, "no epoch row was readable while the run was going"
    with open(finished.run / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    history = json.loads((finished.run / "history.json").read_text())
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history] == [1, 2, 3]
    np.testing.assert_allclose([float(r["train_loss"]) for r in rows], [h["train_loss"] for h in history],
                               rtol=1e-15)
    lr = [float(r["lr"]) for r in rows]
    assert all(a > b for a, b in zip(lr, lr[1:])), lr  # the cosine schedule, step by step
    wall = [float(r["wall_s"]) for r in rows]
    assert all(a < b for a, b in zip(wall, wall[1:])), wall
    assert all(r["val_energy_mae_meV"] and r["val_force_mae_meV_per_A"] for r in rows)
