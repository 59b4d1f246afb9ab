"""Submitting, waiting, results, payloads, inputs, map, cancel, retry and logs against a live
server and worker."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import spillway

PY = sys.executable
#: Generous bound for one small job on a busy 2-core machine.
WAIT = 120.0


def test_submit_wait_and_read_results(client: spillway.Client, tmp_path: Path) -> None:
    job = client.submit(
        'echo "hello from task $SPILLWAY_TASK_INDEX" > "$SPILLWAY_OUTPUT_DIR/out.txt"; '
        'mkdir "$SPILLWAY_OUTPUT_DIR/sub"; '
        'echo "$GREETING {index}" > "$SPILLWAY_OUTPUT_DIR/sub/g.txt"; '
        'echo "log of {index}"',
        count=3,
        name="python-submit",
        labels={"suite": "python"},
        env={"GREETING": "hi"},
        priority=5,
        timeout=60,
    )
    assert job.created is True
    assert job.task_count == 3
    assert job.name == "python-submit"
    assert job.spec.shell is True
    assert job.spec.env == {"GREETING": "hi"}
    seen: list[int] = []
    done = job.wait(timeout=WAIT, progress=lambda j: seen.append(j.counts.finished))
    assert done.state == "succeeded", done
    assert done.succeeded and done.done
    assert done.counts.succeeded == 3
    assert seen and seen[-1] == 3

    files = done.results()
    assert [(f.index, f.path) for f in files] == [
        (0, "out.txt"),
        (0, "sub/g.txt"),
        (1, "out.txt"),
        (1, "sub/g.txt"),
        (2, "out.txt"),
        (2, "sub/g.txt"),
    ]
    assert files[2].read() == b"hello from task 1\n"
    assert done.read_result(2, "sub/g.txt") == b"hi 2\n"
    written = done.download_results(tmp_path / "results")
    assert len(written) == 6
    assert done.download_results(tmp_path / "one", index=2) == [
        tmp_path / "one" / "2" / "out.txt",
        tmp_path / "one" / "2" / "sub" / "g.txt",
    ]
    assert (tmp_path / "results" / "1" / "sub" / "g.txt").read_text() == "hi 1\n"

    tasks = list(done.tasks())
    assert [t.index for t in tasks] == [0, 1, 2]
    assert all(t.state == "succeeded" and t.exit_code == 0 for t in tasks)
    assert sorted(tasks[1].result_paths) == ["out.txt", "sub/g.txt"]
    assert [f.path for f in tasks[1].results()] == ["out.txt", "sub/g.txt"]
    assert done.logs(1) == "log of 1\n"
    detail = tasks[1].detail()
    assert [a.outcome for a in detail.attempts] == ["succeeded"]
    assert detail.attempts[0].log_tail == "log of 1\n"

    listed = list(client.jobs(labels={"suite": "python"}, limit=10))
    assert done.id in [j.id for j in listed]


def test_payloads_reach_the_tasks_as_json(client: spillway.Client) -> None:
    payloads = [{"n": 1, "tags": ["a", "b"]}, "plain text", b"bytes as text", 42, None, [1.5, True]]
    copy = (
        "import os, shutil; e = os.environ; "
        "shutil.copy(e['SPILLWAY_PAYLOAD'], os.path.join(e['SPILLWAY_OUTPUT_DIR'], 'result.json'))"
    )
    results = list(client.map([PY, "-c", copy], payloads))
    assert results == [
        {"n": 1, "tags": ["a", "b"]},
        "plain text",
        "bytes as text",
        42,
        None,
        [1.5, True],
    ]
    with pytest.raises(ValueError, match="not UTF-8"):
        client.submit(["true"], payloads=[b"\xff"])
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        client.submit(["true"], payloads=[object()])


def test_inputs_are_uploaded_first(client: spillway.Client, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "a.txt").write_text("alpha")
    (data / "nested" / "b.txt").write_text("beta")
    single = tmp_path / "single.csv"
    single.write_text("x,y\n")
    script = (
        "import json, os\n"
        "root = os.environ['SPILLWAY_INPUT_DIR']\n"
        "found = {}\n"
        "for d, _, names in os.walk(root):\n"
        "    for n in names:\n"
        "        p = os.path.join(d, n)\n"
        "        found[os.path.relpath(p, root)] = open(p).read()\n"
        "out = os.path.join(os.environ['SPILLWAY_OUTPUT_DIR'], 'result.json')\n"
        "json.dump(found, open(out, 'w'))\n"
    )
    [found] = list(
        client.map([PY, "-c", script], [None], inputs=[data, single], delete_inputs=True)
    )
    assert found == {"data/a.txt": "alpha", "data/nested/b.txt": "beta", "single.csv": "x,y\n"}


def test_map_yields_in_item_order_as_tasks_finish(client: spillway.Client) -> None:
    # The first item is slow, so the others finish before it; the results still come in item
    # order.
    script = (
        "import json, os, sys, time\n"
        "n = json.load(sys.stdin)\n"
        "time.sleep(3 if n == 0 else 0)\n"
        "out = os.path.join(os.environ['SPILLWAY_OUTPUT_DIR'], 'result.json')\n"
        "json.dump({'n': n, 'square': n * n}, open(out, 'w'))\n"
    )
    results = client.map([PY, "-c", script], range(4), wait_timeout=WAIT)
    assert results.job is not None and results.job.task_count == 4
    assert len(results) == 4
    assert [r["square"] for r in results] == [0, 1, 4, 9]
    finished = [t.finished_at for t in client.tasks(results.job.id)]
    assert finished[0] is not None and finished[1] is not None
    assert finished[1] < finished[0]

    # The output tail instead of a file; bytes for a file that is not JSON.
    assert list(client.map(["sh", "-c", 'echo "item $(cat)"'], ["a", "b"], result=None)) == [
        'item "a"\n',
        'item "b"\n',
    ]
    raw = client.map(
        ["sh", "-c", 'printf "%s" "$(cat)" > "$SPILLWAY_OUTPUT_DIR/out.bin"'], [7], result="out.bin"
    )
    assert list(raw) == [b"7"]
    assert list(client.map(["true"], [])) == []


def test_map_raises_for_failed_tasks_and_missing_results(client: spillway.Client) -> None:
    script = (
        'n=$(cat); if [ "$n" = 1 ]; then echo "boom on $n" >&2; exit 3; fi; '
        'echo "$n" > "$SPILLWAY_OUTPUT_DIR/result.json"'
    )
    results = client.map(["sh", "-c", script], [0, 1, 2], queue="once")
    assert next(results) == 0
    with pytest.raises(spillway.TaskFailedError) as failed:
        next(results)
    assert failed.value.item == 1
    assert failed.value.task.state == "dead"
    assert failed.value.task.exit_code == 3
    assert "boom on 1" in failed.value.logs
    assert "exited with status 3" in str(failed.value)
    assert next(results) == 2  # iteration goes on past a failure

    job = client.job(failed.value.task.job_id).wait(timeout=WAIT)
    assert job.state == "failed" and job.counts.dead == 1
    assert "boom on 1" in client.logs(failed.value.task.id)
    assert job.logs(1, attempt=1) == "boom on 1\n"
    dead = list(job.tasks(state="dead"))
    assert [t.index for t in dead] == [1]
    assert job.retry() == 1
    again = job.wait(timeout=WAIT)
    assert again.counts.dead == 1  # it failed again, with a second attempt
    assert [a.attempt for a in dead[0].detail().attempts] == [1, 2]

    with pytest.raises(spillway.ResultMissingError, match=r"wrote no result\.json"):
        next(client.map(["true"], [0], queue="once"))


def test_cancel(client: spillway.Client) -> None:
    job = client.submit(["sleep", "30"], count=3, delay="1h")
    assert job.state == "queued"
    cancelled = job.cancel()
    assert cancelled.cancel_requested
    done = job.wait(timeout=WAIT)
    assert done.state == "cancelled"
    assert done.counts.cancelled == 3
    assert all(t.state == "cancelled" for t in done.tasks())

    pending = client.map(["sleep", "30"], [1], delay=3600)
    pending.cancel()
    with pytest.raises(spillway.TaskFailedError, match="ended cancelled"):
        next(pending)


def test_wait_times_out_and_draws_a_bar_on_a_terminal(client: spillway.Client) -> None:
    job = client.submit(["true"], delay="1h")
    with pytest.raises(spillway.JobTimeoutError) as timed_out:
        job.wait(timeout=0.3, poll_interval=0.1)
    assert timed_out.value.job.id == job.id
    job.cancel()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = spillway.ProgressBar(tty)
    bar(job)
    assert "] 0/1 waiting 1 running 0 succeeded 0 dead 0 (" in tty.getvalue()
    bar(job.refresh())
    assert tty.getvalue().endswith("s)")
    assert (
        "[==============================] 1/1 waiting 0 running 0 succeeded 0 dead 0 cancelled 1"
        in tty.getvalue()
    )
    bar.close()
    assert tty.getvalue().endswith("\r\x1b[2K")
    not_tty = io.StringIO()
    spillway.ProgressBar(not_tty)(job)
    assert not_tty.getvalue() == ""


def test_idempotent_submit_and_options(client: spillway.Client) -> None:
    first = client.submit(
        ["echo", "{index}"],
        idempotency_key="python-client-once",
        burstable=True,
        cpu=0.5,
        memory_mb=64,
        gpu=0,
        image="python:3.12-slim",
        delay=0,
    )
    second = client.submit(["echo", "{index}"], idempotency_key="python-client-once")
    assert first.created is True and second.created is False
    assert second.id == first.id
    assert first.burstable
    assert first.spec.resources == spillway.Resources(cpu=0.5, memory_mb=64, gpu=0)
    assert first.spec.image == "python:3.12-slim"
    assert json.loads(json.dumps(first.raw))["id"] == first.id
    first.wait(timeout=WAIT)
