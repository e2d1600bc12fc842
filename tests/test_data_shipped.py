"""The shipped datasets: present, labelled as their metadata says, and regenerable."""

import numpy as np
import pytest

from qdyn.data import SHIPPED, load_shipped, read, recipes, shipped_path
from qdyn.data.labelers import labeler_from_spec


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


EXPECTED = {"H2O": (500, 3, "DFT", "def2-SVP"), "H2O_stretched": (146, 3, "DFT", "def2-SVP"), "LiH": (200, 2, "CCSD", "cc-pVDZ"), "water_dimer": (300, 6, "DFT", "def2-SVP"),
            "CaH2": (208, 3, "TDA", "def2-SVP"), "CaH2_casscf": (126, 3, "SA-CASSCF", "def2-SVP"),
            # tight-binding sets: no basis set (GFN2-xTB has its own minimal basis)
            "water_clusters": (435, 60, "GFN2-xTB", None), "water_box32": (50, 96, "GFN2-xTB", None),
            # issue 21 (docs/new_molecule.md); ethanol: the part of its recipe labelled so far
            "ethanol": (539, 9, "DFT", "def2-SVP"), "ethanol_torsions": (24, 9, "DFT", "def2-SVP"),
            "malonaldehyde": (50, 9, "DFT", "def2-SVP"),
            "alanine_dipeptide": (300, 22, "GFN2-xTB", None), "alanine_dipeptide_rama": (288, 22, "GFN2-xTB", None),
            "ferrocene": (300, 21, "GFN2-xTB", None)}
FUNCTIONAL = {"ethanol": "PBE", "ethanol_torsions": "PBE", "malonaldehyde": "PBE"}  # the rMD17 level; B3LYP elsewhere
# frames whose Davidson stopped short of its 1e-9 tolerance (docs/multistate.md), and the SA-CASSCF
# frame at 1.8 Å, 175° that stopped at max_cycle 100 (docs/multistate.md); dropped on loading
ALLOWED_FAILURES = {"CaH2": 8, "CaH2_casscf": 1}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_dataset_and_its_metadata(name):
    n, atoms, method, basis = EXPECTED[name]
    ds = read(shipped_path(name))
    assert ds.n_frames == n and ds.n_atoms == atoms
    assert shipped_path(name).stat().st_size < 1_000_000
    meta = ds.metadata
    assert meta["labeler"]["method"] == method and meta["labeler"].get("basis") == basis
    if method == "DFT":
        assert meta["labeler"]["xc"] == FUNCTIONAL.get(name, "B3LYP") and meta["labeler"]["grid_response"] is True
    # sets labelled since the labellers write dipoles also carry their unit
    assert meta["units"] == {"energy": "eV", "length": "Angstrom", "force": "eV/Angstrom",
                             **({"dipole": "e*Angstrom"} if "dipole" in ds.extras else {})}
    assert meta["command"].startswith(f"qdyn label --recipe shipped:{name}")
    assert meta["recipe"] == recipes.get_recipe(f"shipped:{name}")  # the code's recipe is the file's
    assert meta["code_versions"]["pyscf"] and meta["seed"]
    # Every frame converged, except CaH2's listed TDA Davidson stops (a failure is listed, never hidden).
    assert meta["labelling"]["n_failed"] == len(meta["labelling"]["failures"]) == int((~ds.converged).sum()) \
        == ALLOWED_FAILURES.get(name, 0)
    assert np.isfinite(ds.E).all() and np.isfinite(ds.F).all()
    assert load_shipped(name).n_frames == n - ALLOWED_FAILURES.get(name, 0)


def test_stretched_water_is_at_the_level_of_the_near_equilibrium_set_and_binds():
    eq, st = load_shipped("H2O"), load_shipped("H2O_stretched")
    scan = st.extras["sampler_part"] == 1  # one O–H from 0.75 to 2.0 Å, the other 0.965 Å, 104°
    r = np.linalg.norm(st.R[scan, 1] - st.R[scan, 0], axis=1)
    E = st.E[scan] - eq.E.min()
    np.testing.assert_allclose(r, np.linspace(0.75, 2.0, 14), atol=1e-12)
    # the same level of theory: the scan point nearest equilibrium lies just above the
    # near-equilibrium set's lowest frame, not an offset of a different method away
    assert 0.0 < E[np.argmin(np.abs(r - 0.96))] < 0.05
    # a bound O–H: energy rises monotonically from the minimum out to 2 Å, by ~5 eV
    assert np.all(np.diff(E[r > 0.95]) > 0) and 4.0 < E[-1] < 6.0
    # the force on the stretched H points back to O (restoring) beyond the minimum
    u = (st.R[scan, 1] - st.R[scan, 0]) / r[:, None]
    assert np.all(np.sum(st.F[scan, 1] * u, axis=1)[r > 1.0] < 0)


