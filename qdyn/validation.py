"""Host-side input checks, run before anything is traced or jitted.

Inside jit a NaN or a wrong shape becomes a silent NaN energy or a cryptic XLA error; these
checks turn bad input into an error that names the problem, the frame and the atoms.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import elements


class QdynInputError(ValueError):
    """Bad input at a public qdyn API boundary."""


# Closer than this, two atoms are taken to be on top of each other (no chemistry there,
# and models that normalise difference vectors would produce NaN gradients).
MIN_DISTANCE_ANGSTROM = 0.1
# Farther than this from the origin (one micrometre) no model input makes sense; the same
# limit as qdyn.data.plausibility.MAX_COORDINATE, which data files can switch off.
MAX_COORDINATE_ANGSTROM = 1.0e4


def check_positions(
    R,
    *,
    n_atoms: Optional[int] = None,
    mask=None,
    batched: bool = False,
    where: str = "positions",
    min_distance: float = MIN_DISTANCE_ANGSTROM,
) -> np.ndarray:
    """Check positions [n_atoms, 3] (or [n_frames, n_atoms, 3] with ``batched``) in Å.

    Raises :class:`QdynInputError` naming the frame and atoms for wrong shapes, NaN/inf,
    and atoms closer than ``min_distance``. Returns the positions as a float numpy array.
    """
    R = np.asarray(R)
    want = 3 if batched else 2
    if R.ndim != want or R.shape[-1] != 3:
        shape = "[n_frames, n_atoms, 3]" if batched else "[n_atoms, 3]"
        raise QdynInputError(f"{where}: expected shape {shape}, got {R.shape}")
    if not np.issubdtype(R.dtype, np.number):
        raise QdynInputError(f"{where}: expected a numeric array, got dtype {R.dtype}")
    if n_atoms is not None and R.shape[-2] != n_atoms:
        raise QdynInputError(f"{where}: expected {n_atoms} atoms, got {R.shape[-2]}")
    frames = R if batched else R[None]
    m = np.ones(frames.shape[1], bool) if mask is None else np.asarray(mask, bool)
    if m.ndim == 1:
        m = np.broadcast_to(m, frames.shape[:2])
    for f, (Rf, mf) in enumerate(zip(frames, m)):
        label = f"{where} (frame {f})" if batched else where
        real = Rf[mf]
        bad = ~np.isfinite(real)
        if bad.any():
            atom = int(np.flatnonzero(mf)[np.argwhere(bad)[0, 0]])
            raise QdynInputError(f"{label}: non-finite coordinate (NaN or inf) at atom {atom}")
        far = np.abs(real).max(-1) > MAX_COORDINATE_ANGSTROM if len(real) else np.zeros(0, bool)
        if far.any():
            atom = int(np.flatnonzero(mf)[np.flatnonzero(far)[0]])
            raise QdynInputError(f"{label}: atom {atom} is {np.abs(real[far][0]).max():.4g} Å from the origin "
                                 f"(limit {MAX_COORDINATE_ANGSTROM:g} Å): a corrupt coordinate or a unit mistake")
        if len(real) > 1:
            d = np.linalg.norm(real[:, None] - real[None], axis=-1)
            d[np.diag_indices(len(real))] = np.inf
            i, j = np.unravel_index(np.argmin(d), d.shape)
            if d[i, j] < min_distance:
                idx = np.flatnonzero(mf)
                raise QdynInputError(
                    f"{label}: atoms {idx[min(i, j)]} and {idx[max(i, j)]} are "
                    f"{d[i, j]:.3g} Å apart (overlapping; minimum {min_distance} Å)"
                )
    return R.astype(float)


def check_species(species, allowed: Sequence[int], *, mask=None, where: str = "species") -> None:
    """Every real atom's atomic number must be known and among ``allowed``."""
    z = np.asarray(species)
    m = np.ones(z.shape, bool) if mask is None else np.asarray(mask, bool)
    for zi in np.unique(z[m]):
        elements.atomic_number(int(zi))  # raises UnknownElementError for nonsense
        if int(zi) not in set(int(a) for a in allowed):
            names = ", ".join(elements.symbol(a) for a in allowed)
            raise QdynInputError(
                f"{where}: element {elements.symbol(int(zi))} (Z={int(zi)}) is not one this model "
                f"was built for ({names})"
            )


def check_box(box, cutoff: float) -> None:
    """Raise :class:`QdynInputError` unless ``cutoff`` [Å] is below half the smallest
    perpendicular width of ``box`` [3, 3] (columns = lattice vectors): only then does the
    minimum image see every neighbour within the cutoff."""
    b = np.asarray(box, dtype=float)
    vol = abs(np.linalg.det(b))
    if vol < 1e-9:
        raise QdynInputError(f"periodic box is singular (volume {vol:.3g} Å³)")
    widths = [vol / np.linalg.norm(np.cross(b[:, (k + 1) % 3], b[:, (k + 2) % 3])) for k in range(3)]
    if cutoff >= 0.5 * min(widths):
        raise QdynInputError(
            f"cutoff {cutoff} Å is not below half the smallest box width ({min(widths):.3g} Å): "
            "use a larger box or a smaller cutoff"
        )


def make_local_check(species: Sequence[int], cutoff: float):
    """Host-side ``check(R, system)`` for models built on local descriptors: positions,
    species, and a periodic box large enough for the minimum image at ``cutoff`` [Å]."""

    def check(R, system):
        check_positions(R, n_atoms=system.n_atoms, mask=system.mask)
        check_species(system.species, species, mask=system.mask)
        if system.box is not None:
            check_box(system.box, cutoff)

    return check
