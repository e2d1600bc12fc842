"""The labelling run: parallel, cached per frame, resumable, failures recorded.

:func:`label_dataset` labels every configuration of an unlabelled :class:`Dataset`:

* **Process pool, one thread each.** ``workers`` spawned processes; OMP/BLAS thread counts
  are pinned to 1 through environment variables the children inherit (they must be set
  before numpy or PySCF load their libraries) and ``pyscf.lib.num_threads(1)``, so
  ``workers`` equals the cores used. ``workers=0`` labels in this process (tests, debugging).
* **Per-frame cache, content-addressed.** Each finished frame is written atomically to
  ``cache_dir/<labeller key>/frames/<geometry hash>.npz`` together with its geometry. The
  labeller key hashes the labeller's description (method, basis, settings, code version);
  the geometry hash covers the exact bits of Z and R. So any later call with the same
  labeller finds every frame it has seen before, whatever the order or the other frames:
  an interrupted run (Ctrl-C, a killed job, a reboot) resumes where it stopped, a recipe
  that gains or changes some configurations relabels only those, and since cached frames
  are the exact arrays computed before, the result equals an uninterrupted run bit for bit.
* **Failures kept.** A frame whose SCF/CC/CASSCF did not converge, or whose calculation
  raised, is kept (in the cache only a genuine non-convergence: a raised calculation may be
  transient, e.g. a missing scratch directory, and is computed again on the next run) with ``extras['converged'] = False`` and a ``status`` string, and listed in
  ``metadata['labelling']['failures']``; :meth:`Dataset.converged_only` drops them explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .dataset import Dataset
from .io import atomic_savez, atomic_write_text, load_npz
from ..validation import QdynInputError
from .labelers import FrameResult

__all__ = ["label_dataset", "labeled_mask", "seed_cache", "labeler_key", "default_cache_dir", "ProgressFn"]

ProgressFn = Callable[[int, int, int], None]
"""progress(done, total, n_from_cache), called after each frame (and once at the start)."""

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS", "XLA_FLAGS")


def default_cache_dir() -> Path:
    """``$QDYN_CACHE_DIR/labels`` or ``~/.cache/qdyn/labels`` (see :mod:`qdyn.cache`)."""
    from ..cache import label_cache_dir

    return label_cache_dir()


def _frame_hash(Z, R) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(Z, dtype=np.int32).tobytes())
    h.update(np.ascontiguousarray(R, dtype=np.float64).tobytes())
    return h.hexdigest()


def _frame_file(frames_dir: Path, Z, R) -> Path:
    """The cache file of one configuration (real atoms only): named by its geometry hash."""
    return frames_dir / f"{_frame_hash(Z, R)[:32]}.npz"


def labeler_key(labeler) -> str:
    """Hash of the labeller description: the cache folder's name."""
    return hashlib.sha256(json.dumps(labeler.describe(), sort_keys=True).encode()).hexdigest()[:24]