def test_lih_forces_are_the_derivative_of_the_scan_energies():
    ds = load_shipped("LiH")
    r = ds.R[:, 1, 2] - ds.R[:, 0, 2]
    np.testing.assert_allclose(r, np.linspace(1.2, 4.0, 200), rtol=1e-14)
    dE = np.gradient(ds.E, r)  # second-order central differences on the 0.014 Å grid
    np.testing.assert_allclose(ds.F[1:-1, 1, 2], -dE[1:-1], atol=5e-3)
    np.testing.assert_allclose(ds.F[:, 0], -ds.F[:, 1], atol=1e-8)  # no net force
    r_min = r[np.argmin(ds.E)]
    assert 1.58 < r_min < 1.66  # CCSD/cc-pVDZ equilibrium bond ≈ 1.62 Å


def test_lih_configurations_regenerate_bit_for_bit(tmp_path):
    ds = load_shipped("LiH")
    again = recipes.sample_configurations(ds.metadata["recipe"], cache_dir=tmp_path)
    np.testing.assert_array_equal(again.R, ds.R)


@pytest.mark.parametrize("name,frame", [("LiH", 7), ("H2O", 3), ("water_clusters", 400)])
def test_a_shipped_frame_relabels_to_the_same_numbers(name, frame):
    ds = load_shipped(name)
    lab = labeler_from_spec(ds.metadata["labeler"])
    m = ds.mask[frame]
    res = lab.label(ds.Z[frame][m], ds.R[frame][m])
    np.testing.assert_allclose(res.energy, ds.E[frame], atol=1e-6, rtol=0)
    np.testing.assert_allclose(res.forces, ds.F[frame][m], atol=1e-5, rtol=0)


def test_a_process_holding_more_than_pyscfs_memory_limit_still_labels(monkeypatch):
    """PySCF's limit counts the whole process: where the process already held more (a test
    worker past 4 GB), the CCSD gradient found no room and the frame came back NaN."""
    from pyscf import lib

    ds = load_shipped("LiH")
    lab = labeler_from_spec(ds.metadata["labeler"])
    held = lib.current_memory()[0] + lib.param.MAX_MEMORY  # MB: more than the limit
    monkeypatch.setattr(lib, "current_memory", lambda: (held, held))
    res = lab.label(ds.Z[7], ds.R[7])
    assert res.status == "ok", res.status
    np.testing.assert_allclose(res.energy, ds.E[7], atol=1e-6, rtol=0)


def test_h2o_is_thermal_and_randomly_oriented():
    ds = load_shipped("H2O")
    oh = np.linalg.norm(ds.R[:, 1:] - ds.R[:, :1], axis=-1)
    assert 0.95 < oh.mean() < 0.99 and 0.015 < oh.std() < 0.06
    # Random orientations: the molecular plane normal points everywhere.
    normal = np.cross(ds.R[:, 1] - ds.R[:, 0], ds.R[:, 2] - ds.R[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    assert np.abs(normal.mean(0)).max() < 0.15
    st = ds.statistics()
    assert 0.1 < st["energy_range_eV"] < 2.0 and st["force_rms_eV_per_A"] > 0.3


def test_water_dimer_covers_minimum_hbonded_and_random():
    ds = load_shipped("water_dimer")
    part = ds.extras["sampler_part"]
    np.testing.assert_array_equal(np.bincount(part), [100, 100, 100])
    oo = np.linalg.norm(ds.R[:, 3] - ds.R[:, 0], axis=1)
    assert 2.7 < np.median(oo[part == 0]) < 3.1
    for p in (1, 2):
        assert oo[part == p].min() >= 2.5 and oo[part == p].max() <= 6.0
    # Binding: hydrogen-bonded configurations near 3 Å lie below well-separated ones.
    e = ds.E - ds.E.min()
    near = (part == 1) & (oo > 2.8) & (oo < 3.1)
    far = (part == 1) & (oo > 5.5)
    assert near.any() and far.any() and np.median(e[near]) < np.median(e[far])
