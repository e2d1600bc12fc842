"""Data- and replica-parallel training, MD and surface hopping (qdyn.parallel) on CPU.

XLA's host-device count and jax.distributed must be set before JAX starts, so the sharded
runs happen in subprocesses running tests/parallel_check.py: one process with 8 host
devices compares meshes of 2, 4 and 8 devices with one device; two processes on localhost
(one device each, gloo collectives) compare a two-process mesh with one process.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qdyn import parallel
from qdyn.validation import QdynInputError

CHECK = Path(__file__).with_name("parallel_check.py")
TOL = 1e-12


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the script sets its own device count
    env["PYTHONPATH"] = str(CHECK.parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _results(stdout: str) -> list[dict]:
    return [json.loads(line[len("RESULT "):]) for line in stdout.splitlines() if line.startswith("RESULT ")]


def _assert_equal_to_one_device(report: dict, sizes):
    assert sorted(report["meshes"], key=int) == [str(s) for s in sizes]
    for size, r in report["meshes"].items():
        assert r["train_params_changed"] > 1e-3, "the steps must move the params, or equality proves nothing"
        assert r["train_params"] < TOL, (size, r)
        assert r["md"] < TOL, (size, r)
        assert r["fssh"] is None or r["fssh"] < TOL, (size, r)
        assert r["train_step_compilations"] == 1, (size, r)
        assert r["md_traces"] == r["md_traces_one_device"] and r["fssh_traces"] == r["fssh_traces_one_device"], r


def test_sharded_equals_single_device_on_2_4_8_devices():
    proc = subprocess.run([sys.executable, str(CHECK), "--devices", "8", "--meshes", "2", "4", "8"],
                          capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report,) = _results(proc.stdout)
    assert report["devices"] == 8
    _assert_equal_to_one_device(report, [2, 4, 8])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_equal_one_process():
    port = _free_port()
    cmd = [sys.executable, str(CHECK), "--devices", "1", "--meshes", "0", "--skip-fssh",
           "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id"]
    procs = [subprocess.Popen(cmd + [str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    reports = [r for out, _ in outs for r in _results(out)]
    assert sorted(r["process"] for r in reports) == [0, 1]
    for r in reports:
        assert r["n_processes"] == 2 and r["devices"] == 2
        _assert_equal_to_one_device(r, [2])


def test_bad_device_requests_are_refused_in_one_line():
    with pytest.raises(QdynInputError, match="positive integer or 'all'"):
        parallel.parse_devices("0")
    with pytest.raises(QdynInputError, match=r"JAX sees 1 device"):
        parallel.make_mesh(2)
    mesh = parallel.make_mesh(1)
    parallel.check_divisible(3, mesh, "replicas", "--replicas")  # one device takes anything
    assert parallel.padded_size(10, None) == 10


def test_divisibility_and_padding_rules():
    class FakeMesh:  # only the size matters for the rule
        devices = np.empty(4)

    with pytest.raises(QdynInputError, match=r"--replicas: 6 replicas do not split evenly over 4 devices.*4 or 8"):
        parallel.check_divisible(6, FakeMesh, "replicas", "--replicas")
    assert parallel.padded_size(10, FakeMesh) == 12


def test_initialize_distributed_needs_count_and_id(monkeypatch):
    for name in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize_distributed() is False  # nothing asked: nothing happens
    with pytest.raises(QdynInputError, match="also give --num-processes"):
        parallel.initialize_distributed("localhost:1")
    monkeypatch.setenv(parallel.ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(parallel.ENV_PROCESS_ID, "2")
    with pytest.raises(QdynInputError, match=r"--process-id must be in \[0, 2\)"):
        parallel.initialize_distributed("localhost:1")


def test_cli_refuses_more_devices_than_there_are(tmp_path):
    from typer.testing import CliRunner

    from qdyn.cli.app import app

    res = CliRunner().invoke(app, ["train", "--devices", "3", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "devices = 3: JAX sees 1 device(s)" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything was written
    res = CliRunner().invoke(app, ["md", "--model", str(tmp_path), "--devices", "two"])
    assert res.exit_code == 2 and "--devices must be a positive integer or 'all'" in res.output


def _fresh_python(code: str, extra_flags: str = "") -> str:
    env = _env()
    if extra_flags:
        env["XLA_FLAGS"] = extra_flags
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_cpu_cores_become_devices_only_before_jax_starts():
    """On a CPU-only machine --devices N gives JAX's CPU backend N devices (one per core), if
    nothing has started JAX yet; later it changes nothing and the mesh refuses in one line."""
    before = "from qdyn import parallel; ok = parallel.use_cpu_cores(2); import jax; print(ok, len(jax.devices()))"
    assert _fresh_python(before) == "True 2"
    every_core = "from qdyn import parallel; m = parallel.make_mesh('all'); print(m.devices.size == parallel.cpu_cores())"
    assert _fresh_python(every_core) == "True"
    after = ("import jax; jax.devices(); from qdyn import parallel; ok = parallel.use_cpu_cores(2); "
             "print(ok, len(jax.devices()))")
    assert _fresh_python(after) == "False 1"
    forced = "from qdyn import parallel; ok = parallel.use_cpu_cores(2); import jax; print(ok, len(jax.devices()))"
    assert _fresh_python(forced, "--xla_force_host_platform_device_count=3") == "False 3"  # the tests' own setting wins


def test_a_config_files_devices_are_read_before_jax_starts(tmp_path):
    from qdyn.cli.parallel_opts import _devices_in

    (tmp_path / "cfg.yaml").write_text("epochs: 3\ndevices: all\n")
    (tmp_path / "bad.yaml").write_text("devices: [\n")
    assert _devices_in([None, tmp_path / "missing.yaml", tmp_path / "cfg.yaml"]) == "all"
    assert _devices_in([tmp_path / "bad.yaml"]) is None  # the config loader reports it later, in one line
    with pytest.raises(QdynInputError, match="JAX sees 1 device.*use_cpu_cores"):
        parallel.make_mesh(2)  # this process started JAX long ago: the hint says what to do
