"""A minimal OTLP/HTTP trace receiver for Spillway's tests.

It serves `POST /v1/traces` (binary protobuf, optionally gzip-encoded), decodes each body as an
`ExportTraceServiceRequest` with the official definitions of PyPI's `opentelemetry-proto`, and
appends every span it holds to a file as one JSON object per line:

    {"service": "spillway", "trace_id": "<32 hex>", "span_id": "<16 hex>",
     "parent_span_id": "<16 hex or empty>", "name": "run", "kind": 1,
     "start_ns": 1, "end_ns": 2, "attributes": {"spillway.job_id": "..."}}

Usage: receiver.py SPANS_FILE PORT_FILE. It listens on a free port of 127.0.0.1 and writes
that port to PORT_FILE (atomically, once listening). It runs until killed.
"""

import gzip
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

LOCK = threading.Lock()


def any_value(value):
    """An OTLP AnyValue as a plain JSON value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(items):
    return {kv.key: any_value(kv.value) for kv in items}


def spans_of(request):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "service": resource.get("service.name"),
                    "scope": scope_spans.scope.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "trace_state": span.trace_state,
                    "name": span.name,
                    "kind": span.kind,
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "status": span.status.code,
                    "attributes": attributes(span.attributes),
                }


class Handler(BaseHTTPRequestHandler):
    spans_file = None

    def do_POST(self):
        if self.path != "/v1/traces":
            self.send_error(404, "only /v1/traces is served")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding", "") == "gzip":
            body = gzip.decompress(body)
        if "protobuf" not in self.headers.get("Content-Type", ""):
            self.send_error(415, "only application/x-protobuf is decoded")
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        lines = "".join(json.dumps(s, sort_keys=True) + "\n" for s in spans_of(request))
        with LOCK, open(self.spans_file, "a", encoding="utf-8") as out:
            out.write(lines)
            out.flush()
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format, *args):
        sys.stderr.write("otlp receiver: " + (format % args) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: receiver.py SPANS_FILE PORT_FILE")
    Handler.spans_file, port_file = sys.argv[1], sys.argv[2]
    open(Handler.spans_file, "a", encoding="utf-8").close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w", encoding="utf-8") as out:
        out.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
