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
SERVICE="pubsub-emulator"
CMDLINE="pubsub"
# shellcheck source=lib/background-service.sh
source "$(dirname "$0")/lib/background-service.sh"

print_env() {
    echo "export PUBSUB_EMULATOR_HOST=127.0.0.1:$(cat "$STATE/port")"
    echo "export SPILLWAY_PUBSUB_EMULATOR=$EMULATOR"
}

start() {
    if [[ ! -x "$EMULATOR" ]]; then
        log "no emulator at $EMULATOR: install the Cloud SDK's pubsub emulator (apt package google-cloud-cli-pubsub-emulator) or set SPILLWAY_PUBSUB_EMULATOR"
        exit 1
    fi
    if ! command -v java >/dev/null; then
        log "the emulator needs java; install a JRE (e.g. apt install default-jre-headless)"
        exit 1
    fi
    local port pid
    port="$(free_port)"
    echo "$port" >"$STATE/port"
    # The start script execs java, so the pid is the JVM's.
    pid="$(launch "$EMULATOR" --host=127.0.0.1 --port="$port")"
    wait_until_up "http://127.0.0.1:$port/" "$pid"
    log "running on 127.0.0.1:$port (pid $pid)"
    print_env
}

service_main "$@"