@contextlib.contextmanager
def _single_thread_env():
    """Children spawned inside inherit one-thread settings; the parent's env is restored."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS[:-1]:
        os.environ[k] = "1"
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker():
    try:
        from pyscf import lib

        lib.num_threads(1)
    except ImportError:  # labelling with an ASE calculator needs no PySCF
        pass


def _label_one(labeler, Z, R, index: int):
    t0 = time.perf_counter()
    res = labeler.label(Z, R)
    return index, res, time.perf_counter() - t0


def _save_frame(path: Path, Z, R, res: FrameResult, seconds: float) -> None:
    arrays = {
        "Z": np.asarray(Z, np.int32),
        "R": np.asarray(R, np.float64),
        "energy": np.float64(res.energy),
        "forces": np.asarray(res.forces, np.float64),
        "converged": np.bool_(res.converged),
        "status": np.array(res.status),
        "seconds": np.float64(seconds),
    }
    if res.energies_states is not None:
        arrays["energies_states"] = np.asarray(res.energies_states, np.float64)
        arrays["forces_states"] = np.asarray(res.forces_states, np.float64)
    if res.nacs_states is not None:
        arrays["nacs_states"] = np.asarray(res.nacs_states, np.float64)
    if res.dipole is not None:
        arrays["dipole"] = np.asarray(res.dipole, np.float64)
    atomic_savez(path, arrays, compressed=False)


def _dipoles(results) -> Optional[np.ndarray]:
    """[n, 3] e·Å when every converged frame has a dipole (failed frames NaN); None when the
    labeller gives none or a cached frame predates dipoles (a partial column would poison the
    dipole loss; relabel with a fresh cache to get it)."""
    ok = [r for r in results if r.converged]
    if not ok or any(r.dipole is None for r in ok):
        return None
    return np.stack([np.asarray(r.dipole, float) if r.converged else np.full(3, np.nan) for r in results])


def _cacheable(res: FrameResult) -> bool:
    """Converged frames and genuine non-convergence are kept; an exception (a missing scratch
    directory, a full disk, a killed worker) is transient and is retried on the next run."""
    return res.converged or res.status.startswith("not converged")


def _load_frame(path: Path, Z, R):
    """A cached frame, or None if absent, unreadable or for a different geometry."""
    if not path.exists():
        return None
    try:
        z = load_npz(path)
    except Exception:
        # A frame file can only be partial if the disk failed; recompute it.
        return None
    if not (np.array_equal(z["Z"], Z) and np.array_equal(z["R"], R)):
        return None
    res = FrameResult(
        energy=float(z["energy"]),
        forces=z["forces"],
        converged=bool(z["converged"]),
        status=str(z["status"]),
        energies_states=z.get("energies_states"),
        forces_states=z.get("forces_states"),
        nacs_states=z.get("nacs_states"),
        dipole=z.get("dipole"),
    )
    return res, float(z["seconds"])


def label_dataset(
    configs: Dataset,
    labeler,
    *,
    workers: int = 1,
    cache_dir: Optional[str | Path] = None,
    progress: Optional[ProgressFn] = None,
    metadata: Optional[dict] = None,
) -> Dataset:
    """Label every configuration; cached per frame, resumable, failures recorded.

    Args:
        configs: configurations (R [n, A, 3] Å, Z [n, A]); existing labels are ignored,
            ``extras`` and ``metadata`` are carried over.
        labeler: a :class:`qdyn.data.labelers.Labeler` (picklable when ``workers`` ≥ 1).
        workers: processes (one thread each); 0 labels in this process.
        cache_dir: root of the per-frame cache (default :func:`default_cache_dir`);
            caching is always on (it is what makes runs resumable).
        progress: called as ``progress(done, total, n_from_cache)``.
        metadata: merged into the result's metadata (e.g. the recipe and command).

    With ``workers`` ≥ 1 the workers are *spawned*, so a script calling this must guard
    its entry point with ``if __name__ == "__main__":`` (the CLI and notebooks need nothing).

    Returns:
        The labelled :class:`Dataset` with ``extras['converged']`` bool [n] and
        ``extras['status']`` str [n], and ``metadata['labeler']``, ``['units']``,
        ``['labelling']`` (failures and timing).
    """
    if workers < 0:
        raise QdynInputError(f"workers must be >= 0, got {workers}")
    if configs.n_frames and hasattr(labeler, "validate"):
        # an unknown basis/functional or an impossible charge/spin fails every frame alike:
        # refuse it before the first one is computed
        m0 = configs.mask[0]
        labeler.validate(configs.Z[0][m0], configs.R[0][m0])
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    run_dir = root / labeler_key(labeler)
    frames_dir = run_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    manifest = run_dir / "labeler.json"
    if not manifest.exists():
        atomic_write_text(manifest, json.dumps(labeler.describe(), indent=1, sort_keys=True))

    def frame_path(i):
        m = configs.mask[i]
        return _frame_file(frames_dir, configs.Z[i][m], configs.R[i][m])

    n = configs.n_frames
    results: list = [None] * n
    seconds = np.zeros(n)
    todo = []
    for i in range(n):
        m = configs.mask[i]
        got = _load_frame(frame_path(i), configs.Z[i][m], configs.R[i][m])
        if got is None or not _cacheable(got[0]):  # caches of older qdyn kept transient errors
            todo.append(i)
        else:
            results[i], seconds[i] = got
    n_cached = n - len(todo)
    done = n_cached
    if progress:
        progress(done, n, n_cached)

    def finish(i, res, secs):
        nonlocal done
        m = configs.mask[i]
        if _cacheable(res):
            _save_frame(frame_path(i), configs.Z[i][m], configs.R[i][m], res, secs)
        results[i], seconds[i] = res, secs
        done += 1
        if progress:
            progress(done, n, n_cached)

    if workers == 0:
        with pyscf_threads(1):
            for i in todo:
                m = configs.mask[i]
                finish(*_label_one(labeler, configs.Z[i][m], configs.R[i][m], i))
    elif todo:
        import multiprocessing as mp

        with _single_thread_env():
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
        try:
            # Keep a bounded queue so an interrupt cancels little queued work.
            pending = set()
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < 2 * workers:
                    i = queue.pop(0)
                    m = configs.mask[i]
                    pending.add(pool.submit(_label_one, labeler, configs.Z[i][m], configs.R[i][m], i))
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    finish(*fut.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return _assemble(configs, labeler, results, seconds, n_cached, metadata)


def labeled_mask(configs: Dataset, labeler, *, cache_dir: Optional[str | Path] = None) -> np.ndarray:
    """bool [n]: which configurations already have a finished label in the per-frame cache.

    For shipping the finished part of a run that was stopped (``configs[mask]`` then labels
    from the cache alone) and for progress reports.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    frames_dir = root / labeler_key(labeler) / "frames"
    done = np.zeros(configs.n_frames, dtype=bool)
    for i in range(configs.n_frames):
        m = configs.mask[i]
        got = _load_frame(_frame_file(frames_dir, configs.Z[i][m], configs.R[i][m]),
                          configs.Z[i][m], configs.R[i][m])
        done[i] = got is not None and _cacheable(got[0])
    return done


