"""`qdyn label` and `qdyn data info/split` through the typer app."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.data import load_shipped, read, read_index_file

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


@pytest.fixture
def labelled(tmp_path):
    out = tmp_path / "lih.npz"
    res = runner.invoke(app, ["label", "--structure", "lih", "--method", "HF", "--basis", "sto-3g", "--sampler", "scan",
                              "--scan-range", "1.3,2.5", "--n-configs", "5", "--workers", "0", "--out", str(out),
                              "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_label_writes_a_dataset_with_its_recipe(labelled):
    out, output = labelled
    assert "wrote" in output and "0 not converged" in output
    ds = read(out)
    assert ds.n_frames == 5 and ds.converged.all()
    np.testing.assert_allclose(np.linalg.norm(ds.R[:, 1] - ds.R[:, 0], axis=1), np.linspace(1.3, 2.5, 5))
    rec = ds.metadata["recipe"]
    assert rec["labeler"]["method"] == "HF" and rec["sampler"]["kind"] == "scan"


def test_print_recipe_and_functional_shortcut():
    res = runner.invoke(app, ["label", "--structure", "water", "--method", "PBE0", "--basis", "def2-SVP", "--n-configs", "7",
                              "--out", "unused.npz", "--print-recipe"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert runner.invoke(app, ["label", "--structure", "water"]).exit_code != 0  # no --out
    assert rec["labeler"]["method"] == "DFT" and rec["labeler"]["xc"] == "PBE0" and rec["labeler"]["grid_response"]
    assert rec["sampler"] == {**rec["sampler"], "kind": "thermal", "n": 7, "temperatures": [300.0, 1000.0]}
    res = runner.invoke(app, ["label", "--recipe", "shipped:LiH", "--print-recipe"])
    assert json.loads(res.output)["labeler"]["method"] == "CCSD"


def test_data_info(labelled, tmp_path):
    out, _ = labelled
    res = runner.invoke(app, ["data", "info", str(out)])
    assert res.exit_code == 0, res.output
    assert "5 frames" in res.output and "HF / sto-3g" in res.output and "regenerate:" in res.output
    res = runner.invoke(app, ["data", "info", str(out), "--json", "--plot", str(tmp_path / "e.png")])
    info = json.loads(res.output)
    assert info["statistics"]["element_counts"] == {"H": 5, "Li": 5}
    assert info["statistics"]["force_rms_eV_per_A"] > 0 and (tmp_path / "e.png").exists()


def test_data_info_refuses_undeclared_units(tmp_path):
    np.savez(tmp_path / "md17.npz", R=np.zeros((1, 2, 3)) + [[0, 0, 0], [0, 0, 1.0]], z=np.array([1, 1]),
             E=np.zeros((1, 1)), F=np.zeros((1, 2, 3)))
    res = runner.invoke(app, ["data", "info", str(tmp_path / "md17.npz")])
    assert res.exit_code == 2 and "energy_unit" in res.output
    res = runner.invoke(app, ["data", "info", str(tmp_path / "md17.npz"), "--energy-unit", "kcal/mol",
                              "--length-unit", "Angstrom"])
    assert res.exit_code == 0, res.output


def test_data_split(labelled, tmp_path):
    out, _ = labelled
    res = runner.invoke(app, ["data", "split", str(out), "--out-dir", str(tmp_path / "parts"), "--fractions", "0.6,0.4",
                              "--names", "train,test", "--seed", "1"])
    assert res.exit_code == 0, res.output
    train = read(tmp_path / "parts" / "lih.train.npz")
    test = read(tmp_path / "parts" / "lih.test.npz")
    assert train.n_frames == 3 and test.n_frames == 2
    idx = np.concatenate([read_index_file(tmp_path / "parts" / f"lih.{p}.indices.txt") for p in ("train", "test")])
    np.testing.assert_array_equal(np.sort(idx), np.arange(5))
    full = read(out)
    np.testing.assert_array_equal(full.E[read_index_file(tmp_path / "parts" / "lih.test.indices.txt")], test.E)
    # Index files reproduce the split.
    res = runner.invoke(app, ["data", "split", str(out), "--out-dir", str(tmp_path / "again"), "--names", "test",
                              "--index-files", str(tmp_path / "parts" / "lih.test.indices.txt")])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read(tmp_path / "again" / "lih.test.npz").E, test.E)


def test_label_from_an_xyz_file(tmp_path):
    (tmp_path / "h2.xyz").write_text("2\nH2\nH 0 0 0\nH 0 0 0.8\n")
    args = ["label", "--structure", str(tmp_path / "h2.xyz"), "--method", "HF", "--basis", "sto-3g", "--sampler", "single",
            "--workers", "0", "--out", str(tmp_path / "h2.npz"), "--cache-dir", str(tmp_path / "c")]
    # a plain xyz records no units: read as Å (ASE's convention) with a notice
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    ds = read(tmp_path / "h2.npz")
    assert ds.n_frames == 1 and ds.metadata["recipe"]["structure"]["name"] == "h2.xyz"
    np.testing.assert_allclose(ds.F[0, 0], -ds.F[0, 1], atol=1e-8)


def test_data_info_reads_shipped_data_and_custom_column_keys(tmp_path):
    res = runner.invoke(app, ["data", "info", "shipped:LiH", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["statistics"]["n_frames"] == load_shipped("LiH").n_frames
    # a file whose columns are named differently (as many ML-potential codes write them)
    (tmp_path / "ref.xyz").write_text(
        '2\nProperties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=-1.5 pbc="F F F"\n'
        "H 0 0 0 0 0 0.25\nH 0 0 0.8 0 0 -0.25\n")
    args = ["data", "info", str(tmp_path / "ref.xyz"), "--json", "--energy-unit", "eV", "--length-unit", "Angstrom"]
    res = runner.invoke(app, args + ["--energy-key", "REF_energy", "--forces-key", "REF_forces"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)["statistics"]
    np.testing.assert_allclose([st["energy_min_eV"], st["force_max_eV_per_A"]], [-1.5, 0.25])
    res = runner.invoke(app, args)  # default keys: no energies in this file
    assert "energy_min_eV" not in json.loads(res.stdout)["statistics"]
