"""Active learning (`qdyn learn`): a 2-round loop on H2O with an analytic labeller (ASE's EMT:
cheap, deterministic), its report, and resumption after a kill that loses nothing; the
selection helpers; the config in template/schema/validate."""

import json
import shutil

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.data import load_shipped, write
from qdyn.data.label_run import label_dataset
from qdyn.learn import LearnConfig, farthest_points, run_learning, select_uncertain


def _config(seed_path, cache, **over):
    raw = {
        "train": {"model": {"family": "bpnn", "hidden": [4], "n_radial": 4, "zetas": [1.0]},
                  "data": {"path": str(seed_path)}, "epochs": 2, "batch_size": 8,
                  "optim": {"learning_rate": 1e-2}, "uncertainty": {"method": "ensemble", "ensemble": {"size": 2}}},
        "labeler": {"workers": 0, "cache_dir": str(cache)},
        # a threshold an under-trained ensemble passes quickly: every round labels frames
        "explore": {"structure": "water", "temperature_K": 300, "n_steps": 60, "replicas": 2, "stride": 10,
                    "frames_per_block": 3, "max_force_std": 0.5},
        "select": {"n_per_round": 3},
        "max_rounds": 2, "n_test": 6,
    }
    raw.update(over)
    return LearnConfig.model_validate(raw)


@pytest.fixture(scope="module")
def emt():
    from ase.calculators.emt import EMT

    from qdyn.data import ASELabeler

    return ASELabeler(calculator_factory=EMT, name="EMT")


@pytest.fixture(scope="module")
def learned(tmp_path_factory, emt):
    """One uninterrupted 2-round run (and its seed data, cache, config)."""
    root = tmp_path_factory.mktemp("learn")
    cache = root / "cache"
    seed = label_dataset(load_shipped("H2O").subset(np.arange(20)), emt, workers=0, cache_dir=cache)
    write(seed, root / "seed.npz")
    # a second held-out set beside the seed's own test split (frames the loop never sees)
    held_out = label_dataset(load_shipped("H2O").subset(np.arange(30, 36)), emt, workers=0, cache_dir=cache)
    write(held_out, root / "held_out.npz")
    cfg = _config(root / "seed.npz", cache, test_data=str(root / "held_out.npz"))
    report = run_learning(cfg, root / "run", labeler=emt, progress=False)
    return root, cfg, report


def test_two_rounds_label_retrain_and_report(learned):
    root, cfg, report = learned
    run = root / "run"
    assert len(report["rounds"]) == 2 and not report["converged"]
    r0, r1 = report["details"]
    # round 0 stopped replicas and labelled new frames; round 1 trained on them, warm-started
    assert r0["explore"]["stopped"] >= 1 and 1 <= r0["labels_added"] <= cfg.select.n_per_round
    assert r1["n_train_pool"] == r0["n_train_pool"] + r0["labels_added"]
    for r in (0, 1):
        labels = np.load(run / f"round_{r:02d}" / "labels.npz")
        assert np.all(np.isfinite(labels["E"]))
        ev = json.loads((run / f"round_{r:02d}" / "explore" / "md.json").read_text())["watchdog"]["events"]
        assert all("force σ" in e["reason"] and e["time_fs"] <= cfg.explore.n_steps * cfg.explore.dt_fs for e in ev)
    assert report["labels_total"] == sum(x["labels_added"] for x in report["rounds"])
    assert (run / "report.md").read_text().count("\n| ") == 2 + 1  # header + two rounds
    # test_data: each round's model tested on the held-out frames, as evaluate() scores them
    from qdyn.data import read
    from qdyn.train import evaluate, load_run

    held_out = read(cfg.test_data)
    for r, rec in enumerate(report["details"]):
        model, params, _ = load_run(run / f"round_{r:02d}" / "train")
        assert rec["test_data"]["n_frames"] == held_out.n_frames == 6
        assert rec["test_data"]["force_mae_meV_per_A"] == pytest.approx(
            evaluate(model, params, held_out)["force_mae_meV_per_A"], rel=1e-9)
        assert rec["test_data"]["mean_force_std_eV_per_A"] > 0
    assert report["rounds"][1]["test_data_force_mae_meV_per_A"] == rec["test_data"]["force_mae_meV_per_A"]
    assert (run / "report.png").stat().st_size > 0


def test_kill_during_round_1_then_resume_relabels_nothing(learned, emt):
    root, cfg, report = learned
    run = root / "run"
    # a kill while round 1 was labelling: its selection and labels and the round record are gone
    state = json.loads((run / "learn.json").read_text())
    state["rounds"] = state["rounds"][:1]
    (run / "learn.json").write_text(json.dumps(state))
    labels_before = dict(np.load(run / "round_01" / "labels.npz"))
    (run / "round_01" / "labels.npz").unlink()
    (run / "round_01" / "selected.npz").unlink()
    again = run_learning(cfg, run, resume=True, labeler=emt, progress=False)
    rec = again["details"][1]
    assert rec["from_cache"] == rec["labels_added"]  # every label came from the cache: nothing recomputed
    labels = np.load(run / "round_01" / "labels.npz")
    for k in ("R", "E", "F"):
        np.testing.assert_array_equal(labels[k], labels_before[k])
    timeless = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert timeless(again["rounds"]) == timeless(report["rounds"])


