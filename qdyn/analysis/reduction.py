"""Features of a trajectory, their principal and slow components, and clusters.

Features are invariant to rigid motion: all pair distances of a selection of atoms
(minimum image in a periodic cell), or Cartesian positions after optimal superposition on
the first frame (Kabsch, free space only). PCA (largest variance) and k-means come from
scikit-learn; TICA (slowest decorrelating linear combinations at a lag time,
Pérez-Hernández et al., J. Chem. Phys. 139, 015102 (2013)) from deeptime. Both are the
``analysis`` extra and imported when used.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import numpy as np

from ..validation import QdynInputError
from .trajectory import Trajectory, require

FEATURES = ("distances", "positions")
MAX_FEATURES = 5000  # pair distances grow as n²: select atoms beyond this


def pair_distances(positions, box=None, *, atoms: Optional[Sequence[int]] = None) -> np.ndarray:
    """[F, k(k-1)/2] Å distances between all pairs of the selected atoms (minimum image)."""
    X = np.asarray(positions, float)
    sel = np.arange(X.shape[1]) if atoms is None else np.asarray(atoms)
    i, j = np.triu_indices(len(sel), 1)
    if len(i) > MAX_FEATURES:
        raise QdynInputError(f"{len(sel)} atoms give {len(i)} pair distances; select at most "
                             f"{int(np.sqrt(2 * MAX_FEATURES))} atoms (--atoms)")
    d = X[:, sel[j]] - X[:, sel[i]]
    if box is not None:
        cells = np.broadcast_to(np.asarray(box, float), (len(X), 3, 3))
        frac = np.einsum("fab,fpb->fpa", np.linalg.inv(cells), d)
        d = np.einsum("fab,fpb->fpa", cells, frac - np.round(frac))
    return np.linalg.norm(d, axis=-1)


def aligned_positions(positions, *, atoms: Optional[Sequence[int]] = None) -> np.ndarray:
    """[F, 3k] Å positions of the selected atoms, each frame rotated and translated onto the
    first (Kabsch, proper rotations only)."""
    X = np.asarray(positions, float)
    if atoms is not None:
        X = X[:, np.asarray(atoms)]
    X = X - X.mean(axis=1, keepdims=True)
    ref = X[0]
    out = np.empty_like(X)
    for f, x in enumerate(X):
        u, _, vt = np.linalg.svd(x.T @ ref)
        d = np.sign(np.linalg.det(u @ vt))  # no reflections
        rot = u @ np.diag([1.0, 1.0, d]) @ vt
        out[f] = x @ rot
    return out.reshape(len(X), -1)


def trajectory_features(traj: Trajectory, kind: Literal["distances", "positions"] = "distances", *,
                        atoms: Optional[Sequence[int]] = None) -> np.ndarray:
    """[F, d] features of a trajectory (see the module docstring)."""
    if kind == "distances":
        return pair_distances(traj.positions, traj.box, atoms=atoms)
    if kind == "positions":
        if traj.box is not None:
            raise QdynInputError("features=positions needs a free-space trajectory (superposition is not defined "
                                 "across periodic images); use features=distances")
        return aligned_positions(traj.positions, atoms=atoms)
    raise QdynInputError(f"unknown features {kind!r}; choose one of {FEATURES}")


def _check_features(X, n_components):
    X = np.asarray(X, float)
    if X.ndim != 2 or len(X) < 3:
        raise QdynInputError(f"need features [frames ≥ 3, d], got shape {X.shape}")
    if not 1 <= n_components <= X.shape[1]:
        raise QdynInputError(f"n_components must be between 1 and {X.shape[1]} (features), got {n_components}")
    return X


def pca(features, *, n_components: int = 2) -> dict:
    """Principal components (scikit-learn).

    Returns:
        ``{"projection" [F, c], "explained_variance_ratio" [c], "components" [c, d], "mean" [d]}``.
    """
    X = _check_features(features, n_components)
    decomposition = require("sklearn.decomposition", "scikit-learn")
    model = decomposition.PCA(n_components=n_components).fit(X)
    return {"projection": model.transform(X), "explained_variance_ratio": model.explained_variance_ratio_,
            "components": model.components_, "mean": model.mean_}


def tica(features, *, lag_frames: int, n_components: int = 2, dt_frame_fs: float = 1.0) -> dict:
    """Time-lagged independent components (deeptime), the slowest linear modes.

    Returns:
        ``{"projection" [F, c], "timescales_fs" [c] (implied timescales −τ/ln λ),
        "eigenvalues" [c]}``.
    """
    X = _check_features(features, n_components)
    if not 1 <= lag_frames < len(X) // 2:
        raise QdynInputError(f"the TICA lag must be between 1 and {len(X) // 2 - 1} frames, got {lag_frames}")
    decomposition = require("deeptime.decomposition", "deeptime")
    model = decomposition.TICA(lagtime=int(lag_frames), dim=int(n_components)).fit(X).fetch_model()
    lam = np.asarray(model.singular_values[:n_components], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = -lag_frames * float(dt_frame_fs) / np.log(np.clip(lam, 1e-300, None))
    return {"projection": model.transform(X)[:, :n_components], "timescales_fs": ts, "eigenvalues": lam}


def cluster(projection, *, n_clusters: int, seed: int = 0) -> dict:
    """k-means clusters of projected frames (scikit-learn).

    Returns:
        ``{"labels" [F], "centers" [k, c], "populations" [k] (fractions)}``.
    """
    Y = np.asarray(projection, float)
    if not 1 <= n_clusters <= len(Y):
        raise QdynInputError(f"n_clusters must be between 1 and the {len(Y)} frames, got {n_clusters}")
    sk_cluster = require("sklearn.cluster", "scikit-learn")
    km = sk_cluster.KMeans(n_clusters=int(n_clusters), n_init=10, random_state=int(seed)).fit(Y)
    return {"labels": km.labels_, "centers": km.cluster_centers_,
            "populations": np.bincount(km.labels_, minlength=n_clusters) / len(Y)}
