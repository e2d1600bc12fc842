"""File formats: exact round trips, declared units, and clear errors for bad files."""

import json

import numpy as np
import pytest

from qdyn import units
from qdyn.data import Dataset, assert_datasets_equal, read, write
from qdyn.validation import QdynInputError

EXACT_FORMATS = ["a.npz", "a.xyz", "a.db", "a.traj"]


def make_dataset(*, multistate=False, cell=False, seed=0, n=4) -> Dataset:
    """Mixed atom counts (H2O and H2, so padding), extras of several dtypes, nested metadata."""
    rng = np.random.default_rng(seed)
    frames = [(["O", "H", "H"], rng.normal(size=(3, 3))), (["H", "H"], rng.normal(size=(2, 3)))] * (n // 2)
    ds = Dataset.from_frames(
        frames, energies=rng.normal(size=n) * 10, forces=[rng.normal(size=(len(z), 3)) for z, _ in frames]
    )
    extras = {"converged": np.ones(n, bool), "status": np.array(["ok"] * n), "temperature": rng.uniform(300, 1000, n),
              "part": np.arange(n, dtype=np.int32), "vec": rng.normal(size=(n, 2))}
    meta = {"name": "test", "nested": {"a": [1, 2.5]}, "quote": 'he said "hi" \\ back'}
    kw = {}
    if multistate:
        kw["E_states"] = rng.normal(size=(n, 3))
        kw["F_states"] = rng.normal(size=(n, 3, 3, 3)) * ds.mask[:, None, :, None]
    if cell:
        kw["cell"] = rng.normal(size=(n, 3, 3))
        kw["pbc"] = rng.uniform(size=(n, 3)) > 0.5
    return Dataset(R=ds.R, Z=ds.Z, E=ds.E, F=ds.F, extras=extras, metadata=meta, **kw)


@pytest.mark.parametrize("name", EXACT_FORMATS)
@pytest.mark.parametrize("multistate", [False, True])
@pytest.mark.parametrize("cell", [False, True])
def test_round_trip_is_exact(tmp_path, name, multistate, cell):
    ds = make_dataset(multistate=multistate, cell=cell)
    path = write(ds, tmp_path / name)
    back = read(path)
    assert_datasets_equal(ds, back)  # bit-exact arrays, equal metadata
    assert back.source == str(path)


def test_extxyz_written_by_qdyn_is_readable_by_ase(tmp_path):
    import ase.io

    ds = make_dataset(cell=True)
    write(ds, tmp_path / "a.xyz")
    images = ase.io.read(tmp_path / "a.xyz", index=":")
    assert [len(a) for a in images] == list(ds.n_real)
    np.testing.assert_array_equal(images[0].get_positions(), ds.R[0][ds.mask[0]])
    np.testing.assert_array_equal(images[1].get_forces(), ds.F[1][ds.mask[1]])
    assert images[2].get_potential_energy() == ds.E[2]
    np.testing.assert_array_equal(np.array(images[0].cell), ds.cell[0].T)


def test_extxyz_written_by_ase_is_read_as_ev_angstrom_with_a_notice(tmp_path, caplog):
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    a.calc = SinglePointCalculator(a, energy=-1.5, forces=np.arange(9.0).reshape(3, 3))
    ase.io.write(tmp_path / "ase.xyz", a)
    with caplog.at_level("WARNING", logger="qdyn"):
        default = read(tmp_path / "ase.xyz")
    notices = [r.getMessage() for r in caplog.records if "records no units" in r.getMessage()]
    assert len(notices) == 1 and "ase.xyz" in notices[0] and "\n" not in notices[0]
    assert default.E[0] == -1.5 and default.F[0, 2, 2] == 8.0
    caplog.clear()
    ds = read(tmp_path / "ase.xyz", energy_unit="eV", length_unit="Angstrom")
    assert ds.E[0] == -1.5 and ds.F[0, 2, 2] == 8.0
    assert not [r for r in caplog.records if "records no units" in r.getMessage()]
    # 8 Hartree/Bohr (411 eV/Å) is no chemistry: only the conversion is tested here
    ha = read(tmp_path / "ase.xyz", energy_unit="Hartree", length_unit="Bohr", check_plausibility=False)
    assert ha.E[0] == units.convert(-1.5, "Hartree", "eV")
    assert ha.F[0, 2, 2] == units.convert(8.0, "Hartree/Bohr", "eV/Angstrom")
    assert ha.R[0, 1, 0] == units.convert(0.96, "Bohr", "Angstrom")


@pytest.mark.parametrize("fmt", ["md17", "rmd17"])
def test_md17_layouts_need_units_and_convert(tmp_path, fmt):
    ds = make_dataset().subset([0, 2])  # MD17 needs equal molecules, no padding
    ds = Dataset(R=ds.R[:, :3], Z=ds.Z[:, :3], E=ds.E, F=ds.F[:, :3])
    path = write(ds, tmp_path / f"{fmt}.npz", format=fmt, energy_unit="kcal/mol")
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        E_file = z["E" if fmt == "md17" else "energies"]
    assert keys >= ({"R", "z", "E", "F"} if fmt == "md17" else {"coords", "nuclear_charges", "energies", "forces"})
    np.testing.assert_allclose(E_file.ravel(), units.convert(ds.E, "eV", "kcal/mol"), rtol=1e-15)
    with pytest.raises(QdynInputError, match=r"does not record units.*kcal/mol"):
        read(path)
    back = read(path, energy_unit="kcal/mol", length_unit="Angstrom")
    np.testing.assert_array_equal(back.R, ds.R)
    # eV → kcal/mol → eV is one multiplication and one division: exact to rounding.
    np.testing.assert_allclose(back.E, ds.E, rtol=1e-15)
    np.testing.assert_allclose(back.F, ds.F, rtol=1e-15)
    exact = write(ds, tmp_path / f"{fmt}_ev.npz", format=fmt, energy_unit="eV")
    np.testing.assert_array_equal(read(exact, energy_unit="eV", length_unit="Angstrom").E, ds.E)


def test_real_md17_key_layout_with_string_fields(tmp_path):
    # The published MD17 files carry 0-d string arrays (name, theory) and E as [n, 1].
    R = np.random.default_rng(0).normal(size=(2, 3, 3))
    np.savez(tmp_path / "md17_water.npz", R=R, z=np.array([8, 1, 1], np.uint8), E=np.array([[-1.0], [-2.0]]),
             F=np.zeros((2, 3, 3)), name=np.array("water"), theory=np.array("PBE+vdW-TS"))
    ds = read(tmp_path / "md17_water.npz", energy_unit="kcal/mol", length_unit="Angstrom")
    assert ds.metadata["theory"] == "PBE+vdW-TS"
    assert ds.E[1] == units.convert(-2.0, "kcal/mol", "eV")


def test_wrong_or_contradicting_units_are_errors(tmp_path):
    ds = make_dataset()
    p = write(ds, tmp_path / "a.npz")
    with pytest.raises(QdynInputError, match=r"a\.npz.*energy_unit.*'Hartree'.*stores 'eV'"):
        read(p, energy_unit="Hartree", length_unit="Angstrom")
    read(p, energy_unit="eV", length_unit="Angstrom")  # agreeing declarations are fine
    x = write(ds, tmp_path / "a.xyz")
    with pytest.raises(QdynInputError, match="length_unit"):
        read(x, energy_unit="eV", length_unit="Bohr")
    with pytest.raises(QdynInputError, match=r"energy_unit.*furlong"):
        read(x, energy_unit="furlong", length_unit="Angstrom")
    with pytest.raises(QdynInputError, match=r"energy_unit.*different dimensions"):
        read(x, energy_unit="Angstrom", length_unit="Angstrom")
    with pytest.raises(QdynInputError, match="ASE"):
        read(write(ds, tmp_path / "a.db"), energy_unit="Hartree", length_unit="Bohr")
    with pytest.raises(QdynInputError, match="stores eV and Angstrom only"):
        write(ds, tmp_path / "b.npz", energy_unit="Hartree")


def test_extxyz_can_be_written_in_other_units(tmp_path):
    ds = make_dataset()
    p = write(ds, tmp_path / "ha.xyz", energy_unit="Hartree", length_unit="Bohr")
    assert 'energy_unit="Hartree"' in p.read_text().splitlines()[1]
    back = read(p)  # units recorded in the file
    np.testing.assert_allclose(back.E, ds.E, rtol=1e-14)
    np.testing.assert_allclose(back.R, ds.R, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(back.F, ds.F, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", ["a.npz", "a.xyz", "a.db", "a.traj"])
def test_truncated_files_name_the_file(tmp_path, name):
    p = write(make_dataset(), tmp_path / name)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(QdynInputError, match=name.replace(".", r"\.")):
        read(p)


def test_truncated_extxyz_names_frame_and_line(tmp_path):
    p = write(make_dataset(), tmp_path / "a.xyz")
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:-1]) + "\n")  # last frame loses an atom line
    with pytest.raises(QdynInputError, match=r"a\.xyz: frame 3 \(line \d+\): truncated file: expected 2 atom lines, found 1"):
        read(p)


