"""The nouns of the API as Python objects: jobs, tasks, attempts and result files.

Objects returned by a :class:`~spillway.Client` keep a reference to it, so a :class:`Job` can
be waited for, cancelled or asked for its results directly. Each keeps the JSON it was made
from in ``raw``, so fields a newer server adds are not lost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "Counts",
    "Job",
    "JobState",
    "Queue",
    "Resources",
    "ResultFile",
    "Task",
    "TaskDetail",
    "TaskSpec",
    "TaskState",
]

#: A job's state, derived from its tasks' states.
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
#: A task's state; see docs/lifecycle.md in the Spillway repository for every transition.
TaskState = Literal[
    "scheduled", "available", "leased", "retrying", "succeeded", "dead", "cancelled"
]
#: How one attempt of a task ended.
AttemptOutcome = Literal[
    "running", "succeeded", "failed", "lease_expired", "preempted", "cancelled"
]

#: Job states after which nothing runs without an operator.
FINAL_JOB_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
#: Task states after which nothing runs without an operator.
FINAL_TASK_STATES: frozenset[str] = frozenset({"succeeded", "dead", "cancelled"})

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as the server writes it (``Z``, up to nanoseconds) as an aware
    datetime, or ``None``."""
    if not isinstance(value, str):
        return None
    text = _FRACTION.sub(r"\1", value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _time(value: Any) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError(f"expected a timestamp, got {value!r}")
    return parsed


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


@dataclass(frozen=True)
class Resources:
    """What one task needs from a worker."""

    #: CPU cores.
    cpu: float = 1.0
    #: Memory in MiB.
    memory_mb: int = 512
    #: GPUs.
    gpu: int = 0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> Resources:
        """Parse the API's ``resources`` object."""
        doc = doc or {}
        return cls(
            cpu=float(doc.get("cpu", 1.0)),
            memory_mb=int(doc.get("memory_mb", 512)),
            gpu=int(doc.get("gpu", 0)),
        )


@dataclass(frozen=True)
class TaskSpec:
    """How each task of a job runs."""

    #: The program and its arguments; ``{index}`` is replaced by each task's index.
    command: list[str]
    #: Whether the command runs through ``sh -c``.
    shell: bool = False
    #: Extra environment variables.
    env: dict[str, str] = field(default_factory=dict)
    #: The timeout as the server writes it (e.g. ``"10m"``), if any.
    timeout: str | None = None
    #: What one task needs.
    resources: Resources = field(default_factory=Resources)
    #: The container image, for workers that run tasks as Kubernetes Jobs.
    image: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TaskSpec:
        """Parse the API's task spec (also the spec fields of a job)."""
        return cls(
            command=[str(a) for a in doc.get("command", [])],
            shell=bool(doc.get("shell", False)),
            env=_str_map(doc.get("env")),
            timeout=_opt_str(doc.get("timeout")),
            resources=Resources.from_json(doc.get("resources")),
            image=_opt_str(doc.get("image")),
        )


@dataclass(frozen=True)
class Counts:
    """How many of a job's tasks are in each state."""

    scheduled: int = 0
    available: int = 0
    leased: int = 0
    retrying: int = 0
    succeeded: int = 0
    dead: int = 0
    cancelled: int = 0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> Counts:
        """Parse the API's ``counts`` object."""
        doc = doc or {}
        return cls(**{name: int(doc.get(name, 0)) for name in cls.__dataclass_fields__})

    @property
    def total(self) -> int:
        """Every task."""
        return (
            self.scheduled
            + self.available
            + self.leased
            + self.retrying
            + self.succeeded
            + self.dead
            + self.cancelled
        )

    @property
    def finished(self) -> int:
        """Tasks that succeeded, are dead or were cancelled."""
        return self.succeeded + self.dead + self.cancelled

    @property
    def waiting(self) -> int:
        """Tasks waiting to run (scheduled, available or retrying)."""
        return self.scheduled + self.available + self.retrying

    @property
    def running(self) -> int:
        """Tasks running under a lease."""
        return self.leased


@dataclass(frozen=True)
class ResultFile:
    """One file a task wrote to ``$SPILLWAY_OUTPUT_DIR``, stored at
    ``<tenant>/results/<job>/<index>/<path>``."""

    #: The job.
    job_id: str
    #: The index of the task that wrote it.
    index: int
    #: Its path below the task's output folder (``result.json``, ``plots/a.png``).
    path: str
    #: Its size in bytes.
    size: int
    client: Client = field(repr=False, compare=False)

    def read(self) -> bytes:
        """The file's bytes."""
        return self.client.read_result(self.job_id, self.index, self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        """The file as text."""
        return self.read().decode(encoding)

    def download(self, dest: str | os.PathLike[str]) -> Path:
        """Stream the file to ``dest`` (a file path; its folders are made) and return it."""
        return self.client.download_result(self.job_id, self.index, self.path, dest)


@dataclass(frozen=True)
class Job:
    """A job: one command run as one or many tasks.

    Returned by :meth:`Client.submit`, :meth:`Client.job` and :meth:`Client.jobs`. The fields
    are a snapshot; :meth:`refresh` fetches the current state and :meth:`wait` waits for the
    end.
    """

    #: Its id (a UUIDv7).
    id: str
    #: The tenant that owns it.
    tenant: str
    #: The queue its tasks wait in.
    queue: str
    #: A name for people.
    name: str | None
    #: Labels to filter by.
    labels: dict[str, str]
    #: How its tasks run.
    spec: TaskSpec
    #: Higher runs first.
    priority: int
    #: Whether its tasks may run on burst capacity.
    burstable: bool
    #: The key that makes submit idempotent, if one was given.
    idempotency_key: str | None
    #: Whether staged inputs are deleted once every task has succeeded.
    delete_inputs_on_success: bool
    #: Whether inputs were staged.
    has_inputs: bool
    #: Number of tasks.
    task_count: int
    #: Tasks per state.
    counts: Counts
    #: The job's state.
    state: JobState
    #: Whether cancellation was asked for.
    cancel_requested: bool
    #: When it was submitted.
    created_at: datetime
    #: When its last task finished.
    finished_at: datetime | None
    #: From :meth:`Client.submit` only: ``False`` when an earlier job with the same idempotency
    #: key was returned instead of a new one; ``None`` on jobs fetched otherwise.
    created: bool | None = field(default=None, compare=False)
    #: The JSON the job was made from.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], client: Client | None = None, created: bool | None = None
    ) -> Job:
        """Parse the API's job object."""
        return cls(
            id=str(doc["id"]),
            tenant=str(doc.get("tenant", "")),
            queue=str(doc.get("queue", "")),
            name=_opt_str(doc.get("name")),
            labels=_str_map(doc.get("labels")),
            spec=TaskSpec.from_json(doc.get("spec", {})),
            priority=int(doc.get("priority", 0)),
            burstable=bool(doc.get("burstable", False)),
            idempotency_key=_opt_str(doc.get("idempotency_key")),
            delete_inputs_on_success=bool(doc.get("delete_inputs_on_success", False)),
            has_inputs=bool(doc.get("has_inputs", False)),
            task_count=int(doc.get("task_count", 0)),
            counts=Counts.from_json(doc.get("counts")),
            state=cast(JobState, str(doc.get("state", "queued"))),
            cancel_requested=bool(doc.get("cancel_requested", False)),
            created_at=_time(doc.get("created_at")),
            finished_at=parse_time(doc.get("finished_at")),
            created=created,
            raw=doc,
            client=client,
        )

    @property
    def done(self) -> bool:
        """True once every task is finished (succeeded, dead or cancelled)."""
        return self.state in FINAL_JOB_STATES

    @property
    def succeeded(self) -> bool:
        """True once every task succeeded."""
        return self.state == "succeeded"

    def _client(self) -> Client:
        if self.client is None:
            raise ValueError("this Job was made without a client; use Client.job(id)")
        return self.client

    def refresh(self) -> Job:
        """The job as it is now."""
        return self._client().job(self.id)

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: bool | Callable[[Job], None] | None = None,
        poll_interval: float = 0.5,
    ) -> Job:
        """Wait until every task is finished and return the finished job.

        ``timeout`` (seconds; ``None`` waits forever) raises :class:`JobTimeoutError` when it
        runs out; the job keeps running. ``progress=True`` draws a bar on standard error when
        it is a terminal; a callable is called with the job after every poll. The job's state
        may be ``failed`` or ``cancelled``: check :attr:`succeeded`.
        """
        return self._client().wait(
            self.id, timeout=timeout, progress=progress, poll_interval=poll_interval
        )

    def cancel(self) -> Job:
        """Cancel the job: waiting tasks are cancelled, running ones are told to stop."""
        return self._client().cancel(self.id)

    def retry(self) -> int:
        """Run the job's dead and cancelled tasks again; returns how many were requeued."""
        return self._client().retry(self.id)

    def tasks(self, state: TaskState | None = None) -> Iterator[Task]:
        """The job's tasks in index order (every page), optionally only those in ``state``."""
        return self._client().tasks(self.id, state=state)

    def results(self) -> list[ResultFile]:
        """Every result file of the job, by task index then path."""
        return self._client().results(self.id)

    def read_result(self, index: int, path: str) -> bytes:
        """The bytes of result file ``path`` of task ``index``."""
        return self._client().read_result(self.id, index, path)

    def download_results(
        self, dest: str | os.PathLike[str], *, index: int | None = None
    ) -> list[Path]:
        """Download every result file (only task ``index``'s when given) to
        ``dest/<index>/<path>``; returns the files written."""
        return self._client().download_results(self.id, dest, index=index)

    def logs(self, index: int, attempt: int | None = None) -> str:
        """The whole log (stdout and stderr) of task ``index``'s attempt
        (the latest when ``attempt`` is ``None``)."""
        client = self._client()
        return client.logs(client.task_at(self.id, index).id, attempt)


