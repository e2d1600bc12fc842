"""``qdyn md`` from the command line and ``qdyn.quickstart.quickstart_md``."""

import json

import jax
import pytest
import numpy as np
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.models import bpnn


@pytest.fixture
def bpnn_run(tmp_path, write_run):
    """A finished run directory ``tmp_path / "run"`` holding a small BP network."""
    model = bpnn.build(species=(1, 8), hidden=(8,))
    return write_run(tmp_path / "run", model, model.init(jax.random.PRNGKey(0)))


@pytest.mark.slow
def test_qdyn_md_cli_runs_and_writes_outputs(tmp_path, bpnn_run):
    from qdyn import data
    from qdyn.structures import water

    R, system = water()
    data.write(data.Dataset.from_frames([(["O", "H", "H"], R)]), tmp_path / "start.xyz")
    out = tmp_path / "md"
    result = CliRunner().invoke(app, ["md", "--model", str(tmp_path / "run"), "--structure", str(tmp_path / "start.xyz"),
                                      "--ensemble", "nvt", "--temperature", "300", "--dt", "0.5", "--steps", "40",
                                      "--stride", "10", "--replicas", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("trajectory.xyz", "trajectory.h5", "checkpoint.npz", "md.json", "energies.png"):
        assert (out / name).exists(), name
    summary = json.loads((out / "md.json").read_text())
    assert summary["replicas"] == 2 and summary["steps"] == 40


def test_qdyn_md_cli_refuses_bad_input(tmp_path, bpnn_run):
    r = CliRunner().invoke(app, ["md", "--model", str(tmp_path / "run"), "--ensemble", "npq"])
    assert r.exit_code != 0 and "ensemble" in r.output
    r = CliRunner().invoke(app, ["md", "--model", str(tmp_path / "run"), "--ensemble", "npt"])
    assert r.exit_code != 0 and "pressure" in r.output
    r = CliRunner().invoke(app, ["md", "--model", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "model" in r.output
    from qdyn import data
    from qdyn.structures import water

    data.write(data.Dataset.from_frames([(["O", "H", "H"], water()[0])]), tmp_path / "one.xyz")
    r = CliRunner().invoke(app, ["md", "--model", str(tmp_path / "run"), "--structure", str(tmp_path / "one.xyz"),
                                 "--frame", "3"])
    text = " ".join(r.output.replace("│", " ").split())  # rich wraps the message in a box
    assert r.exit_code != 0 and "frame 3 requested" in text, text
    assert "Invalid value" not in text, text  # one line that names the problem, no click prefix


def test_quickstart_md_small(tmp_path):
    import jax.numpy as jnp

    from qdyn.quickstart import quickstart_md
    from qdyn.md.potentials import spring_network
    from qdyn.models.base import EnergyModel
    from qdyn.structures import water

    # an EnergyModel with a known minimum (springs around water's geometry): quickstart_md
    # must relax it, find its harmonic frequencies and see them as spectrum peaks
    R, _ = water()
    springs, _ = spring_network(R)
    model = EnergyModel(init=lambda key: {"k": jnp.asarray(20.0)},
                        apply=lambda params, R, system, neighbor=None: springs(R, params=params, system=system),
                        check=lambda R, system: None, name="springs", species=(1, 8), config={})
    summary = quickstart_md(model, model.init(None), tmp_path / "qs", small=True)
    assert (tmp_path / "qs" / "spectrum.png").exists()
    assert (tmp_path / "qs" / "md_summary.json").exists()
    assert len(summary["spectrum_peaks_cm-1"]) == 3
    assert max(abs(x) for x in summary["peak_vs_harmonic_rel"]) < 0.03


def test_quickstart_md_refuses_an_unbound_model(tmp_path, bpnn_run):
    import pytest

    from qdyn.quickstart import quickstart_md
    from qdyn.validation import QdynInputError

    model, params = bpnn_run
    with pytest.raises(QdynInputError, match="no minimum"):
        quickstart_md(model, params, tmp_path / "qs", small=True)


def _periodic_water_run(path, write_run):
    """A finished run of a small hybrid power-spectrum model (reads neighbour lists) and the
    shipped periodic water box (32 waters) as an extxyz start structure."""
    from qdyn import data
    from qdyn.models import hybrid

    model = hybrid.build(species=(1, 8), descriptor="power_spectrum", branch="mlp", n_qubits=2, layers=1,
                         hidden=(8,), cutoff=4.0, n_radial=4, l_max=1)
    model, params = write_run(path, model, model.init(jax.random.PRNGKey(0)))
    box = data.load_shipped("water_box32").subset(np.arange(1))
    data.write(box, path / "box.xyz")
    return model, params, box


def test_qdyn_md_config_uses_a_neighbor_list_on_the_periodic_water_box(tmp_path, write_run):
    from qdyn import data

    model, params, box = _periodic_water_run(tmp_path / "run", write_run)
    out = tmp_path / "md"
    (tmp_path / "md.yaml").write_text(
        f"model: {tmp_path / 'run'}\nstructure: {tmp_path / 'run' / 'box.xyz'}\nensemble: nve\n"
        f"dt_fs: 0.25\nn_steps: 100\nstride: 5\ntemperature_K: 100\nout: {out}\n")
    # the flag overrides the file's n_steps
    r = CliRunner().invoke(app, ["md", "--config", str(tmp_path / "md.yaml"), "--steps", "10"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout[r.stdout.index("{"):])
    assert report["neighbor_list"] is True
    assert json.loads((out / "md.json").read_text())["steps"] == 10
    # the energies written along the run are the all-pairs energies of the written positions
    traj = data.read(out / "trajectory.xyz")
    R, system = box.to_system(0)
    assert traj.n_frames == 3 and np.max(np.abs(traj.R[-1] - traj.R[0])) > 1e-4  # the atoms moved
    energy = jax.jit(model.apply)
    for i in (0, 1, 2):
        np.testing.assert_allclose(traj.E[i], float(energy(params, traj.R[i], system)), rtol=1e-10)


def test_qdyn_md_config_errors_name_the_file_and_key(tmp_path):
    (tmp_path / "md.yaml").write_text(f"model: {tmp_path}\nn_stepz: 10\n")
    r = CliRunner().invoke(app, ["md", "--config", str(tmp_path / "md.yaml")])
    text = "".join(r.output.replace("│", " ").split())  # rich wraps long paths inside its panel
    assert r.exit_code != 0 and "md.yaml" in text and "n_stepz" in text, text
    r = CliRunner().invoke(app, ["md", "--model", str(tmp_path), "--steps", "15", "--stride", "10"])
    text = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code != 0 and "multiple of stride" in text, text
