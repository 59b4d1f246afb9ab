#!/usr/bin/env python3
"""The quickstart's primes example through the Python client (``clients/python``).

Submits one task per line of ``tasks.jsonl`` (500 CPU-heavy tasks running ``task.py``), waits
with a progress bar, prints the job's summary, reads the ``result.json`` of each task and ends
with the total. The client finds the server and token as the CLI does, so after
``spillway up`` on this machine no option is needed::

    pip install clients/python          # once
    spillway up &                       # or examples/primes/run.sh --keep
    python3 examples/primes/submit.py
    python3 examples/primes/submit.py --count 20 --download results/

Exit status: 0 when every task succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import spillway

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=None, help="submit only the first N tasks")
    parser.add_argument("--download", type=Path, help="download every result file into DIR")
    parser.add_argument(
        "--python", default="python3", help="the Python the workers run task.py with"
    )
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after SECONDS")
    args = parser.parse_args(argv)

    with open(HERE / "tasks.jsonl", encoding="utf-8") as f:
        payloads: list[Any] = [json.loads(line) for line in f if line.strip()]
    if args.count is not None:
        payloads = payloads[: args.count]

    with spillway.Client() as client:
        job = client.submit(
            [args.python, str(HERE / "task.py")],
            payloads=payloads,
            name=f"primes-{len(payloads)}",
        )
        print(f"submitted job {job.id} ({job.task_count} tasks) to {client.url}", file=sys.stderr)
        job = job.wait(timeout=args.timeout, progress=True)

        took = ""
        if job.finished_at is not None:
            took = f" in {(job.finished_at - job.created_at).total_seconds():.1f}s"
        c = job.counts
        print(
            f"job {job.id} {job.state}{took}: "
            f"{c.succeeded} succeeded, {c.dead} dead, {c.cancelled} cancelled"
        )

        results = [json.loads(f.read()) for f in job.results() if f.path == "result.json"]
        if results:
            primes = sum(r["primes"] for r in results)
            slowest = max(results, key=lambda r: r["seconds"])
            print(
                f"{len(results)} result.json files: {primes} primes counted in all; the slowest "
                f"task was {slowest['task_id']} ({slowest['seconds']}s)"
            )
        if args.download is not None:
            written = job.download_results(args.download)
            print(f"downloaded {len(written)} result files into {args.download}")
        if c.dead:
            print(f"failures: spillway tasks {job.id} --state dead, then spillway logs TASK")
    return 0 if job.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
