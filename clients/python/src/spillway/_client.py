"""The synchronous client: one method per thing the ``spillway`` CLI does."""

from __future__ import annotations

import json
import os
import random
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeAlias
from urllib.parse import quote

import httpx

from ._config import ADMIN_TOKEN_FILE, Settings, discover
from ._errors import (
    ApiError,
    JobTimeoutError,
    ResultMissingError,
    ServerUnreachableError,
    SpillwayError,
    TaskFailedError,
    UnauthenticatedError,
    error_for_response,
)
from ._models import Attempt, Job, JobState, Queue, ResultFile, Task, TaskDetail, TaskState
from ._progress import ProgressBar
from ._version import __version__

__all__ = ["Client", "Duration", "JobMap", "PathLike"]

#: A duration: seconds (``int`` or ``float``), a :class:`datetime.timedelta`, or a string the
#: server parses (``"90s"``, ``"10m"``, ``"1h 30m"``).
Duration: TypeAlias = float | int | timedelta | str
#: A local file or folder.
PathLike: TypeAlias = str | os.PathLike[str]

#: How long to wait for a TCP (and TLS) connection to the server.
CONNECT_TIMEOUT = 10.0
#: Longest silence while waiting for an answer (or part of one).
READ_TIMEOUT = 60.0
#: How many times a read-only request is tried when the server is unreachable or overloaded.
GET_TRIES = 4
#: How long :meth:`Client.wait` keeps going while the server cannot be reached (it may be
#: restarting) before it gives up.
WAIT_OUTAGE_LIMIT = 60.0
#: Page size of the list calls (the server's largest).
PAGE_SIZE = 1000
#: Bytes read from a file per chunk of an upload or download.
CHUNK = 1 << 20

_Scalar: TypeAlias = str | int | float | bool | None