def test_resume_refuses_a_changed_config_and_fresh_start_refuses_a_run(learned, emt):
    from qdyn.validation import QdynInputError

    root, cfg, _ = learned
    changed = cfg.model_copy(update={"n_test": 5})
    with pytest.raises(QdynInputError, match="n_test"):
        run_learning(changed, root / "run", resume=True, labeler=emt, progress=False)
    with pytest.raises(QdynInputError, match="already holds"):
        run_learning(cfg, root / "run", labeler=emt, progress=False)


def test_selection_prefers_uncertain_and_spread_frames():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.01, (10, 2)), rng.normal(5, 0.01, (10, 2))])  # two tight clusters
    sigma = np.concatenate([np.linspace(1.0, 0.9, 10), np.linspace(0.8, 0.7, 10)])
    sigma[3] = np.nan  # a frame whose σ is not finite is never picked
    picked = select_uncertain(sigma, X, 2, pool_factor=10)
    assert picked[0] == 0  # the most uncertain first
    assert picked[1] >= 10  # then the other cluster, not the second most uncertain near-copy
    assert 3 not in select_uncertain(sigma, X, 19, pool_factor=10)
    np.testing.assert_array_equal(farthest_points(np.array([[0.0], [1.0], [10.0]]), 2), [0, 2])


def test_learn_config_in_template_schema_validate_and_cli_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["template", "--full", "--kind", "learn"])
    assert res.exit_code == 0, res.output
    assert "max_force_std" in res.output and "eV/Å" in res.output
    cfg_path = tmp_path / "al.yaml"
    cfg_path.write_text(res.output)
    assert runner.invoke(app, ["validate", str(cfg_path), "--kind", "learn"]).exit_code == 0
    raw = yaml.safe_load(res.output)
    raw["explore"]["max_forse_std"] = 1.0
    cfg_path.write_text(yaml.safe_dump(raw))
    bad = runner.invoke(app, ["learn", "--config", str(cfg_path), "--out", str(tmp_path / "o")])
    assert bad.exit_code != 0 and "max_forse_std" in bad.output and "Traceback" not in bad.output
    assert "explore" in json.dumps(runner.invoke(app, ["schema", "--kind", "learn"]).output)


class _HarmonicLabeler:
    """E = Σ|R|² eV, F = -2R eV/Å: a cheap deterministic labeller that records the frames it saw."""

    def label(self, Z, R):
        from qdyn.data.labelers import FrameResult

        R = np.asarray(R, float)
        return FrameResult(energy=float(np.sum(R**2)), forces=-2.0 * R, converged=True)

    def describe(self):
        return {"labeler": "harmonic-test"}


def test_periodic_frames_are_labelled_in_their_box_and_join_the_box_seed(tmp_path):
    """A periodic explore structure: new frames keep the box (cell, pbc) so they concatenate
    with periodic seed frames; xTB gets the box, PySCF is refused; the diversity reference
    keeps only training frames of the explored composition."""
    from qdyn.data import Dataset
    from qdyn.learn.config import LabelerConfig
    from qdyn.learn.loop import _label, _same_composition
    from qdyn.system import System
    from qdyn.validation import QdynInputError

    box = load_shipped("water_box32").subset(np.arange(2))
    system = System.create(box.Z[0], box=box.cell[0])
    cfg = _config(tmp_path / "unused.npz", tmp_path / "cache")
    new, record = _label(cfg, tmp_path, box.R[:2] + 0.01, system, _HarmonicLabeler(), None)
    assert record["labels_added"] == 2 and new.pbc.all()
    np.testing.assert_array_equal(new.cell, box.cell)
    np.testing.assert_allclose(new.E, np.sum((box.R[:2] + 0.01) ** 2, axis=(1, 2)))
    joined = Dataset.concatenate([box, new], metadata=box.metadata)
    assert joined.n_frames == 4 and joined.cell.shape == (4, 3, 3)

    water = load_shipped("H2O").subset(np.arange(3))  # 3-atom frames padded beside the box
    mixed = Dataset.concatenate([Dataset(R=water.R, Z=water.Z, E=water.E, F=water.F,
                                         cell=np.broadcast_to(25.0 * np.eye(3), (3, 3, 3)).copy(),
                                         pbc=np.ones((3, 3), bool)), box], metadata={})
    np.testing.assert_array_equal(_same_composition(mixed, system), mixed.R[3:])

    xtb = LabelerConfig(method="GFN2-xTB").spec(cell=box.cell[0])
    np.testing.assert_array_equal(xtb["cell"], box.cell[0])
    assert LabelerConfig(method="GFN2-xTB").spec()["cell"] is None
    with pytest.raises(QdynInputError, match="periodic"):
        LabelerConfig(method="B3LYP").spec(cell=box.cell[0])


