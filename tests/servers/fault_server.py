"""A fault-injecting OpenAI-compatible HTTP server for tests and benchmarks.

Stdlib only (``http.server.ThreadingHTTPServer``), bound to 127.0.0.1 on a free
port. Serves ``POST /v1/chat/completions``, ``POST /v1/completions`` and
``GET /v1/models`` with deterministic answers derived from the request text:

- chat: ``"Response <hash> ... Score: <s>"`` (or ``{"score": s}`` when the
  request asks for a JSON-schema ``response_format``), s = sha256(text) mod 101;
- completions with ``logprobs`` and no echo: next token `` Yes`` with
  ``top_logprobs`` {" Yes", " No"} (P(Yes) = s/100 clipped to [0.01, 0.99]);
- completions with ``echo``: the prompt's whitespace tokens, each log-prob -1.

Faults are ``Rule``s matched against the request *text* (chat: the last user
message; completions: the prompt) and path; ``times=k`` applies the fault to the
first k requests of each distinct text (None: always):

``429`` (with ``Retry-After``), ``500``, ``slow`` (sleeps ``slow_s`` first),
``drop`` (closes the connection without answering), ``malformed`` (HTTP 200,
truncated JSON), ``nonnumeric`` (a judge answer without a number / without
Yes/No), ``401`` / ``400`` (error JSON with ``message``), ``quota`` (OpenAI's used-up
quota: HTTP 429 with error code ``insufficient_quota``).

A query string is not part of the route; ``log`` keeps it (``query``) for every request.

``latency_s`` delays every answer (fixed-latency mode for benchmarks). The
server counts requests per text (``count(text)``, ``count_containing(sub)``,
``total()``; ``rows_total()`` leaves out the stage preflight's probes) so tests can
assert that finished work was not requested again.

Run standalone: ``python tests/servers/fault_server.py --latency 0.2`` prints
``URL http://127.0.0.1:PORT/v1`` and serves until killed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFLIGHT_MARK = "cje preflight"  # in the text of every probe of the stage preflight
FAULTS = ("429", "500", "slow", "drop", "malformed", "nonnumeric", "401", "400", "quota")


@dataclass
class Rule:
    """One fault: ``fault`` (see FAULTS) for requests whose text contains ``match``
    (and whose path ends with ``path`` if given), for the first ``times`` requests
    of each distinct text (None: every time)."""

    fault: str
    match: str = ""
    times: int | None = None
    path: str | None = None
    retry_after: float | None = 0.05
    slow_s: float = 2.0
    message: str = "fault injected"

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; known: {FAULTS}")


def score_of(text: str) -> int:
    """The deterministic 0-100 score the server gives ``text``."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 101


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client hung up (a stopped stage cancels its requests in flight)
        super().handle_error(request, client_address)


class FaultServer:
    """The server; use as a context manager or ``start()``/``stop()``.

    ``url`` is the base_url (``http://127.0.0.1:PORT/v1``). ``rules`` and
    ``latency_s`` may be changed while running (``set_rules``).
    """

    def __init__(self, rules: list[Rule] | tuple = (), latency_s: float = 0.0,
                 port: int = 0):
        self.rules = list(rules)
        self.latency_s = latency_s
        self._counts: Counter[str] = Counter()
        self.auth_headers: set[str] = set()
        self.log: list[dict] = []  # {"path", "query", "text", "fault", "body"} per request
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _make_handler(self))
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def set_rules(self, rules: list[Rule]) -> None:
        """Replace the fault rules."""
        with self._lock:
            self.rules = list(rules)

    def count(self, text: str) -> int:
        """Requests received whose text equals ``text``."""
        with self._lock:
            return self._counts[text]

    def count_containing(self, sub: str) -> int:
        """Requests received whose text contains ``sub``."""
        with self._lock:
            return sum(n for t, n in self._counts.items() if sub in t)

    def counts(self) -> dict[str, int]:
        """A copy of the per-text request counts."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        """All requests received."""
        with self._lock:
            return sum(self._counts.values())

    def rows_total(self) -> int:
        """Requests received for rows: all but the stage preflight's probes (their text
        contains ``PREFLIGHT_MARK``; ``cje.llm.stages.preflight``)."""
        with self._lock:
            return sum(n for t, n in self._counts.items() if PREFLIGHT_MARK not in t)

    def preflight_total(self) -> int:
        """Preflight probes received."""
        return self.total() - self.rows_total()

    def row_log(self) -> list[dict]:
        """``log`` without the preflight's probes."""
        with self._lock:
            return [e for e in self.log if PREFLIGHT_MARK not in e["text"]]

    def _register(self, path: str, text: str, body: dict, query: str = "") -> Rule | None:
        with self._lock:
            self._counts[text] += 1
            n = self._counts[text]
            chosen = None
            for r in self.rules:
                if r.match in text and (r.path is None or path.endswith(r.path)) \
                        and (r.times is None or n <= r.times):
                    chosen = r
                    break
            self.log.append({"path": path, "query": query, "text": text, "body": body,
                             "fault": chosen.fault if chosen else None})
            return chosen

    def start(self) -> "FaultServer":
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _request_text(path: str, body: dict) -> str:
    if path.endswith("/chat/completions"):
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        return content if isinstance(content, str) else json.dumps(content)
    prompt = body.get("prompt", "")
    return prompt[0] if isinstance(prompt, list) and prompt else str(prompt)


