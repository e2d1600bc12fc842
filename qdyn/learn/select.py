"""Which explored frames to label: the most uncertain ones, spread out in descriptor space.

Labelling the K frames of highest σ alone picks near-copies (consecutive frames of one replica
that drifted out of the data share their σ). Batch active learning therefore trades σ against
diversity; here in two steps (as in the batch selection of apax and of Zaverkin et al., Digital
Discovery 1, 605, 2022, with a simpler kernel): the ``pool_factor × n`` most uncertain frames
form a pool, and farthest-point sampling in descriptor space picks ``n`` of them, starting from
the most uncertain frame, each next one the pool frame farthest from those already chosen and
from the training frames.

The descriptor of a frame is the model's own (its ``features``: per atom, averaged per species,
so it is invariant to rotations and to permuting like atoms); models without ``features``
(the siVQLM templates) use the sorted inverse pair distances.
"""

from __future__ import annotations

import numpy as np


def frame_descriptors(model, R, system) -> np.ndarray:
    """[m, d] one vector per frame of ``R`` [m, n, 3] Å (one composition, ``system``)."""
    import jax
    import jax.numpy as jnp

    R = jnp.asarray(R)
    if model.features is not None:
        G = np.asarray(jax.jit(jax.vmap(lambda r: model.features(r, system)))(R))  # [m, n, d]
        G = G.reshape(G.shape[0], G.shape[1], -1)
        species = np.asarray(system.species)
        mask = np.asarray(system.mask)
        parts = [G[:, (species == s) & mask].mean(axis=1) for s in np.unique(species[mask])]
        return np.concatenate(parts, axis=1)
    n = R.shape[1]
    iu = np.triu_indices(n, 1)
    d = np.linalg.norm(np.asarray(R)[:, :, None] - np.asarray(R)[:, None], axis=-1)[:, iu[0], iu[1]]
    return np.sort(1.0 / np.maximum(d, 1e-6), axis=1)


def farthest_points(X, n: int, *, first: int = 0, reference=None) -> np.ndarray:
    """Indices of ``n`` rows of ``X`` [m, d] by farthest-point sampling, starting at ``first``;
    rows of ``reference`` [k, d] count as already chosen (distance only)."""
    n = min(n, len(X))
    d_min = np.full(len(X), np.inf)
    if reference is not None and len(reference):
        for ref in reference:
            d_min = np.minimum(d_min, np.linalg.norm(X - ref, axis=1))
    chosen = [int(first)]
    d_min = np.minimum(d_min, np.linalg.norm(X - X[first], axis=1))
    while len(chosen) < n:
        d_min[chosen] = -np.inf
        nxt = int(np.argmax(d_min))
        chosen.append(nxt)
        d_min = np.minimum(d_min, np.linalg.norm(X - X[nxt], axis=1))
    return np.asarray(chosen)


def select_uncertain(sigma, descriptors, n: int, *, pool_factor: float = 4.0, reference=None) -> np.ndarray:
    """Indices of ``n`` candidates: farthest-point sampling among the ``pool_factor × n``
    highest ``sigma`` [m] (non-finite σ are never picked), descriptors [m, d] standardised
    together with ``reference`` [k, d] (the training frames)."""
    sigma = np.asarray(sigma, float)
    ok = np.flatnonzero(np.isfinite(sigma))
    if len(ok) == 0:
        return np.zeros(0, int)
    pool = ok[np.argsort(-sigma[ok], kind="stable")[: max(n, int(np.ceil(pool_factor * n)))]]
    X = np.asarray(descriptors, float)
    both = X if reference is None else np.concatenate([X, reference])
    scale = np.where(both.std(axis=0) > 0, both.std(axis=0), 1.0)
    mu = both.mean(axis=0)
    Xp = (X[pool] - mu) / scale
    ref = None if reference is None else (np.asarray(reference) - mu) / scale
    return pool[farthest_points(Xp, n, first=0, reference=ref)]


def select_random(sigma, n: int, *, seed: int) -> np.ndarray:
    """``n`` indices drawn uniformly among the candidates with finite σ (the baseline)."""
    ok = np.flatnonzero(np.isfinite(np.asarray(sigma, float)))
    return np.sort(np.random.default_rng(seed).choice(ok, size=min(n, len(ok)), replace=False))