@dataclass(frozen=True)
class Task:
    """One task of a job."""

    #: Its id.
    id: int
    #: Its job's id.
    job_id: str
    #: The tenant that owns it.
    tenant: str
    #: The queue it waits in.
    queue: str
    #: Its position in the job, from 0.
    index: int
    #: Its state.
    state: TaskState
    #: Higher runs first.
    priority: int
    #: Leases handed out so far.
    attempt: int
    #: Failed attempts so far.
    failures: int
    #: Attempts handed back as preempted (not counted as failures).
    preemptions: int
    #: Failures allowed before the task is dead.
    max_attempts: int
    #: Its JSON payload.
    payload: Any
    #: Whether its job was cancelled.
    cancel_requested: bool
    #: The last attempt's exit code.
    exit_code: int | None
    #: The last failure's message.
    last_error: str | None
    #: What the worker reported on success: ``{"files": [{"path": …, "size": …}, …]}``.
    result: Any
    #: When it was submitted.
    created_at: datetime
    #: When it reached a final state.
    finished_at: datetime | None
    #: The JSON the task was made from.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], client: Client | None = None) -> Task:
        """Parse the API's task object."""
        return cls(
            id=int(doc["id"]),
            job_id=str(doc.get("job_id", "")),
            tenant=str(doc.get("tenant", "")),
            queue=str(doc.get("queue", "")),
            index=int(doc.get("index", 0)),
            state=cast(TaskState, str(doc.get("state", "available"))),
            priority=int(doc.get("priority", 0)),
            attempt=int(doc.get("attempt", 0)),
            failures=int(doc.get("failures", 0)),
            preemptions=int(doc.get("preemptions", 0)),
            max_attempts=int(doc.get("max_attempts", 0)),
            payload=doc.get("payload"),
            cancel_requested=bool(doc.get("cancel_requested", False)),
            exit_code=_opt_int(doc.get("exit_code")),
            last_error=_opt_str(doc.get("last_error")),
            result=doc.get("result"),
            created_at=_time(doc.get("created_at")),
            finished_at=parse_time(doc.get("finished_at")),
            raw=doc,
            client=client,
        )

    @property
    def done(self) -> bool:
        """True once the task succeeded, is dead or was cancelled."""
        return self.state in FINAL_TASK_STATES

    @property
    def result_paths(self) -> list[str]:
        """The paths of the files the worker uploaded on success, from :attr:`result`."""
        files = self.result.get("files") if isinstance(self.result, Mapping) else None
        if not isinstance(files, list):
            return []
        return [str(f["path"]) for f in files if isinstance(f, Mapping) and "path" in f]

    def _client(self) -> Client:
        if self.client is None:
            raise ValueError("this Task was made without a client; use Client.task(id)")
        return self.client

    def refresh(self) -> Task:
        """The task as it is now."""
        return self._client().task(self.id).task

    def detail(self) -> TaskDetail:
        """The task with every attempt."""
        return self._client().task(self.id)

    def logs(self, attempt: int | None = None) -> str:
        """The whole log (stdout and stderr) of an attempt, the latest when
        ``attempt`` is ``None``."""
        return self._client().logs(self.id, attempt)

    def results(self) -> list[ResultFile]:
        """The task's result files."""
        return [f for f in self._client().results(self.job_id) if f.index == self.index]

    def read_result(self, path: str) -> bytes:
        """The bytes of the task's result file ``path``."""
        return self._client().read_result(self.job_id, self.index, path)


