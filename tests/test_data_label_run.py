"""Labelling runs: resumable through the per-frame cache, failures recorded, recipes regenerate."""

import json

import numpy as np
import pytest

from qdyn import structures
from qdyn.data import Dataset, assert_datasets_equal, label_dataset, read, write
from qdyn.data import recipes, samplers
from qdyn.data.label_run import labeled_mask, seed_cache
from qdyn.data.labelers import PySCFLabeler

HF = PySCFLabeler(method="HF", basis="sto-3g")


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


def lih_scan(n=6):
    R0, system = structures.lih()
    X = samplers.scan(R0, atoms=(0, 1), values=np.linspace(1.3, 3.0, n))
    return Dataset(R=X, Z=np.broadcast_to(np.asarray(system.species), X.shape[:2]), metadata={"name": "lih-scan"})


def without_timing(ds):
    ds.metadata["labelling"].pop("timing")
    return ds


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_dataset(tmp_path):
    configs = lih_scan()
    full = label_dataset(configs, HF, workers=0, cache_dir=tmp_path / "a")

    def stop_after_3(done, total, cached):
        if done - cached >= 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        label_dataset(configs, HF, workers=0, cache_dir=tmp_path / "b", progress=stop_after_3)
    frames = list((tmp_path / "b").glob("*/frames/*.npz"))
    assert len(frames) == 3  # nothing already labelled is lost

    seen = []
    resumed = label_dataset(configs, HF, workers=0, cache_dir=tmp_path / "b", progress=lambda d, t, c: seen.append((d, c)))
    assert seen[0] == (3, 3)  # three from the cache, only three computed
    assert_datasets_equal(without_timing(full), without_timing(resumed))  # bit-exact


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    configs = lih_scan(3)
    first = label_dataset(configs, HF, workers=0, cache_dir=tmp_path)
    f = sorted(tmp_path.glob("*/frames/*.npz"))[1]
    f.write_bytes(f.read_bytes()[:50])
    again = label_dataset(configs, HF, workers=0, cache_dir=tmp_path)
    assert_datasets_equal(without_timing(first), without_timing(again))


def test_non_converged_frames_are_kept_and_reported(tmp_path):
    configs = lih_scan(3)
    R = configs.R.copy()
    R[2, 1] = R[2, 0]  # atoms on top of each other: the calculation raises
    configs = Dataset(R=R, Z=configs.Z)
    ds = label_dataset(configs, PySCFLabeler(method="HF", basis="sto-3g", max_cycle=1), workers=0, cache_dir=tmp_path)
    assert ds.n_frames == 3  # never silently dropped
    np.testing.assert_array_equal(ds.extras["converged"], [False, False, False])
    assert list(ds.extras["status"][:2]) == ["not converged: SCF"] * 2
    assert ds.extras["status"][2].startswith("error:") and np.isnan(ds.E[2])
    failures = ds.metadata["labelling"]["failures"]
    assert [f["frame"] for f in failures] == [0, 1, 2] and ds.metadata["labelling"]["n_failed"] == 3
    back = read(write(ds, tmp_path / "failed.npz"))  # failed frames survive a round trip
    assert_datasets_equal(ds, back)
    assert back.converged_only().n_frames == 0


@pytest.mark.slow
def test_process_pool_equals_in_process(tmp_path):
    # Spawned workers (one thread each) give the same bits as labelling in this process.
    configs = lih_scan(4)
    here = label_dataset(configs, HF, workers=0, cache_dir=tmp_path / "a")
    pool = label_dataset(configs, HF, workers=2, cache_dir=tmp_path / "b")
    assert_datasets_equal(without_timing(here), without_timing(pool))


def test_ase_labeler_in_a_labelling_run(tmp_path, emt_labeler):
    R0, _ = structures.water()
    X = samplers.scan(R0, atoms=(0, 1), values=[0.9, 1.0, 1.1])
    configs = Dataset(R=X, Z=np.broadcast_to([8, 1, 1], (3, 3)))
    ds = label_dataset(configs, emt_labeler, workers=0, cache_dir=tmp_path)
    assert ds.converged.all() and ds.metadata["labeler"]["method"] == "EMT"
    assert len(set(ds.E.tolist())) == 3


def tiny_recipe():
    r = recipes.get_recipe("shipped:H2O")
    r["name"] = "tiny"
    r["labeler"] = {"method": "HF", "basis": "sto-3g"}
    r["sampler"]["n"] = 3
    return r


