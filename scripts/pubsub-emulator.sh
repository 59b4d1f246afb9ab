#!/usr/bin/env bash
# The Google Cloud Pub/Sub emulator on 127.0.0.1 for the bridge's tests and for trying
# `spillway bridge pubsub` locally.
#
#   eval "$(scripts/pubsub-emulator.sh start)"   # starts it, prints env lines
#   scripts/pubsub-emulator.sh env               # prints the env lines of the running emulator
#   scripts/pubsub-emulator.sh stop              # stops it
#
# Only `export ...` lines go to stdout, so the output can be eval'd; progress goes to stderr.
# Prints PUBSUB_EMULATOR_HOST (host:port, read by Spillway and Google's clients) and
# SPILLWAY_PUBSUB_EMULATOR (the emulator's start script, read by the tests, which start
# emulators of their own). The emulator is found through $SPILLWAY_PUBSUB_EMULATOR, else at the
# Cloud SDK's default place; it needs java. Its state (pid, port, log) lives in
# ${SPILLWAY_TOOLS_DIR:-$HOME/.cache/spillway-tools}/pubsub-emulator/; messages are kept in
# memory and gone after `stop`.
set -euo pipefail

TOOLS_DIR="${SPILLWAY_TOOLS_DIR:-$HOME/.cache/spillway-tools}"
STATE="$TOOLS_DIR/pubsub-emulator"
DEFAULT_EMULATOR="/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
EMULATOR="${SPILLWAY_PUBSUB_EMULATOR:-$DEFAULT_EMULATOR}"
# The emulator is a JVM; on a loaded machine it can take a while to answer.
START_DEADLINE_SECS=90

log() { echo "pubsub-emulator: $*" >&2; }

running_pid() {
    local pid
    [[ -f "$STATE/pid" ]] || return 1
    pid="$(cat "$STATE/pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file may name a pid the system has since reused for something else.
    grep -q pubsub "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

print_env() {
    echo "export PUBSUB_EMULATOR_HOST=127.0.0.1:$(cat "$STATE/port")"
    echo "export SPILLWAY_PUBSUB_EMULATOR=$EMULATOR"
}

wait_until_up() {
    local port="$1" pid="$2" deadline=$((SECONDS + START_DEADLINE_SECS))
    until curl -fs -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "the emulator exited during start; its log follows"
            cat "$STATE/log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "the emulator did not answer on port $port within ${START_DEADLINE_SECS}s; see $STATE/log"
            kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

start() {
    if running_pid >/dev/null; then
        log "already running (pid $(running_pid)); printing its env"
        print_env
        return
    fi
    if [[ ! -x "$EMULATOR" ]]; then
        log "no emulator at $EMULATOR: install the Cloud SDK's pubsub emulator (apt package google-cloud-cli-pubsub-emulator) or set SPILLWAY_PUBSUB_EMULATOR"
        exit 1
    fi
    if ! command -v java >/dev/null; then
        log "the emulator needs java; install a JRE (e.g. apt install default-jre-headless)"
        exit 1
    fi
    mkdir -p "$STATE"
    local port pid
    port="$(free_port)"
    # setsid detaches it from this shell's process group, so it outlives the caller's job; the
    # start script execs java, so the pid is the JVM's.
    setsid "$EMULATOR" --host=127.0.0.1 --port="$port" >"$STATE/log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$STATE/pid"
    echo "$port" >"$STATE/port"
    wait_until_up "$port" "$pid"
    log "running on 127.0.0.1:$port (pid $pid)"
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
