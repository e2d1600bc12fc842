"""Energy models: every family is a config class that builds an :class:`EnergyModel`.

``build_model(config_dict, species=...)`` rebuilds any model from the dict a run directory
stores (``model.config``); each family's module has a keyword ``build(...)`` with its config's
settings and defaults (:mod:`qdyn.models.config`).
"""

from . import bpnn, custom, generic, hybrid, multistate, sivqlm  # noqa: F401  (each registers its config)
from .base import (CLASSICAL, FIXED, QUANTUM, EnergyModel, batch_energy_and_forces, count_params, energy_and_forces,
                   energy_and_forces_fn)
from .config import ModelConfig, build_model, families, parse_model_config

__all__ = ["EnergyModel", "energy_and_forces", "energy_and_forces_fn", "batch_energy_and_forces", "count_params",
           "build_model", "parse_model_config", "families", "ModelConfig", "QUANTUM", "CLASSICAL", "FIXED"]
