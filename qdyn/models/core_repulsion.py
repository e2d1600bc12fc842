"""A short-range pair wall below the distances a model was trained on ("core repulsion").

A learned potential knows nothing about geometries closer than its training data: there its
energy is an extrapolation, often lower than the data's, and MD that reaches such a hole
collapses into it (two O at 1.5 Å, an H2 molecule forming in liquid water). ACE potentials
(pacemaker) meet this with an inner cutoff and a core repulsion fixed from the data's
minimum distances; qdyn does the same, per species pair:

    E_core = Σ_{pairs i<j} A · max(0, (r_in(Z_i, Z_j) - r_ij) / w)³

* zero (with its first and second derivative) for r ≥ r_in, so inside the data's region the
  model is unchanged, training included, and energies, forces and their derivatives stay
  continuous (C²);
* r_in per species pair from :func:`core_radii_from_data` (a fraction of the shortest
  distance seen), fixed — not trained — so it cannot fit noise;
* A = 1 eV per (w = 0.1 Å)³: 1 eV at 0.1 Å inside the wall, 8 eV at 0.2 Å.

It is a wall against holes, not physics: the reference's own repulsion at those distances is
larger, and what the wall adds is only that the model can never be *lower* than an
ever-rising function there.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax.numpy as jnp
    >>> wall = core_repulsion((1, 8), {"H-H": 1.2, "H-O": 0.8, "O-O": 2.2})
    >>> R = jnp.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]])
    >>> round(float(wall(R, jnp.array([1, 1]), jnp.array([True, True]))), 6)  # 0.1 Å inside
    1.0
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from .. import elements
from ..geometry import aggregate, make_edges
from ..elements import UnknownElementError, make_species_table
from ..validation import QdynInputError

__all__ = ["CoreRepulsion", "core_repulsion", "core_radii_from_data", "pair_key"]


def pair_key(z1: int, z2: int) -> str:
    """"H-O" style key of a species pair (symbols sorted by atomic number)."""
    a, b = sorted((int(z1), int(z2)))
    return f"{elements.symbol(a)}-{elements.symbol(b)}"


class CoreRepulsion(NamedTuple):
    """``energy(R, species, mask, box=None, neighbor=None) -> E`` [eV], the same split into
    atoms (half of each pair to either end) by ``atom_energies``, and the settings."""

    energy: Callable
    atom_energies: Callable
    radii: dict
    strength: float
    width: float

    def __call__(self, R, species, mask, box=None, neighbor=None):
        return self.energy(R, species, mask, box, neighbor)


def core_repulsion(species: Sequence[int], radii: Mapping[str, float], *, strength: float = 1.0,
                   width: float = 0.1) -> CoreRepulsion:
    """Build the wall for the given elements.

    Args:
        species: atomic numbers the model handles.
        radii: r_in [Å] per pair, keyed like ``"H-O"`` (:func:`pair_key`); a pair left out
            has no wall.
        strength: A [eV] at a penetration of one ``width``.
        width: w [Å].

    Raises:
        QdynInputError: a key naming an element the model does not handle, a malformed key,
            a non-positive radius, strength or width.
    """
    species = tuple(sorted(int(z) for z in species))
    if not strength > 0 or not width > 0:
        raise QdynInputError(f"core repulsion: strength and width must be positive, got {strength} eV, {width} Å")
    S = len(species)
    index = {z: k for k, z in enumerate(species)}
    r_in = np.zeros((S, S))
    clean = {}
    for key, r in radii.items():
        parts = str(key).split("-")
        try:
            z1, z2 = (elements.atomic_number(p) for p in parts) if len(parts) == 2 else (None, None)
        except UnknownElementError as exc:  # name the key, not only the symbol
            raise QdynInputError(f"core repulsion: cannot read pair {key!r} ({exc})") from None
        if z1 is None:
            raise QdynInputError(f"core repulsion: pair keys look like 'H-O', got {key!r}")
        if z1 not in index or z2 not in index:
            raise QdynInputError(f"core repulsion: pair {key!r} names an element the model does not handle "
                                 f"({' '.join(elements.symbol(z) for z in species)})")
        if not float(r) > 0:
            raise QdynInputError(f"core repulsion: radius of {key!r} must be positive, got {r} Å")
        r_in[index[z1], index[z2]] = r_in[index[z2], index[z1]] = float(r)
        clean[pair_key(z1, z2)] = float(r)
    table, r_in_j = make_species_table(species), jnp.asarray(r_in)

    def atom_energies(R, Z, mask, box=None, neighbor=None):
        R = jnp.asarray(R)
        e = make_edges(R, mask, box, neighbor)
        # padding atoms (Z = 0, index -1) sit on invalid edges, which the mask drops
        rin = r_in_j[jnp.maximum(table[Z[e.centres()]], 0), jnp.maximum(table[Z[e.neighbour]], 0)]
        x = jnp.maximum(rin - e.r, 0.0) / width
        # every pair appears from both ends: each end keeps half of it
        return aggregate(e, 0.5 * strength * jnp.where(e.valid, x * x * x, 0.0), R.shape[0])

    def energy(R, Z, mask, box=None, neighbor=None):
        return jnp.sum(atom_energies(R, Z, mask, box, neighbor))

    return CoreRepulsion(energy=energy, atom_energies=atom_energies, radii=clean, strength=float(strength), width=float(width))


def core_radii_from_data(R, Z, *, cell=None, pbc=None, fraction: float = 0.9,
                         species: Optional[Sequence[int]] = None) -> dict:
    """r_in per species pair: ``fraction`` × the shortest distance of that pair in the data.

    Args:
        R: [F, n, 3] Å positions (padding atoms have Z = 0).
        Z: [F, n] or [n] atomic numbers.
        cell: optional [F, 3, 3] lattice vectors (columns) for minimum-image distances.
        pbc: optional [F, 3]; frames with no periodic direction use plain distances (frames
            with some use the minimum image in all three, which can only shorten distances
            and so moves the wall inwards, never into the data).
        fraction: how far below the shortest seen distance the wall starts.
        species: report only these elements' pairs (default: all in the data).

    Returns:
        {"H-O": r_in, ...} in Å, for every pair that occurs in the data.
    """
    R = np.asarray(R, float)
    Z = np.broadcast_to(np.asarray(Z), R.shape[:2])
    keep = set(int(z) for z in np.unique(Z) if z > 0) if species is None else set(int(z) for z in species)
    best: dict[str, float] = {}
    for f in range(R.shape[0]):
        m = Z[f] > 0
        r, z = R[f][m], Z[f][m]
        d = r[None, :, :] - r[:, None, :]
        if cell is not None and (pbc is None or np.asarray(pbc[f]).any()):
            h = np.asarray(cell[f], float)
            s = np.linalg.solve(h, d.reshape(-1, 3).T).T
            d = (h @ (s - np.round(s)).T).T.reshape(d.shape)
        dist = np.linalg.norm(d, axis=-1)
        iu = np.triu_indices(len(z), 1)
        za, zb, dd = np.minimum(z[iu[0]], z[iu[1]]), np.maximum(z[iu[0]], z[iu[1]]), dist[iu]
        for a, b in set(zip(za.tolist(), zb.tolist())):
            if a in keep and b in keep:
                k = pair_key(a, b)
                best[k] = min(best.get(k, np.inf), float(dd[(za == a) & (zb == b)].min()))
    return {k: round(fraction * v, 4) for k, v in sorted(best.items())}
