"""The MD uncertainty watchdog: an under-trained ensemble is stopped before its molecule comes
apart (and comes apart without the watchdog), a trained one runs through; a stopped replica is
frozen at its last trusted frame while the others go on; the watchdog does not change the
dynamics it watches; restarts keep stopped replicas stopped; the CLI refuses a model without
an uncertainty estimate."""

import json
from dataclasses import replace

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.data import Dataset, load_shipped
from qdyn.md import BlowUpError, MDOutput, MDSettings, make_watchdog, model_energy_fn, run_md
from qdyn.structures import water
from qdyn.train import parse_config, train
from qdyn.uncertainty import predict_with_uncertainty

THRESHOLD = 1.0  # eV/Å, per-atom force σ
SETTINGS = MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=400, temperature_K=300.0, replicas=3)
OUT = MDOutput(stride=10, frames_per_block=10, store_replicas=3, progress=None)


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory):
    """(model, trained params, under-trained params): a K=3 BPNN ensemble fitted to 48 H2O frames
    for 60 epochs, and the same run after its first 3 optimiser steps (one epoch: it knows the
    energy scale, not the bonds).

    Not the untrained members: their molecule comes apart within 5 fs while the members agree
    (σ < 1 eV/Å, the dissociated atoms are far outside every member's data alike): that is the
    temperature blow-up check's case, not the watchdog's (docs/md.md).
    """
    data = load_shipped("H2O").subset(np.arange(64))
    cfg = parse_config({"model": {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]},
                        "data": {"n_train": 48, "n_val": 8, "n_test": 8}, "epochs": 60, "batch_size": 16,
                        "optim": {"learning_rate": 2e-2}, "uncertainty": {"method": "ensemble", "ensemble": {"size": 3}}})
    run = tmp_path_factory.mktemp("wd") / "run"
    under = train(cfg, run, progress=False, data=data, max_steps=3)
    assert under.interrupted
    res = train(cfg, run, progress=False, data=data, resume=True)
    return res.model, res.params, under.params


def _oh(position):
    """[F, Rp] the longer O–H distance of every frame, Å."""
    return np.linalg.norm(position[:, :, 1:] - position[:, :, :1], axis=-1).max(-1)


def test_under_trained_ensemble_is_stopped_before_it_comes_apart(ensembles, tmp_path):
    model, _, under = ensembles
    R, system = water()
    energy = model_energy_fn(model.apply)
    # without the watchdog the molecule comes apart (or the run blows up)
    try:
        free = run_md(energy, under, R, system, SETTINGS, key=jax.random.PRNGKey(1), output=OUT)
        assert _oh(free.position).max() > 1.6
    except BlowUpError:
        pass
    wd = make_watchdog(model, max_force_std=THRESHOLD)
    res = run_md(energy, under, R, system, SETTINGS, key=jax.random.PRNGKey(1), watchdog=wd,
                 output=replace(OUT, out_dir=tmp_path / "md"))
    events = res.watchdog["events"]
    assert events and all(e["force_std_eV_per_A"] > THRESHOLD and "force σ" in e["reason"] for e in events)
    oh = _oh(res.position)
    for e in events:
        r, f = e["replica"], int(np.flatnonzero(res.step == e["step"])[0])
        assert oh[: f + 1, r].max() < 1.5  # every frame it was allowed to reach still holds the molecule
        # frozen from the stop on: its frames repeat the last trusted one, σ is NaN there
        np.testing.assert_array_equal(res.position[f:, r], np.broadcast_to(res.position[f, r],
                                                                           res.position[f:, r].shape))
        assert np.all(np.isnan(res.force_std[f:, r])) and np.all(np.isfinite(res.force_std[:f, r]))
        written = (tmp_path / "md" / e["frame_file"]).read_text().splitlines()
        np.testing.assert_allclose(np.array([l.split()[1:4] for l in written[2:]], float), res.position[f, r],
                                   rtol=0, atol=1e-12)
    # a replica still running after another stopped went on moving
    first = min(events, key=lambda e: e["step"])
    later = [r for r in range(3) if r not in {e["replica"] for e in events if e["step"] == first["step"]}]
    f0 = int(np.flatnonzero(res.step == first["step"])[0])
    if later and f0 + 1 < len(res.step):
        assert not np.allclose(res.position[f0 + 1, later[0]], res.position[f0, later[0]])
    summary = json.loads((tmp_path / "md" / "md.json").read_text())["watchdog"]
    assert summary["stopped"] == sorted(e["replica"] for e in events)
    assert summary["max_force_std_eV_per_A"] == THRESHOLD and summary["blocks"]


