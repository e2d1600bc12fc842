"""Training: config validation, resume = uninterrupted, atomic/verified checkpoints,
staged training and frozen groups, metrics and plots, CLI."""

import json
import logging

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.data import load_shipped
from qdyn.train import ConfigError, parse_config, train
from qdyn.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def h2o_small():
    return load_shipped("H2O").subset(np.arange(48))


def _cfg(model, **over):
    raw = {"model": model, "data": {"n_train": 32, "n_val": 8, "n_test": 8},
           "epochs": 3, "batch_size": 8, "checkpoint_every": 1, "optim": {"learning_rate": 5e-3}}
    raw.update(over)
    return parse_config(raw)


BPNN = {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}
SIVQLM = {"family": "sivqlm", "layers": 2}


def test_misspelled_key_is_rejected_before_compiling():
    with pytest.raises(ConfigError, match="optim.learning_rte"):
        parse_config({"optim": {"learning_rte": 1e-3}})
    with pytest.raises(ConfigError, match=r"model.sivqlm.layers: Input should be greater"):
        parse_config({"model": {"family": "sivqlm", "layers": 0}})
    with pytest.raises(ConfigError, match="pretrain_epochs"):
        parse_config({"staged": True, "pretrain_epochs": 10, "epochs": 5})


# The siVQLM's resume (across a stage boundary, with its own optimiser state) is checked
# bit-for-bit in the staged-training test below; this one covers a classical model's.
def test_resume_equals_uninterrupted(h2o_small, tmp_path):
    cfg = _cfg(BPNN)
    full = train(cfg, tmp_path / "full", progress=False, data=h2o_small)
    part = train(cfg, tmp_path / "part", progress=False, data=h2o_small, max_steps=6)  # stops mid-epoch 2
    assert part.interrupted
    done = train(cfg, tmp_path / "part", progress=False, data=h2o_small, resume=True)
    assert not done.interrupted
    for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(done.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in done.history]


def test_runs_that_differ_in_learning_rate_or_length_share_one_compiled_step(h2o_small, tmp_path):
    """The step takes the learning rate as an argument: a rate or epoch sweep compiles once."""
    from qdyn import compiled
    from qdyn.train.optim import make_schedule

    train(_cfg(BPNN, epochs=2), tmp_path / "a", progress=False, data=h2o_small)
    before = compiled.stats()
    cfg = _cfg(BPNN, epochs=3, optim={"learning_rate": 2e-2})
    second = train(cfg, tmp_path / "b", progress=False, data=h2o_small)
    after = compiled.stats()
    assert after["compiled"] == before["compiled"] and after["reused"] > before["reused"]
    # and the rates are the config's: cosine decay from 2e-2 over 3 epochs of 4 steps
    schedule = make_schedule(cfg.optim, 3 * 4)
    assert [h["lr"] for h in second.history] == pytest.approx([float(schedule(4 * e + 3)) for e in range(3)], rel=1e-12)
    assert second.history[0]["lr"] > 1.5e-2 > 1e-3 > second.history[-1]["lr"]


def test_corrupt_checkpoint_is_reported_and_prev_survives(h2o_small, tmp_path):
    cfg = _cfg(BPNN)
    train(cfg, tmp_path, progress=False, data=h2o_small)
    latest = tmp_path / "checkpoints" / "latest.msgpack"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupted.*previous good checkpoint"):
        train(cfg, tmp_path, progress=False, data=h2o_small, resume=True)
    assert (tmp_path / "checkpoints" / "prev.msgpack").exists()
    res = train(cfg, tmp_path, progress=False, data=h2o_small, resume=True, from_prev=True)
    assert not res.interrupted


def test_staged_training_freezes_circuit_during_pretraining(h2o_small, tmp_path):
    cfg = _cfg(SIVQLM, staged=True, pretrain_epochs=2, epochs=3)
    first = train(cfg, tmp_path / "a", progress=False, data=h2o_small, max_steps=8)  # = end of stage 1
    from qdyn.models import build_model
    from qdyn.train.trainer import normalize_params, split_data

    tr, _, _ = split_data(h2o_small, cfg.data)
    model = build_model(cfg.model.model_dump())
    p0, _ = normalize_params(model, model.init(jax.random.PRNGKey(cfg.seed)), tr, "species_lstsq")
    np.testing.assert_array_equal(np.asarray(first.params["J"]), np.asarray(p0["J"]))
    np.testing.assert_array_equal(np.asarray(first.params["alpha"]), np.asarray(p0["alpha"]))
    assert not np.array_equal(np.asarray(first.params["scale"]), np.asarray(p0["scale"]))
    done = train(cfg, tmp_path / "a", progress=False, data=h2o_small, resume=True)
    assert not np.array_equal(np.asarray(done.params["J"]), np.asarray(p0["J"]))
    # stopped at the stage boundary and resumed == trained without a stop, bit for bit
    full = train(cfg, tmp_path / "full", progress=False, data=h2o_small)
    for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(done.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in done.history]


