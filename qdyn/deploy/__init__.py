"""Deployment: a trained model as one self-contained file, and atoms in any order.

* :func:`save` / :func:`load` (:mod:`qdyn.deploy.artefact`): a ``.qdyn`` file holding the
  exported (``jax.export``) energy/forces/stress programs and the parameters; loading needs
  neither the run directory nor qdyn's model code.
* :func:`template_permutation` (:mod:`qdyn.deploy.atom_order`): maps atoms given in any
  order onto a template model's atom order.

The ASE calculator (:class:`qdyn.md.ase_calculator.QdynCalculator`) is built from a run
directory or such a file; ``qdyn export`` and ``qdyn serve-ipi`` are the commands
(docs/deployment.md).
"""

from .artefact import SUFFIX, ArtefactError, ExportedModel, load, save
from .atom_order import template_permutation

__all__ = ["save", "load", "ExportedModel", "ArtefactError", "SUFFIX", "template_permutation"]
