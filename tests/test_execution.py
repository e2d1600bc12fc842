"""Choosing how circuits run (qdyn.quantum.execution): PennyLane devices, shots, noise, the
refusals, and `qdyn train|eval|md|circuit` with PennyLane in the loop on a tiny LiH siVQLM."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pennylane as qml
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.models import bpnn, sivqlm
from qdyn.models.base import energy_and_forces
from qdyn.models.config import build_model
from qdyn.quantum.execution import Execution, require, with_execution
from qdyn.quantum.reupload import reupload_circuit
from qdyn.structures import lih, water
from qdyn.validation import QdynInputError

PL = {"backend": "pennylane"}


def _perturbed(model, seed=1):
    p = model.init(jax.random.PRNGKey(seed))
    return jax.tree_util.tree_map(lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 1), a.shape), p)


def _one_line(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


@pytest.mark.parametrize("settings, match", [
    ({"shots": 100}, "need backend 'pennylane'"),
    ({"device": "lightning.qubit"}, "need backend 'pennylane'"),
    ({**PL, "noise": {"depolarizing": 0.01}}, "mixed-state device"),
])
def test_inconsistent_execution_is_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        Execution.model_validate(settings)


@pytest.mark.parametrize("settings, task, match", [
    ({**PL, "diff_method": "adjoint"}, "train", "silently wrong"),
    ({**PL, "shots": 100, "diff_method": "parameter-shift"}, "train", "finite shots"),
    ({**PL, "device": "lightning.qubit"}, "forces", "no backprop"),
    ({**PL, "shots": 100}, "forces", "parameter-shift"),
    ({**PL, "shots": 100, "diff_method": "adjoint"}, "forces", "exact expectation values"),
])
def test_require_refuses_what_a_task_cannot_get(settings, task, match):
    with pytest.raises(QdynInputError, match=match):
        require(Execution.model_validate(settings), task)


def test_require_accepts_what_works():
    for settings, task in (({**PL}, "train"), ({**PL, "device": "default.mixed"}, "train"),
                           ({**PL, "device": "lightning.qubit", "diff_method": "adjoint"}, "forces"),
                           ({**PL, "shots": 100, "diff_method": "parameter-shift"}, "forces"),
                           ({**PL, "shots": 100}, "energy"), ({}, "train")):
        require(Execution.model_validate(settings), task)


def test_execution_round_trips_through_the_model_config_and_old_configs_still_load():
    model = sivqlm.build("LiH", layers=1, execution={**PL, "device": "default.mixed",
                                                      "noise": {"depolarizing": 0.02}})
    again = build_model(json.loads(json.dumps(model.config)))
    assert again.config == model.config and again.config["execution"]["noise"]["depolarizing"] == 0.02
    legacy = {k: v for k, v in sivqlm.build("LiH", layers=1).config.items() if k != "execution"}
    assert build_model({**legacy, "backend": "pennylane"}).config["execution"]["backend"] == "pennylane"
    with pytest.raises(QdynInputError, match="no circuit"):
        with_execution(bpnn.build(species=(1, 3), hidden=(4,)).config, {"backend": "pennylane"})


def test_pennylane_model_equals_statevector_model_on_any_exact_device():
    """Energies and forces of the LiH siVQLM (one vector along z: the native encoding's frame
    keeps it regular) on default.qubit and noiseless default.mixed equal the statevector's."""
    R, system = lih()
    sv = sivqlm.build("LiH", layers=2)
    params = _perturbed(sv)
    E0, F0 = energy_and_forces(sv, params, R, system)
    assert float(jnp.max(jnp.abs(F0))) > 1e-2  # non-trivial forces
    for device in ("default.qubit", "default.mixed"):
        m = sivqlm.build("LiH", layers=2, execution={**PL, "device": device})
        E, F = energy_and_forces(m, params, R, system)
        np.testing.assert_allclose(float(E), float(E0), atol=1e-10)
        np.testing.assert_allclose(np.asarray(F), np.asarray(F0), atol=1e-10)


