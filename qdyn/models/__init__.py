"""Energy models: factories returning :class:`EnergyModel` (init, apply) pairs."""

from .base import EnergyModel, batch_energy_and_forces, count_params, energy_and_forces, energy_and_forces_fn

__all__ = ["EnergyModel", "energy_and_forces", "energy_and_forces_fn", "batch_energy_and_forces", "count_params"]
