"""Hydrogen bonds of water by the geometric criterion, counts per molecule and lifetimes.

A donor O_d–H···O_a bond exists when the O_d–O_a distance is below ``r_oo_max`` (3.5 Å,
the first minimum of liquid water's O–O g(r)) and the angle between O_d→H and O_d→O_a is
below ``angle_max_deg`` (30°): Luzar & Chandler, Nature 379, 55 (1996). Distances are
minimum-image in a periodic cell.

Lifetimes come from the bond population h_ij(t) ∈ {0, 1} of every donor-H/acceptor pair:
the *intermittent* correlation C_I(τ) = <h(0) h(τ)> / <h(0)> (bonds may break and re-form) and
the *continuous* one C_C(τ) (the bond must persist through every frame in between); the
lifetime is the integral of C over the lags computed (Rapaport, Mol. Phys. 50, 1151 (1983)).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..validation import QdynInputError

R_OH_BOND_MAX = 1.25  # Å: an H belongs to the nearest O within this distance


def _min_image(d, cell):
    if cell is None:
        return d
    frac = d @ np.linalg.inv(cell).T
    return (frac - np.round(frac)) @ cell.T


def water_molecules(positions, species, box=None) -> np.ndarray:
    """[m, 3] atom indices (O, H, H) of the water molecules in one frame: every H joins its
    nearest O.

    Raises:
        QdynInputError: an H with no O within 1.25 Å, or an O without exactly two H.
    """
    X = np.asarray(positions, float)
    Z = np.asarray(species)
    o, h = np.nonzero(Z == 8)[0], np.nonzero(Z == 1)[0]
    if len(o) == 0 or len(h) != 2 * len(o):
        raise QdynInputError(f"not a water system: {len(o)} O and {len(h)} H atoms (need two H per O)")
    cell = None if box is None else np.asarray(box, float)
    d = np.linalg.norm(_min_image(X[h][:, None] - X[o][None], cell), axis=-1)  # [nH, nO]
    owner = np.argmin(d, axis=1)
    if np.any(d[np.arange(len(h)), owner] > R_OH_BOND_MAX):
        far = int(h[np.argmax(d.min(axis=1))])
        raise QdynInputError(f"atom {far} (H) has no O within {R_OH_BOND_MAX} Å: not an intact water system")
    counts = np.bincount(owner, minlength=len(o))
    if np.any(counts != 2):
        bad = int(o[np.argmax(counts != 2)])
        raise QdynInputError(f"O atom {bad} has {counts[o == bad][0]} hydrogens (need 2): not intact water")
    order = np.argsort(owner, kind="stable")
    return np.column_stack([o, h[order].reshape(-1, 2)])


def hbond_matrix(positions, molecules, box=None, *, r_oo_max: float = 3.5, angle_max_deg: float = 30.0) -> np.ndarray:
    """h[frame, donor molecule, its H (0/1), acceptor molecule] ∈ {0, 1}.

    Args:
        positions: [F, n, 3] Å (or [n, 3]).  molecules: [m, 3] (O, H, H) indices.
        box: [3, 3] Å, [F, 3, 3] or None.
    """
    X = np.asarray(positions, float)
    if X.ndim == 2:
        X = X[None]
    mol = np.asarray(molecules)
    m = len(mol)
    cos_max = np.cos(np.radians(angle_max_deg))
    out = np.zeros((len(X), m, 2, m), dtype=bool)
    for f, x in enumerate(X):
        cell = None if box is None else (np.asarray(box, float) if np.ndim(box) == 2 else np.asarray(box[f], float))
        O = x[mol[:, 0]]
        oo = _min_image(O[None] - O[:, None], cell)  # [donor, acceptor, 3]: O_d -> O_a
        r_oo = np.linalg.norm(oo, axis=-1)
        for k in (1, 2):
            oh = _min_image(x[mol[:, k]] - O, cell)  # [donor, 3]: O_d -> H
            cos = np.einsum("dk,dak->da", oh, oo) / (np.linalg.norm(oh, axis=-1)[:, None] * np.maximum(r_oo, 1e-12))
            out[f, :, k - 1] = (r_oo < r_oo_max) & (cos > cos_max) & ~np.eye(m, dtype=bool)
    return out


def lifetime_correlations(h, *, max_lag: int):
    """Intermittent and continuous H-bond correlations C(τ), τ = 0 .. max_lag - 1 frames.

    Args:
        h: [F, ...] bond populations (any trailing shape: one column per pair).

    Returns:
        (C_intermittent [max_lag], C_continuous [max_lag]), both 1 at τ = 0 (NaN if no bond
        ever formed).
    """
    x = np.asarray(h, float).reshape(len(h), -1)
    x = x[:, x.any(axis=0)]  # pairs that never bond contribute nothing
    F = len(x)
    max_lag = min(int(max_lag), F)
    if x.shape[1] == 0:
        return np.full(max_lag, np.nan), np.full(max_lag, np.nan)
    # normalised by the bonds present at the origins used for each lag, so C(0) = 1 and a
    # bond alive for exactly k frames contributes (k - τ) / k at lag τ
    inter = np.array([np.sum(x[: F - t] * x[t:]) / np.sum(x[: F - t]) for t in range(max_lag)])
    alive = x.copy()  # alive[t0] = bonded at every frame t0 .. t0 + τ
    cont = np.empty(max_lag)
    for t in range(max_lag):
        if t:
            alive = alive[:-1] * x[t:]
        cont[t] = alive.sum() / np.sum(x[: F - t])
    return inter, cont


def hydrogen_bonds(positions, species, box=None, *, dt_frame_fs: float, r_oo_max: float = 3.5,
                   angle_max_deg: float = 30.0, max_lag: Optional[int] = None) -> dict:
    """Hydrogen-bond statistics of a water trajectory.

    Args:
        positions: [F, n, 3] Å.  species: [n].  box: [3, 3] Å, [F, 3, 3] or None.
        dt_frame_fs: time between frames [fs].
        r_oo_max: O–O distance cut-off [Å].  angle_max_deg: H–O_d···O_a angle cut-off [°].
        max_lag: frames of the lifetime correlations (default F // 2).

    Returns:
        dict: ``per_molecule_mean`` (bonds a molecule takes part in, donated + accepted),
        ``donated_mean``, ``accepted_mean``, ``count_per_frame`` [F] (bonds in the system),
        ``distribution`` (fraction of molecule-frames with 0, 1, 2, ... bonds),
        ``lifetime_intermittent_fs``, ``lifetime_continuous_fs`` (integrals of C(τ) over the
        lags computed: lower bounds when C has not decayed), ``lag_fs``, ``C_intermittent``,
        ``C_continuous``, ``criterion``.
    """
    X = np.asarray(positions, float)
    if X.ndim == 2:
        X = X[None]
    first_cell = None if box is None else (np.asarray(box) if np.ndim(box) == 2 else np.asarray(box)[0])
    mol = water_molecules(X[0], species, first_cell)
    h = hbond_matrix(X, mol, box, r_oo_max=r_oo_max, angle_max_deg=angle_max_deg)
    donated = h.sum(axis=(2, 3))  # [F, m]
    accepted = h.sum(axis=(1, 2))  # [F, m]
    per_mol = donated + accepted
    F = len(X)
    max_lag = max(1, F // 2) if max_lag is None else int(max_lag)
    c_int, c_cont = lifetime_correlations(h, max_lag=max_lag)
    lag = np.arange(len(c_int)) * float(dt_frame_fs)

    def integral(c):
        return float(np.trapezoid(c, lag)) if len(c) > 1 and np.all(np.isfinite(c)) else float("nan")

    return {"n_molecules": int(len(mol)), "n_frames": int(F), "per_molecule_mean": float(per_mol.mean()),
            "donated_mean": float(donated.mean()), "accepted_mean": float(accepted.mean()),
            "count_per_frame": h.sum(axis=(1, 2, 3)).tolist(),
            "distribution": (np.bincount(per_mol.ravel(), minlength=5) / per_mol.size).tolist(),
            "lifetime_intermittent_fs": integral(c_int), "lifetime_continuous_fs": integral(c_cont),
            "lag_fs": lag.tolist(), "C_intermittent": c_int.tolist(), "C_continuous": c_cont.tolist(),
            "criterion": {"r_oo_max_A": float(r_oo_max), "angle_max_deg": float(angle_max_deg)}}