@dataclass(frozen=True)
class Attempt:
    """One lease of a task and how it ended."""

    #: The task's id.
    task_id: int
    #: 1 for the first lease.
    attempt: int
    #: The worker that held it.
    worker_id: str
    #: When it was leased.
    started_at: datetime
    #: When it ended.
    ended_at: datetime | None
    #: How it ended.
    outcome: AttemptOutcome
    #: The command's exit code, if it exited.
    exit_code: int | None
    #: Why it failed.
    error: str | None
    #: The last 64 KiB of stdout and stderr.
    log_tail: str

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Attempt:
        """Parse the API's attempt object."""
        return cls(
            task_id=int(doc.get("task_id", 0)),
            attempt=int(doc.get("attempt", 0)),
            worker_id=str(doc.get("worker_id", "")),
            started_at=_time(doc.get("started_at")),
            ended_at=parse_time(doc.get("ended_at")),
            outcome=cast(AttemptOutcome, str(doc.get("outcome", "running"))),
            exit_code=_opt_int(doc.get("exit_code")),
            error=_opt_str(doc.get("error")),
            log_tail=str(doc.get("log_tail", "")),
        )


@dataclass(frozen=True)
class TaskDetail:
    """A task with its attempts, oldest first."""

    task: Task
    attempts: list[Attempt]


@dataclass(frozen=True)
class Queue:
    """A queue: where tasks wait, with its own settings."""

    #: Its name.
    name: str
    #: Its tenant.
    tenant: str
    #: Its settings as the server writes them: ``max_attempts``, ``lease_duration``,
    #: ``backoff_base``, ``backoff_max``, ``retention`` (durations as text such as ``"30s"``)
    #: and ``paused``.
    settings: dict[str, Any]
    #: Its numbers (tasks per state, the oldest waiting task's age), when listed.
    stats: dict[str, Any]
    #: The JSON the queue was made from.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Queue:
        """Parse the API's queue (or queue view) object."""
        return cls(
            name=str(doc.get("name", "")),
            tenant=str(doc.get("tenant", "")),
            settings=dict(doc.get("settings") or {}),
            stats=dict(doc.get("stats") or {}),
            raw=doc,
        )