def test_resume_may_change_how_later_rounds_run_not_what_they_learn(learned):
    """A resume may change the schedule (explore, select, epochs; recorded from the round it
    applies to), never the model, the data, the reference or the start structure; a stored
    config that lacks an option added since (today's default) still resumes."""
    from qdyn.learn.loop import _load_state
    from qdyn.validation import QdynInputError

    root, cfg, _ = learned
    run = root / "run"
    stored = json.loads((run / "learn.json").read_text())
    resolved = cfg.model_dump(mode="json")
    del stored["config"]["explore"]["remove_rotation"]  # a run written before that option existed
    (run / "learn.json").write_text(json.dumps(stored))
    assert "config_history" not in _load_state(run, resolved, resume=True)

    later = cfg.model_copy(update={"warm_start_epochs": 1, "max_rounds": 3, "test_data": None,
                                   "explore": cfg.explore.model_copy(update={"n_steps": 120, "replicas": 4}),
                                   "select": cfg.select.model_copy(update={"n_per_round": 5})})
    state = _load_state(run, later.model_dump(mode="json"), resume=True)
    (change,) = state["config_history"]
    assert change["from_round"] == 2 and change["previous"]["explore"]["n_steps"] == 60
    assert state["config"]["explore"]["replicas"] == 4 and state["config"]["test_data"] is None

    def refused(**update):
        raw = json.loads(json.dumps(resolved))
        for key, value in update.items():
            section, name = key.split("__")
            raw[section][name] = value
        with pytest.raises(QdynInputError) as err:
            _load_state(run, raw, resume=True)
        return str(err.value)

    assert "explore.structure" in refused(explore__structure="lih")
    assert "labeler.method" in refused(labeler__method="GFN1-xTB")
    assert "train.uncertainty.method" in refused(train__uncertainty={"method": "laplace", "ensemble": {"size": 2},
                                                                     "laplace": {"prior_precision": 1.0}})


def test_warm_started_rounds_train_their_own_epochs_end_to_end(tmp_path):
    from qdyn.learn.loop import _train_config

    cfg = _config(tmp_path / "seed.npz", tmp_path / "cache", warm_start_epochs=3)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"staged": True, "pretrain_epochs": 1})})
    cold, warm = _train_config(cfg, 40, warm=False), _train_config(cfg, 40, warm=True)
    assert (cold.epochs, cold.staged) == (2, True) and (warm.epochs, warm.staged) == (3, False)
    assert warm.data.n_train + warm.data.n_val == 40 and warm.data.n_test == 0


def test_relative_threshold_scales_the_sigma_inside_the_training_data(learned):
    """max_force_std_relative replaces the absolute threshold (both given is refused) and sets
    factor × the σ reference of the training frames, which lies below the σ of frames outside
    the data (the same molecules stretched 40 %)."""
    from pydantic import ValidationError

    from qdyn.learn.loop import REFERENCE_QUANTILE, _force_threshold, _frames_of
    from qdyn.structures import load_structure
    from qdyn.train import load_run
    from qdyn.uncertainty import load_estimator, predict_with_uncertainty

    root, cfg, _ = learned
    rel = cfg.explore.model_copy(update={"max_force_std": None, "max_force_std_relative": 1.5})
    assert type(cfg.explore).model_validate({**cfg.explore.model_dump(exclude={"max_force_std"}),
                                             "max_force_std_relative": 1.5}).max_force_std is None
    with pytest.raises(ValidationError, match="not both"):
        type(cfg.explore).model_validate({**cfg.explore.model_dump(), "max_force_std_relative": 1.5})
    run = root / "run" / "round_01" / "train"
    model, params, _ = load_run(run)
    est = load_estimator(run, params)
    R0, system = load_structure(cfg.explore.structure)
    train_R = load_shipped("H2O").R[:12]
    th = _force_threshold(rel, model, params, est, train_R, R0, system)
    ref = th["force_std_reference_eV_per_A"]
    assert th["max_force_std_eV_per_A"] == pytest.approx(1.5 * ref) and th["n_reference_frames"] == 12
    inside = predict_with_uncertainty(model, params, _frames_of(system, train_R), est).F_std.max(-1)
    assert ref == pytest.approx(np.quantile(inside, REFERENCE_QUANTILE)) and ref > 0
    centre = train_R.mean(axis=1, keepdims=True)
    stretched = predict_with_uncertainty(model, params, _frames_of(system, centre + 1.4 * (train_R - centre)),
                                         est).F_std.max(-1)
    assert np.median(stretched) > ref
    absolute = _force_threshold(cfg.explore, model, params, est, train_R, R0, system)
    assert absolute == {"max_force_std_eV_per_A": cfg.explore.max_force_std}
