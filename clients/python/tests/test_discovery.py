"""Finding the server and token as the CLI does: arguments, SPILLWAY_* variables,
spillway.toml, and the files `spillway up` writes in its data directory."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import spillway
from spillway import discover

from .conftest import START_DEADLINE, Server, clean_env, free_port, stop


def up_files(folder: Path, url: str, token: str) -> Path:
    """A data directory as `spillway up` leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.url").write_text(url + "\n")
    (folder / "admin.token").write_text(token + "\n")
    return folder


def test_defaults_follow_xdg_then_home(tmp_path: Path) -> None:
    s = discover(env={"HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert s.data_dir == tmp_path / "home" / ".local" / "share" / "spillway"
    assert (s.url, s.url_source) == ("http://127.0.0.1:7070", "the default")
    assert s.token is None and s.tenant is None
    s = discover(env={"HOME": "/nowhere", "XDG_DATA_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    assert s.data_dir == tmp_path / "xdg" / "spillway"


def test_the_files_spillway_up_writes_are_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    up_files(home / ".local" / "share" / "spillway", "http://127.0.0.1:9999", "sw_admin")
    s = discover(env={"HOME": str(home)}, cwd=tmp_path)
    assert s.url == "http://127.0.0.1:9999"
    assert "server.url" in s.url_source and "spillway up" in s.url_source
    assert s.token == "sw_admin"
    s = discover(
        env={"SPILLWAY_DATA_DIR": str(home / ".local" / "share" / "spillway")}, cwd=tmp_path
    )
    assert (s.url, s.token) == ("http://127.0.0.1:9999", "sw_admin")


def test_arguments_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    data = up_files(tmp_path / "data", "http://up:1", "up-token")
    (tmp_path / "spillway.toml").write_text(
        f'data_dir = "{data}"\n[client]\nserver = "http://file:2/"\ntoken = "file-token"\n'
    )
    s = discover(env={}, cwd=tmp_path)
    assert (s.url, s.token, s.data_dir) == ("http://file:2", "file-token", data)
    assert s.url_source.startswith("[client] server in ")
    s = discover(
        env={
            "SPILLWAY_SERVER": "http://env:3",
            "SPILLWAY_TOKEN": "env-token",
            "SPILLWAY_TENANT": "t1",
        },
        cwd=tmp_path,
    )
    assert (s.url, s.token, s.tenant) == ("http://env:3", "env-token", "t1")
    s = discover(
        "http://arg:4", "arg-token", "t2", env={"SPILLWAY_SERVER": "http://env:3"}, cwd=tmp_path
    )
    assert (s.url, s.token, s.tenant) == ("http://arg:4", "arg-token", "t2")


def test_config_file_named_by_spillway_config_and_token_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file\n")
    (tmp_path / "other.toml").write_text('[client]\ntoken_file = "secret"\n')
    s = discover(env={"SPILLWAY_CONFIG": "other.toml", "HOME": str(tmp_path)}, cwd=tmp_path)
    assert s.token == "from-file"
    (tmp_path / "broken.toml").write_text("[client\n")
    with pytest.raises(spillway.ConfigError, match="invalid config file"):
        discover(env={"SPILLWAY_CONFIG": "broken.toml"}, cwd=tmp_path)
    (tmp_path / "missing.toml").write_text('[client]\ntoken_file = "nope"\n')
    with pytest.raises(spillway.ConfigError, match="cannot read token file"):
        discover(env={"SPILLWAY_CONFIG": "missing.toml"}, cwd=tmp_path)
    with pytest.raises(spillway.ConfigError, match="invalid server url"):
        discover("127.0.0.1:7070", env={}, cwd=tmp_path)


def test_client_with_no_arguments_uses_the_data_dir(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = up_files(tmp_path / "data", server.url, server.token)
    for name in ("SPILLWAY_SERVER", "SPILLWAY_TOKEN", "SPILLWAY_CONFIG", "SPILLWAY_TENANT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPILLWAY_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    with spillway.Client() as client:
        assert client.url == server.url
        assert client.queue("default").name == "default"


def test_after_spillway_up_client_just_works(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `spillway up` (no workers): Client(data_dir=…) finds its URL and admin token."""
    for name in ("SPILLWAY_SERVER", "SPILLWAY_TOKEN", "SPILLWAY_CONFIG", "SPILLWAY_TENANT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "up"
    port = free_port()
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(server.bin),
                "--config",
                "/dev/null",
                "--data-dir",
                str(data),
                "up",
                "--listen",
                f"127.0.0.1:{port}",
                "--workers",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
        )
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not ((data / "server.url").exists() and (data / "admin.token").exists()):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with spillway.Client(data_dir=data) as client:
            assert client.url == f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_DEADLINE
            while not client.ready():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            job = client.submit(["true"])
            assert client.job(job.id).state == "queued"
    finally:
        stop(proc)