def _usage(text: str, completion: int) -> dict:
    pt = max(1, len(text) // 4)
    return {"prompt_tokens": pt, "completion_tokens": completion,
            "total_tokens": pt + completion}


def _chat_answer(body: dict, text: str, nonnumeric: bool) -> dict:
    s = score_of(text)
    h = hashlib.sha256(text.encode()).hexdigest()[:8]
    if nonnumeric:
        content = "I think the answer is rather good."
    elif (body.get("response_format") or {}).get("type") == "json_schema":
        content = json.dumps({"score": s})
    else:
        content = f"Response {h} to a prompt of {len(text)} characters. Score: {s}"
    return {"id": f"chatcmpl-{h}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fault"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": _usage(text, 12)}


def _completion_answer(body: dict, text: str, nonnumeric: bool) -> dict:
    s = score_of(text)
    h = hashlib.sha256(text.encode()).hexdigest()[:8]
    choice: dict = {"index": 0, "finish_reason": "stop", "logprobs": None}
    if body.get("echo"):
        toks = [t + " " for t in text.split(" ")] + [" ok"]
        offs, pos = [], 0
        for t in toks:
            offs.append(pos)
            pos += len(t)
        choice["text"] = "".join(toks)
        choice["logprobs"] = {"tokens": toks, "token_logprobs": [None] + [-1.0] * (len(toks) - 1),
                              "text_offset": offs, "top_logprobs": None}
    elif body.get("logprobs"):
        p = min(0.99, max(0.01, s / 100.0))
        top = {" Maybe": -0.1, " The": -1.5} if nonnumeric else \
            {" Yes": math.log(p), " No": math.log(1 - p)}
        first = next(iter(top))
        choice["text"] = first
        choice["logprobs"] = {"tokens": [first], "token_logprobs": [top[first]],
                              "text_offset": [len(text)], "top_logprobs": [top]}
    else:
        choice["text"] = f" Response {h} to a prompt of {len(text)} characters."
    return {"id": f"cmpl-{h}", "object": "text_completion", "created": int(time.time()),
            "model": body.get("model", "fault"), "choices": [choice], "usage": _usage(text, 8)}


def _make_handler(server: FaultServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()  # no Nagle: header and body writes go out at once
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def _error(self, status: int, message: str, headers: dict | None = None) -> None:
            body = {"error": {"message": message, "type": "fault", "code": status}}
            self._send(status, json.dumps(body).encode(), headers)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, json.dumps({"object": "list", "data": [
                    {"id": "fault-model", "object": "model"}]}).encode())
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            server.auth_headers.add(self.headers.get("Authorization", ""))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._error(400, "request body is not JSON")
                return
            path, _, query = self.path.partition("?")
            path = path.rstrip("/")
            if not (path.endswith("/chat/completions") or path.endswith("/completions")):
                self._error(404, f"no route {self.path}")
                return
            text = _request_text(path, body)
            rule = server._register(path, text, body, query)
            if server.latency_s:
                time.sleep(server.latency_s)
            fault = rule.fault if rule else None
            if fault == "slow":
                time.sleep(rule.slow_s)
            if fault == "drop":
                self.close_connection = True
                return
            if fault == "429":
                hdr = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
                self._error(429, "rate limited (fault injected)", hdr)
            elif fault == "500":
                self._error(500, "internal error (fault injected)")
            elif fault in ("401", "400"):
                self._error(int(fault), rule.message)
            elif fault == "quota":  # OpenAI's answer when the account's credit is used up
                body = {"error": {"message": "You exceeded your current quota, please check "
                                             "your plan and billing details.",
                                  "type": "insufficient_quota", "param": None,
                                  "code": "insufficient_quota"}}
                self._send(429, json.dumps(body).encode())
            elif fault == "malformed":
                self._send(200, b'{"id": "x", "choices": [{"index": 0, "mess')
            else:
                nonnum = fault == "nonnumeric"
                ans = _chat_answer(body, text, nonnum) if path.endswith("/chat/completions") \
                    else _completion_answer(body, text, nonnum)
                self._send(200, json.dumps(ans).encode())

    return Handler


def main(argv: list[str] | None = None) -> int:
    """CLI: serve with a fixed latency (no faults) until killed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    srv = FaultServer(latency_s=args.latency, port=args.port)
    print(f"URL {srv.url}", flush=True)
    try:
        srv._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
