"""Bad data, labels, units and misuse: each gives one clear line and a non-zero exit, never a
traceback, a silent wrong result or a lost file (issue 15; #17 items 3-4).

The table ``CASES`` lists what is done (a command, with its input made in ``tmp_path``), the
expected exit code, a fragment the one-line message must hold, and what must not be left on
disk. The cases that need a model, a labeller or the Python API follow it.
"""

from __future__ import annotations

import errno
import json
import os

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn import units
from qdyn.cli.app import app
from qdyn.data import Dataset, read, write
from qdyn.validation import QdynInputError

runner = CliRunner()

WATER = [("O", (0.0, 0.0, 0.0)), ("H", (0.9572, 0.0, 0.0)), ("H", (-0.2400, 0.9266, 0.0))]
_E_WATER_HARTREE = -76.4  # B3LYP-scale total energy of one water molecule


def _frame(atoms=WATER, *, energy=None, forces=True, n_atoms=None, props=None, extra=""):
    """One extxyz frame: energies and forces as given, units recorded only through ``extra``."""
    cols = props or ("species:S:1:pos:R:3" + (":forces:R:3" if forces else ""))
    head = f"Properties={cols}" + ("" if energy is None else f" energy={energy!r}") + (f" {extra}" if extra else "")
    rows = [f"{s} {x} {y} {z}" + (" 0.1 -0.2 0.05" if forces else "") for s, (x, y, z) in atoms]
    return [str(len(atoms) if n_atoms is None else n_atoms), head, *rows]


def _xyz(path, *frames):
    path.write_text("\n".join(line for f in frames for line in f) + "\n")
    return path


EV = 'energy_unit=eV length_unit=Angstrom force_unit="eV/Angstrom"'
HA = 'energy_unit=Hartree length_unit=Angstrom force_unit="Hartree/Angstrom"'
E_OK = units.convert(_E_WATER_HARTREE, "Hartree", "eV")


def _far_atoms():
    return [WATER[0], WATER[1], ("H", (1.0e6, 0.0, 0.0))]


