"""Consistent signs for nonadiabatic couplings along a dataset.

An electronic-structure code returns each state with an arbitrary sign per geometry, so the
nonadiabatic coupling ``d_ij = ⟨i|∇j⟩`` of one frame may come out with the opposite sign of
its neighbour's. A model (or a plot) needs them continuous. :func:`align_coupling_signs`
fixes every pair's sign frame by frame along a minimum spanning tree of the frames, with
the distance between two frames taken in internal coordinates (all interatomic distances,
atoms in their stored order): starting from a root frame, each frame's ``d_ij`` is flipped
if it points against its tree parent's, after rotating it into the parent's orientation
(Kabsch), so random orientations are allowed.

A tree never closes a loop, so the result is continuous along every edge of the tree; it
cannot be continuous around a loop that encloses a conical intersection (the states change
sign there: the geometric phase), and the tree puts that sign cut between the two frames
that are farthest apart in the region, where the data say least. Compare signs only between
neighbours; compare a model's couplings with such data up to one sign per frame where it
matters (``|cos|`` of the angle, magnitudes).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["align_coupling_signs", "kabsch_rotation"]


def kabsch_rotation(P, Q) -> np.ndarray:
    """The proper rotation [3, 3] that best maps centred ``P`` [A, 3] onto centred ``Q`` [A, 3]
    (``P_c @ rot ≈ Q_c``)."""
    P = P - P.mean(axis=0)
    Q = Q - Q.mean(axis=0)
    U, _, Vt = np.linalg.svd(P.T @ Q)
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    return U @ np.diag([1.0, 1.0, d]) @ Vt


def _internal_distances(R) -> np.ndarray:
    """[n, A(A-1)/2] interatomic distances (Å), atoms in stored order."""
    i, j = np.triu_indices(R.shape[1], 1)
    return np.linalg.norm(R[:, i] - R[:, j], axis=-1)


def _spanning_tree(D: np.ndarray, root: int) -> list[tuple[int, int]]:
    """(child, parent) edges of Prim's minimum spanning tree over frames with features D [n, k],
    in the order they were added (a parent always precedes its child)."""
    n = len(D)
    best = np.linalg.norm(D - D[root], axis=1)
    parent = np.full(n, root)
    done = np.zeros(n, bool)
    done[root] = True
    edges = []
    for _ in range(n - 1):
        k = int(np.argmin(np.where(done, np.inf, best)))
        edges.append((k, int(parent[k])))
        done[k] = True
        d = np.linalg.norm(D - D[k], axis=1)
        closer = ~done & (d < best)
        best[closer] = d[closer]
        parent[closer] = k
    return edges


def align_coupling_signs(R, nacs, *, valid: Optional[np.ndarray] = None, root: Optional[int] = None):
    """Flip the sign of each state pair's coupling per frame so that it is continuous.

    Args:
        R: [n, A, 3] Å geometries.
        nacs: [n, S, S, A, 3] couplings d_ij (antisymmetric in i, j), any unit.
        valid: bool [n], frames to use (default: those with finite couplings); the others
            are returned unchanged.
        root: the frame whose signs are kept (default: the first valid frame).

    Returns:
        (aligned [n, S, S, A, 3], signs [n, S, S] ±1 applied, the tree's (child, parent) edges).

    Example:
        >>> R = np.zeros((2, 2, 3)); R[:, 1, 2] = [1.0, 1.01]
        >>> d = np.zeros((2, 2, 2, 2, 3)); d[:, 0, 1, 1, 2] = [1.0, -1.0]; d[:, 1, 0] = -d[:, 0, 1]
        >>> aligned, signs, _ = align_coupling_signs(R, d)
        >>> aligned[:, 0, 1, 1, 2].tolist(), signs[:, 0, 1].tolist()
        ([1.0, 1.0], [1.0, -1.0])
    """
    R = np.asarray(R, dtype=float)
    nacs = np.asarray(nacs, dtype=float)
    n, S = nacs.shape[:2]
    if valid is None:
        valid = np.all(np.isfinite(nacs.reshape(n, -1)), axis=1)
    idx = np.flatnonzero(valid)
    signs = np.ones((n, S, S))
    if len(idx) < 2:
        return nacs.copy(), signs, []
    root_local = 0 if root is None else int(np.flatnonzero(idx == root)[0])
    edges = [(int(idx[c]), int(idx[p])) for c, p in _spanning_tree(_internal_distances(R[idx]), root_local)]
    aligned = nacs.copy()
    for child, parent in edges:
        rot = kabsch_rotation(R[child], R[parent])
        for i in range(S):
            for j in range(i + 1, S):
                overlap = np.sum((aligned[child, i, j] @ rot) * aligned[parent, i, j])
                if overlap < 0:
                    aligned[child, i, j] *= -1.0
                    aligned[child, j, i] *= -1.0
                    signs[child, i, j] = signs[child, j, i] = -1.0
    return aligned, signs, edges
