#!/usr/bin/env python3
"""A webhook receiver for SecureVault's tests, verifying with the reference
Standard Webhooks library (not our code) so a test that passes proves any
standard receiver accepts our signatures.

    receiver.py PORT [SECRET]

POST /*          records the delivery: its headers, its JSON body and, when
                 SECRET is given, whether standardwebhooks.Webhook verified it
                 (and the error when not). Answers the next queued status, or
                 204.
POST /_control   {"statuses": [503, 503]}: the next deliveries get these.
GET  /_events    every delivery so far, as a JSON list.

It prints "listening on PORT" once the socket accepts connections.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

PORT = int(sys.argv[1])
SECRET = sys.argv[2] if len(sys.argv) > 2 else None

lock = threading.Lock()
deliveries = []
statuses = []


class Handler(BaseHTTPRequestHandler):
    def _read(self):
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def _answer(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/_events":
            return self._answer(404, {"error": "no such path"})
        with lock:
            return self._answer(200, deliveries)

    def do_POST(self):
        body = self._read()
        if self.path == "/_control":
            with lock:
                statuses.extend(json.loads(body)["statuses"])
            return self._answer(204)
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {"path": self.path, "headers": headers, "verified": None, "error": None}
        try:
            record["body"] = json.loads(body)
        except ValueError as e:
            record["body"] = None
            record["error"] = f"not JSON: {e}"
        if SECRET is not None:
            try:
                Webhook(SECRET).verify(body, headers)
                record["verified"] = True
            except Exception as e:  # the library's errors, shown to the test
                record["verified"] = False
                record["error"] = f"{type(e).__name__}: {e}"
        with lock:
            status = statuses.pop(0) if statuses else 204
            record["answered"] = status
            deliveries.append(record)
        self._answer(status)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on {PORT}", flush=True)
server.serve_forever()
