"""An ASE calculator for any qdyn model, so ASE's optimisers and dynamics drive it.

ASE's units are eV and Å, qdyn's too, so nothing is converted; ASE's cell rows become
qdyn's box columns. One jitted energy-and-forces function per model serves every call
(``qdyn.models.base``'s cache), and :meth:`QdynCalculator.batch` evaluates many
structures in chunks through one vmapped compilation.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from ase import Atoms
    >>> from qdyn.models import bpnn
    >>> model = bpnn.build(species=(1, 8), hidden=(8,))
    >>> calc = QdynCalculator(model, model.init(jax.random.PRNGKey(0)))
    >>> atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], calculator=calc)
    >>> e = atoms.get_potential_energy()
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..models.base import EnergyModel, batch_energy_and_forces, energy_and_forces
from ..system import System, stack
from ..uncertainty.predict import member_spread
from ..validation import QdynInputError


def atoms_to_system(atoms) -> tuple[np.ndarray, System]:
    """(R [n, 3] Å, System) of an ASE Atoms; a periodic cell becomes the box (columns)."""
    pbc = np.asarray(atoms.pbc)
    if pbc.any() and not pbc.all():
        raise QdynInputError(f"mixed periodicity {pbc.tolist()} is not supported; use all or none")
    box = np.asarray(atoms.cell.array, float).T if pbc.all() else None
    return np.asarray(atoms.positions, float), System.create(atoms.numbers.tolist(), box=box)


class QdynCalculator(Calculator):
    """ASE calculator wrapping a qdyn :class:`~qdyn.models.base.EnergyModel`.

    Args:
        model: the model.
        params: its parameters.

    Implements ``energy`` [eV], ``free_energy`` (= energy) and ``forces`` [eV/Å]; for a deep
    ensemble (:func:`qdyn.uncertainty.ensemble_model`) also the members' uncalibrated spread,
    ``results["energy_std"]`` [eV] and ``results["forces_std"]`` [n_atoms] eV/Å.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: EnergyModel, params, *, label: str = "qdyn"):
        super().__init__(label=label)
        self.model = model
        self.params = params

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        R, system = atoms_to_system(self.atoms)
        E, F = energy_and_forces(self.model, self.params, R, system)
        self.results = {"energy": float(E), "free_energy": float(E), "forces": np.asarray(F, dtype=float)}
        self.results.update(member_spread(self.model, self.params, R, system))  # ensembles: σ of the members

    def batch(self, images: Sequence, *, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Energies [m] eV and forces [m, n, 3] eV/Å of many structures with the same atom
        count, in chunks of ``chunk`` through one compiled, vmapped function."""
        if len(images) == 0:
            raise QdynInputError("batch() needs at least one structure")
        pairs = [atoms_to_system(a) for a in images]
        n = {len(r) for r, _ in pairs}
        if len(n) != 1:
            raise QdynInputError(f"batch() needs structures with the same atom count, got {sorted(n)}")
        R = np.stack([r for r, _ in pairs])
        systems = [s for _, s in pairs]
        same = all(np.array_equal(np.asarray(s.species), np.asarray(systems[0].species)) for s in systems)
        boxes = [s.box for s in systems]
        if same and all(b is None for b in boxes):
            system = systems[0]
        elif all(b is not None for b in boxes):
            system = stack(systems)
        elif all(b is None for b in boxes):
            system = stack(systems)
        else:
            raise QdynInputError("batch() cannot mix periodic and free structures")
        return batch_energy_and_forces(self.model, self.params, R, system, chunk=chunk)
