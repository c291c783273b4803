"""End to end: `fph-run` (what `make run` starts) and the README's example against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.nats_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_runner_starts_everything_and_the_readme_example_works(tmp_path: Path) -> None:
    nats_port, intake_port = free_port(), free_port()
    env = {
        **os.environ,
        "FPH_RUN_NATS_PORT": str(nats_port),
        "FPH_INTAKE_PORT": str(intake_port),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared.runner",
                "--data-dir",
                str(tmp_path / "var"),
                "--nats-http-port",
                str(free_port()),
            ],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b"FPH platform running" not in log.read_bytes():
            assert runner.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert f"http://127.0.0.1:{intake_port}/docs" in text
        assert httpx.get(f"http://127.0.0.1:{intake_port}/health").status_code == 200

        example = subprocess.run(
            [sys.executable, "examples/submit_envie.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "FPH_NATS_URL": f"nats://127.0.0.1:{nats_port}", "PYTHONPATH": str(ROOT)},
        )
        assert example.returncode == 0, example.stderr
        good, bad = example.stdout.splitlines()
        assert "'status': 'accepted'" in good and "'seq': 1" in good
        assert "'status': 'rejected'" in bad
        assert "'field': 'quartier'" in bad and "'field': 'data.theme'" in bad
    finally:
        runner.send_signal(signal.SIGINT)
        code = runner.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "stopped." in log.read_text()
