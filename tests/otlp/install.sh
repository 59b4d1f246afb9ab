#!/usr/bin/env bash
# Install the test OTLP receiver's Python dependencies (pinned) into a cached venv and print
# the path of its python on stdout; progress and errors go to stderr, and a non-zero exit says
# it could not be installed (no python3 with venv, or PyPI unreachable).
#
#   python="$(tests/otlp/install.sh)" && "$python" tests/otlp/receiver.py spans.jsonl port
#
# The venv lives under ${SPILLWAY_TOOLS_DIR:-$HOME/.cache/spillway-tools}.
set -euo pipefail

OTEL_PROTO_VERSION="1.45.2"
PROTOBUF_VERSION="7.36.2"
TOOLS_DIR="${SPILLWAY_TOOLS_DIR:-$HOME/.cache/spillway-tools}"
VENV="$TOOLS_DIR/otlp-receiver-$OTEL_PROTO_VERSION"

if ! "$VENV/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
    echo "tests/otlp/install.sh: installing opentelemetry-proto $OTEL_PROTO_VERSION into $VENV" >&2
    mkdir -p "$TOOLS_DIR"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "opentelemetry-proto==$OTEL_PROTO_VERSION" "protobuf==$PROTOBUF_VERSION" >&2
fi
echo "$VENV/bin/python"
