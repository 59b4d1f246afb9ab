#!/usr/bin/env python3
"""A CPU-heavy Spillway task, in the spirit of a Pub/Sub + MIG batch.

Reads its payload {"task_id": "task-i", "input": i} from the file named by $SPILLWAY_PAYLOAD,
counts the primes below a bound that grows with the input (a few hundred milliseconds of CPU),
and writes result.json into $SPILLWAY_OUTPUT_DIR, which the worker uploads to
<tenant>/results/<job>/<index>/result.json.
"""

import json
import os
import time


def count_primes(limit: int) -> int:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for p in range(2, int(limit**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, limit, p)))
    return sum(sieve)


def main() -> None:
    with open(os.environ["SPILLWAY_PAYLOAD"], encoding="utf-8") as f:
        payload = json.load(f)
    started = time.monotonic()
    bound = 4_000_000 + 10_000 * int(payload["input"])
    primes = count_primes(bound)
    result = {
        "task_id": payload["task_id"],
        "input": payload["input"],
        "bound": bound,
        "primes": primes,
        "seconds": round(time.monotonic() - started, 3),
        "attempt": int(os.environ["SPILLWAY_ATTEMPT"]),
    }
    out = os.path.join(os.environ["SPILLWAY_OUTPUT_DIR"], "result.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(f"{payload['task_id']}: {primes} primes below {bound}")


if __name__ == "__main__":
    main()
