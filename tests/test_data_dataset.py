"""Dataset: padding, validation, splits, statistics, plots."""

import numpy as np
import pytest

from qdyn.data import Dataset, read_index_file, split_indices, write_index_file
from qdyn.train.batches import make_batch
from qdyn.validation import QdynInputError


def small():
    frames = [(["O", "H", "H"], np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]])),
              (["H", "H"], np.array([[0, 0, 0], [0.74, 0, 0.0]])),
              (["O", "H", "H"], np.array([[0, 0, 0], [0.99, 0, 0], [-0.24, 0.95, 0.0]]))]
    F = [np.full((3, 3), 0.5), np.array([[1.0, 0, 0], [-1.0, 0, 0]]), np.full((3, 3), -0.5)]
    return Dataset.from_frames(frames, energies=[-2.0, -1.0, -1.5], forces=F, source="small.npz")


def test_padding_and_mask():
    ds = small()
    assert ds.R.shape == (3, 3, 3) and ds.Z.dtype == np.int32
    np.testing.assert_array_equal(ds.n_real, [3, 2, 3])
    np.testing.assert_array_equal(ds.Z[1], [1, 1, 0])
    np.testing.assert_array_equal(ds.R[1, 2], 0.0)
    R, system = ds.to_system(1)
    assert R.shape == (2, 3) and system.n_real == 2


def test_statistics():
    st = small().statistics()
    assert st["n_frames"] == 3 and st["n_atoms_min"] == 2 and st["n_atoms_max"] == 3
    assert st["element_counts"] == {"H": 6, "O": 2}
    assert st["energy_range_eV"] == pytest.approx(1.0)
    # RMS over real atoms only (padding rows are not data): 18 values of 0.25 and 2 of 1.
    assert st["force_rms_eV_per_A"] == pytest.approx(np.sqrt((18 * 0.25 + 2 * 1.0) / 24))


def test_plot_energy_distribution(tmp_path):
    fig = small().plot_energy_distribution(tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000
    assert fig.axes[0].get_xlabel().startswith("E")


def test_split_by_seed_is_a_disjoint_cover_and_reproducible():
    parts = split_indices(103, [0.8, 0.1, 0.1], seed=3)
    assert [len(p) for p in parts] == [82, 11, 10]  # cumulative rounding: 82.4 -> 82, 92.7 -> 93
    allidx = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(allidx), np.arange(103))
    again = split_indices(103, [0.8, 0.1, 0.1], seed=3)
    for a, b in zip(parts, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(parts[1], split_indices(103, [0.8, 0.1, 0.1], seed=4)[1])
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(10, [0.5, 0.4], seed=0)


def test_split_by_index_files(tmp_path):
    ds = small()
    write_index_file(tmp_path / "train.txt", [0, 2])
    np.save(tmp_path / "test.npy", np.array([1]))
    train, test = ds.split_by_index_files([tmp_path / "train.txt", tmp_path / "test.npy"])
    np.testing.assert_array_equal(train.E, [-2.0, -1.5])
    np.testing.assert_array_equal(test.E, [-1.0])
    (tmp_path / "bad.txt").write_text("0\nx\n")
    with pytest.raises(QdynInputError, match=r"bad\.txt"):
        read_index_file(tmp_path / "bad.txt")
    write_index_file(tmp_path / "oob.txt", [5])
    with pytest.raises(QdynInputError, match="out of range"):
        ds.split_by_index_files([tmp_path / "oob.txt"])


def test_failed_frames_may_hold_nan_but_only_if_flagged():
    ds = small()
    E = ds.E.copy()
    E[1] = np.nan
    with pytest.raises(QdynInputError, match=r"small\.npz: frame 1, field 'E': non-finite"):
        Dataset(R=ds.R, Z=ds.Z, E=E, F=ds.F, source="small.npz")
    flagged = Dataset(R=ds.R, Z=ds.Z, E=E, F=ds.F, extras={"converged": np.array([True, False, True])})
    assert flagged.statistics()["n_not_converged"] == 1
    assert flagged.statistics()["energy_range_eV"] == pytest.approx(0.5)
    np.testing.assert_array_equal(flagged.converged_only().E, [-2.0, -1.5])


def test_validation_names_frame_and_field():
    ds = small()
    R = ds.R.copy()
    R[2, 1, 0] = np.nan
    with pytest.raises(QdynInputError, match=r"frame 2, field 'R'.*atom 1"):
        Dataset(R=R, Z=ds.Z)
    Z = ds.Z.copy()
    Z[0, 1] = 0  # a hole: padding before a real atom
    with pytest.raises(QdynInputError, match=r"frame 0, field 'Z'.*padding"):
        Dataset(R=ds.R, Z=Z)
    Z = ds.Z.copy()
    Z[1, 0] = 200
    with pytest.raises(QdynInputError, match=r"frame 1, field 'Z'.*Z=200"):
        Dataset(R=ds.R, Z=Z)
    with pytest.raises(QdynInputError, match=r"frame 0, field 'Z'.*unknown element 'Xx'"):
        Dataset.from_frames([(["Xx"], np.zeros((1, 3)))])
    with pytest.raises(QdynInputError, match=r"extras\[a\].*leading axis"):
        Dataset(R=ds.R, Z=ds.Z, extras={"a": np.zeros(2)})
    with pytest.raises(QdynInputError, match="object arrays"):
        Dataset(R=ds.R, Z=ds.Z, extras={"a": np.array([None, 1, 2], dtype=object)})
    with pytest.raises(QdynInputError, match="metadata"):
        Dataset(R=ds.R, Z=ds.Z, metadata={"x": object()})


def test_padding_atoms_may_hold_anything_without_complaint():
    ds = small()
    R = ds.R.copy()
    R[1, 2] = np.nan  # padding row: not data
    Dataset(R=R, Z=ds.Z)


def test_concatenate_pads_to_the_largest():
    a = small().subset([1])
    b = small().subset([0])
    c = Dataset.concatenate([Dataset(R=a.R[:, :2], Z=a.Z[:, :2], E=a.E, F=a.F[:, :2]), b])
    assert c.R.shape == (2, 3, 3)
    np.testing.assert_array_equal(c.E, [-1.0, -2.0])
    np.testing.assert_array_equal(c.Z[0], [1, 1, 0])


def _cell_ds(pbc):
    R = np.random.default_rng(0).normal(size=(2, 3, 3))
    cell = np.stack([np.eye(3) * 9.0] * 2)
    return Dataset(R=R, Z=np.array([[8, 1, 1]] * 2), E=np.zeros(2), F=np.zeros((2, 3, 3)), cell=cell,
                   pbc=np.array(pbc, bool), source="t.extxyz")

def test_a_cell_with_pbc_false_is_free_space_and_mixed_frames_are_refused():
    free = _cell_ds([[False] * 3] * 2)
    assert free.to_system(0)[1].box is None and make_batch(free, np.arange(2), 2).system.box is None
    box = _cell_ds([[True] * 3] * 2)
    assert box.to_system(1)[1].box is not None and make_batch(box, np.arange(2), 2).system.box.shape == (2, 3, 3)
    with pytest.raises(QdynInputError, match="t.extxyz: frame 1 is periodic along some"):
        _cell_ds([[True] * 3, [True, True, False]]).to_system(0)
    with pytest.raises(QdynInputError, match="mixed"):
        make_batch(_cell_ds([[True] * 3, [False] * 3]), np.arange(2), 2)