def _states_of(labeled: Dataset, k: int, mk) -> dict:
    """Frame k's multistate labels as FrameResult fields (none for a single-state set): a
    seeded multistate frame without them would be read back as a single-state one."""
    if labeled.E_states is None:
        return {}
    nacs = labeled.extras.get("nacs_states")
    return {"energies_states": labeled.E_states[k], "forces_states": labeled.F_states[k][:, mk],
            "nacs_states": None if nacs is None else nacs[k][:, :, mk]}


def seed_cache(configs: Dataset, labeled: Dataset, frames, labeler, *,
               cache_dir: Optional[str | Path] = None, atol: float = 1e-8) -> tuple[int, int]:
    """Put labels you already have into the per-frame cache, so a run on a fresh machine
    resumes instead of recomputing them (a shipped subset, a colleague's file).

    ``labeled`` frame k holds the labels of ``configs`` frame ``frames[k]``, made with
    ``labeler``. A frame is taken only where its atoms equal and its positions agree within
    ``atol`` Å (a resampled recipe may differ in the last bits); the cached copy carries the
    configuration's own positions, which the cache compares exactly. Multistate labels (state
    energies, forces, couplings) travel too; couplings keep the sign ``labeled`` gave them (a
    gauge: builders realign signs over the whole set). Each seeded frame is timed at the mean
    seconds per frame ``labeled`` records (a dataset keeps no per-frame times), so the timing
    a resumed run reports still says what a label costs. Returns (seeded, skipped).
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    frames_dir = root / labeler_key(labeler) / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    dipoles = labeled.extras.get("dipole")
    seconds = float(labeled.metadata.get("labelling", {}).get("timing", {}).get("seconds_per_frame_mean", 0.0))
    seeded = skipped = 0
    for k, i in enumerate(frames):
        m, mk = configs.mask[i], labeled.mask[k]
        Z, R = configs.Z[i][m], configs.R[i][m]
        path = _frame_file(frames_dir, Z, R)
        same = np.array_equal(labeled.Z[k][mk], Z) and np.abs(labeled.R[k][mk] - R).max() <= atol
        if not same:
            skipped += 1
            continue
        if path.exists():
            continue
        res = FrameResult(energy=float(labeled.E[k]), forces=labeled.F[k][mk],
                          converged=bool(labeled.extras["converged"][k]),
                          status=str(labeled.extras["status"][k]),
                          dipole=None if dipoles is None else dipoles[k], **_states_of(labeled, k, mk))
        _save_frame(path, Z, R, res, seconds=seconds)
        seeded += 1
    return seeded, skipped


@contextlib.contextmanager
def pyscf_threads(k: int):
    """PySCF on ``k`` threads inside the block (nothing to do where PySCF is not installed)."""
    try:
        from pyscf import lib
    except ImportError:
        yield
        return
    before = lib.num_threads()
    lib.num_threads(k)
    try:
        yield
    finally:
        lib.num_threads(before)


def _assemble(configs: Dataset, labeler, results, seconds, n_cached, extra_meta) -> Dataset:
    n, A = configs.n_frames, configs.n_atoms
    m = configs.mask
    E = np.array([r.energy for r in results], dtype=float)
    F = np.zeros((n, A, 3))
    for i, r in enumerate(results):
        F[i, m[i]] = r.forces
    E_states = F_states = None
    S = getattr(labeler, "n_states", 0)
    if S:
        E_states = np.stack([r.energies_states for r in results])
        F_states = np.zeros((n, S, A, 3))
        for i, r in enumerate(results):
            F_states[i][:, m[i]] = r.forces_states
    converged = np.array([r.converged for r in results], dtype=bool)
    status = np.array([r.status for r in results])
    meta = dict(configs.metadata)
    meta.update(extra_meta or {})
    meta["labeler"] = labeler.describe()
    meta["units"] = {"energy": "eV", "length": "Angstrom", "force": "eV/Angstrom"}
    meta["labelling"] = {
        "n_frames": n,
        "n_failed": int((~converged).sum()),
        "failures": [{"frame": int(i), "status": str(status[i])} for i in np.flatnonzero(~converged)],
        # Timing differs between runs; it is informative, not part of the data.
        "timing": {"seconds_per_frame_mean": float(seconds.mean()) if n else 0.0,
                   "seconds_total": float(seconds.sum())},
    }
    extras = dict(configs.extras)
    extras["converged"] = converged
    extras["status"] = status
    if S and getattr(labeler, "nac", False):
        # nonadiabatic couplings d_ij [n, S, S, A, 3] 1/Å (NaN where a frame failed)
        nacs = np.zeros((n, S, S, A, 3))
        for i, r in enumerate(results):
            nacs[i][:, :, m[i]] = np.nan if r.nacs_states is None else r.nacs_states
        extras["nacs_states"] = nacs
    dipole = _dipoles(results)
    if dipole is not None:
        extras["dipole"] = dipole
        meta["units"]["dipole"] = "e*Angstrom"
    return Dataset(R=configs.R, Z=configs.Z, E=E, F=F, cell=configs.cell, pbc=configs.pbc,
                   E_states=E_states, F_states=F_states, extras=extras, metadata=meta, source=configs.source)
