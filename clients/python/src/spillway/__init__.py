"""Python client for Spillway, the durable batch work queue.

>>> import spillway
>>> client = spillway.Client()          # finds the server and token as the CLI does
>>> job = client.submit(["python3", "task.py"], payloads=[{"n": 1}, {"n": 2}])
>>> job = job.wait(progress=True)
>>> for f in job.results():
...     print(f.index, f.path, f.read())

See :class:`Client` for every call, and README.md beside this package for a worked example.
"""

from ._client import Client, Duration, JobMap, PathLike
from ._config import Settings, discover
from ._errors import (
    ApiError,
    ConfigError,
    ConflictError,
    InvalidArgumentError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    ResultMissingError,
    ServerError,
    ServerUnreachableError,
    SpillwayError,
    TaskFailedError,
    TooLargeError,
    UnauthenticatedError,
    UnavailableError,
)
from ._models import (
    Attempt,
    AttemptOutcome,
    Counts,
    Job,
    JobState,
    Queue,
    Resources,
    ResultFile,
    Task,
    TaskDetail,
    TaskSpec,
    TaskState,
)
from ._progress import ProgressBar
from ._version import __version__

__all__ = [
    "ApiError",
    "Attempt",
    "AttemptOutcome",
    "Client",
    "ConfigError",
    "ConflictError",
    "Counts",
    "Duration",
    "InvalidArgumentError",
    "Job",
    "JobMap",
    "JobState",
    "JobTimeoutError",
    "NotFoundError",
    "PathLike",
    "PermissionDeniedError",
    "ProgressBar",
    "Queue",
    "Resources",
    "ResultFile",
    "ResultMissingError",
    "ServerError",
    "ServerUnreachableError",
    "Settings",
    "SpillwayError",
    "Task",
    "TaskDetail",
    "TaskFailedError",
    "TaskSpec",
    "TaskState",
    "TooLargeError",
    "UnauthenticatedError",
    "UnavailableError",
    "__version__",
    "discover",
]
