"""Quantum circuits as one family: every circuit is a :class:`~qdyn.quantum.circuit.Circuit`
(parameter shapes, a pure-JAX statevector ``expval``, a PennyLane ``qnode`` factory), built
by :func:`~qdyn.quantum.invariant.invariant_circuit`,
:func:`~qdyn.quantum.hardware_efficient.hardware_efficient_circuit`,
:func:`~qdyn.quantum.reupload.reupload_circuit` or :func:`~qdyn.quantum.qsf.qsf_circuit`.
A user's own PennyLane quantum function becomes one too (:mod:`~qdyn.quantum.user`; examples in
:mod:`~qdyn.quantum.examples`). Molecule templates live in :mod:`~qdyn.quantum.templates`, the invariant circuit's structure
in :mod:`~qdyn.quantum.layout`, closed-form gates in :mod:`~qdyn.quantum.gates` and the
executor in :mod:`~qdyn.quantum.statevector`."""