def test_nan_coordinates_are_reported_with_frame_and_field(tmp_path):
    p = write(make_dataset(), tmp_path / "a.xyz")
    lines = p.read_text().splitlines()
    # frame 1 starts after frame 0 (3 atoms + 2 header lines); its first atom line:
    row = lines[5 + 2].split()
    row[2] = "nan"
    lines[5 + 2] = " ".join(row)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(QdynInputError, match=r"a\.xyz: frame 1, field 'R': non-finite coordinate .* atom 0"):
        read(p)


def test_unknown_elements_are_reported(tmp_path):
    p = write(make_dataset(), tmp_path / "a.xyz")
    p.write_text(p.read_text().replace("\nO ", "\nQq ", 1))
    with pytest.raises(QdynInputError, match=r"a\.xyz: frame 0 .*field 'species'.*unknown element 'Qq'"):
        read(p)
    np.savez(tmp_path / "bad.npz", R=np.zeros((1, 2, 3)), z=np.array([1, 150]), E=np.zeros(1))
    with pytest.raises(QdynInputError, match=r"bad\.npz: field 'z'.*150"):
        read(tmp_path / "bad.npz", energy_unit="eV", length_unit="Angstrom")


def test_inconsistent_shapes_are_reported(tmp_path):
    np.savez(tmp_path / "shape.npz", R=np.zeros((3, 2, 3)), z=np.array([1, 1]), E=np.zeros(3), F=np.zeros((3, 3, 3)))
    with pytest.raises(QdynInputError, match=r"shape\.npz: field 'F': expected shape \(3, 2, 3\)"):
        read(tmp_path / "shape.npz", energy_unit="eV", length_unit="Angstrom")
    with pytest.raises(QdynInputError, match=r"field 'E': expected shape"):
        Dataset(R=np.zeros((2, 2, 3)), Z=[1, 1], E=np.zeros(3))