def _duration(value: Duration, what: str) -> str:
    """A duration as the server's humantime text."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{what} is empty: give seconds, a timedelta or text such as '10m'")
        return value
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return f"{round(seconds * 1000)}ms"


def _segments(path: str) -> str:
    """A user path (``data/part-1.csv``) as URL path segments, each percent-encoded on its own
    so that none can add a ``/`` or a query."""
    return "/".join(quote(s, safe="") for s in path.split("/"))


def check_relative_path(path: str) -> None:
    """Refuse a path the server would refuse as an object path, before anything is sent."""
    reason = None
    if not path:
        reason = "it is empty"
    elif path.startswith("/"):
        reason = "it is absolute; give a path relative to the job's folder"
    elif "\\" in path:
        reason = "it contains a backslash; use '/' between folders"
    elif any(ord(c) < 32 or ord(c) == 127 for c in path):
        reason = "it contains a control character"
    elif any(s in (".", "..") for s in path.split("/")):
        reason = "it contains a '.' or '..' segment"
    elif any(not s for s in path.split("/")):
        reason = "it contains an empty segment ('//' or a trailing '/')"
    if reason is not None:
        raise ValueError(f"invalid object path {path!r}: {reason}")


def input_files(inputs: Iterable[PathLike]) -> list[tuple[Path, str]]:
    """Every file to upload for ``inputs``, as (local path, object path), the way
    ``spillway submit --input`` lists them: a file keeps its name, a folder keeps its name and
    its files below it (in name order; symbolic links inside folders are skipped)."""

    def walk(folder: Path, rel: str, out: list[tuple[Path, str]]) -> None:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        for entry in entries:
            child = f"{rel}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), child, out)
            elif entry.is_file(follow_symlinks=False):
                out.append((Path(entry.path), child))

    files: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        name = path.resolve().name
        if not name:
            raise ValueError(f"input {path} has no name")
        if path.is_dir():
            walk(path, name, files)
        else:
            files.append((path, name))
    for _, rel in files:
        check_relative_path(rel)
    return files


def _payload(item: Any, index: int) -> Any:
    """One task's payload: bytes are UTF-8 text; anything else must be JSON-serialisable."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        try:
            return bytes(item).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"payload {index} is bytes that are not UTF-8 text: payloads are JSON, so "
                "base64-encode binary data or stage it with inputs= instead"
            ) from e
    try:
        json.dumps(item, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"payload {index} is not JSON-serialisable: {e}") from e
    return item


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class Client:
    """A connection to one Spillway server.

    Every argument is optional: what is not given is found the way the ``spillway`` CLI finds
    it, so after ``spillway up`` on this machine ``Client()`` just works.

    - ``url``: else ``SPILLWAY_SERVER``, else ``[client] server`` in ``spillway.toml`` (the
      file named by ``SPILLWAY_CONFIG``, else ``./spillway.toml``), else the URL ``spillway up``
      recorded in ``<data_dir>/server.url``, else ``http://127.0.0.1:7070``.
    - ``token``: else ``SPILLWAY_TOKEN``, else ``[client] token`` or ``token_file``, else the
      admin token ``spillway up`` wrote to ``<data_dir>/admin.token``.
    - ``tenant``: else ``SPILLWAY_TENANT``, else the token's own tenant.
    - ``data_dir``: else ``SPILLWAY_DATA_DIR``, else ``data_dir`` in ``spillway.toml``, else
      ``$XDG_DATA_HOME/spillway`` or ``~/.local/share/spillway``.

    ``timeout`` is the longest silence (seconds) allowed while waiting for an answer;
    ``transport`` replaces httpx's (for tests). Use it as a context manager, or call
    :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        tenant: str | None = None,
        data_dir: PathLike | None = None,
        *,
        timeout: float = READ_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings: Settings = discover(url, token, tenant, data_dir)
        headers = {"User-Agent": f"spillway-client-python/{__version__}"}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        self._http = httpx.Client(
            base_url=self.settings.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            transport=transport,
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.settings.url

    @property
    def tenant(self) -> str | None:
        """The tenant every request acts in, if one was named."""
        return self.settings.tenant

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, tenant={self.tenant!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------
    # Transport

    def _params(self, params: Sequence[tuple[str, str]] = ()) -> list[tuple[str, _Scalar]]:
        pairs: list[tuple[str, _Scalar]] = list(params)
        if self.settings.tenant is not None:
            pairs.append(("tenant", self.settings.tenant))
        return pairs

    def _unreachable(
        self, method: str, url: str, e: httpx.TransportError
    ) -> ServerUnreachableError:
        what = "timed out" if isinstance(e, httpx.TimeoutException) else "could not connect"
        if not isinstance(e, (httpx.TimeoutException, httpx.ConnectError)):
            what = f"failed ({type(e).__name__}: {e})"
        return ServerUnreachableError(
            f"{method} {url} {what}: is the Spillway server running at {self.url}? "
            f"(this url came from {self.settings.url_source}). Start one on this machine with "
            "`spillway up`, or point the client at yours with Client(url=...), the "
            "SPILLWAY_SERVER variable or [client] server in spillway.toml",
            url=url,
            server=self.url,
        )

    def _error(self, response: httpx.Response) -> ApiError:
        request = response.request
        err = error_for_response(
            status=response.status_code,
            body=response.read(),
            method=request.method,
            url=str(request.url),
            retry_after=response.headers.get("retry-after"),
        )
        if isinstance(err, UnauthenticatedError) and not self.settings.token:
            hint = (
                "no API token was found: pass Client(token=...), set SPILLWAY_TOKEN, or start "
                f"`spillway up` on this machine (it writes "
                f"{self.settings.data_dir / ADMIN_TOKEN_FILE})"
            )
            err.args = (f"{err.detail}; {hint}",)
        return err

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        json_body: Any = None,
        content: Iterable[bytes] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        idempotent: bool = False,
    ) -> httpx.Response:
        """Send one request; a transport failure or an error answer becomes an exception.

        Read-only requests, and others marked ``idempotent`` (a submit with an idempotency
        key), are tried again (up to ``GET_TRIES`` times, with backoff and the server's
        ``Retry-After``) when the server is unreachable or overloaded.
        """
        tries = GET_TRIES if method == "GET" or idempotent else 1
        for attempt in range(1, tries + 1):
            request = self._http.build_request(
                method,
                path,
                params=self._params(params),
                json=json_body,
                content=content,
                headers=headers,
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                error: SpillwayError = self._unreachable(method, str(request.url), e)
                error.__cause__ = e
                delay = None
            else:
                if response.is_success:
                    return response
                try:
                    api_error = self._error(response)
                finally:
                    response.close()
                error, delay = api_error, api_error.retry_after
            if not error.retryable or attempt == tries:
                raise error
            backoff = min(2.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())
            time.sleep(max(backoff, delay or 0.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as e:
            raise SpillwayError(
                f"could not decode the server's answer from {response.request.url}: is the "
                "server the same version as this client?"
            ) from e

    # ---------------------------------------------------------------------------------------
    # Server

    def ready(self) -> bool:
        """True when the server answers ``/readyz`` (it can reach its store); never raises for
        a server that is down."""
        try:
            return self._http.get("/readyz").is_success
        except httpx.TransportError:
            return False

    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI document."""
        doc: dict[str, Any] = self._json("GET", "/v1/openapi.json")
        return doc

    # ---------------------------------------------------------------------------------------
    # Queues

    def queues(self) -> list[Queue]:
        """Every queue of the tenant, with its settings and numbers (``spillway queues``)."""
        return [Queue.from_json(doc) for doc in self._json("GET", "/v1/queues")]

    def queue(self, name: str) -> Queue:
        """One queue with its settings and numbers."""
        return Queue.from_json(self._json("GET", f"/v1/queues/{quote(name, safe='')}"))

    def create_queue(
        self,
        name: str,
        *,
        max_attempts: int | None = None,
        lease_duration: Duration | None = None,
        backoff_base: Duration | None = None,
        backoff_max: Duration | None = None,
        retention: Duration | None = None,
        paused: bool | None = None,
    ) -> Queue:
        """Create a queue (admins only); settings left out take the server's defaults
        (``max_attempts`` 5, ``lease_duration`` 30s, ``backoff_base`` 1s, ``backoff_max``
        10m, ``retention`` 7 days, not paused)."""
        settings: dict[str, Any] = {}
        if max_attempts is not None:
            settings["max_attempts"] = int(max_attempts)
        for key, value in (
            ("lease_duration", lease_duration),
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
            ("retention", retention),
        ):
            if value is not None:
                settings[key] = _duration(value, key)
        if paused is not None:
            settings["paused"] = bool(paused)
        body: dict[str, Any] = {"name": name, "settings": settings}
        if self.settings.tenant is not None:
            body["tenant"] = self.settings.tenant
        return Queue.from_json(self._json("POST", "/v1/queues", json_body=body))

    # ---------------------------------------------------------------------------------------
    # Submitting

    def upload(self, inputs: Iterable[PathLike] | PathLike) -> str:
        """Upload files and folders as a job's inputs (as ``spillway submit --input`` does)
        and return the upload id to pass to :meth:`submit` as ``upload_id``. Tasks see them
        under ``$SPILLWAY_INPUT_DIR``: ``inputs=["data/"]`` appears as
        ``$SPILLWAY_INPUT_DIR/data/…``. :meth:`submit` calls this itself for ``inputs=``."""
        items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        files = input_files(items)
        created = self._json("POST", "/v1/uploads")
        upload_id = str(created["upload_id"])
        for local, rel in files:
            size = local.stat().st_size
            self._send(
                "PUT",
                f"/v1/uploads/{quote(upload_id, safe='')}/files/{_segments(rel)}",
                content=_file_chunks(local),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            ).close()
        return upload_id

    def submit(
        self,
        command: str | Sequence[str],
        *,
        count: int | None = None,
        payloads: Iterable[Any] | None = None,
        inputs: Iterable[PathLike] | PathLike | None = None,
        upload_id: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        priority: int = 0,
        labels: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        shell: bool | None = None,
        timeout: Duration | None = None,
        delay: Duration | None = None,
        image: str | None = None,
        cpu: float = 1.0,
        memory_mb: int = 512,
        gpu: int = 0,
        burstable: bool = False,
        idempotency_key: str | None = None,
        delete_inputs: bool = False,
    ) -> Job:
        """Submit a job and return it (it runs on the server; call :meth:`Job.wait`).

        The options are those of ``spillway submit``:

        - ``command``: an argv (``["python3", "task.py", "--shard", "{index}"]``; ``{index}``
          becomes each task's index), or a string, run through ``sh -c`` (with
          ``shell=False`` a string is split into an argv with :func:`shlex.split` instead).
        - ``count``: that many tasks (default 1), or ``payloads``: one task per payload. A
          payload is any JSON value (a ``str`` is a JSON string); ``bytes`` must be UTF-8 and
          are sent as a string. Tasks read it from the file ``$SPILLWAY_PAYLOAD`` (or stdin).
        - ``inputs``: files and folders uploaded first (see :meth:`upload`), or ``upload_id``
          of an earlier :meth:`upload`.
        - ``queue`` (default ``SPILLWAY_QUEUE`` or ``"default"``), ``name``, ``priority``
          (-1000 to 1000, higher first), ``labels`` (to filter jobs by), ``env`` (variables
          for the command), ``timeout`` (kill a task running longer), ``delay`` (start no
          earlier), ``image`` (for Kubernetes job-per-task workers), ``cpu``, ``memory_mb``
          and ``gpu`` (what one task needs), ``burstable`` (may run on burst capacity),
          ``idempotency_key`` (a second submit with the same key returns the first job, with
          :attr:`Job.created` ``False``) and ``delete_inputs`` (delete the inputs once every
          task succeeded).

        Durations are seconds, a :class:`~datetime.timedelta` or text such as ``"10m"``.
        Raises :class:`InvalidArgumentError` with the server's ``detail`` when the server
        refuses the job.
        """
        if isinstance(command, str):
            if shell is False:
                argv = shlex.split(command)
            else:
                argv, shell = [command], True
        else:
            argv = [str(a) for a in command]
        if not argv or not argv[0]:
            raise ValueError("command is empty: give the program to run and its arguments")
        body: dict[str, Any] = {
            "queue": queue or os.environ.get("SPILLWAY_QUEUE") or "default",
            "command": argv,
            "shell": bool(shell),
            "env": dict(env or {}),
            "resources": {"cpu": float(cpu), "memory_mb": int(memory_mb), "gpu": int(gpu)},
            "priority": int(priority),
            "burstable": bool(burstable),
            "labels": dict(labels or {}),
            "delete_inputs_on_success": bool(delete_inputs),
        }
        if self.settings.tenant is not None:
            body["tenant"] = self.settings.tenant
        if name is not None:
            body["name"] = name
        if timeout is not None:
            body["timeout"] = _duration(timeout, "timeout")
        if delay is not None:
            body["delay"] = _duration(delay, "delay")
        if image is not None:
            body["image"] = image
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if payloads is not None:
            if count is not None:
                raise ValueError("give either count or payloads, not both: payloads set the count")
            tasks = [{"payload": _payload(p, i)} for i, p in enumerate(payloads)]
            if not tasks:
                raise ValueError("payloads is empty: give at least one, or use count")
            body["tasks"] = tasks
        elif count is not None:
            body["count"] = int(count)
        if inputs is not None:
            if upload_id is not None:
                raise ValueError("give either inputs or upload_id, not both")
            upload_id = self.upload(inputs)
        if upload_id is not None:
            body["upload_id"] = upload_id
        # With an idempotency key a submit may be sent again safely: a second one returns the
        # first job.
        doc = self._json("POST", "/v1/jobs", json_body=body, idempotent=idempotency_key is not None)
        return Job.from_json(doc["job"], self, created=bool(doc.get("created", True)))

    # ---------------------------------------------------------------------------------------
    # Jobs and tasks

    def job(self, job_id: str) -> Job:
        """One job with its counts."""
        return Job.from_json(self._json("GET", f"/v1/jobs/{quote(job_id, safe='')}"), self)

    def jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """Jobs, newest first, following every page: only those of ``queue``, in ``state``
        and carrying every one of ``labels``; at most ``limit`` of them."""
        params: list[tuple[str, str]] = []
        if queue is not None:
            params.append(("queue", queue))
        if state is not None:
            params.append(("state", state))
        for key, value in (labels or {}).items():
            params.append(("label", f"{key}={value}"))
        for doc in self._pages("/v1/jobs", params, limit):
            yield Job.from_json(doc, self)

    def _pages(
        self, path: str, params: list[tuple[str, str]], limit: int | None = None
    ) -> Iterator[Any]:
        """Every item of a paged list, following ``next_cursor``."""
        cursor: str | None = None
        left = limit
        while left is None or left > 0:
            size = PAGE_SIZE if left is None else min(PAGE_SIZE, left)
            page_params = [*params, ("limit", str(size))]
            if cursor is not None:
                page_params.append(("cursor", cursor))
            page = self._json("GET", path, params=page_params)
            items = page.get("items", [])
            yield from items
            if left is not None:
                left -= len(items)
            cursor = page.get("next_cursor")
            if not cursor or not items:
                return

    def tasks(self, job_id: str, *, state: TaskState | None = None) -> Iterator[Task]:
        """A job's tasks in index order, following every page; only those in ``state``."""
        params: list[tuple[str, str]] = [] if state is None else [("state", str(state))]
        for doc in self._pages(f"/v1/jobs/{quote(job_id, safe='')}/tasks", params):
            yield Task.from_json(doc, self)

    def task_at(self, job_id: str, index: int) -> Task:
        """The task of ``job_id`` with ``index``."""
        for task in self.tasks(job_id):
            if task.index == index:
                return task
            if task.index > index:
                break
        raise LookupError(f"job {job_id} has no task {index}")

    def task(self, task_id: int) -> TaskDetail:
        """One task with its attempts, oldest first."""
        doc = self._json("GET", f"/v1/tasks/{int(task_id)}")
        return TaskDetail(
            task=Task.from_json(doc["task"], self),
            attempts=[Attempt.from_json(a) for a in doc.get("attempts", [])],
        )

    def logs(self, task_id: int, attempt: int | None = None) -> str:
        """The whole log (stdout and stderr) of a task's attempt, the latest when ``attempt``
        is ``None``; what ``spillway logs TASK`` prints. A running attempt's log is what it
        has printed so far; attempts from before live logs give their last 64 KiB."""
        params = [] if attempt is None else [("attempt", str(int(attempt)))]
        return self._send("GET", f"/v1/tasks/{int(task_id)}/logs/full", params=params).text

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: waiting tasks are cancelled, running ones stop at their next
        heartbeat. Returns the job as the cancel left it."""
        return Job.from_json(self._json("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel"), self)

    def retry(self, job_id: str) -> int:
        """Run a job's dead and cancelled tasks again; returns how many were requeued."""
        doc = self._json("POST", f"/v1/jobs/{quote(job_id, safe='')}/retry")
        return int(doc.get("changed", 0))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        progress: bool | Callable[[Job], None] | None = None,
        poll_interval: float = 0.5,
    ) -> Job:
        """Poll a job until every task is finished and return it (see :meth:`Job.wait`).

        While the server cannot be reached (it may be restarting) it keeps trying for up to a
        minute. Raises :class:`JobTimeoutError` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = ProgressBar() if progress is True else None
        report: Callable[[Job], None] | None = (
            bar if bar is not None else (progress if callable(progress) else None)
        )
        outage_since: float | None = None
        latest: Job | None = None
        try:
            while True:
                try:
                    latest = self.job(job_id)
                    outage_since = None
                except SpillwayError as e:
                    if not e.retryable:
                        raise
                    now = time.monotonic()
                    outage_since = outage_since or now
                    if now - outage_since > WAIT_OUTAGE_LIMIT:
                        raise
                else:
                    if report is not None:
                        report(latest)
                    if latest.done:
                        return latest
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobTimeoutError(
                        f"job {job_id} did not finish within {timeout}s; it keeps running "
                        f"(counts: {latest.counts if latest else 'unknown'})",
                        job=latest,
                    )
                pause = poll_interval
                if deadline is not None:
                    pause = max(0.0, min(pause, deadline - time.monotonic()))
                time.sleep(pause)
        finally:
            if bar is not None:
                bar.close()

    # ---------------------------------------------------------------------------------------
    # Results

    def results(self, job_id: str) -> list[ResultFile]:
        """Every result file of a job, by task index then path (``spillway results JOB``)."""
        docs = self._json("GET", f"/v1/jobs/{quote(job_id, safe='')}/results")
        files = []
        for doc in docs:
            index, _, path = str(doc["path"]).partition("/")
            files.append(
                ResultFile(
                    job_id=job_id, index=int(index), path=path, size=int(doc["size"]), client=self
                )
            )
        files.sort(key=lambda f: (f.index, f.path))
        return files

    def _result_url(self, job_id: str, index: int, path: str) -> str:
        check_relative_path(path)
        return f"/v1/jobs/{quote(job_id, safe='')}/results/{int(index)}/{_segments(path)}"

    def read_result(self, job_id: str, index: int, path: str) -> bytes:
        """The bytes of result file ``path`` of task ``index`` of a job."""
        return self._send("GET", self._result_url(job_id, index, path)).content

    def download_result(self, job_id: str, index: int, path: str, dest: PathLike) -> Path:
        """Stream result file ``path`` of task ``index`` to the file ``dest`` (its folders are
        made; it appears whole or not at all) and return ``dest``."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        response = self._send("GET", self._result_url(job_id, index, path), stream=True)
        try:
            with open(partial, "wb") as f:
                _copy(response.iter_bytes(CHUNK), f)
            os.replace(partial, target)
        except httpx.TransportError as e:
            partial.unlink(missing_ok=True)
            raise ServerUnreachableError(
                f"reading {response.request.url} broke off ({type(e).__name__}: {e}); try again",
                url=str(response.request.url),
                server=self.url,
            ) from e
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        return target

    def download_results(
        self, job_id: str, dest: PathLike, *, index: int | None = None
    ) -> list[Path]:
        """Download every result file of a job (only task ``index``'s when given) to
        ``dest/<index>/<path>``, as ``spillway results JOB --download DEST`` does, and return
        the files written."""
        root = Path(dest)
        written = []
        for f in self.results(job_id):
            if index is not None and f.index != index:
                continue
            check_relative_path(f.path)
            written.append(
                self.download_result(job_id, f.index, f.path, root / str(f.index) / f.path)
            )
        return written

    # ---------------------------------------------------------------------------------------
    # Map

    def map(
        self,
        command: str | Sequence[str],
        items: Iterable[Any],
        *,
        result: str | None = "result.json",
        wait_timeout: float | None = None,
        poll_interval: float = 0.5,
        **submit_options: Any,
    ) -> JobMap:
        """Run ``command`` once per item, the item as the task's payload, and iterate over the
        results in the order of ``items`` as the tasks finish.

        The job is submitted at once (one task per item, with ``submit_options`` as in
        :meth:`submit`); the returned :class:`JobMap` iterates and holds the ``job``.

        A task's *result* is the file named ``result`` that it wrote to
        ``$SPILLWAY_OUTPUT_DIR`` (default ``result.json``): decoded from JSON when the name
        ends in ``.json``, else its bytes. With ``result=None`` it is the task's whole log
        instead (stdout and stderr, as text).

        A task that ends dead or cancelled raises :class:`TaskFailedError` at its place (with
        its error and output); a task that succeeded without writing ``result`` raises
        :class:`ResultMissingError`. Iteration may continue past either to the next item.
        ``wait_timeout`` (seconds, for the whole job) raises :class:`JobTimeoutError`.
        """
        for forbidden in ("payloads", "count"):
            if forbidden in submit_options:
                raise TypeError(f"map() sets {forbidden} itself from items")
        values = list(items)
        job = self.submit(command, payloads=values, **submit_options) if values else None
        return JobMap(
            self,
            job,
            values,
            result=result,
            wait_timeout=wait_timeout,
            poll_interval=poll_interval,
        )


