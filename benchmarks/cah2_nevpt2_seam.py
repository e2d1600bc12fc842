"""How far dynamic correlation moves CaH2's S0/S1 crossing: SC-NEVPT2 on the SA-CASSCF seam.

On the C2v bend scan through the SA-CASSCF crossing (r1 = r2 = 2.05 Å), the shipped level
(SA3-CASSCF(4e,6o)/def2-SVP, singlets, the labeller's own settings) and strongly contracted
NEVPT2 on each of its three states (``pyscf.mrpt.NEVPT`` on a CASCI with the SA-CASSCF
orbitals: state-specific perturbation theory on state-averaged orbitals). Energies only (PySCF
has no NEVPT2 gradients or couplings). The crossing angle of each level is the apex of the V
that straight lines through the gaps on each side make (``cah2_casscf_check.v_apex``).

    nice -n 15 python benchmarks/cah2_nevpt2_seam.py [--angles 48 58 11]

Writes ``benchmarks/results/cah2_nevpt2_seam.json`` and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, save, update_readme_section  # noqa: E402
from cah2_casscf_check import v_apex  # noqa: E402

HA_TO_EV = 27.211386245988


def c2v_geometry(angle_deg: float, r: float = 2.05) -> np.ndarray:
    a = np.radians(angle_deg) / 2
    return np.array([[0.0, 0.0, 0.0], [r * np.sin(a), 0.0, r * np.cos(a)], [-r * np.sin(a), 0.0, r * np.cos(a)]])


def casscf_and_nevpt2(labeler, R):
    """(SA-CASSCF state energies [3] eV, SC-NEVPT2 state energies [3] eV) at one geometry."""
    from pyscf import mcscf, mrpt

    mol = labeler._mol(np.array([20, 1, 1]), R)  # the labeller's molecule and SCF: the shipped settings
    mf = labeler._scf(mol)
    n = labeler.n_states
    mc = mcscf.CASSCF(mf, labeler.ncas, labeler.nelecas)
    mc.fix_spin_(ss=0)
    mc = mc.state_average_([1.0 / n] * n)
    mc.verbose = 0
    mc.conv_tol = labeler.conv_tol
    mc.kernel()
    e_cas = np.asarray(mc.e_states)
    ci = mcscf.CASCI(mf, labeler.ncas, labeler.nelecas)
    ci.fix_spin_(ss=0)
    ci.fcisolver.nroots = n
    ci.verbose = 0
    ci.kernel(mc.mo_coeff)
    e_pt = np.array([ci.e_tot[i] + mrpt.NEVPT(ci, root=i).kernel() for i in range(n)])
    return e_cas * HA_TO_EV, e_pt * HA_TO_EV


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--angles", type=float, nargs=3, default=[48.0, 58.0, 11], metavar=("FROM", "TO", "N"),
                    help="H–Ca–H bend scan [degrees]: from, to, number of points")
    args = ap.parse_args()

    from qdyn.data import recipes
    from qdyn.data.labelers import labeler_from_spec

    recipe = recipes.get_recipe("shipped:CaH2_casscf")
    labeler = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    angles = np.linspace(args.angles[0], args.angles[1], int(args.angles[2]))
    cas, pt, secs = [], [], []
    for a in angles:
        t0 = time.perf_counter()
        e_cas, e_pt = casscf_and_nevpt2(labeler, c2v_geometry(a))
        secs.append(time.perf_counter() - t0)
        cas.append(e_cas)
        pt.append(e_pt)
        print(f"{a:6.2f}°: S1−S0 SA-CASSCF {e_cas[1] - e_cas[0]:.3f} eV, NEVPT2 {e_pt[1] - e_pt[0]:.3f} eV "
              f"(S2−S0 {e_pt[2] - e_pt[0]:.3f}), {secs[-1]:.0f} s", flush=True)
    cas, pt = np.array(cas), np.array(pt)
    out = {"angles_deg": angles.tolist(), "r_A": 2.05, "casscf_eV": cas.tolist(), "nevpt2_eV": pt.tolist(),
           "seconds_per_point": float(np.mean(secs))}
    rows = ["| level | crossing angle [°] (V apex) | gap at the apex [eV] | slopes [eV/°] | smallest gap on the scan [eV] |",
            "|---|---|---|---|---|"]
    for name, E in (("SA3-CASSCF(4e,6o)", cas), ("SC-NEVPT2 on it", pt)):
        # NEVPT2 is state-specific: its S0/S1 are the two lowest perturbed roots, which may swap order
        E = np.sort(E, axis=1)
        gap = E[:, 1] - E[:, 0]
        xa, ga, m1, m2 = v_apex(angles, gap, window=6.0)
        out[name] = {"apex_deg": xa, "apex_gap_eV": ga, "slopes_eV_per_deg": [m1, m2], "min_gap_eV": float(gap.min())}
        rows.append(f"| {name} | {xa:.2f} | {ga:.3f} | {m1:.3f} / {m2:.3f} | {gap.min():.3f} |")
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    out.update(load=load, machine=machine_info())
    save("cah2_nevpt2_seam", out)
    print("\n".join(rows))
    update_readme_section("cah2_nevpt2_seam", f"CaH2 C2v bend (r = 2.05 Å, {angles[0]:g}–{angles[-1]:g}°, "
                          f"{len(angles)} points, def2-SVP): SA-CASSCF vs SC-NEVPT2 crossing "
                          f"({np.mean(secs):.0f} s per point; load: {load})", "\n".join(rows))


if __name__ == "__main__":
    main()
