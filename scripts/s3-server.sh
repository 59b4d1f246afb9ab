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
SERVICE="s3-server"
CMDLINE="moto_server"
# shellcheck source=lib/background-service.sh
source "$(dirname "$0")/lib/background-service.sh"

install_moto() {
    if [[ -x "$VENV/bin/moto_server" ]]; then
        return
    fi
    log "installing $MOTO_SPEC into $VENV (first use only)"
    mkdir -p "$TOOLS_DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC" >&2
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
    install_moto
    local port pid
    port="$(free_port)"
    echo "$port" >"$STATE/port"
    pid="$(launch "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port")"
    wait_until_up "http://127.0.0.1:$port/moto-api/" "$pid"
    create_bucket "$port"
    log "moto running on 127.0.0.1:$port (pid $pid), bucket $BUCKET"
    print_env
}

service_main "$@"