def _copy(chunks: Iterator[bytes], out: IO[bytes]) -> None:
    for chunk in chunks:
        out.write(chunk)


class JobMap(Iterator[Any]):
    """The iterator :meth:`Client.map` returns: the results of a job's tasks in item order.

    ``job`` is the submitted job (``None`` for no items); :meth:`cancel` cancels it, e.g. when
    you stop iterating early (the job otherwise keeps running).
    """

    def __init__(
        self,
        client: Client,
        job: Job | None,
        items: list[Any],
        *,
        result: str | None,
        wait_timeout: float | None,
        poll_interval: float,
    ) -> None:
        self.client = client
        self.job = job
        self.items = items
        self.result = result
        self.poll_interval = poll_interval
        self.deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
        self.wait_timeout = wait_timeout
        self._next = 0
        self._ids: dict[int, int] | None = None

    def __iter__(self) -> JobMap:
        return self

    def __len__(self) -> int:
        return len(self.items)

    def cancel(self) -> Job | None:
        """Cancel the job (nothing for no items); returns it as the cancel left it."""
        if self.job is None:
            return None
        self.job = self.client.cancel(self.job.id)
        return self.job

    def _task_id(self, index: int) -> int:
        if self._ids is None:
            assert self.job is not None
            self._ids = {t.index: t.id for t in self.client.tasks(self.job.id)}
        return self._ids[index]

    def _finished(self, index: int) -> Task:
        task_id = self._task_id(index)
        while True:
            task = self.client.task(task_id).task
            if task.done:
                return task
            if self.deadline is not None and time.monotonic() >= self.deadline:
                assert self.job is not None
                raise JobTimeoutError(
                    f"job {self.job.id} did not finish within {self.wait_timeout}s "
                    f"(task {index} is {task.state}); it keeps running",
                    job=self.client.job(self.job.id),
                )
            time.sleep(self.poll_interval)

    def __next__(self) -> Any:
        if self._next >= len(self.items):
            raise StopIteration
        index = self._next
        self._next += 1
        task = self._finished(index)
        item = self.items[index]
        if task.state != "succeeded":
            logs = self.client.logs(task.id) if task.attempt > 0 else ""
            why = task.last_error or ("cancelled" if task.state == "cancelled" else "failed")
            raise TaskFailedError(
                f"task {index} (id {task.id}) of job {task.job_id} ended {task.state}: {why}",
                task=task,
                item=item,
                logs=logs,
            )
        if self.result is None:
            return self.client.logs(task.id)
        if self.result not in task.result_paths:
            wrote = ", ".join(task.result_paths) or "nothing"
            raise ResultMissingError(
                f"task {index} (id {task.id}) of job {task.job_id} succeeded but wrote no "
                f"{self.result} (it wrote {wrote}): write it to $SPILLWAY_OUTPUT_DIR, or pass "
                "map(..., result=NAME) or result=None for the whole log"
            )
        data = self.client.read_result(task.job_id, index, self.result)
        if self.result.endswith(".json"):
            return json.loads(data)
        return data
