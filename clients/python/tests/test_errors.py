"""Error answers become typed exceptions; unreachable servers name the URL and the fix."""

from __future__ import annotations

import json

import httpx
import pytest
import spillway
from spillway._errors import error_for_response

from .conftest import Server, free_port


def test_a_bad_request_raises_the_servers_detail(server: Server) -> None:
    with server.client() as client, pytest.raises(spillway.InvalidArgumentError) as bad:
        client.submit(["echo", "hi"], priority=5000)
    err = bad.value
    assert err.status == 400
    assert err.title == "invalid request"
    assert err.code == "invalid_argument"
    assert "priority 5000 is out of range" in err.detail
    assert str(err) == err.detail
    assert err.method == "POST" and err.url.endswith("/v1/jobs")
    assert isinstance(err, spillway.ApiError) and isinstance(err, ValueError)
    assert not err.retryable


def test_unknown_job_and_queue_are_not_found(server: Server) -> None:
    with server.client() as client:
        with pytest.raises(spillway.NotFoundError) as missing:
            client.job("0193a000-0000-7000-8000-000000000000")
        assert missing.value.status == 404
        with pytest.raises(spillway.NotFoundError):
            client.submit(["true"], queue="no-such-queue")


def test_a_wrong_token_is_unauthenticated(server: Server) -> None:
    with (
        spillway.Client(url=server.url, token="sw_wrong") as client,
        pytest.raises(spillway.UnauthenticatedError) as denied,
    ):
        list(client.jobs())
    assert denied.value.status == 401


def test_no_token_says_where_to_find_one(
    server: Server, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SPILLWAY_TOKEN", "SPILLWAY_CONFIG", "SPILLWAY_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(str(tmp_path))
    with spillway.Client(url=server.url, data_dir=str(tmp_path)) as client:
        assert client.settings.token is None
        with pytest.raises(spillway.UnauthenticatedError, match="SPILLWAY_TOKEN"):
            client.job("x")


def test_an_unreachable_server_names_the_url_and_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with spillway.Client(url=url, token="t") as client:
        assert client.ready() is False
        with pytest.raises(spillway.ServerUnreachableError) as down:
            client.cancel("some-job")
    err = down.value
    assert err.server == url
    assert err.url == f"{url}/v1/jobs/some-job/cancel"
    assert "could not connect" in str(err)
    assert url in str(err) and "the url argument" in str(err) and "spillway up" in str(err)
    assert err.retryable and isinstance(err, ConnectionError)


def test_status_codes_map_to_classes() -> None:
    cases = {
        400: spillway.InvalidArgumentError,
        401: spillway.UnauthenticatedError,
        403: spillway.PermissionDeniedError,
        404: spillway.NotFoundError,
        409: spillway.ConflictError,
        413: spillway.TooLargeError,
        418: spillway.InvalidArgumentError,
        503: spillway.UnavailableError,
        500: spillway.ServerError,
    }
    for status, cls in cases.items():
        err = error_for_response(status=status, body=b"", method="GET", url="http://x/y")
        assert type(err) is cls, status
        assert err.detail == f"GET http://x/y answered {status}"
    shed = error_for_response(
        status=503,
        body=b'{"type":"urn:spillway:problem:unavailable","title":"service unavailable",'
        b'"status":503,"detail":"busy: try again","code":"unavailable"}',
        method="POST",
        url="http://x/v1/jobs",
        retry_after="1",
    )
    assert isinstance(shed, spillway.UnavailableError)
    assert shed.retryable and shed.retry_after == 1.0 and shed.detail == "busy: try again"
    plain = error_for_response(
        status=502, body=b"<html>bad gateway</html>", method="GET", url="http://x/"
    )
    assert "bad gateway" in plain.detail


def test_reads_are_retried_when_the_server_sheds_load() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(
                503,
                headers={"Retry-After": "0", "Content-Type": "application/problem+json"},
                json={
                    "type": "t",
                    "title": "service unavailable",
                    "status": 503,
                    "detail": "busy",
                    "code": "unavailable",
                },
            )
        return httpx.Response(200, json=[])

    with spillway.Client(
        url="http://test", token="t", transport=httpx.MockTransport(handler)
    ) as client:
        assert client.results("j") == []
    assert calls == ["/v1/jobs/j/results"] * 3


def test_a_submit_is_sent_again_only_with_an_idempotency_key() -> None:
    calls: list[dict[str, object]] = []
    job = {
        "id": "j1",
        "spec": {"command": ["true"]},
        "state": "queued",
        "created_at": "2026-12-06T14:12:00.123456789Z",
        "idempotency_key": "k",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        if len(calls) % 2 == 1:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "full"})
        return httpx.Response(201, json={"job": job, "created": True})

    transport = httpx.MockTransport(handler)
    with spillway.Client(url="http://test", token="t", transport=transport) as client:
        submitted = client.submit(["true"], idempotency_key="k")
        assert submitted.id == "j1" and submitted.created is True
        assert len(calls) == 2 and calls[0] == calls[1]
        assert calls[0]["idempotency_key"] == "k"
        with pytest.raises(spillway.UnavailableError, match="full"):
            client.submit(["true"])
        assert len(calls) == 3
