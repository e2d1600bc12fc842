"""Bad input at the public API raises a clear error naming the problem, before any jit."""

import jax
import numpy as np
import pytest

from qdyn.elements import UnknownElementError
from qdyn.models import sivqlm
from qdyn.models.base import batch_energy_and_forces, energy_and_forces
from qdyn.structures import water
from qdyn.system import System
from qdyn.validation import QdynInputError


@pytest.fixture(scope="module")
def h2o():
    model = sivqlm.build("H2O", layers=2)
    return model, model.init(jax.random.PRNGKey(0))


def test_wrong_shape(h2o):
    model, params = h2o
    R, system = water()
    with pytest.raises(QdynInputError, match=r"expected shape \[n_atoms, 3\], got \(3, 2\)"):
        energy_and_forces(model, params, R[:, :2], system)
    with pytest.raises(QdynInputError, match="expected 3 atoms, got 2"):
        energy_and_forces(model, params, R[:2], system)


def test_nan_positions(h2o):
    model, params = h2o
    R, system = water()
    R[2, 1] = np.nan
    with pytest.raises(QdynInputError, match="non-finite coordinate .* atom 2"):
        energy_and_forces(model, params, R, system)


def test_overlapping_atoms(h2o):
    model, params = h2o
    R, system = water()
    R[2] = R[1] + 1e-3
    with pytest.raises(QdynInputError, match="atoms 1 and 2 are 0.00173 Å apart"):
        energy_and_forces(model, params, R, system)


def test_species_not_in_model(h2o):
    model, params = h2o
    R, _ = water()
    with pytest.raises(QdynInputError, match=r"element N \(Z=7\) is not one this model was built for \(H, O\)"):
        energy_and_forces(model, params, R, System.create(["N", "H", "H"]))
    with pytest.raises(QdynInputError, match="ordered O H H, got H O H"):
        energy_and_forces(model, params, R, System.create(["H", "O", "H"]))
    with pytest.raises(UnknownElementError):
        System.create(["O", "H", "Qq"])


def test_batch_reports_the_frame(h2o):
    model, params = h2o
    R, system = water()
    Rs = np.stack([R, R, R])
    Rs[1, 0, 0] = np.inf
    with pytest.raises(QdynInputError, match="non-finite"):
        batch_energy_and_forces(model, params, Rs, system)
