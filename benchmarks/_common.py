"""Shared benchmark plumbing: timing, machine/version record, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path

import jax

RESULTS = Path(__file__).parent / "results"


def machine_info() -> dict:
    import flax
    import jaxlib
    import numpy
    import optax
    import pennylane

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                    "jax_backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]},
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                     "flax": flax.__version__, "optax": optax.__version__, "pennylane": pennylane.__version__,
                     "numpy": numpy.__version__},
        "x64": bool(jax.config.read("jax_enable_x64")),
    }


def time_compiled(fn, *args, repeats: int = 10, min_time: float = 1.0):
    """(compile seconds, steady-state seconds per call) of ``jax.jit(fn)``.

    Steady state is the *minimum* over repeated calls: on a shared machine other work only
    ever adds time, so the minimum is the most reproducible estimate of the cost itself.
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t_compile = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 200):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
        if len(times) >= 3 and times[-1] > 5.0:  # slow references: three runs are enough
            break
    return t_compile, min(times)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path


def update_readme_section(name: str, header: str, text: str) -> None:
    """Replace (or append) the ``name`` section of benchmarks/README.md."""
    import re

    path = Path(__file__).parent / "README.md"
    body = path.read_text() if path.exists() else ""
    block = f"<!-- {name}:start -->\n{header}\n\n{text}\n<!-- {name}:end -->"
    pattern = rf"<!-- {name}:start -->.*<!-- {name}:end -->"
    if re.search(pattern, body, flags=re.S):
        body = re.sub(pattern, lambda _: block, body, flags=re.S)
    else:
        body += f"\n## {name}.py\n\n" + block + "\n"
    path.write_text(body)


def mean_and_range(values, fmt: str) -> str:
    """``mean (min–max)`` of numbers over seeds or runs, each formatted with ``fmt`` (the mean
    alone for one value)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return format(v.mean(), fmt)
    return f"{format(v.mean(), fmt)} ({format(v.min(), fmt)}–{format(v.max(), fmt)})"
