"""Build the shipped CaH2 S0/S1 dataset (TDA-B3LYP/def2-SVP) and check its S1 forces.

Runs the shipped recipe (``qdyn label --recipe shipped:CaH2``; resumable through the
per-frame cache), then compares the labeller's analytic S1 forces with central finite
differences of its S1 energy along a random direction on a few frames and records the
result in the dataset's metadata (``fd_check``): PySCF's TDDFT gradients have no
grid-response term, so this is the number that says how well they match.

    nice -n 10 python benchmarks/build_cah2_data.py [--workers 2] [--out qdyn/data/shipped/CaH2.npz]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from qdyn.data import recipes, write  # noqa: E402
from qdyn.data.labelers import labeler_from_spec  # noqa: E402

COMMAND = ("qdyn label --recipe shipped:CaH2 --out qdyn/data/shipped/CaH2.npz "
           "(then python benchmarks/build_cah2_data.py adds the finite-difference check)")


def fd_frames(ds):
    """The frames checked: among the random configurations, the one with the smallest S0/S1
    gap and the most bent one."""
    rand = np.flatnonzero(ds.extras["sampler_part"] == 0)
    gap = ds.E_states[rand, 1] - ds.E_states[rand, 0]
    d1, d2 = ds.R[rand, 1] - ds.R[rand, 0], ds.R[rand, 2] - ds.R[rand, 0]
    cos = np.einsum("ix,ix->i", d1, d2) / (np.linalg.norm(d1, axis=1) * np.linalg.norm(d2, axis=1))
    return sorted({int(rand[np.argmin(gap)]), int(rand[np.argmax(cos)])})


def fd_check(ds, labeler, frames, *, h=2e-3, seed=0, cache_dir=None, workers=1):
    """Central differences [eV/Å] of every state's energy along a random unit direction,
    labelled through the per-frame cache (a rerun costs nothing)."""
    from qdyn.data import Dataset, label_dataset

    rng = np.random.default_rng(seed)
    dirs = []
    for _ in frames:
        v = rng.normal(size=ds.R.shape[1:])
        dirs.append(v / np.linalg.norm(v))
    R = np.stack([ds.R[i] + s * h * v for i, v in zip(frames, dirs) for s in (1.0, -1.0)])
    displaced = Dataset(R=R, Z=np.broadcast_to(ds.Z[frames[0]], R.shape[:2]))
    lab = label_dataset(displaced, labeler, workers=workers, cache_dir=cache_dir)
    rows = []
    for k, (i, v) in enumerate(zip(frames, dirs)):
        fd = (lab.E_states[2 * k] - lab.E_states[2 * k + 1]) / (2 * h)
        an = -np.einsum("sax,ax->s", ds.F_states[i], v)
        rows.append({"frame": int(i), "gap_eV": float(ds.E_states[i, 1] - ds.E_states[i, 0]),
                     "fd_eV_per_A": fd.tolist(), "analytic_eV_per_A": an.tolist(),
                     "abs_error_eV_per_A": np.abs(fd - an).tolist()})
        print(f"frame {i}: FD {np.round(fd, 5)}  analytic {np.round(an, 5)}", flush=True)
    err = max(max(r["abs_error_eV_per_A"]) for r in rows)
    return {"step_A": h, "seed": seed, "states": "S0 and S1", "frames": rows, "max_abs_error_eV_per_A": err,
            "note": "central differences of the labeller's energies along a random unit direction"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="qdyn/data/shipped/CaH2.npz")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    recipe = recipes.get_recipe("shipped:CaH2")
    ds = recipes.run_recipe(recipe, out=None, workers=args.workers, cache_dir=args.cache_dir, command=COMMAND,
                            log=print)
    labeler = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    ds.metadata["fd_check"] = fd_check(ds, labeler, fd_frames(ds), cache_dir=args.cache_dir, workers=args.workers)
    write(ds, args.out)
    print(f"wrote {args.out}: {ds.n_frames} frames, FD max error "
          f"{ds.metadata['fd_check']['max_abs_error_eV_per_A']:.2e} eV/Å, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
