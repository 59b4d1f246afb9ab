"""Finding the server URL, token, tenant and data directory the way the ``spillway`` CLI does.

Each setting comes from, in order: the argument given to :class:`~spillway.Client`, the
``SPILLWAY_*`` environment variable, ``spillway.toml`` (the file named by ``SPILLWAY_CONFIG``,
else ``./spillway.toml`` when it exists), then what ``spillway up`` wrote in the data directory
(``server.url`` and ``admin.token``), then the default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigError

__all__ = [
    "ADMIN_TOKEN_FILE",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_SERVER_URL",
    "SERVER_URL_FILE",
    "Settings",
    "discover",
]

#: The config file looked up in the current directory when ``SPILLWAY_CONFIG`` is not set.
DEFAULT_CONFIG_FILE = "spillway.toml"
#: The server URL used when nothing else names one.
DEFAULT_SERVER_URL = "http://127.0.0.1:7070"
#: The file in the data directory holding the admin token ``spillway up`` wrote.
ADMIN_TOKEN_FILE = "admin.token"
#: The file in the data directory holding the URL of the server ``spillway up`` started.
SERVER_URL_FILE = "server.url"


@dataclass(frozen=True)
class Settings:
    """Where the client connects, as discovered, and where each value came from."""

    #: The server's base URL, without a trailing ``/``.
    url: str
    #: Where ``url`` came from, for messages (e.g. ``"SPILLWAY_SERVER"``).
    url_source: str
    #: The bearer token, if one was found.
    token: str | None
    #: Where ``token`` came from, or ``None``.
    token_source: str | None
    #: The tenant to act in (admins of every tenant only), if one was named.
    tenant: str | None
    #: The data directory (where ``spillway up`` writes ``server.url`` and ``admin.token``).
    data_dir: Path


def _nonempty(value: str | None) -> str | None:
    return value if value else None


def _load_file(env: Mapping[str, str], cwd: Path) -> tuple[dict[str, Any], Path | None]:
    """The parsed ``spillway.toml`` and its path, or an empty table when there is none."""
    named = _nonempty(env.get("SPILLWAY_CONFIG"))
    if named is not None:
        path = Path(named)
        if not path.is_absolute():
            path = cwd / path
    else:
        path = cwd / DEFAULT_CONFIG_FILE
        if not path.exists():
            return {}, None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f), path
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid config file {path}: {e}") from e


def _table(doc: Mapping[str, Any], key: str, path: Path | None) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"invalid config file {path}: [{key}] must be a table")
    return value


def _string(table: Mapping[str, Any], key: str, where: str, path: Path | None) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"invalid config file {path}: {where}{key} must be a string")
    return value


def _default_data_dir(env: Mapping[str, str]) -> Path:
    xdg = _nonempty(env.get("XDG_DATA_HOME"))
    if xdg is not None:
        return Path(xdg) / "spillway"
    home = _nonempty(env.get("HOME"))
    if home is not None:
        return Path(home) / ".local" / "share" / "spillway"
    return Path(".spillway")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def discover(
    url: str | None = None,
    token: str | None = None,
    tenant: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """Merge the arguments, the environment, ``spillway.toml`` and the files ``spillway up``
    wrote, exactly as the CLI does.

    ``env`` and ``cwd`` default to the process's; tests pass their own.
    """
    env = os.environ if env is None else env
    here = Path.cwd() if cwd is None else Path(cwd)
    doc, file_path = _load_file(env, here)
    client = _table(doc, "client", file_path)
    file_name = str(file_path) if file_path is not None else DEFAULT_CONFIG_FILE

    # The data directory: argument, SPILLWAY_DATA_DIR, the file's data_dir, then the default.
    if data_dir is not None:
        dir_path = Path(data_dir)
    elif _nonempty(env.get("SPILLWAY_DATA_DIR")) is not None:
        dir_path = Path(env["SPILLWAY_DATA_DIR"])
    elif (file_dir := _string(doc, "data_dir", "", file_path)) is not None:
        dir_path = Path(file_dir)
    else:
        dir_path = _default_data_dir(env)
    if not dir_path.is_absolute():
        dir_path = here / dir_path

    # The server URL: argument, SPILLWAY_SERVER, [client] server, server.url, the default.
    url_file = dir_path / SERVER_URL_FILE
    found_url: str | None
    if url is not None:
        found_url, url_source = url, "the url argument"
    elif (env_url := _nonempty(env.get("SPILLWAY_SERVER"))) is not None:
        found_url, url_source = env_url, "SPILLWAY_SERVER"
    elif (file_url := _string(client, "server", "[client] ", file_path)) is not None:
        found_url, url_source = file_url, f"[client] server in {file_name}"
    elif recorded := _read_text(url_file):
        found_url, url_source = recorded, f"{url_file} (written by `spillway up`)"
    else:
        found_url, url_source = DEFAULT_SERVER_URL, "the default"
    found_url = found_url.strip().rstrip("/")
    if not (found_url.startswith("http://") or found_url.startswith("https://")):
        raise ConfigError(
            f"invalid server url {found_url!r} (from {url_source}): give an absolute http(s) url "
            "such as http://127.0.0.1:7070"
        )

    # The token: argument, SPILLWAY_TOKEN, [client] token or token_file, then admin.token.
    found_token: str | None = None
    token_source: str | None = None
    token_file = dir_path / ADMIN_TOKEN_FILE
    if token is not None:
        found_token, token_source = token, "the token argument"
    elif (env_token := _nonempty(env.get("SPILLWAY_TOKEN"))) is not None:
        found_token, token_source = env_token, "SPILLWAY_TOKEN"
    elif (file_token := _string(client, "token", "[client] ", file_path)) is not None:
        found_token, token_source = file_token, f"[client] token in {file_name}"
    elif (named := _string(client, "token_file", "[client] ", file_path)) is not None:
        path = Path(named)
        if not path.is_absolute():
            path = here / path
        try:
            found_token = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(
                f"cannot read token file {path} (named by [client] token_file in {file_name}): {e}"
            ) from e
        token_source = f"{path} ([client] token_file in {file_name})"
    elif (admin := _read_text(token_file)) is not None:
        found_token, token_source = admin, f"{token_file} (written by `spillway up`)"
    if found_token is not None:
        found_token = found_token.strip()

    found_tenant = tenant if tenant is not None else _nonempty(env.get("SPILLWAY_TENANT"))
    return Settings(
        url=found_url,
        url_source=url_source,
        token=found_token,
        token_source=token_source,
        tenant=found_tenant,
        data_dir=dir_path,
    )
