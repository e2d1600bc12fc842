"""Atoms in any order, mapped onto a model's own atom order by element (and, where a
molecule template needs it, by bonding).

Descriptor-based models (bpnn, hybrid, multistate) see atoms as a set: any order works and
no mapping is needed. Template-based circuits (siVQLM, generic) read fixed difference vectors
``R[head] - R[tail]`` of a :class:`~qdyn.quantum.templates.MoleculeTemplate`, so their atoms
must come in the template's order. :func:`template_permutation` finds that order from the
elements and the geometry: among the assignments of the given atoms to the template's slots
that match element by element, the one with the shortest template vectors (so each H goes
to the O it is bonded to in a water dimer). Assignments that differ by a template symmetry
(the two H of H2O) give the same energy, so a tie between them does not matter.

Pure numpy: the artefact loader (:mod:`qdyn.deploy.artefact`) uses it without model code.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from .. import elements
from ..validation import QdynInputError

# Beyond this many element-consistent assignments the enumeration is too slow for every
# force call; templates that large are not what template circuits are built for.
MAX_ASSIGNMENTS = 40320


def template_permutation(numbers: Sequence[int], R, template_species: Sequence[int],
                         vectors: Sequence[Sequence[int]]) -> np.ndarray:
    """Indices ``perm`` such that atom ``perm[k]`` of the input fills template slot ``k``.

    Args:
        numbers: atomic numbers [n] of the given atoms, in the caller's order.
        R: their positions [n, 3] Å.
        template_species: atomic numbers of the template's slots, in its order.
        vectors: the template's (head, tail) slot pairs.

    Returns:
        int [n]: ``R[perm]`` is in template order; forces computed in that order go back to
        the caller's with ``F_caller[perm] = F_template``.

    Raises:
        QdynInputError: the elements differ from the template's (names both).
    """
    numbers = np.asarray(numbers, int)
    template_species = np.asarray(template_species, int)
    if sorted(numbers.tolist()) != sorted(template_species.tolist()):
        got = " ".join(elements.symbol(int(z)) for z in numbers)
        want = " ".join(elements.symbol(int(z)) for z in template_species)
        raise QdynInputError(f"this model is for the atoms {want} (any order), got {got}")
    groups = [(np.flatnonzero(template_species == z), np.flatnonzero(numbers == z))
              for z in np.unique(template_species)]
    count = math.prod(math.factorial(len(slots)) for slots, _ in groups)
    if count > MAX_ASSIGNMENTS:
        raise QdynInputError(f"{count} ways to map these atoms onto the model's template; give them in its order")
    R = np.asarray(R, float)
    heads = np.array([h for h, _ in vectors])
    tails = np.array([t for _, t in vectors])
    best, best_cost = None, np.inf
    for choice in itertools.product(*(itertools.permutations(atoms) for _, atoms in groups)):
        perm = np.empty(len(numbers), int)
        for (slots, _), atoms in zip(groups, choice):
            perm[slots] = atoms
        cost = float(np.sum((R[perm[heads]] - R[perm[tails]]) ** 2))
        if cost < best_cost:
            best, best_cost = perm, cost
    return best


def model_template(model):
    """The molecule template a model reads its atoms through, or None for models that
    take any atoms in any order (descriptor models)."""
    if "template" not in model.config:
        return None
    from ..quantum.templates import resolve_template

    return resolve_template(model.config["template"], model.config.get("rep"))[0]
