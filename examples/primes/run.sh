#!/usr/bin/env bash
# The quickstart: build Spillway, start it on this machine (`spillway up`), submit the 500-task
# example, wait for it with a progress bar, and show where the 500 results are.
#
# Usage: examples/primes/run.sh [--keep]   (--keep leaves `spillway up` running afterwards)
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --quiet -p spillway
bin=target/release/spillway
data=${SPILLWAY_DATA_DIR:-$PWD/.spillway}
port=${SPILLWAY_PORT:-7070}
export SPILLWAY_DATA_DIR=$data

"$bin" up --listen "127.0.0.1:$port" > "$data.up.log" 2>&1 &
up=$!
if [ "${1:-}" != "--keep" ]; then
  trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
fi

# Wait (up to 60 s) until the server answers and has written the admin token.
for _ in $(seq 600); do
  if [ -s "$data/admin.token" ] && curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 $up 2>/dev/null; then cat "$data.up.log"; exit 1; fi
  sleep 0.1
done
echo "spillway up: http://127.0.0.1:$port (log: $data.up.log)"

"$bin" submit --name primes-500 --from examples/primes/tasks.jsonl --wait \
  -- python3 "$PWD/examples/primes/task.py" | tee "$data.submit.log"
job=$(awk '/^job /{print $2; exit}' "$data.submit.log")
"$bin" results "$job" --json | python3 -c 'import json,sys; files=json.load(sys.stdin); print(len(files), "result objects, e.g.", files[0]["path"])'
echo "results are under $data/blobs/default/results/$job/<index>/result.json"