# (id, make(tmp) -> argv, exit code, message fragment, must-not-exist paths relative to tmp)
CASES = [
    ("missing-file", lambda t: ["data", "info", str(t / "nope.xyz")], 2, "nope.xyz: no such file", []),
    ("shipped-typo", lambda t: ["train", "--data", "shipped:H2X", "--out", str(t / "run")], 2,
     "available: H2O, H2O_stretched", ["run"]),
    ("random-bytes-npz", lambda t: (t.joinpath("r.npz").write_bytes(os.urandom(256)),
                                    ["data", "info", str(t / "r.npz")])[1], 2, "not an npz file", []),
    ("forces-width-2", lambda t: ["data", "info", str(_xyz(t / "a.xyz", _frame(
        energy=E_OK, props="species:S:1:pos:R:3:forces:R:2", extra=EV)))], 2, "column 'forces' must be R:3", []),
    ("properties-count-not-a-number", lambda t: ["data", "info", str(_xyz(t / "a.xyz", _frame(
        energy=E_OK, props="species:S:1:pos:R:x", forces=False, extra=EV)))], 2, "column 'pos' has count 'x'", []),
    ("negative-atom-count-frame-1", lambda t: ["data", "info", str(_xyz(t / "a.xyz", _frame(energy=E_OK, extra=EV),
                                                                         _frame(energy=E_OK, extra=EV, n_atoms=-3)))],
     2, "frame 1 (line 6): field 'n_atoms': expected a positive atom count, got -3", []),
    ("unit-record-changes-mid-file", lambda t: ["data", "info", str(_xyz(
        t / "a.xyz", _frame(energy=E_OK, extra=EV), _frame(energy=_E_WATER_HARTREE, extra=HA)))], 2,
     "frame 1 (line 7): field 'energy_unit/length_unit/force_unit'", []),
    ("hartree-declared-as-ev", lambda t: ["data", "info", str(_xyz(
        t / "a.xyz", _frame(energy=_E_WATER_HARTREE, extra=EV)))], 2, "Hartree-scale energies declared as eV", []),
    ("kcal-declared-as-ev", lambda t: ["data", "info", str(_xyz(
        t / "a.xyz", _frame(energy=units.convert(E_OK, "eV", "kcal/mol"), extra=EV)))], 2,
     "kcal/mol energies declared as eV", []),
    ("forces-far-outside-chemistry", lambda t: ["data", "info", str(_xyz(
        t / "a.xyz", _frame(energy=E_OK, props="species:S:1:pos:R:3:forces:R:3", extra=EV, forces=True)
        [:2] + [f"{s} {x} {y} {z} 900 0 0" for s, (x, y, z) in WATER]))], 2, "RMS force", []),
    ("coordinate-1e6-angstrom", lambda t: ["data", "info", str(_xyz(
        t / "a.xyz", _frame(_far_atoms(), energy=E_OK, extra=EV)))], 2, "atom 2 is at 1e+06 Å from the origin", []),
    ("split-sizes-do-not-fit", lambda t: ["train", "--config", str(_cfg(t, {"data": {"path": "shipped:LiH",
                                                                                     "n_train": 100000}})),
                                          "--out", str(t / "run")], 2, "does not fit", ["run"]),
    ("template-that-does-not-exist", lambda t: ["train", "--config", str(_cfg(t, {"model": {
        "family": "sivqlm", "template": "CH4"}})), "--out", str(t / "run")], 2,
     "unknown molecule template 'CH4'; available: H2O, LiH", ["run"]),
    ("md-at-1e6-K", lambda t: ["md", "--model", str(t / "none"), "--temperature", "1e6", "--steps", "10",
                               "--stride", "10", "--out", str(t / "md")], 2, "beyond any chemistry", ["md"]),
    ("md-stride-0", lambda t: ["md", "--model", str(t / "none"), "--stride", "0", "--out", str(t / "md")], 2,
     "stride", ["md"]),
    ("label-n-negative", lambda t: ["label", "--n-configs", "-1", "--out", str(t / "x.npz"), "--cache-dir", str(t / "c")], 2,
     "--n-configs: the number of configurations must be at least 1", ["x.npz", "c"]),
    ("label-workers-negative", lambda t: ["label", "--workers", "-2", "--out", str(t / "x.npz"),
                                          "--cache-dir", str(t / "c")], 2, "--workers: must be 0", ["x.npz", "c"]),
    ("label-output-format", lambda t: ["label", "--method", "HF", "--basis", "sto-3g", "--structure", "lih",
                                       "--sampler", "single", "--out", str(t / "x.csv"), "--cache-dir",
                                       str(t / "c")], 2, "x.csv: cannot write a dataset with the suffix '.csv'",
     ["x.csv", "c"]),
    ("label-unknown-basis", lambda t: ["label", "--method", "HF", "--basis", "def2-NOPE", "--structure", "lih",
                                       "--sampler", "single", "--workers", "0", "--out", str(t / "x.npz"),
                                       "--cache-dir", str(t / "c")], 2, "labeller HF/def2-NOPE", ["x.npz", "c"]),
    ("label-unknown-functional", lambda t: ["label", "--method", "DFT", "--xc", "B3LPY", "--basis", "sto-3g",
                                            "--structure", "lih", "--sampler", "single", "--workers", "0",
                                            "--out", str(t / "x.npz"), "--cache-dir", str(t / "c")], 2,
     "functional xc='B3LPY' is not one PySCF knows", ["x.npz", "c"]),
    ("label-charge-spin-mismatch", lambda t: ["label", "--method", "HF", "--basis", "sto-3g", "--structure", "lih",
                                              "--spin", "1", "--sampler", "single", "--workers", "0",
                                              "--out", str(t / "x.npz"), "--cache-dir", str(t / "c")], 2,
     "spin 1 are not consistent", ["x.npz", "c"]),
]


def _cfg(tmp, raw):
    import yaml

    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump({"epochs": 1, **raw}))
    return path


