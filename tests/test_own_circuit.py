"""Bring your own circuit (qdyn.quantum.user): a user's PennyLane qfunc as a template model
(family ``custom``) and as the hybrid's per-atom branch; its two executions agree, the symmetry
checks say which symmetry a circuit breaks, bad circuits are one-line errors, and `qdyn train`
trains one from a config that a run directory records (NVE MD with a trained user circuit and
its energy-conservation check: notebooks/07_your_own_circuit.ipynb)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn import testing
from qdyn.models import build_model, energy_and_forces_fn
from qdyn.quantum.user import UserCircuit, user_circuit
from qdyn.structures import rattle, water
from qdyn.validation import QdynInputError

EXAMPLES = "qdyn.quantum.examples"
WATER = {"family": "custom", "template": "H2O",
         "circuit": {"qfunc": f"{EXAMPLES}:water_exchange", "wires": 2, "weight_shapes": {"alpha": [2], "J": [2]},
                     "init": {"alpha": {"mean": 1.0, "std": 0.1}}}}
BRANCH = {"family": "hybrid", "hidden": [4], "n_radial": 3, "zetas": [1.0], "branch": "custom",
          "circuit": {"qfunc": f"{EXAMPLES}:angle_layers", "wires": 2, "observable": "z",
                      "weight_shapes": {"weights": [1, 2, 3]}}}


def _model(config, seed=0):
    model = build_model(config, species=(1, 8))
    params = testing.randomize_params(model.init(jax.random.PRNGKey(seed)), jax.random.PRNGKey(seed + 1), scale=0.3)
    R, system = water()
    return model, params, jnp.asarray(rattle(R, seed)), system


@pytest.mark.parametrize("qfunc, shapes, inputs, reduce", [
    ("water_exchange", {"alpha": [2], "J": [2]}, (2, 3), "mean"),
    ("angle_layers", {"weights": [2, 3, 3]}, (3,), "none"),  # PennyLane templates: decomposed for the fast path
])
def test_statevector_path_equals_the_qnode_in_values_and_gradients(qfunc, shapes, inputs, reduce):
    wires = inputs[0]
    circuit = user_circuit(UserCircuit(qfunc=f"{EXAMPLES}:{qfunc}", wires=wires, weight_shapes=shapes),
                           inputs, reduce=reduce)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {k: jax.random.normal(jax.random.fold_in(k1, i), tuple(s)) for i, (k, s) in enumerate(shapes.items())}
    x = jax.random.normal(k2, inputs)
    qnode = circuit.qnode()

    def summed(fn):  # a scalar of every output, weighted so each output counts
        return lambda p, x: jnp.sum(fn(p, x) * jnp.arange(1.0, 1.0 + np.prod(circuit.out_shape)))

    fast, pl = (jax.jit(jax.value_and_grad(summed(fn), argnums=(0, 1))) for fn in (circuit.expval, qnode))
    (v_fast, g_fast), (v_pl, g_pl) = fast(params, x), pl(params, x)
    np.testing.assert_allclose(v_fast, v_pl, atol=1e-12)
    assert abs(float(v_fast)) > 1e-3  # not a trivial zero
    for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_pl)):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_an_invariant_user_circuit_passes_the_symmetry_checks():
    assert build_model(WATER).config["execution"]["backend"] == "pennylane"  # the default for user circuits
    # the sweep of test_model_families runs the default execution; here the statevector path
    model, params, R, system = _model({**WATER, "execution": {"backend": "statevector"}})
    report = testing.check_circuit(model, params, R, system)
    assert set(report) >= {"rotation", "reflection", "translation", "permutation [0, 2, 1]", "forces_fd"}
    assert report["nontrivial"]["max_force"] > 1e-3


@pytest.mark.parametrize("qfunc, shapes, broken, kept", [
    ("water_exchange_untied", {"alpha": [2, 2], "J": [2]}, r"permutation \[0, 2, 1\]", "rotation"),
    ("cartesian_angles", {"W": [1, 2, 3]}, "rotation", "translation"),
])
def test_a_non_invariant_user_circuit_fails_naming_the_broken_symmetry(qfunc, shapes, broken, kept):
    config = {**WATER, "circuit": {"qfunc": f"{EXAMPLES}:{qfunc}", "wires": 2, "weight_shapes": shapes},
              "execution": {"backend": "statevector"}}
    model, params, R, system = _model(config)
    with pytest.raises(AssertionError, match=f"breaks .*{broken}") as info:
        testing.check_circuit(model, params, R, system)
    assert kept not in str(info.value)


def test_the_hybrid_runs_a_user_branch_and_stays_invariant():
    model, params, R, system = _model(BRANCH)
    assert model.config["n_qubits"] == 2 and model.config["execution"]["backend"] == "pennylane"
    params = {**params, "int_q": params["int_q"] + 1.0}  # the branch's outputs reach the energy
    report = testing.check_circuit(model, params, R, system)
    assert report["permutation [0, 2, 1]"]["energy_error"] < 1e-10
    ef = jax.jit(energy_and_forces_fn(model.apply))
    E0, _ = ef(params, R, system)
    E1, _ = ef({**params, "qweights": {"weights": params["qweights"]["weights"] + 0.3}}, R, system)
    assert abs(float(E1 - E0)) > 1e-6  # the circuit's weights matter
    assert build_model(model.config).config == model.config  # run directories rebuild it


@pytest.mark.parametrize("circuit, message", [
    ({"qfunc": "no_such_module_q:fn"}, "cannot import module 'no_such_module_q'"),
    ({"qfunc": f"{EXAMPLES}:nope"}, "has no 'nope'"),
    ({"weight_shapes": {"alpha": [2]}}, "does not match its signature"),
    ({"wires": 1, "observable": "z"}, r"acts on wires \[1\]"),
    ({"qfunc": "qdyn.quantum.examples"}, "not an import path"),
    ({"input_shape": [3]}, "input_shape is for the hybrid"),
])
def test_bad_user_circuits_are_one_line_errors(circuit, message):
    config = {**WATER, "circuit": {**WATER["circuit"], **circuit}}
    with pytest.raises(QdynInputError, match=message) as info:
        build_model(config)
    assert "\n" not in str(info.value)


def test_a_qfunc_that_measures_is_refused(tmp_path, monkeypatch):
    (tmp_path / "measuring_circuit.py").write_text(
        "import pennylane as qml\n\n\ndef fn(vectors, w):\n    qml.RY(w[0], wires=0)\n"
        "    return qml.expval(qml.PauliZ(0))\n")
    monkeypatch.chdir(tmp_path)  # the current directory is searched, as `python -m` does
    config = {**WATER, "circuit": {"qfunc": "measuring_circuit:fn", "wires": 1, "weight_shapes": {"w": [1]},
                                   "observable": "z"}}
    with pytest.raises(QdynInputError, match="must only apply gates"):
        build_model(config)


@pytest.mark.slow
def test_qdyn_train_config_trains_a_user_circuit_and_records_its_import_path(tmp_path):
    """`qdyn train --config` trains the qfunc and records its import path; the run directory
    rebuilds the model (load_run: what `qdyn eval`/`md`/`export` use). NVE MD of a trained user
    circuit with an energy-conservation assertion runs in notebooks/07_your_own_circuit.ipynb
    (executed by the suite): not repeated here, its compile is the expensive part."""
    import yaml

    from qdyn.cli.app import app
    from qdyn.train import load_run

    config = {"model": WATER, "data": {"path": "shipped:H2O", "n_train": 16, "n_val": 4, "n_test": 4},
              "epochs": 2, "batch_size": 8, "optim": {"learning_rate": 2e-2}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    stored = json.loads((tmp_path / "run" / "model.json").read_text())["model"]
    assert stored["circuit"]["qfunc"] == f"{EXAMPLES}:water_exchange"
    model, params, _ = load_run(tmp_path / "run")
    assert model.config["circuit"] == stored["circuit"]
    assert set(params["qweights"]) == {"alpha", "J"}  # the user's weights, by their keyword names
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + config["epochs"]


def test_a_run_whose_circuit_module_is_gone_is_a_one_line_cli_error(tmp_path, write_run):
    from qdyn.cli.app import app

    model = build_model(WATER)
    write_run(tmp_path / "run", model, model.init(jax.random.PRNGKey(0)))
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    info["model"]["circuit"]["qfunc"] = "moved_away_circuits:water"
    (tmp_path / "run" / "model.json").write_text(json.dumps(info))
    res = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", "shipped:H2O"])
    assert res.exit_code == 2
    assert "cannot import module 'moved_away_circuits'" in res.output and "Traceback" not in res.output


def test_a_qfunc_passed_as_a_function_is_recorded_by_its_import_path():
    from qdyn.models import custom
    from qdyn.quantum import examples

    shapes = WATER["circuit"]["weight_shapes"]
    model = custom.build(template="H2O", circuit={"qfunc": examples.water_exchange, "wires": 2,
                                                  "weight_shapes": shapes})
    assert model.config["circuit"]["qfunc"] == f"{EXAMPLES}:water_exchange"
    with pytest.raises(QdynInputError, match="cannot be recorded by import path"):
        custom.build(template="H2O", circuit={"qfunc": lambda vectors, alpha, J: None, "wires": 2,
                                              "weight_shapes": shapes})


def test_qdyn_circuit_specs_counts_the_gates_of_a_user_circuit(tmp_path, write_run):
    from qdyn.cli.app import app

    model = build_model(WATER)
    write_run(tmp_path / "run", model, model.init(jax.random.PRNGKey(0)))
    res = CliRunner().invoke(app, ["circuit", "specs", "--model", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    specs = json.loads(res.output)
    assert specs["n_qubits"] == 2 and specs["trainable_parameters"] == 4
    # 2 layers: two Rot per encoding x 2 wires, one IsingXX/YY/ZZ each; the singlet's CNOT
    assert specs["gate_types"]["Rot"] == 8 and specs["gate_types"]["IsingXX"] == 2 and specs["gate_types"]["CNOT"] == 1
