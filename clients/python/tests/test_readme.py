"""The Python examples of clients/python/README.md run as written against a live server.

Two changes keep them cheap and tidy: the worked example runs 2 of its 20 primes tasks and
downloads into a temporary folder instead of ./results/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import REPO, Server

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def run_block(code: str, namespace: dict[str, object]) -> None:
    exec(compile(code, str(README), "exec"), namespace)


def test_the_readme_examples_run(
    server: Server,
    worker: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    worked, mapped, errors = python_blocks()
    monkeypatch.setenv("SPILLWAY_SERVER", server.url)
    monkeypatch.setenv("SPILLWAY_TOKEN", server.token)
    monkeypatch.delenv("SPILLWAY_CONFIG", raising=False)
    monkeypatch.delenv("SPILLWAY_TENANT", raising=False)
    monkeypatch.chdir(REPO)

    assert "range(20)" in worked and '"results/"' in worked
    worked = worked.replace("range(20)", "range(2)")
    worked = worked.replace('"results/"', repr(str(tmp_path / "results")))
    namespace: dict[str, object] = {}
    run_block(worked, namespace)
    out = capsys.readouterr().out
    assert out.startswith("succeeded Counts(")
    assert "0 result.json b'{" in out and "1 result.json b'{" in out
    assert "task-1: " in out and " primes below " in out
    assert (tmp_path / "results" / "1" / "result.json").exists()

    client = namespace["client"]
    run_block(mapped, {"client": client})
    out = capsys.readouterr().out
    assert out == '[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\nhello "a"\n\nhello "b"\n\n'

    run_block(errors, {"client": client, "spillway": namespace["spillway"]})
    out = capsys.readouterr().out
    assert out.startswith("400 invalid request priority 5000 is out of range")
