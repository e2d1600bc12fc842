"""An ASE calculator for any qdyn model, so ASE's optimisers and dynamics drive it.

ASE's units are eV and Å, qdyn's too, so nothing is converted; ASE's cell rows become
qdyn's box columns. One jitted energy-and-forces function per model serves every call
(``qdyn.models.base``'s cache), and :meth:`QdynCalculator.batch` evaluates many
structures in chunks through one vmapped compilation.

Build it from a model and its parameters, from a run directory
(:meth:`QdynCalculator.from_run`) or from an exported ``.qdyn`` file
(:meth:`QdynCalculator.from_file`, no model code needed). Periodic structures also get the
stress (``(1/V) ∂E/∂ε``, ASE's sign and Voigt order) from models that take a box. Atoms may
come in any order: descriptor models see them as a set, and template models (siVQLM,
generic) get them mapped onto their template by element and bonding
(:func:`qdyn.deploy.template_permutation`), the forces mapped back.

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

from ..deploy.atom_order import model_template, template_permutation
from ..models.base import EnergyModel, batch_energy_and_forces, energy_and_forces, energy_forces_stress
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


class _LiveModel:
    """A model with its parameters, behind the same calls as a loaded ``.qdyn`` file
    (:class:`qdyn.deploy.ExportedModel`), so the calculator treats both alike."""

    def __init__(self, model: EnergyModel, params):
        self.model, self.params = model, params
        template = model_template(model)
        self.template_species = None if template is None else template.species
        self.template_vectors = None if template is None else template.vectors
        self.periodic = template is None  # template circuits model free molecules

    def energy_and_forces(self, R, numbers):
        E, F = energy_and_forces(self.model, self.params, R, System.create(list(numbers)))
        return float(E), np.asarray(F)

    def energy_forces_stress(self, R, numbers, box):
        E, F, S = energy_forces_stress(self.model, self.params, R, System.create(list(numbers), box=box))
        return float(E), np.asarray(F), np.asarray(S)


class QdynCalculator(Calculator):
    """ASE calculator wrapping a qdyn :class:`~qdyn.models.base.EnergyModel`.

    Args:
        model: the model.
        params: its parameters.

    Implements ``energy`` [eV], ``free_energy`` (= energy), ``forces`` [eV/Å] and, for
    periodic structures and models that take a box, ``stress`` [eV/Å³] (Voigt: xx yy zz
    yz xz xy). Atoms in any order (module docstring).
    For a deep ensemble (:func:`qdyn.uncertainty.ensemble_model`) also the members'
    uncalibrated spread, ``results["energy_std"]`` [eV] and ``results["forces_std"]``
    [n_atoms] eV/Å.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: EnergyModel, params, *, label: str = "qdyn"):
        super().__init__(label=label)
        self.model = model
        self.params = params
        self.potential = _LiveModel(model, params)

    @classmethod
    def from_run(cls, run_dir, *, label: str = "qdyn") -> "QdynCalculator":
        """The model of a finished run directory (``model.json`` + ``params.msgpack``)."""
        from ..train import load_run

        model, params, _ = load_run(run_dir)
        return cls(model, params, label=label)

    @classmethod
    def from_file(cls, path, *, label: str = "qdyn") -> "QdynCalculator":
        """A model exported to a ``.qdyn`` file (``qdyn export``); needs no model code."""
        from ..deploy import load

        calc = cls.__new__(cls)
        Calculator.__init__(calc, label=label)
        calc.model, calc.params = None, None
        calc.potential = load(path)
        return calc

    def _model_order(self, numbers, R) -> np.ndarray:
        pot = self.potential
        if pot.template_species is None:
            return np.arange(len(numbers))
        return template_permutation(numbers, R, pot.template_species, pot.template_vectors)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ase.stress import full_3x3_to_voigt_6_stress

        super().calculate(atoms, properties, system_changes)
        R, system = atoms_to_system(self.atoms)
        numbers = np.asarray(self.atoms.numbers)
        perm = self._model_order(numbers, R)
        if system.box is None:
            E, F_model = self.potential.energy_and_forces(R[perm], numbers[perm])
            stress = None
        elif not self.potential.periodic:
            raise QdynInputError("this model is for a free molecule: give the atoms without a periodic cell "
                                 "(pbc=False)")
        else:
            E, F_model, stress = self.potential.energy_forces_stress(R[perm], numbers[perm], np.asarray(system.box))
        F = np.empty_like(F_model)
        F[perm] = F_model
        self.results = {"energy": E, "free_energy": E, "forces": F}
        if stress is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
        if self.model is not None:  # ensembles: σ of the members, in the atoms' order
            R_model, system_model = atoms_to_system(self.atoms[perm])
            spread = member_spread(self.model, self.params, R_model, system_model)
            if "forces_std" in spread:
                forces_std = np.empty_like(spread["forces_std"])
                forces_std[perm] = spread["forces_std"]
                spread["forces_std"] = forces_std
            self.results.update(spread)

    def batch(self, images: Sequence, *, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Energies [m] eV and forces [m, n, 3] eV/Å of many structures with the same atom
        count, in chunks of ``chunk`` through one compiled, vmapped function."""
        if len(images) == 0:
            raise QdynInputError("batch() needs at least one structure")
        if self.model is None:
            raise QdynInputError("batch() needs the model itself: build the calculator with from_run or "
                                 "(model, params); a .qdyn file evaluates batches with qdyn.deploy.load(path).batch")
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