def test_trained_ensemble_runs_through(ensembles):
    model, params, _ = ensembles
    R, system = water()
    res = run_md(model_energy_fn(model.apply), params, R, system, SETTINGS, key=jax.random.PRNGKey(1),
                 watchdog=make_watchdog(model, max_force_std=THRESHOLD), output=OUT)
    assert res.watchdog["events"] == [] and len(res.step) == 41  # frame 0 (t = 0) and 40 sampled frames
    assert np.all(np.isfinite(res.force_std)) and 0 < res.force_std.max() < THRESHOLD
    assert _oh(res.position).max() < 1.3
    # the σ the block computed is the one qdyn.uncertainty predicts for those frames
    frames = Dataset(R=res.position[:3].reshape(-1, 3, 3), Z=np.tile(np.asarray(system.species), (9, 1)))
    pred = predict_with_uncertainty(model, params, frames)
    np.testing.assert_allclose(res.force_std[:3].ravel(), pred.F_std.max(axis=1), rtol=1e-9)
    np.testing.assert_allclose(res.energy_std[:3].ravel(), pred.E_std, rtol=1e-9)


def test_laplace_sigma_in_md_is_the_predicted_one():
    from qdyn.models import bpnn
    from qdyn.uncertainty import Estimator, LaplacePosterior
    from qdyn.uncertainty.laplace import readout_paths, split_readout

    model = bpnn.build(species=(1, 8), hidden=(4,))
    params = model.init(jax.random.PRNGKey(0))
    n = split_readout(params)[0].size
    est = Estimator("laplace", 1.0, 2.0, LaplacePosterior(np.eye(n) * 1e-4, tuple(readout_paths(params))))
    R, system = water()
    res = run_md(model_energy_fn(model.apply), params, R, system,
                 MDSettings(ensemble="nve", dt_fs=0.1, n_steps=20),
                 output=MDOutput(stride=5, progress=None), watchdog=make_watchdog(model, est, max_force_std=1e3))
    pred = predict_with_uncertainty(model, params, Dataset(R=res.position[:, 0], Z=np.tile(system.species, (len(res.step), 1))),
                                    est)
    np.testing.assert_allclose(res.force_std[:, 0], pred.F_std.max(axis=1), rtol=1e-9)
    np.testing.assert_allclose(res.energy_std[:, 0], pred.E_std, rtol=1e-9)
    assert np.ptp(res.force_std) > 0  # σ follows the moving molecule


def test_watchdog_does_not_change_the_dynamics(ensembles):
    model, params, _ = ensembles
    R, system = water()
    energy = model_energy_fn(model.apply)
    plain = run_md(energy, params, R, system, SETTINGS, key=jax.random.PRNGKey(2), output=OUT)
    watched = run_md(energy, params, R, system, SETTINGS, key=jax.random.PRNGKey(2),
                     watchdog=make_watchdog(model, max_force_std=1e9), output=OUT)
    assert plain.force_std is None and plain.watchdog is None
    np.testing.assert_allclose(watched.position, plain.position, rtol=0, atol=1e-12)
    assert np.ptp(plain.position[:, 0], axis=0).max() > 1e-3  # the molecule moved


def test_restart_keeps_stopped_replicas_stopped(ensembles, tmp_path):
    model, _, under = ensembles
    R, system = water()
    energy = model_energy_fn(model.apply)
    wd = make_watchdog(model, max_force_std=THRESHOLD)
    first = run_md(energy, under, R, system, SETTINGS.replace(n_steps=200), key=jax.random.PRNGKey(1), watchdog=wd,
                   output=replace(OUT, out_dir=tmp_path, checkpoint_every=1))
    assert first.watchdog["stopped"]
    again = run_md(energy, under, R, system, SETTINGS, key=jax.random.PRNGKey(1), watchdog=wd,
                   output=replace(OUT, out_dir=tmp_path, restart=True))
    assert set(first.watchdog["stopped"]) <= set(again.watchdog["stopped"])
    assert again.watchdog["events"][: len(first.watchdog["events"])] == first.watchdog["events"]
    # a replica stopped before the restart stays where it stopped (not watched afresh and run on)
    for r in first.watchdog["stopped"]:
        assert all(e["step"] <= 200 for e in again.watchdog["events"] if e["replica"] == r)
        np.testing.assert_array_equal(again.position[:, r], np.broadcast_to(first.position[-1, r],
                                                                            again.position[:, r].shape))


def test_make_watchdog_and_cli_refuse_models_without_uncertainty(tmp_path, write_run):
    from qdyn.models import bpnn
    from qdyn.validation import QdynInputError

    single = bpnn.build(species=(1, 8), hidden=(4,))
    with pytest.raises(QdynInputError, match="no uncertainty estimate"):
        make_watchdog(single, max_force_std=0.5)
    with pytest.raises(QdynInputError, match="needs a threshold"):
        make_watchdog(single)
    write_run(tmp_path / "run", single, single.init(jax.random.PRNGKey(0)))
    res = CliRunner().invoke(app, ["md", "--model", str(tmp_path / "run"), "--max-force-std", "0.5", "--steps", "20",
                                   "--out", str(tmp_path / "md")])
    assert res.exit_code != 0 and "no uncertainty estimate" in res.output and "Traceback" not in res.output
