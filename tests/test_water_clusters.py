"""Water clusters and the liquid-water box: the shipped GFN2-xTB data, the tblite labeller
and the configuration generators behind them."""

import numpy as np
import pytest

from qdyn.data import TBLiteLabeler, load_shipped, water
from qdyn.data.labelers import labeler_from_spec
from qdyn.data.samplers import optimize_geometry
from qdyn.structures import water_dimer

pytest.importorskip("tblite")


@pytest.fixture(scope="module")
def clusters():
    return load_shipped("water_clusters")


@pytest.fixture(scope="module")
def box():
    return load_shipped("water_box32")


def test_tblite_forces_are_minus_gradient_of_energy_on_water_dimer():
    R, system = water_dimer()
    Z = np.asarray(system.species)
    lab = TBLiteLabeler()
    res = lab.label(Z, R)
    assert res.converged, res.status
    # Non-trivial: the dimer is not at the GFN2 minimum, so forces are clearly non-zero.
    assert np.abs(res.forces).max() > 1e-2
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = rng.normal(size=R.shape)
        v /= np.linalg.norm(v)
        h = 1e-3
        fd = (lab.label(Z, R + h * v).energy - lab.label(Z, R - h * v).energy) / (2 * h)
        # tblite's default SCF threshold leaves ~1e-5 eV/Å of noise in the derivative.
        np.testing.assert_allclose(fd, -np.sum(res.forces * v), atol=5e-5)
    # An isolated cluster: no net force.
    np.testing.assert_allclose(res.forces.sum(0), 0.0, atol=1e-6)


def test_tblite_labeler_metadata_roundtrip_and_periodic_cell():
    L = water.box_length(32, 0.997)
    lab = TBLiteLabeler(cell=L * np.eye(3))
    d = lab.describe()
    assert d["method"] == "GFN2-xTB" and d["periodic"] and d["threads"] == 1
    assert d["electronic_temperature"] == 300.0 and d["accuracy"] == 1.0
    assert labeler_from_spec(d) == lab
    with pytest.raises(ValueError, match="cell"):
        TBLiteLabeler(cell=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="GFN2-xTB"):
        TBLiteLabeler(method="PM6")


def test_box_length_matches_liquid_density():
    # 32 waters at 0.997 g/cm³ fill a ≈ 9.865 Å cube (the textbook 29.9 Å³ per molecule).
    L = water.box_length(32, 0.997)
    np.testing.assert_allclose(L**3 / 32, 29.99, atol=0.02)


def test_cluster_geometry_is_compact_and_clash_free():
    Z, R = water.water_cluster_geometry(12, seed=3)
    assert list(Z[:3]) == [8, 1, 1] and len(Z) == 36
    mol = np.repeat(np.arange(12), 3)
    d = np.linalg.norm(R[:, None] - R[None], axis=-1)
    inter = mol[:, None] != mol[None]
    assert d[inter].min() >= 1.5
    # compact: every O has another O within 4 Å (grid spacing ≈ 3.1 Å plus jitter)
    O = R[Z == 8]
    dO = np.linalg.norm(O[:, None] - O[None], axis=-1) + 1e3 * np.eye(12)
    assert dO.min(1).max() < 4.0


def test_shipped_clusters_have_train_and_test_sizes(clusters):
    ds = clusters
    nm = ds.extras["n_molecules"]
    assert set(range(2, 11)) <= set(nm.tolist())
    assert {12, 14, 16, 18, 20} <= set(nm.tolist())
    assert np.all(ds.n_real == 3 * nm)
    assert np.all(np.isfinite(ds.E)) and np.all(np.isfinite(ds.F))
    assert ds.cell is None
    meta = ds.metadata
    assert meta["labeler"]["labeler"] == "TBLiteLabeler" and meta["labeler"]["method"] == "GFN2-xTB"
    assert "qdyn label --recipe" in meta["command"]
    # One level for all sizes, so energies per molecule are comparable across sizes: relative
    # to the optimised GFN2 monomer, big clusters are bound by 0.1–0.5 eV per molecule (more
    # hydrogen bonds per molecule) and more strongly than the smallest, whose thermal
    # (300 K) potential energy nearly cancels the dimer/trimer binding.
    lab = TBLiteLabeler()
    Zm = np.array([8, 1, 1])
    e_mono = lab.label(Zm, optimize_geometry(lab, Zm, water.MONOMER_R, fmax=1e-3)).energy
    per_mol = {n: np.mean(ds.E[nm == n] / n) - e_mono for n in set(nm.tolist())}
    big = np.mean([per_mol[n] for n in (12, 14, 16, 18, 20)])
    small = np.mean([per_mol[n] for n in (2, 3, 4)])
    assert -0.5 < big < -0.1
    assert big < small - 0.1
    # thermal frames: forces neither zero nor wild
    F = ds.F[ds.mask]
    assert 0.1 < np.sqrt(np.mean(F**2)) < 3.0


def test_shipped_box_is_periodic_liquid(box):
    ds = box
    L = water.box_length(32, 0.997)
    assert ds.cell is not None and ds.pbc is not None and ds.pbc.all()
    np.testing.assert_allclose(ds.cell, np.broadcast_to(L * np.eye(3), ds.cell.shape), atol=1e-8)
    assert ds.n_frames >= 40 and ds.n_atoms == 96
    assert np.all(np.isfinite(ds.E)) and np.all(np.isfinite(ds.F))
    assert ds.metadata["labeler"]["periodic"] is True
    # Liquid-like: the nearest O–O distance of every molecule lies in the hydrogen-bond range.
    R = ds.R[0]
    O = R[ds.Z[0] == 8]
    d = O[:, None] - O[None]
    d -= L * np.round(d / L)
    r = np.linalg.norm(d, axis=-1) + 1e3 * np.eye(len(O))
    nearest = r.min(1)
    assert 2.4 < nearest.min() and np.median(nearest) < 3.2
    # Translation invariance of the periodic labels: no net force on the box.
    np.testing.assert_allclose(ds.F[0].sum(0), 0.0, atol=1e-3)
