"""The :class:`System` pytree: what a configuration is, apart from its positions.

Positions ``R`` [n_atoms, 3] Å are passed separately (they are what forces differentiate);
``System`` carries the rest: atomic numbers, an optional periodic box and a mask that marks
padding atoms, so configurations with different atom counts batch to one static shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import elements


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class System:
    """Species, optional box and padding mask of one configuration.

    Attributes:
        species: int32 [n_atoms] atomic numbers (0 for padding atoms).
        mask: bool [n_atoms], True for real atoms.
        box: float [3, 3] lattice vectors as **columns** (Å), or None for free space.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> sys = System.create(["O", "H", "H"])
        >>> sys.n_real
        3
    """

    species: jax.Array
    mask: jax.Array
    box: Optional[jax.Array] = None

    @classmethod
    def create(cls, species: Sequence, *, box=None, mask=None) -> "System":
        """Build from symbols or atomic numbers; unknown elements raise a clear error."""
        z = np.asarray([elements.atomic_number(s) for s in species], dtype=np.int32)
        if mask is None:
            mask = np.ones(len(z), dtype=bool)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != z.shape:
            raise ValueError(f"mask has shape {mask.shape}, species has {z.shape}")
        if box is not None:
            box = np.asarray(box, dtype=float)
            if box.shape == (3,):
                box = np.diag(box)
            if box.shape != (3, 3):
                raise ValueError(f"box must be [3] or [3, 3] (columns = lattice vectors), got {box.shape}")
            box = jnp.asarray(box)
        return cls(species=jnp.asarray(z), mask=jnp.asarray(mask), box=box)

    @property
    def n_atoms(self) -> int:
        return int(self.species.shape[-1])

    @property
    def n_real(self) -> int:
        return int(np.sum(np.asarray(self.mask)))

    @property
    def symbols(self) -> list[str]:
        return [elements.symbol(z) if m else "X" for z, m in zip(np.asarray(self.species), np.asarray(self.mask))]

    def pad(self, n_atoms: int) -> "System":
        """Append padding atoms (species 0, mask False) up to ``n_atoms``."""
        extra = n_atoms - self.n_atoms
        if extra < 0:
            raise ValueError(f"cannot pad {self.n_atoms} atoms down to {n_atoms}")
        return System(
            species=jnp.concatenate([self.species, jnp.zeros(extra, self.species.dtype)]),
            mask=jnp.concatenate([self.mask, jnp.zeros(extra, bool)]),
            box=self.box,
        )


def pad_positions(R, n_atoms: int):
    """Pad positions [n, 3] with far-apart dummy rows up to ``n_atoms`` (they are masked)."""
    R = jnp.asarray(R)
    extra = n_atoms - R.shape[-2]
    # Padding rows sit on a distant line so that no distance between them is zero (keeps
    # gradients finite in models that do not read the mask before taking norms).
    far = 1e3 + 10.0 * jnp.arange(extra, dtype=R.dtype)
    pad = jnp.stack([far, jnp.zeros_like(far), jnp.zeros_like(far)], axis=-1)
    return jnp.concatenate([R, pad], axis=-2)


def stack(systems: Sequence[System]) -> System:
    """Stack systems of equal atom count into a batched System (leading axis)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *systems)