def test_missing_forces_where_required(tmp_path):
    ds = Dataset(R=np.zeros((1, 1, 3)), Z=[1], E=[0.0], source="x.npz")
    with pytest.raises(QdynInputError, match=r"x\.npz: field 'F': required but missing"):
        ds.require("E", "F")
    p = write(make_dataset(), tmp_path / "a.xyz")
    back = read(p, format="extxyz", forces_key="no_such_column")
    with pytest.raises(QdynInputError, match="'F': required"):
        back.require("F")


def test_pickled_npz_is_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", R=np.zeros((1, 1, 3)), z=np.array([1]), E=np.zeros(1), name=np.array([{"a": 1}], dtype=object))
    with pytest.raises(QdynInputError, match=r"obj\.npz: field 'name'.*pickle"):
        read(tmp_path / "obj.npz", energy_unit="eV", length_unit="Angstrom")


def test_unknown_npz_layout_lists_its_keys(tmp_path):
    np.savez(tmp_path / "odd.npz", positions=np.zeros((1, 1, 3)))
    with pytest.raises(QdynInputError, match=r"odd\.npz: npz layout not recognised.*positions"):
        read(tmp_path / "odd.npz")


def test_writes_are_atomic(tmp_path, monkeypatch):
    ds = make_dataset()
    p = write(ds, tmp_path / "a.npz")
    before = p.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write(make_dataset(seed=1), p)
    assert p.read_bytes() == before  # the old file is intact
    assert [f.name for f in tmp_path.iterdir()] == ["a.npz"]  # no temporary left behind


def test_qdyn_npz_header_is_json(tmp_path):
    p = write(make_dataset(), tmp_path / "a.npz")
    with np.load(p, allow_pickle=False) as z:
        header = json.loads(str(z["__qdyn__"]))
    assert header["units"] == {"energy": "eV", "length": "Angstrom", "force": "eV/Angstrom"}
    assert header["metadata"]["name"] == "test"


def test_geometry_only_xyz_takes_a_length_unit(tmp_path):
    (tmp_path / "plain.xyz").write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    assert read(tmp_path / "plain.xyz").R[0, 1, 0] == 0.96  # no record, none declared: Å (ASE's convention)
    ds = read(tmp_path / "plain.xyz", length_unit="Bohr")
    assert ds.E is None and ds.F is None
    assert ds.R[0, 1, 0] == units.convert(0.96, "Bohr", "Angstrom")
