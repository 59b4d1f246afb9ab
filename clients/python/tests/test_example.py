"""examples/primes/submit.py, the quickstart in Python, with 3 of its 500 tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO, Server, clean_env


def test_the_primes_example_runs(server: Server, worker: None, tmp_path: Path) -> None:
    env = clean_env() | {"SPILLWAY_SERVER": server.url, "SPILLWAY_TOKEN": server.token}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "primes" / "submit.py"),
            "--count",
            "3",
            "--timeout",
            "300",
            "--download",
            str(tmp_path / "results"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted job" in done.stderr
    assert ": 3 succeeded, 0 dead, 0 cancelled" in done.stdout, done.stdout
    assert "3 result.json files" in done.stdout
    result = json.loads((tmp_path / "results" / "2" / "result.json").read_text())
    assert result["task_id"] == "task-2" and result["primes"] > 0