def test_training_reduces_error_and_writes_artefacts(h2o_small, tmp_path, caplog):
    cfg = _cfg(BPNN, epochs=6)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        res = train(cfg, tmp_path, progress=False, data=h2o_small)
    # one traced step for 24 steps: nothing about the inputs (shapes, dtypes, weak types of the
    # normalised parameters) changes after the first one. Traces, not XLA compiles: an equal step
    # compiled by an earlier run in this process is reused (the schedule is not part of it)
    assert sum("Finished tracing step for jit" in r.getMessage() for r in caplog.records) == 1
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test"]["force_mae_meV_per_A"] > 0 and len(metrics["test"]["force_mae_components_meV_per_A"]) == 3
    for f in ("parity_test.png", "learning_curve.png", "params.msgpack", "config.yaml", "model.json"):
        assert (tmp_path / f).stat().st_size > 0


def test_frozen_group_does_not_move(h2o_small, tmp_path):
    cfg = _cfg(SIVQLM, epochs=1, optim={"frozen": ["quantum"], "learning_rate": 1e-2})
    res = train(cfg, tmp_path / "frozen", progress=False, data=h2o_small, max_steps=3)
    # zero steps: the parameters training starts from (initialised and normalised)
    start = train(cfg, tmp_path / "start", progress=False, data=h2o_small, max_steps=0).params
    for k in ("alpha", "J"):  # quantum: frozen
        np.testing.assert_array_equal(np.asarray(res.params[k]), np.asarray(start[k]))
    for k in ("scale", "shift"):  # classical: trained
        assert np.max(np.abs(np.asarray(res.params[k]) - np.asarray(start[k]))) > 1e-6, k


@pytest.mark.slow
def test_cli_train_eval_template(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["template", "--out", str(tmp_path / "t.yaml")])
    assert res.exit_code == 0
    res = runner.invoke(app, ["train", "--config", str(tmp_path / "t.yaml"), "--family", "bpnn", "--data",
                              "shipped:LiH", "--epochs", "2", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"]  # stdout is the JSON result alone (the progress bar is on stderr)
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", "shipped:LiH"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    from qdyn.train import evaluate, load_run

    model, params, _ = load_run(tmp_path / "run")
    direct = evaluate(model, params, load_shipped("LiH"))  # the CLI reports what the library computes
    assert m["n_frames"] == 200
    for k in ("energy_mae_meV", "force_mae_meV_per_A"):
        np.testing.assert_allclose(m[k], direct[k], rtol=1e-9)
    (tmp_path / "bad.yaml").write_text("epochs: 3\nbatch_sise: 4\n")
    res = runner.invoke(app, ["train", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "batch_sise" in res.output


def test_optimizer_options_run_and_change_the_result(h2o_small, tmp_path):
    """EMA, reduce-on-plateau, AdamW, exponential decay and loss-weight schedules are wired
    through (each changes the trained parameters)."""
    base = train(_cfg(BPNN, epochs=2), tmp_path / "base", progress=False, data=h2o_small).params
    variants = {
        "ema": {"optim": {"ema_decay": 0.9, "learning_rate": 5e-3}},
        "plateau_adamw_exp": {"optim": {"reduce_on_plateau": True, "plateau_patience": 1, "optimizer": "adamw",
                                        "weight_decay": 1e-3, "schedule": "exponential", "learning_rate": 5e-3}},
        "schedules": {"loss": {"energy_weight": 1.0, "energy_weight_final": 10.0, "force_weight_final": 0.1}},
    }
    for name, over in variants.items():
        p = train(_cfg(BPNN, epochs=2, **over), tmp_path / name, progress=False, data=h2o_small).params
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(base)))
        assert np.isfinite(diff) and diff > 1e-6, name


def test_config_records_a_dataset_passed_in_memory(tmp_path):
    """A run trained on a Dataset object must not claim the config's default data path."""
    import yaml

    ds = load_shipped("LiH")
    cfg = parse_config({"model": {"family": "bpnn", "hidden": [4]}, "data": {"n_train": 20, "n_val": 4, "n_test": 4},
                        "epochs": 1})
    train(cfg, tmp_path / "run", data=ds, progress=False)
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["path"]
    assert "LiH" in recorded and "200 frames" in recorded and recorded != cfg.data.path