def test_noise_channels_act_as_documented():
    """Readout error p scales every ⟨Z_q⟩ by exactly 1-2p; depolarising after each layer
    shrinks the expectations; the noiseless mixed-state device equals the statevector."""
    circuit = reupload_circuit(2, layers=2)
    cparams = {"W": jax.random.normal(jax.random.PRNGKey(3), circuit.param_shapes["W"])}
    angles = jax.random.normal(jax.random.PRNGKey(4), (2, 2))
    exact = np.asarray(circuit.expval(cparams, angles))
    assert np.min(np.abs(exact)) > 1e-2
    mixed = lambda noise: np.asarray(circuit.qnode(Execution(backend="pennylane", device="default.mixed",  # noqa: E731
                                                             noise=noise))(cparams, angles))
    np.testing.assert_allclose(mixed({}), exact, atol=1e-12)
    np.testing.assert_allclose(mixed({"readout": 0.1}), 0.8 * exact, atol=1e-12)
    damped = mixed({"depolarizing": 0.05})
    assert np.all(np.abs(damped) < np.abs(exact))
    assert np.all(np.abs(mixed({"amplitude_damping": 0.2}) - exact) > 1e-3)


def test_shots_are_seeded_and_reproducible():
    circuit = reupload_circuit(2, layers=1)
    cparams = {"W": jax.random.normal(jax.random.PRNGKey(3), circuit.param_shapes["W"])}
    angles = jnp.array([[0.4, -0.9]])
    exact = np.asarray(circuit.expval(cparams, angles))
    sampled = lambda seed: np.asarray(circuit.qnode(Execution(backend="pennylane", shots=2000,  # noqa: E731
                                                              seed=seed))(cparams, angles))
    with jax.numpy_rank_promotion("allow"):  # PennyLane's sampler broadcasts implicitly
        a, b, c = sampled(0), sampled(0), sampled(1)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c) and np.any(a != exact)
    np.testing.assert_allclose(a, exact, atol=5 * 2 / np.sqrt(2000))  # within 5σ of the exact value


def test_native_programs_count_native_gates():
    model = sivqlm.build("H2O", layers=1)
    from qdyn.quantum.export import model_circuit, resources

    R, _ = water()
    res = resources(model_circuit(model, model.init(jax.random.PRNGKey(0)), R))
    assert "QubitUnitary" not in res["gate_types"]
    # 4 qubits: 2 Rot per encoding, the 4 ring pairs' exchanges as IsingXX·IsingYY·IsingZZ
    assert res["gate_types"]["Rot"] == 8 and res["gate_types"]["IsingZZ"] == 4 and res["n_qubits"] == 4


def _replay_qasm(text: str, n_qubits: int) -> np.ndarray:
    """The state an OpenQASM 2.0 gate list (rx ry rz h x z s cx cry) prepares from |0…0⟩, using
    PennyLane's gate matrices (PennyLane's own reader needs the pennylane-qiskit plugin)."""
    import re

    gates = {"rx": qml.RX, "ry": qml.RY, "rz": qml.RZ, "h": qml.Hadamard, "x": qml.PauliX, "z": qml.PauliZ,
             "s": qml.S, "cx": qml.CNOT, "cry": qml.CRY}
    ops = []
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)(?:\(([^)]*)\))? (q\[\d+\](?:,q\[\d+\])*);", line.strip())
        if not m or m.group(1) in ("measure", "qreg", "creg"):
            continue
        wires = [int(w) for w in re.findall(r"q\[(\d+)\]", m.group(3))]
        args = [float(eval(a, {"pi": np.pi})) for a in m.group(2).split(",")] if m.group(2) else []
        ops.append(gates[m.group(1)](*args, wires=wires))
    assert ops, "no gates read"
    U = qml.matrix(qml.prod(*reversed(ops)), wire_order=range(n_qubits))
    return U[:, 0]


@pytest.fixture
def lih_pennylane_run(tmp_path, write_run):
    """A run directory holding a 1-layer LiH siVQLM that runs on PennyLane default.qubit."""
    model = sivqlm.build("LiH", layers=1, execution=PL)
    return write_run(tmp_path / "run", model, _perturbed(model))


