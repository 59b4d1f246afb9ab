"""Exceptions raised by the client.

Every exception is a :class:`SpillwayError`. An error answer of the server (an
``application/problem+json`` document, RFC 9457) becomes an :class:`ApiError` subclass chosen
by its HTTP status, carrying the document's ``title``, ``detail``, ``status`` and ``code``; a
server that cannot be reached is a :class:`ServerUnreachableError` naming the URL that was tried.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import Task

__all__ = [
    "ApiError",
    "ConfigError",
    "ConflictError",
    "InvalidArgumentError",
    "JobTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResultMissingError",
    "ServerError",
    "ServerUnreachableError",
    "SpillwayError",
    "TaskFailedError",
    "TooLargeError",
    "UnauthenticatedError",
    "UnavailableError",
    "error_for_response",
]

#: Longest part of a non-problem error body quoted in a message.
_MAX_QUOTED_BODY = 300


class SpillwayError(Exception):
    """The base of every error this package raises."""

    #: True when the same call may succeed if tried again later (the server was unreachable,
    #: overloaded or restarting).
    retryable: bool = False


class ConfigError(SpillwayError):
    """The configuration the client found cannot be used (an unreadable ``spillway.toml``, a
    token file that does not exist, an invalid URL)."""


class ServerUnreachableError(SpillwayError, ConnectionError):
    """No answer from the server: it is down, unreachable or too slow.

    ``url`` is the request's URL and ``server`` the base URL the client was configured with;
    the message says where that base URL came from and how to point the client elsewhere.
    """

    retryable = True

    def __init__(self, message: str, *, url: str, server: str) -> None:
        super().__init__(message)
        self.url = url
        self.server = server


class ApiError(SpillwayError):
    """The server answered with an error status.

    Attributes mirror the problem document: ``status`` (the HTTP status), ``title`` (a short
    summary of the kind, e.g. ``"invalid request"``), ``detail`` (what was wrong and how to fix
    it), ``code`` (a stable machine-readable code such as ``invalid_argument``) and ``type``
    (a URI naming the kind). ``method`` and ``url`` name the request. ``str(error)`` is the
    detail.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        title: str = "",
        code: str = "",
        type: str = "",
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.title = title
        self.code = code
        self.type = type
        self.method = method
        self.url = url
        #: Seconds the server asked to wait before trying again (``Retry-After``), if it did.
        self.retry_after = retry_after

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, code={self.code!r}, detail={self.detail!r})"


class InvalidArgumentError(ApiError, ValueError):
    """400 or 422 (and other 4xx not named below): the request was wrong; ``detail`` says how."""


class UnauthenticatedError(ApiError):
    """401: no token, or one the server does not know."""


class PermissionDeniedError(ApiError, PermissionError):
    """403: the token's role may not do this."""


class NotFoundError(ApiError, LookupError):
    """404 or 410: no such job, task, queue or object (or it belongs to another tenant)."""


class ConflictError(ApiError):
    """409 or 412: the request conflicts with the current state (e.g. a lease no longer held)."""


class TooLargeError(ApiError):
    """413: a payload or file is over the server's limit."""


class UnavailableError(ApiError):
    """408, 429, 502, 503 or 504: passing overload or unavailability; try again later."""

    retryable = True


class ServerError(ApiError):
    """A 5xx answer other than the passing ones: the server's fault; see its log."""


class JobTimeoutError(SpillwayError, TimeoutError):
    """:meth:`Job.wait` (or :meth:`Client.map`) ran out of time before the job finished.

    The job keeps running on the server; ``job`` is its latest state.
    """

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message)
        self.job = job


class TaskFailedError(SpillwayError):
    """A task that :meth:`Client.map` waited for ended dead or cancelled.

    ``task`` is the task (with ``last_error`` and ``exit_code``), ``item`` the item it was made
    from, and ``logs`` the tail of its last attempt's output.
    """

    def __init__(self, message: str, *, task: Task, item: Any, logs: str) -> None:
        super().__init__(message)
        self.task = task
        self.item = item
        self.logs = logs


class ResultMissingError(SpillwayError, LookupError):
    """A task succeeded but did not write the result file :meth:`Client.map` was told to read."""


def _class_for_status(status: int) -> type[ApiError]:
    if status in (400, 422):
        return InvalidArgumentError
    if status == 401:
        return UnauthenticatedError
    if status == 403:
        return PermissionDeniedError
    if status in (404, 410):
        return NotFoundError
    if status in (409, 412):
        return ConflictError
    if status == 413:
        return TooLargeError
    if status in (408, 429, 502, 503, 504):
        return UnavailableError
    if 400 <= status < 500:
        return InvalidArgumentError
    return ServerError


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_for_response(
    *, status: int, body: bytes, method: str, url: str, retry_after: str | None = None
) -> ApiError:
    """The exception an unsuccessful answer stands for: the problem document's fields when the
    server sent one, else the status and the start of the body as the detail."""
    cls = _class_for_status(status)
    after = _retry_after(retry_after)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("detail"), str):
        return cls(
            doc["detail"],
            status=int(doc.get("status", status)) if isinstance(doc.get("status"), int) else status,
            title=str(doc.get("title", "")),
            code=str(doc.get("code", "")),
            type=str(doc.get("type", "")),
            method=method,
            url=url,
            retry_after=after,
        )
    text = body.decode("utf-8", errors="replace").strip()
    detail = f"{method} {url} answered {status}"
    if text:
        detail += f": {text[:_MAX_QUOTED_BODY]}"
    return cls(detail, status=status, method=method, url=url, retry_after=after)
