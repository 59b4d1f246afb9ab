"""Fixtures: a real `spillway server` and a real `spillway worker` on 127.0.0.1.

The binary is $SPILLWAY_BIN, else ${CARGO_TARGET_DIR:-target}/debug/spillway of the
repository (scripts/python-client builds it). It is copied into the session's folder first, as
scripts/schemathesis does, because the target folder may be shared with builds that replace it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import spillway

REPO = Path(__file__).resolve().parents[3]
#: How long a server or worker may take to be ready.
START_DEADLINE = 60.0
#: How long a stopped process may take to exit before it is killed.
STOP_DEADLINE = 20.0


def spillway_bin() -> Path:
    """The binary under test."""
    named = os.environ.get("SPILLWAY_BIN")
    if named:
        return Path(named)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "spillway"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without SPILLWAY_* variables, so the developer's own settings cannot
    change a run."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SPILLWAY_")}


def wait_until(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll `ready` until it is true, failing with the process's log when the process exits or
    the deadline passes."""
    deadline = time.monotonic() + START_DEADLINE
    while not ready():
        if proc.poll() is not None:
            pytest.fail(
                f"{what} exited with {proc.returncode} during start; its log:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what} was not ready within {START_DEADLINE}s; its log:\n{log.read_text()}"
            )
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_DEADLINE."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Server:
    """A running `spillway server`."""

    url: str
    token: str
    data_dir: Path
    bin: Path
    log: Path

    def client(self, **kwargs: object) -> spillway.Client:
        """A client of this server as its admin."""
        return spillway.Client(url=self.url, token=self.token, **kwargs)  # type: ignore[arg-type]


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).is_success
    except httpx.TransportError:
        return False


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spillway")


@pytest.fixture(scope="session")
def binary(session_dir: Path) -> Path:
    source = spillway_bin()
    if not source.exists():
        pytest.fail(
            f"{source} does not exist: build it with `cargo build -p spillway`, or name another "
            "binary with SPILLWAY_BIN"
        )
    copy = session_dir / "spillway"
    shutil.copy2(source, copy)
    return copy


@pytest.fixture(scope="session")
def server(session_dir: Path, binary: Path) -> Iterator[Server]:
    data = session_dir / "data"
    data.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = session_dir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "--config",
                "/dev/null",
                "--data-dir",
                str(data),
                "server",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
        )
    try:
        token_file = data / "admin.token"
        wait_until(
            "spillway server",
            lambda: (
                http_ok(f"{url}/healthz")
                and token_file.exists()
                and bool(token_file.read_text().strip())
            ),
            proc,
            log,
        )
        yield Server(
            url=url, token=token_file.read_text().strip(), data_dir=data, bin=binary, log=log
        )
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def worker(server: Server, session_dir: Path) -> Iterator[None]:
    """A worker serving the queues `default` and `once` (one attempt per task), with a worker
    token of its own, as `spillway up` gives its workers."""
    with server.client() as admin:
        admin.create_queue("once", max_attempts=1)
    created = httpx.post(
        f"{server.url}/v1/tokens",
        json={"name": "python-client-tests-worker", "role": "worker", "tenant": "default"},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    created.raise_for_status()
    scratch = session_dir / "scratch"
    scratch.mkdir()
    log = session_dir / "worker.log"
    env = clean_env() | {"SPILLWAY_TOKEN": created.json()["token"]}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(server.bin),
                "--config",
                "/dev/null",
                "--server",
                server.url,
                "worker",
                "--queue",
                "default,once",
                "--concurrency",
                "2",
                "--scratch-dir",
                str(scratch),
                "--grace",
                "1s",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    def registered() -> bool:
        answer = httpx.get(
            f"{server.url}/v1/workers", headers={"Authorization": f"Bearer {server.token}"}
        )
        return answer.is_success and any(
            w.get("state") == "active" for w in answer.json().get("workers", [])
        )

    try:
        wait_until("spillway worker", registered, proc, log)
        yield None
    finally:
        stop(proc)


@pytest.fixture
def client(server: Server, worker: None) -> Iterator[spillway.Client]:
    """An admin client of the running server, with a worker serving it."""
    with server.client() as c:
        yield c
