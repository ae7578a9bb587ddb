#!/usr/bin/env python3
"""A scripted stand-in for an OpenAI-compatible server, for the replies a
real one cannot be made to give on demand: 429 and 5xx, with or without
Retry-After. The AI tests use it only for those (and say so); everything
else runs against the real llama.cpp server.

    python3 scripted_upstream.py PORT

POST /_script  {"replies": [{"status": 429, "retry_after": "1"}, ...]}
               the next chat completions get these answers, in order; then 200
GET  /_hits    how many chat completion requests arrived
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
replies = []
hits = 0

COMPLETION = {
    "id": "chatcmpl-scripted",
    "object": "chat.completion",
    "created": 0,
    "model": "scripted",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "scripted answer"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_hits":
            with lock:
                self.answer(200, {"hits": hits})
        elif self.path == "/v1/models":
            self.answer(200, {"object": "list", "data": []})
        else:
            self.answer(404, {"error": {"message": "not found"}})

    def do_POST(self):
        global hits
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/_script":
            with lock:
                replies[:] = json.loads(body)["replies"]
            self.answer(204, {})
        elif self.path == "/v1/chat/completions":
            with lock:
                hits += 1
                reply = replies.pop(0) if replies else {"status": 200}
            if reply["status"] == 200:
                self.answer(200, COMPLETION)
            else:
                headers = []
                if "retry_after" in reply:
                    headers.append(("Retry-After", reply["retry_after"]))
                self.answer(
                    reply["status"],
                    {"error": {"message": "scripted failure", "type": "scripted", "code": reply["status"]}},
                    headers,
                )
        else:
            self.answer(404, {"error": {"message": "not found"}})


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(f"listening on 127.0.0.1:{sys.argv[1]}", flush=True)
server.serve_forever()
