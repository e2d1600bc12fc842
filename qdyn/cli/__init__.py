"""qdyn's command-line interface (typer)."""