def test_recipe_metadata_regenerates_the_dataset(tmp_path):
    out = tmp_path / "tiny.npz"
    ds = recipes.run_recipe(tiny_recipe(), out=out, workers=0, cache_dir=tmp_path / "c1", command="qdyn label ...")
    meta = read(out).metadata
    for key in ("recipe", "command", "code_versions", "seed", "labeler", "units", "sampling", "labelling"):
        assert key in meta, key
    assert meta["labeler"]["method"] == "HF" and meta["units"]["energy"] == "eV"
    assert meta["sampling"]["reference"][0]["wavenumbers_intra_cm1"][0] > 1000
    json.dumps(meta)
    # The recipe stored in the file, run from scratch (fresh cache), gives the same data.
    again = recipes.run_recipe(recipes.get_recipe(str(out)), out=None, workers=0, cache_dir=tmp_path / "c2",
                               command="qdyn label ...")
    assert_datasets_equal(without_timing(ds), without_timing(again), exact=False)


def test_shipped_recipes_are_complete():
    for name in ("H2O", "LiH", "water_dimer"):
        r = recipes.get_recipe(f"shipped:{name}")
        assert set(r) >= {"name", "structure", "labeler", "sampler"}
        PySCFLabeler(**r["labeler"])  # valid labeller settings
    assert recipes.get_recipe("shipped:LiH")["labeler"]["cc_max_cycle"] >= 100
    with pytest.raises(ValueError, match="no shipped recipe"):
        recipes.get_recipe("shipped:nope")


def test_cache_is_shared_by_geometry_across_runs(tmp_path):
    # A second job that shares some configurations (in another order) relabels only the new ones.
    configs = lih_scan(6)
    first = label_dataset(configs.subset([0, 1, 2]), HF, workers=0, cache_dir=tmp_path)
    seen = []
    second = label_dataset(configs.subset([5, 2, 1, 4]), HF, workers=0, cache_dir=tmp_path,
                           progress=lambda d, t, c: seen.append(c))
    assert seen[0] == 2
    np.testing.assert_array_equal(second.E[1:3], first.E[[2, 1]])


def test_seeded_cache_reuses_shipped_labels_and_skips_moved_geometries(tmp_path):
    configs = lih_scan(4)
    labelled = label_dataset(configs.subset(np.array([1, 3])), HF, workers=0, cache_dir=tmp_path / "a")
    moved = Dataset(R=labelled.R + np.array([0.0, 0.0, 1e-6]), Z=labelled.Z, E=labelled.E, F=labelled.F,
                    extras=labelled.extras, metadata=labelled.metadata)
    assert seed_cache(configs, moved, [1, 3], HF, cache_dir=tmp_path / "b") == (0, 2)  # not the same frames
    assert seed_cache(configs, labelled, [1, 3], HF, cache_dir=tmp_path / "b") == (2, 0)
    np.testing.assert_array_equal(labeled_mask(configs, HF, cache_dir=tmp_path / "b"), [False, True, False, True])

    seen = []
    full = label_dataset(configs, HF, workers=0, cache_dir=tmp_path / "b", progress=lambda d, t, c: seen.append(c))
    assert seen[0] == 2  # only frames 0 and 2 are computed
    np.testing.assert_array_equal(full.E[[1, 3]], labelled.E)
    np.testing.assert_array_equal(full.F[[1, 3]], labelled.F)
    assert np.isfinite(full.E).all() and len(set(full.E)) == 4
    # seeded frames count at the labelled set's mean cost, not as free
    per_frame = labelled.metadata["labelling"]["timing"]["seconds_per_frame_mean"]
    assert full.metadata["labelling"]["timing"]["seconds_total"] >= 2 * per_frame > 0


def test_seeded_cache_keeps_multistate_labels(tmp_path):
    # A multistate set seeded into the cache comes back with its state energies, forces and
    # couplings (the shipped SA-CASSCF set grows this way without relabelling its frames).
    configs = lih_scan(2)
    rng = np.random.default_rng(0)
    E_states = np.array([[-200.0, -197.0], [-199.5, -197.2]])
    F_states = rng.normal(size=(2, 2, 2, 3))
    nacs = rng.normal(size=(2, 2, 2, 2, 3))
    nacs -= np.swapaxes(nacs, 1, 2)  # antisymmetric in the state pair
    labelled = Dataset(R=configs.R, Z=configs.Z, E=E_states[:, 0], F=F_states[:, 0], E_states=E_states,
                       F_states=F_states, extras={"converged": np.array([True, True]),
                                                  "status": np.array(["ok", "ok"]), "nacs_states": nacs})
    sa = PySCFLabeler(method="SA-CASSCF", basis="sto-3g", ncas=2, nelecas=2, n_states=2, nac=True)
    assert seed_cache(configs, labelled, [0, 1], sa, cache_dir=tmp_path) == (2, 0)
    seen = []
    back = label_dataset(configs, sa, workers=0, cache_dir=tmp_path, progress=lambda d, t, c: seen.append(c))
    assert seen[-1] == 2  # nothing computed
    np.testing.assert_array_equal(back.E_states, E_states)
    np.testing.assert_array_equal(back.F_states, F_states)
    np.testing.assert_array_equal(back.extras["nacs_states"], nacs)
