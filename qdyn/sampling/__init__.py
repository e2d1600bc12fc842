"""Enhanced sampling and free energies: collective variables (:mod:`qdyn.sampling.cv`),
biases carried through the compiled MD loop (metadynamics, umbrella restraints), replica
exchange between the batched replicas, and free-energy reconstruction (metadynamics bias
sums and reweighting, MBAR)."""
