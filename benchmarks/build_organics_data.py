"""Build the shipped organic and organometallic datasets (issue 21, items 1-2).

* ``alanine_dipeptide``, ``alanine_dipeptide_rama`` (the Ramachandran plane: restrained
  GFN2-xTB relaxations and MD over a 12 × 12 (φ, ψ) grid, ~5 min of sampling) and
  ``ferrocene`` at GFN2-xTB: whole recipes.
* ``ethanol_torsions``, ``ethanol`` and ``malonaldehyde`` at PBE/def2-SVP (~6-7 s per frame on
  one core): labelled in that order, each set's frames in a seeded random order, so a run
  stopped at ``--until`` leaves an unbiased subset of every part of the recipe. What finished
  is shipped (``metadata['subset']`` records the recipe's size and the frames kept); a rerun
  resumes from the per-frame cache and finishes the rest, or
  ``qdyn label --recipe shipped:NAME --out NAME.npz`` labels the whole recipe.
* Density fitting is measured on a few ethanol frames (seconds per frame and the largest force
  difference with and without it) and recorded in the ethanol set's metadata.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/build_organics_data.py --until ethanol=02:50 [--workers 2] \\
        --log benchmarks/results/build_organics_data.log
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from qdyn import units  # noqa: E402
from qdyn.data import label_dataset, read, recipes, write  # noqa: E402
from qdyn.data.label_run import labeled_mask, seed_cache  # noqa: E402
from qdyn.data.labelers import labeler_from_spec  # noqa: E402

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "qdyn" / "data" / "shipped"
CHUNK = 10  # frames labelled between deadline checks


def log_to(path):
    def log(msg):
        line = f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} {msg}"
        print(line, flush=True)
        if path:
            with open(path, "a") as fh:
                fh.write(line + "\n")
    return log


def deadline_passed(until: dt.datetime | None) -> bool:
    return until is not None and dt.datetime.now(dt.timezone.utc) >= until


def density_fitting_check(configs, recipe, frames, log) -> dict:
    """Seconds per frame and force differences [meV/Å] of PBE with and without density fitting."""
    from pyscf import lib

    lib.num_threads(1)
    lab = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    rows = []
    for i in frames:
        Z, R = configs.Z[i], configs.R[i]
        out = {}
        for df in (False, True):
            mol = lab._mol(Z, R)
            from pyscf import dft

            mf = dft.RKS(mol)
            mf.xc, mf.grids.level, mf.conv_tol, mf.verbose = lab.xc, lab.grid_level, lab.conv_tol, 0
            if df:
                mf = mf.density_fit()
            t0 = time.perf_counter()
            e = mf.kernel()
            g = mf.nuc_grad_method()
            g.grid_response = True
            grad = g.kernel()
            out[df] = (time.perf_counter() - t0, e, grad)
        dF = units.convert(np.abs(out[True][2] - out[False][2]).max(), "Hartree/Bohr", "eV/Angstrom") * 1e3
        dE = units.convert(out[True][1] - out[False][1], "Hartree", "eV") * 1e3
        rows.append({"frame": int(i), "seconds_without": round(out[False][0], 2), "seconds_with": round(out[True][0], 2),
                     "max_abs_force_difference_meV_per_A": round(float(dF), 3), "energy_difference_meV": round(float(dE), 3)})
        log(f"density fitting, frame {i}: {rows[-1]}")
    return {"used": False, "auxbasis": "PySCF default (def2-universal-jkfit)", "frames": rows,
            "decision": "not used: forces move by more than 1 meV/Å and the time saved is small"}


def cached_density_fitting_check(configs, recipe, log) -> dict:
    """The check on the first MD frame and the last normal-mode frame, computed once."""
    import hashlib
    import json

    from qdyn.data.label_run import default_cache_dir

    frames = [0, configs.n_frames - 1]
    key = hashlib.sha256(json.dumps([recipe["labeler"], configs.R[frames].tolist()]).encode()).hexdigest()[:16]
    path = default_cache_dir() / f"density-fitting-{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = density_fitting_check(configs, recipe, frames, log)
    path.write_text(json.dumps(result))
    return result


def seed_from_shipped(name, configs, lab, log):
    """On a fresh machine, start from the frames already shipped rather than relabel them."""
    path = SHIPPED_DIR / f"{name}.npz"
    if not path.exists():
        return
    shipped = read(path)
    frames = shipped.metadata.get("subset", {}).get("frames", range(shipped.n_frames))
    seeded, skipped = seed_cache(configs, shipped, frames, lab)
    log(f"{name}: {seeded} shipped frames put into the label cache, {skipped} skipped (geometry differs)")


def label_in_order(name, configs, lab, order, until, log, workers=0):
    """Label ``configs`` in ``order``, CHUNK frames per worker at a time, until done or the deadline."""
    done = labeled_mask(configs, lab)
    todo = [int(i) for i in order if not done[i]]
    log(f"{name}: {int(done.sum())}/{configs.n_frames} labelled already, {len(todo)} to go")
    t0 = time.perf_counter()
    chunk = CHUNK * max(1, workers)
    for k in range(0, len(todo), chunk):
        if deadline_passed(until):
            log(f"{name}: deadline reached")
            return False
        label_dataset(configs.subset(np.asarray(todo[k:k + chunk])), lab, workers=workers)
        n = min(k + chunk, len(todo))
        log(f"{name}: {n}/{len(todo)} new frames, {(time.perf_counter() - t0) / n:.1f} s/frame")
    return True


def ship(name, recipe, configs, lab, extra_meta, log):
    """Write the finished frames (all of them, or the labelled subset) to the shipped folder."""
    done = labeled_mask(configs, lab)
    keep = np.flatnonzero(done)
    if not len(keep):
        log(f"{name}: nothing labelled, nothing shipped")
        return
    meta = {"command": f"qdyn label --recipe shipped:{name} --out {name}.npz "
                       f"(benchmarks/build_organics_data.py labels it in a random order and ships what finished)",
            "code_versions": recipes.code_versions(), "seed": recipes._seeds(recipe["sampler"])}
    meta.update(extra_meta)
    if len(keep) < configs.n_frames:
        meta["subset"] = {"n_recipe_frames": int(configs.n_frames), "n_shipped": int(len(keep)),
                          "frames": keep.tolist(),
                          "note": "labelling stopped at a deadline; frames were labelled in a seeded random "
                                  "order, so the subset samples every part of the recipe"}
    ds = label_dataset(configs.subset(keep), lab, workers=0, metadata=meta)
    path = SHIPPED_DIR / f"{name}.npz"
    write(ds, path)
    log(f"{name}: shipped {ds.n_frames} frames ({int(ds.converged.sum())} converged) -> {path}")


def build(name, until, log, *, df_check=False, workers=0):
    recipe = recipes.get_recipe(f"shipped:{name}")
    lab = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    configs = recipes.sample_configurations(recipe, log=log)
    extra = {}
    if df_check:
        extra["density_fitting"] = cached_density_fitting_check(configs, recipe, log)
    seed_from_shipped(name, configs, lab, log)
    order = np.random.default_rng(0).permutation(configs.n_frames)
    label_in_order(name, configs, lab, order, until, log, workers)
    ship(name, recipe, configs, lab, extra, log)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--until", nargs="*", default=[], metavar="[NAME=]HH:MM",
                    help="UTC time after which no new labelling chunk starts, for all sets or for NAME")
    ap.add_argument("--only", nargs="*", default=None, help="dataset names (default: all, in build order)")
    ap.add_argument("--log", default=None, help="append progress lines to this file")
    ap.add_argument("--workers", type=int, default=0, help="parallel labelling processes (0: in this process)")
    args = ap.parse_args()
    log = log_to(args.log)
    deadlines = {}
    for item in args.until:
        name, _, hhmm = item.rpartition("=")
        h, m = map(int, hhmm.split(":"))
        deadlines[name] = dt.datetime.now(dt.timezone.utc).replace(hour=h, minute=m, second=0, microsecond=0)
    names = args.only or ["ethanol_torsions", "ethanol", "alanine_dipeptide", "alanine_dipeptide_rama", "ferrocene",
                          "malonaldehyde"]
    for name in names:
        until = deadlines.get(name, deadlines.get(""))
        build(name, until, log, df_check=(name == "ethanol"), workers=args.workers)


if __name__ == "__main__":
    main()
