"""Quantum circuits: layouts (static structure), closed-form gates, a pure-JAX statevector
executor and PennyLane QNodes built from the same layouts."""
