"""The PennyLane execution flags shared by ``qdyn eval`` and ``qdyn md``."""

import typer

# PennyLane execution flags of `qdyn eval` and `qdyn md` (qdyn.quantum.execution.Execution)
BACKEND_OPT = typer.Option(None, "--backend", help="Run the circuit on: statevector | pennylane [the model's].")
DEVICE_OPT = typer.Option(None, "--device", help="PennyLane device: default.qubit, default.mixed, lightning.qubit, ...")
DIFF_OPT = typer.Option(None, "--diff-method", help="PennyLane differentiation for forces: backprop, adjoint, "
                                                    "parameter-shift, finite-diff.")
SHOTS_OPT = typer.Option(None, "--shots", help="Measurement shots (default: exact expectation values).")
SEED_OPT = typer.Option(None, "--shots-seed", help="Seed of the device's PRNG key for shots [0].")


def execution_flags(backend, device, diff_method, shots, seed) -> dict:
    return {"backend": backend, "device": device, "diff_method": diff_method, "shots": shots, "seed": seed}
