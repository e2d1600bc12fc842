import numpy as np
import pytest

from qdyn import units
from qdyn.elements import UnknownElementError, mass
from qdyn.system import System, pad_positions


def test_energy_and_force_conversions():
    np.testing.assert_allclose(units.convert(1.0, "Hartree", "eV"), 27.211386245988)
    np.testing.assert_allclose(units.convert(1.0, "kcal/mol", "eV"), 0.0433641042418, rtol=1e-12)
    np.testing.assert_allclose(units.convert(1.0, "Hartree/Bohr", "eV/Angstrom"), 51.42206747632589, rtol=1e-12)
    np.testing.assert_allclose(units.convert(2.0, "Bohr", "Angstrom"), 2 * 0.529177210903)
    x = units.convert(units.convert(3.3, "kcal/mol/Angstrom", "eV/Bohr"), "eV/Bohr", "kcal/mol/Angstrom")
    np.testing.assert_allclose(x, 3.3, rtol=1e-14)


def test_time_unit():
    # Å·sqrt(amu/eV) in fs
    np.testing.assert_allclose(units.TIME_UNIT_FS, 10.1805056, rtol=1e-7)


def test_unit_errors_name_the_problem():
    with pytest.raises(units.UnitError, match="unknown unit 'furlong'"):
        units.convert(1.0, "furlong", "Angstrom")
    with pytest.raises(units.UnitError, match="different dimensions"):
        units.convert(1.0, "eV", "Angstrom")


def test_system_create_and_pad():
    s = System.create(["O", "H", 1])
    assert s.species.tolist() == [8, 1, 1]
    p = s.pad(5)
    assert p.mask.tolist() == [True, True, True, False, False]
    assert p.n_real == 3 and p.symbols == ["O", "H", "H", "X", "X"]
    R = pad_positions(np.zeros((3, 3)), 5)
    assert R.shape == (5, 3)
    assert np.min(np.linalg.norm(R[3] - R[4])) > 1.0


def test_unknown_element():
    with pytest.raises(UnknownElementError, match="Xx"):
        System.create(["O", "Xx"])
    with pytest.raises(UnknownElementError):
        mass(500)


def test_box_shapes():
    s = System.create(["O"], box=[10.0, 10.0, 10.0])
    np.testing.assert_allclose(np.asarray(s.box), 10.0 * np.eye(3))
    with pytest.raises(ValueError, match="box"):
        System.create(["O"], box=np.eye(2))


def test_codata_attribution_of_ase_and_pyscf():
    """qdyn uses CODATA 2018; ASE and PySCF use older sets (as qdyn/units.py says), within 1e-8."""
    import ase.units
    from pyscf.data import nist

    from qdyn import units

    assert ase.units.__codata_version__ == "2014"
    assert nist.BOHR == 0.52917721092  # CODATA 2010 value
    assert nist.HARTREE2EV == pytest.approx(27.21138602, abs=1e-9)  # CODATA 2014 value
    for theirs, ours in ((ase.units.Hartree, units.HARTREE_EV), (ase.units.Bohr, units.BOHR_ANGSTROM),
                         (nist.HARTREE2EV, units.HARTREE_EV), (nist.BOHR, units.BOHR_ANGSTROM)):
        assert theirs != ours  # non-trivial: different CODATA sets ...
        np.testing.assert_allclose(theirs, ours, rtol=1e-8)  # ... that agree far below label accuracy


def test_element_table_covers_every_element_with_ase_data():
    import ase.data

    from qdyn import elements

    assert elements.symbol(118) == "Og" and elements.atomic_number("Fe") == 26
    assert mass(26) == pytest.approx(ase.data.atomic_masses[26]) and mass(8) == 15.999
    radii = [elements.covalent_radius(z) for z in range(21, 35)]  # the 3d row the old table lacked
    np.testing.assert_allclose(radii, ase.data.covalent_radii[21:35])
    assert elements.covalent_radius(6) == 0.76
    with pytest.raises(UnknownElementError):
        elements.covalent_radius(110)


def test_load_structure_takes_presets_shipped_data_and_files(tmp_path):
    from qdyn.structures import load_structure, water

    R, system = load_structure("water")
    np.testing.assert_allclose(R, water()[0])
    R, system = load_structure("shipped:LiH", frame=0)
    assert sorted(np.asarray(system.species).tolist()) == [1, 3]
    (tmp_path / "water").write_text("2\nH2\nH 0 0 0\nH 0 0 0.74\n")  # a file (named like a preset)
    R, system = load_structure(tmp_path / "water", length_unit="Angstrom")
    np.testing.assert_allclose(R[1], [0, 0, 0.74])
