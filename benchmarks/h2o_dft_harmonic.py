"""Harmonic frequencies of H2O at the level of qdyn's shipped water data (B3LYP/def2-SVP,
PySCF): the reference for what the data say about the bend, used by fit_observable.py's
discussion of targets. Minimum by BFGS on PySCF gradients, then PySCF's analytic Hessian and
harmonic analysis.

    python benchmarks/h2o_dft_harmonic.py      (~1-2 min on 2 cores)

Writes results/h2o_dft_harmonic.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine_info, save  # noqa: E402
from qdyn import units  # noqa: E402


def molecule(R):
    from pyscf import gto

    return gto.M(atom=[("O", R[0]), ("H", R[1]), ("H", R[2])], basis="def2-svp", unit="Angstrom", verbose=0)


def scf(R):
    from pyscf import dft

    mf = dft.RKS(molecule(R))
    mf.xc = "b3lyp"
    mf.kernel()
    return mf


def energy_and_gradient(x):
    """Energy [Hartree] and gradient [Hartree/Å] at flattened positions x [Å]."""
    mf = scf(x.reshape(3, 3))
    return mf.e_tot, mf.nuc_grad_method().kernel().ravel() / units.BOHR_ANGSTROM


def main():
    import scipy.optimize
    from pyscf.hessian import thermo

    R0 = np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])
    opt = scipy.optimize.minimize(energy_and_gradient, R0.ravel(), jac=True, method="BFGS", options={"gtol": 1e-6})
    R = opt.x.reshape(3, 3)
    mf = scf(R)
    freqs = thermo.harmonic_analysis(mf.mol, mf.Hessian().kernel())["freq_wavenumber"]
    a, b = R[1] - R[0], R[2] - R[0]
    angle = float(np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))))
    payload = {**machine_info(), "level": "B3LYP/def2-SVP", "max_gradient_Ha_per_A": float(np.abs(opt.jac).max()),
               "harmonic_cm": np.sort(np.real(freqs)).tolist(), "angle_deg": angle,
               "r_OH_A": float(np.linalg.norm(a))}
    save("h2o_dft_harmonic", payload)
    print(payload["harmonic_cm"], f"angle {angle:.2f}°, r_OH {payload['r_OH_A']:.4f} Å")


if __name__ == "__main__":
    main()
