"""Build the shipped CaH2 SA-CASSCF dataset around the S0/S1 conical intersection.

Runs the shipped recipe ``shipped:CaH2_casscf`` (SA3-CASSCF(4e,6o)/def2-SVP, energies,
analytic gradients and nonadiabatic couplings of three singlets on a bend x antisymmetric
stretch grid; resumable through the per-frame cache, parallel with ``--workers``), makes the
signs of the couplings continuous along the data (:func:`qdyn.data.couplings.align_coupling_signs`),
checks the symmetry of the couplings (on the C2v frames S0/S1 couple only along B2 displacements) and
the forces against central finite differences on one frame, and writes the dataset.

    nice -n 15 python benchmarks/build_cah2_casscf_data.py [--workers 1] [--cache-dir DIR]

Also: the symmetric-stretch scans (state energies, gaps and couplings along r at each bend:
continuity, root flipping) and the active space's natural occupations out to 4-4.5 Å. Writes
``qdyn/data/shipped/CaH2_casscf.npz`` (numbers printed and stored in its metadata) and
``benchmarks/results/cah2_casscf_data_checks.json`` and ``cah2_casscf_stretch.png``.
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
from _common import RESULTS, machine_info, save  # noqa: E402
from build_cah2_data import fd_check  # noqa: E402

from qdyn.data import read, recipes, write  # noqa: E402
from qdyn.data.couplings import align_coupling_signs  # noqa: E402
from qdyn.data.label_run import seed_cache  # noqa: E402
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


def _internal(R):
    """(r1, r2 [Å], H–Ca–H angle [°]) of [n, 3, 3] geometries, Ca first."""
    r = np.linalg.norm(R[:, 1:] - R[:, :1], axis=-1)
    return r[:, 0], r[:, 1], _angle(R)


def stretch_scans(ds):
    """The symmetric-stretch scans (r1 = r2 from 1.8 to 4 Å at fixed bends): per bend, the three
    state energies, the gaps and |d01|, |d12| along r. Root flipping or a jump to another CASSCF
    solution shows as a kink in an energy or a spike in a coupling between neighbours; the
    smallest S2–S1 gap says where S1 and S2 could swap."""
    r1, r2, ang = _internal(ds.R)
    ok = ds.extras["converged"]
    sym = ok & np.isclose(r1, r2) & (np.abs(r1 - 2.05) > 1e-6)
    d = np.linalg.norm(ds.extras["nacs_states"].reshape(ds.n_frames, 3, 3, -1), axis=-1)
    scans = {}
    for a in np.unique(np.round(ang[sym], 3)):
        idx = np.flatnonzero(sym & np.isclose(ang, a))
        if len(idx) < 5:
            continue
        idx = idx[np.argsort(r1[idx])]
        E = ds.E_states[idx]
        curv = np.abs(np.diff(E, 2, axis=0)).max(0)  # eV over one step: smooth curves keep this small
        scans[f"{a:g}"] = {"r_A": r1[idx].tolist(), "E_states_eV": E.tolist(), "d01_per_A": d[idx, 0, 1].tolist(),
                           "d12_per_A": d[idx, 1, 2].tolist(), "min_gap01_eV": float((E[:, 1] - E[:, 0]).min()),
                           "min_gap12_eV": float((E[:, 2] - E[:, 1]).min()),
                           "max_abs_second_difference_eV": curv.tolist()}
    return scans


def active_space_check(labeler, geometries):
    """Natural occupations of the (4e,6o) active space at the given (r1, r2, angle) [Å, °]:
    an orbital stuck near 2 or 0 in every state would not need to be active; four or more
    orbitals far from both mean the dissociating bonds have the orbitals they need."""
    from qdyn.data.samplers import triatomic

    rows = []
    for r1, r2, a in geometries:
        R = triatomic(n=1, r1=r1, r2=r2, angle_deg=a, mode="scan")[0]
        occ = labeler.natural_occupations([20, 1, 1], R)
        rows.append({"r1_A": r1, "r2_A": r2, "angle_deg": a, "occupations": np.round(occ, 4).tolist(),
                     "largest_last_occupation": float(occ[:, -1].max())})
        print(f"natural occupations at r1 = {r1} Å, r2 = {r2} Å, {a}°:", np.round(occ, 3).tolist(), flush=True)
    return {"geometries": rows, "note": "per state (S0, S1, S2), largest first; SA3-CASSCF(4e,6o)/def2-SVP"}


def plot_stretch(scans, path):
    """S0/S1/S2 along the symmetric stretch at each bend, relative to the lowest S0 in the panel set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdyn.plotting import save_figure

    e0 = min(min(E[0] for E in v["E_states_eV"]) for v in scans.values())
    fig, axes = plt.subplots(1, len(scans), figsize=(3.0 * len(scans), 3.4), sharey=True)
    for ax, (a, v) in zip(np.atleast_1d(axes), sorted(scans.items(), key=lambda kv: -float(kv[0]))):
        E = np.asarray(v["E_states_eV"]) - e0
        for s in range(3):
            ax.plot(v["r_A"], E[:, s], "o-", ms=3, label=f"S{s}")
        ax.set_title(f"H–Ca–H {a}°", fontsize=9)
        ax.set_xlabel("r(Ca–H) = r1 = r2 [Å]")
    np.atleast_1d(axes)[0].set_ylabel("energy [eV]")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("CaH2 SA3-CASSCF(4e,6o)/def2-SVP, symmetric stretch", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def seed_from_shipped(recipe, out, cache_dir):
    """Put the frames already in ``out`` into the label cache: a recipe that gained configurations
    (appended) relabels only the new ones, also on a machine whose cache is empty."""
    if not Path(out).exists():
        return
    shipped = read(out)
    configs = recipes.sample_configurations(recipe, cache_dir=cache_dir)
    n = min(shipped.n_frames, configs.n_frames)
    labeler = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    seeded, skipped = seed_cache(configs.subset(np.arange(n)), shipped.subset(np.arange(n)), range(n), labeler,
                                 cache_dir=cache_dir)
    print(f"{seeded} frames of {out} put into the label cache, {skipped} skipped (geometry differs)", flush=True)


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
    seed_from_shipped(recipe, args.out, args.cache_dir)

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
    labeler = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    scans = stretch_scans(ds)
    ds.metadata["stretch_scans"] = {a: {k: v[k] for k in ("min_gap01_eV", "min_gap12_eV", "max_abs_second_difference_eV")}
                                    for a, v in scans.items()}
    print("symmetric stretch:", ds.metadata["stretch_scans"])
    ds.metadata["active_space_check"] = active_space_check(
        labeler, [(2.05, 2.05, 140.0), (3.0, 3.0, 140.0), (4.0, 4.0, 140.0), (4.0, 4.0, 55.0), (2.05, 4.5, 95.0)])
    save("cah2_casscf_data_checks", {"level": LEVEL, "n_frames": ds.n_frames, "stretch_scans": scans,
                                     "active_space_check": ds.metadata["active_space_check"], "machine": machine_info()})
    plot_stretch(scans, RESULTS / "cah2_casscf_stretch.png")
    if not args.no_fd:
        gap = np.where(ok, ds.E_states[:, 1] - ds.E_states[:, 0], np.inf)
        longest = np.where(ok, np.linalg.norm(ds.R[:, 1:] - ds.R[:, :1], axis=-1).max(-1), -np.inf)
        # the smallest gap over 0.1 eV (where forces are hardest) and the longest Ca–H bond (new ground)
        frames = [int(np.argmin(np.where(gap > 0.1, gap, np.inf))), int(np.argmax(longest))]
        ds.metadata["fd_check"] = fd_check(ds, labeler, frames, cache_dir=args.cache_dir, workers=args.workers)
    write(ds, args.out)
    gap = ds.E_states[ok, 1] - ds.E_states[ok, 0]
    print(f"wrote {args.out}: {ds.n_frames} frames ({int((~ok).sum())} not converged), S0/S1 gap "
          f"{gap.min():.3f}-{gap.max():.3f} eV, {ds.metadata['labelling']['timing']['seconds_per_frame_mean']:.1f} "
          f"s/frame, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