@pytest.mark.parametrize("make,code,fragment,absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(tmp_path, make, code, fragment, absent):
    argv = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = runner.invoke(app, argv)
    assert res.exit_code == code, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    assert fragment in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output and "allow_pickle" not in res.output
    for name in absent:
        assert not (tmp_path / name).exists(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing lost
    assert not list(tmp_path.rglob("*.tmp*"))


def test_the_error_line_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    res = runner.invoke(app, ["data", "info", str(tmp_path / "nope.xyz")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    res = runner.invoke(app, ["--debug", "eval", "--model", str(tmp_path / "none"), "--data", "shipped:LiH"])
    assert isinstance(res.exception, Exception) and not isinstance(res.exception, SystemExit)
    monkeypatch.setenv("QDYN_DEBUG", "1")
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "none"), "--data", "shipped:LiH"])
    assert isinstance(res.exception, Exception) and not isinstance(res.exception, SystemExit)


def test_plausibility_checks_can_be_switched_off(tmp_path):
    path = _xyz(tmp_path / "ha.xyz", _frame(energy=_E_WATER_HARTREE, extra=EV))
    res = runner.invoke(app, ["data", "info", str(path), "--no-plausibility-check", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["statistics"]["energy_min_eV"] == _E_WATER_HARTREE
    # the right declaration reads the same numbers as what they are
    fixed = _xyz(tmp_path / "ha2.xyz", _frame(energy=_E_WATER_HARTREE, extra=HA))
    np.testing.assert_allclose(read(fixed).E, [E_OK], rtol=1e-15)


def test_shipped_data_passes_the_plausibility_checks():
    """Non-triviality of the energy check: all-electron (H2O, B3LYP) and semi-empirical
    (water clusters, GFN2-xTB) data pass; the same H2O in Hartree declared as eV does not."""
    from qdyn.data import load_shipped
    from qdyn.data.plausibility import check_dataset

    h2o = load_shipped("H2O").subset(np.arange(20))
    check_dataset(h2o)
    check_dataset(load_shipped("water_clusters").subset(np.arange(5)))
    as_if_hartree = Dataset(R=h2o.R, Z=h2o.Z, E=units.convert(h2o.E, "eV", "Hartree"), F=h2o.F, source="h2o-ha")
    with pytest.raises(QdynInputError, match=r"h2o-ha: frame 0, field 'E'.*Hartree-scale"):
        check_dataset(as_if_hartree)


def test_extxyz_without_units_reads_as_ase_convention_with_a_one_line_notice(tmp_path):
    path = _xyz(tmp_path / "ase.xyz", _frame(energy=E_OK))
    res = runner.invoke(app, ["data", "info", str(path), "--json"])
    assert res.exit_code == 0, res.output
    notice = [ln for ln in res.output.splitlines() if "records no units" in ln]
    assert len(notice) == 1 and "eV, Angstrom" in notice[0]


def _labelled(n=6, failed=(2,)):
    from qdyn.data import load_shipped

    ds = load_shipped("H2O").subset(np.arange(n))
    E, F = ds.E.copy(), ds.F.copy()
    conv = np.ones(n, bool)
    for i in failed:
        E[i], F[i] = np.nan, np.nan
        conv[i] = False
    status = np.array(["ok" if c else "not converged: SCF" for c in conv])
    return Dataset(R=ds.R, Z=ds.Z, E=E, F=F, extras={"converged": conv, "status": status})


def test_failed_labels_are_dropped_by_train_as_by_data_split(tmp_path, caplog):
    from qdyn.train.config import DataConfig
    from qdyn.train.data import load_data

    write(_labelled(), tmp_path / "lab.npz")
    with caplog.at_level("WARNING", logger="qdyn"):
        ds = load_data(DataConfig(path=str(tmp_path / "lab.npz")))
    assert ds.n_frames == 5 and np.isfinite(ds.E).all() and np.isfinite(ds.F).all()
    assert ds.metadata["dropped_frames"] == [2]
    assert any("left out 1 of 6 frames" in r.getMessage() and "(frames 2)" in r.getMessage() for r in caplog.records)
    res = runner.invoke(app, ["data", "split", str(tmp_path / "lab.npz"), "--out-dir", str(tmp_path / "p"),
                              "--fractions", "1,0,0", "--names", "all,v,t"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read(tmp_path / "p" / "lab.all.npz").E, ds.E)
    write(_labelled(3, failed=(0, 1, 2)), tmp_path / "dead.npz")
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "dead.npz"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "every one of its 3 frames has failed" in res.output
    assert not (tmp_path / "run").exists()


@pytest.fixture
def h2o_run(tmp_path, write_run):
    from qdyn.models.config import build_model

    model = build_model({"family": "sivqlm", "template": "H2O", "layers": 1}, species=[1, 8])
    return write_run(tmp_path / "run", model, model.init(jax.random.PRNGKey(0)))


def test_eval_of_other_molecules_or_periodic_data_names_file_frame_and_reason(tmp_path, h2o_run):
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", "shipped:LiH"])
    assert res.exit_code == 2
    assert "LiH.npz: frame 0: species: element Li (Z=3) is not one this model was built for (H, O)" in \
        " ".join(res.output.split())
    cell = 'Lattice="12 0 0 0 12 0 0 0 12" pbc="T T T"'
    box = _xyz(tmp_path / "box.xyz", _frame(energy=E_OK, extra=f"{EV} {cell}"))
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", str(box)])
    assert res.exit_code == 2 and "box.xyz: frame 0: H2O model: has no periodic support" in res.output
    # non-triviality: the same frame without the cell is evaluated
    free = _xyz(tmp_path / "free.xyz", _frame(energy=E_OK, extra=EV))
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", str(free)])
    assert res.exit_code == 0, res.output


def test_float32_positions_with_float64_on_are_cast_at_the_boundary(h2o_run):
    from qdyn.models.base import energy_and_forces_fn
    from qdyn.structures import water

    model, params = h2o_run
    R, system = water()
    fn = jax.jit(energy_and_forces_fn(model.apply))
    R32 = np.asarray(R, np.float32)
    E32, F32 = fn(params, R32, system)
    E64, F64 = fn(params, R32.astype(np.float64), system)
    assert E32.dtype == np.float64
    np.testing.assert_allclose(E32, E64, rtol=1e-13)
    np.testing.assert_allclose(F32, F64, rtol=1e-10, atol=1e-12)
    assert np.abs(F64).max() > 1e-3  # non-trivial forces


def test_model_input_far_from_the_origin_is_refused(h2o_run):
    from qdyn.models.base import energy_and_forces
    from qdyn.structures import water

    model, params = h2o_run
    R, system = water()
    far = np.asarray(R).copy()
    far[2, 0] = 1.0e6
    with pytest.raises(QdynInputError, match=r"atom 2 is 1e\+06 Å from the origin"):
        energy_and_forces(model, params, far, system)


def test_run_md_refuses_stride_0_and_absurd_temperatures():
    from qdyn.md import MDOutput, MDSettings, run_md
    from qdyn.structures import water

    R, system = water()
    with pytest.raises(QdynInputError, match="stride must be ≥ 1"):
        run_md(None, None, R, system,
               MDSettings(ensemble="nve", dt_fs=0.5, n_steps=10),
               output=MDOutput(stride=0))
    with pytest.raises(QdynInputError, match="temperature_K: 1e\\+06 K is beyond any chemistry"):
        run_md(None, None, R, system,
               MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=10, temperature_K=1e6),
               output=MDOutput(stride=10))


def test_unwritable_output_names_the_file_and_leaves_no_temporary(tmp_path):
    from qdyn.data.io import atomic_write, atomic_write_text

    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old")

    def disk_full(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(QdynInputError, match=r"keep\.txt: cannot write \(No space left on device\); nothing"):
        atomic_write(target, disk_full)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a directory should be: fails even for root
    with pytest.raises(QdynInputError, match=r"file/out\.npz: cannot write"):
        atomic_write_text(blocker / "out.npz", "y")


def test_label_gfn2_xtb_reaches_the_tblite_labeller(tmp_path):
    res = runner.invoke(app, ["label", "--method", "GFN2-xTB", "--sampler", "single", "--print-recipe"])
    assert res.exit_code == 0, res.output
    lab = json.loads(res.output)["labeler"]
    assert lab["labeler"] == "TBLiteLabeler" and lab["method"] == "GFN2-xTB" and "xc" not in lab
    res = runner.invoke(app, ["label", "--method", "GFN2-xTB", "--sampler", "single", "--workers", "0",
                              "--out", str(tmp_path / "w.npz"), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    ds = read(tmp_path / "w.npz")
    assert ds.converged.all() and ds.metadata["labeler"]["labeler"] == "TBLiteLabeler"
    # GFN2-xTB water is ~ -138 eV, nothing like B3LYP's -2079 eV: the xTB labeller ran
    np.testing.assert_allclose(ds.E[0], -137.9, atol=1.0)


def test_transient_label_failures_are_retried_and_an_all_failed_run_exits_non_zero(tmp_path, monkeypatch,
                                                                                   pyscf_one_thread):
    from qdyn.data.labelers import PySCFLabeler

    args = ["label", "--method", "HF", "--basis", "sto-3g", "--structure", "lih", "--sampler", "single",
            "--workers", "0", "--out", str(tmp_path / "lih.npz"), "--cache-dir", str(tmp_path / "c")]
    real = PySCFLabeler._label

    def no_scratch(self, Z, R):
        raise FileNotFoundError(2, "No such file or directory", "/scratch/missing")

    monkeypatch.setattr(PySCFLabeler, "_label", no_scratch)
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "labelling failed for every one of the 1 frames" in res.output
    assert "FileNotFoundError" in res.output and not (tmp_path / "lih.npz").exists()
    assert not list((tmp_path / "c").rglob("frames/*.npz"))  # a transient error is not cached
    monkeypatch.setattr(PySCFLabeler, "_label", real)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    ds = read(tmp_path / "lih.npz")
    assert ds.converged.all() and np.isfinite(ds.E).all()