@pytest.mark.slow  # compiles a PennyLane training step, evaluation and MD block (~30 s idle, 90 s on a busy CPU)
def test_cli_train_eval_md_with_pennylane_in_the_loop(tmp_path):
    """One real run of each command path with backend pennylane (tiny LiH siVQLM)."""
    (tmp_path / "c.yaml").write_text(
        "model: {family: sivqlm, template: LiH, layers: 1, execution: {backend: pennylane}}\n"
        "data: {path: 'shipped:LiH', n_train: 8, n_val: 2, n_test: 4}\nepochs: 2\nbatch_size: 4\n")
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "model.json").read_text())["model"]["execution"]["backend"] == "pennylane"
    data_arg = "shipped:LiH"
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", data_arg])
    assert res.exit_code == 0, res.output
    on_pl = json.loads(res.output)
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", data_arg, "--backend", "statevector"])
    on_sv = json.loads(res.output)
    assert on_pl["execution"]["backend"] == "pennylane" and on_sv["execution"]["backend"] == "statevector"
    for k in ("energy_mae_meV", "force_mae_meV_per_A"):  # the same model, two executions
        np.testing.assert_allclose(on_pl[k], on_sv[k], rtol=1e-8)
    res = runner.invoke(app, ["md", "--model", str(tmp_path / "run"), "--ensemble", "nve", "--steps", "20",
                              "--stride", "10", "--temperature", "100", "--out", str(tmp_path / "md")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "md" / "trajectory.xyz").exists()


def test_cli_refusals_are_one_line(tmp_path, lih_pennylane_run):
    runner = CliRunner()
    (tmp_path / "adj.yaml").write_text(
        "model: {family: sivqlm, template: LiH, layers: 1, execution: {backend: pennylane, diff_method: adjoint}}\n"
        "data: {path: 'shipped:LiH', n_train: 4, n_val: 1, n_test: 1}\nepochs: 1\n")
    res = runner.invoke(app, ["train", "--config", str(tmp_path / "adj.yaml"), "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and "silently wrong" in res.output and "Traceback" not in res.output, res.output
    run = str(tmp_path / "run")
    for flags, match in ((["--shots", "100"], "parameter-shift"),
                         (["--device", "lightning.qubit"], "no backprop"),
                         (["--backend", "statevector", "--shots", "10"], None),  # statevector drops PL settings
                         (["--device", "default.qubit", "--diff-method", "adjoint", "--shots", "5"], "exact")):
        res = runner.invoke(app, ["eval", "--model", run, "--data", "shipped:nope", *flags])
        if match is None:
            assert "execution" not in res.output, res.output  # passes the execution check, fails on the data
            continue
        assert res.exit_code == 2 and match in _one_line(res.output), res.output
    res = runner.invoke(app, ["md", "--model", run, "--shots", "100", "--steps", "10", "--stride", "10"])
    assert res.exit_code != 0 and "parameter-shift" in _one_line(res.output)


def test_circuit_draw_specs_qasm(tmp_path, lih_pennylane_run):
    runner = CliRunner()
    run = str(tmp_path / "run")
    res = runner.invoke(app, ["circuit", "specs", "--model", run])
    assert res.exit_code == 0, res.output
    specs = json.loads(res.output)
    assert specs["n_qubits"] == 2 and specs["gate_types"]["Rot"] == 4
    assert specs["trainable_parameters"] == 3  # the circuit angles: alpha [1, 2] and J [1, 1, 1]
    res = runner.invoke(app, ["circuit", "draw", "--model", run])
    assert res.exit_code == 0 and "IsingXX" in res.output and "Rot" in res.output
    res = runner.invoke(app, ["circuit", "draw", "--model", run, "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["circuit", "qasm", "--model", run, "--out", str(tmp_path / "c.qasm")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "c.qasm").read_text()
    assert text.startswith("OPENQASM 2.0;") and "gphase" not in text and "measure q[1]" in text
    # the exported state is the model's: replaying the QASM gate by gate rebuilds it
    state = _replay_qasm(text, 2)
    model, params = lih_pennylane_run
    from qdyn.quantum.export import model_circuit

    bound = model_circuit(model, params, lih()[0])
    obs = sum(P(0) @ P(1) for P in (qml.PauliX, qml.PauliY, qml.PauliZ))
    expected = bound.qnode(bound.cparams, bound.inputs)  # mean exchange over the one singlet pair
    np.testing.assert_allclose(float(np.real(np.conj(state) @ qml.matrix(obs) @ state)), float(expected), atol=1e-8)
    res = runner.invoke(app, ["circuit", "specs", "--model", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "error:" in res.output
