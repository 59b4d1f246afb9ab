#!/usr/bin/env bash
# A throwaway S3-compatible server (moto) on 127.0.0.1 for the blob tests.
#
#   eval "$(scripts/s3-server.sh start)"   # installs on first use, starts, prints env lines
#   scripts/s3-server.sh env               # prints the env lines of the running server again
#   scripts/s3-server.sh stop              # stops it
#
# Only `export ...` lines go to stdout, so the output can be eval'd; progress goes to stderr.
# Tools live in ${SPILLWAY_TOOLS_DIR:-$HOME/.cache/spillway-tools}; the server's state (pid,
# port, log) in its `s3-server/` folder. Data is kept in memory and gone after `stop`.
set -euo pipefail

TOOLS_DIR="${SPILLWAY_TOOLS_DIR:-$HOME/.cache/spillway-tools}"
VENV="$TOOLS_DIR/moto-venv"
STATE="$TOOLS_DIR/s3-server"
MOTO_SPEC="moto[server]>=5,<6"
BUCKET="${SPILLWAY_TEST_S3_BUCKET_NAME:-spillway-test}"
# Moto accepts any credentials; these are fixed so the printed lines are reproducible.
ACCESS_KEY="spillway-test"
SECRET_KEY="spillway-test-secret"
REGION="us-east-1"
# How long to wait for the server to answer after starting it.
START_DEADLINE_SECS=60

log() { echo "s3-server: $*" >&2; }

install_moto() {
    if [[ -x "$VENV/bin/moto_server" ]]; then
        return
    fi
    log "installing $MOTO_SPEC into $VENV (first use only)"
    mkdir -p "$TOOLS_DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC" >&2
}

running_pid() {
    local pid
    [[ -f "$STATE/pid" ]] || return 1
    pid="$(cat "$STATE/pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file may name a pid the system has since reused for something else.
    grep -q moto_server "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

print_env() {
    local port
    port="$(cat "$STATE/port")"
    echo "export SPILLWAY_TEST_S3_URL=s3://$BUCKET"
    echo "export SPILLWAY_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export SPILLWAY_TEST_S3_REGION=$REGION"
    echo "export SPILLWAY_TEST_S3_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "export SPILLWAY_TEST_S3_SECRET_ACCESS_KEY=$SECRET_KEY"
}

wait_until_up() {
    local port="$1" pid="$2" deadline=$((SECONDS + START_DEADLINE_SECS))
    until curl -fs -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "moto exited during start; its log follows"
            cat "$STATE/log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "moto did not answer on port $port within ${START_DEADLINE_SECS}s; see $STATE/log"
            kill "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

create_bucket() {
    local port="$1"
    # Moto bundles boto3, so the venv's python can create the bucket without another client.
    AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
        "$VENV/bin/python" - "$port" "$BUCKET" "$REGION" <<'PY'
import sys
import boto3

port, bucket, region = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=region)
s3.create_bucket(Bucket=bucket)
PY
}

start() {
    if running_pid >/dev/null; then
        log "already running (pid $(running_pid)); printing its env"
        print_env
        return
    fi
    install_moto
    mkdir -p "$STATE"
    local port pid
    port="$(free_port)"
    # setsid detaches it from this shell's process group, so it outlives the caller's job.
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$STATE/pid"
    echo "$port" >"$STATE/port"
    wait_until_up "$port" "$pid"
    create_bucket "$port"
    log "moto running on 127.0.0.1:$port (pid $pid), bucket $BUCKET"
    print_env
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$STATE/pid"
        return
    fi
    kill "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$STATE/pid"
    log "stopped (pid $pid)"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    env)
        if ! running_pid >/dev/null; then
            log "not running; start it with: eval \"\$($0 start)\""
            exit 1
        fi
        print_env
        ;;
    *)
        echo "usage: $0 [start|env|stop]" >&2
        exit 2
        ;;
esac
