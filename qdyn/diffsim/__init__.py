"""Differentiable simulation: gradients of MD observables with respect to model parameters,
through the trajectory.

* :mod:`.rollout`: an NVE or Langevin (noise fixed by a key) trajectory as one differentiable JAX
  function of the parameters, ``lax.scan`` over blocks with ``jax.checkpoint`` per block so
  the backward pass stores one state per block, not every step.
* :mod:`.observables`: smooth observables of the frames — mean distance, a smooth
  pair-distance histogram and its peak, the VACF spectrum and a band's centre frequency.

Reuses qdyn's integrators (:func:`qdyn.md.integrators.make_integrator`) and energy adapter
(:func:`qdyn.md.adapters.model_energy_fn`).
"""

from .observables import (band_centroid_cm, mean_distance, smooth_pair_histogram, soft_peak_position,
                          vacf_spectrum)
from .rollout import Rollout, make_rollout, memory_of

__all__ = ["Rollout", "make_rollout", "memory_of", "mean_distance", "smooth_pair_histogram", "soft_peak_position",
           "vacf_spectrum", "band_centroid_cm"]
