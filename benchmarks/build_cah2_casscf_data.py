"""Build the shipped CaH2 SA-CASSCF dataset around the S0/S1 conical intersection.

Runs the shipped recipe ``shipped:CaH2_casscf`` (SA3-CASSCF(4e,6o)/def2-SVP, energies,
analytic gradients and nonadiabatic couplings of three singlets on a bend x antisymmetric
stretch grid; resumable through the per-frame cache, parallel with ``--workers``), makes the
signs of the couplings continuous along the data (:func:`qdyn.data.couplings.align_coupling_signs`),
checks the symmetry of the couplings (on the C2v frames S0/S1 couple only along B2 displacements) and
the forces against central finite differences on one frame, and writes the dataset.

    nice -n 15 python benchmarks/build_cah2_casscf_data.py [--workers 1] [--cache-dir DIR]

Writes ``qdyn/data/shipped/CaH2_casscf.npz``; numbers printed and stored in its metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_cah2_data import fd_check  # noqa: E402

from qdyn.data import recipes, write  # noqa: E402
from qdyn.data.couplings import align_coupling_signs  # noqa: E402
from qdyn.data.labelers import labeler_from_spec  # noqa: E402

COMMAND = ("qdyn label --recipe shipped:CaH2_casscf --out qdyn/data/shipped/CaH2_casscf.npz (then python "
           "benchmarks/build_cah2_casscf_data.py aligns the coupling signs and records the checks)")
LEVEL = "SA3-CASSCF(4e,6o)/def2-SVP (PySCF), singlets"


def c2v_check(ds):
    """On the C2v frames (r1 = r2) the S0/S1 coupling of 1A1 and 1B2 must be a B2 vector: odd
    under the mirror that exchanges H1 and H2. Returns the largest fraction of |d_01| that is
    even (0 for a clean symmetry-adapted solution; a broken-symmetry CASSCF solution shows here)."""
    d = np.linalg.norm(ds.R[:, 1] - ds.R[:, 0], axis=1) - np.linalg.norm(ds.R[:, 2] - ds.R[:, 0], axis=1)
    fractions = []
    for i in np.flatnonzero(np.isclose(d, 0.0) & ds.extras["converged"]):
        R, nac = ds.R[i], ds.extras["nacs_states"][i, 0, 1]
        # the mirror through Ca containing the bisector: reflect across the plane normal to (H1 - H2)
        n = (R[1] - R[2]) / np.linalg.norm(R[1] - R[2])
        mirror = np.eye(3) - 2 * np.outer(n, n)
        image = nac[[0, 2, 1]] @ mirror  # the coupling field after the symmetry operation
        even = 0.5 * (nac + image)
        fractions.append(float(np.linalg.norm(even) / np.linalg.norm(nac)))
    return {"frames": len(fractions), "max_even_fraction_of_d01": max(fractions) if fractions else None,
            "note": "|even part| / |d01| on r1 = r2 frames; 1A1/1B2 coupling must be odd (B2)"}


def _angle(R):
    u = R[:, 1:] - R[:, :1]
    c = np.sum(u[:, 0] * u[:, 1], -1) / np.prod(np.linalg.norm(u, axis=-1), -1)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=1, help="labelling processes, one core each")
    ap.add_argument("--out", default="qdyn/data/shipped/CaH2_casscf.npz")
    ap.add_argument("--cache-dir", default=None, help="per-frame label cache (default: qdyn's); reruns resume")
    ap.add_argument("--no-fd", action="store_true", help="skip the finite-difference check (2 more frames)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    recipe = recipes.get_recipe("shipped:CaH2_casscf")

    def progress(done, total, cached):
        print(f"[{time.perf_counter() - t0:7.0f} s] {done}/{total} frames ({cached} from the cache)", flush=True)

    ds = recipes.run_recipe(recipe, out=None, workers=args.workers, cache_dir=args.cache_dir, command=COMMAND,
                            log=print, progress=progress)
    ok = ds.extras["converged"]
    aligned, signs, edges = align_coupling_signs(ds.R, ds.extras["nacs_states"], valid=ok)
    ds.extras["nacs_states"] = aligned
    ds.metadata["level"] = LEVEL
    ds.metadata["levels_note"] = ("one level of theory in this file; do not mix its energies with shipped:CaH2 "
                                  "(TDA-B3LYP): absolute energies of the two levels differ by eV")
    ds.metadata["nac_phase"] = {
        "method": "qdyn.data.couplings.align_coupling_signs: signs continuous along a minimum spanning tree "
                  "of the frames in interatomic-distance space, root = first converged frame",
        "flipped_per_pair": {f"{i}-{j}": int((signs[:, i, j] < 0).sum()) for i in range(3) for j in range(i + 1, 3)},
        "units": "1/Angstrom", "convention": "d_ij = <i|grad j>, extras['nacs_states'][frame, i, j, atom, xyz]"}
    ds.metadata["c2v_check"] = c2v_check(ds)
    print("C2v check:", ds.metadata["c2v_check"])
    if not args.no_fd:
        labeler = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
        gap = np.where(ok, ds.E_states[:, 1] - ds.E_states[:, 0], np.inf)
        ds.metadata["fd_check"] = fd_check(ds, labeler, [int(np.argmin(np.where(gap > 0.1, gap, np.inf)))],
                                           cache_dir=args.cache_dir, workers=args.workers)
    write(ds, args.out)
    gap = ds.E_states[ok, 1] - ds.E_states[ok, 0]
    print(f"wrote {args.out}: {ds.n_frames} frames ({int((~ok).sum())} not converged), S0/S1 gap "
          f"{gap.min():.3f}-{gap.max():.3f} eV, {ds.metadata['labelling']['timing']['seconds_per_frame_mean']:.1f} "
          f"s/frame, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
