"""A simulated OpenAI-compatible provider for the full-scale benchmark and its CI-sized test.

Stdlib only (``asyncio`` streams, HTTP/1.1 keep-alive), bound to 127.0.0.1, run as
its own process (``python tests/servers/provider_sim.py --settings S.json --log L``
prints ``URL http://127.0.0.1:PORT/v1`` and serves until SIGTERM/SIGINT). It lives
next to ``fault_server.py`` so the tests import it by path like the fault server,
and ``benchmarks/fullscale.py`` starts the same file as a subprocess.

What a hosted provider does, and what the benchmark needs to count:

- **latency**: lognormal with median ``latency_median_s`` and shape
  ``latency_sigma``; with probability ``tail_p`` an answer takes ``tail_factor``
  times longer (a heavy tail on top of the lognormal one);
- **rate limits**: ``rpm`` requests and ``tpm`` tokens in every sliding window of
  ``window_s`` seconds (scaled: ``rpm * window_s / 60``); a request over either is
  answered at once with HTTP 429 and ``Retry-After`` = seconds until the window
  admits it. Tokens are charged on arrival as ``len(text) // 4 + max_tokens`` (the
  text: the prompt, or the messages' contents), plus the generated tokens when
  ``max_tokens`` was not given;
- **faults**: with probability ``p_5xx`` an HTTP 500/503 after the latency, with
  ``p_reset`` a connection closed without an answer (seeded: ``seed``);
- **answers, deterministic in the request**:
  * ``/completions`` with ``echo``: the sent text split into tokens (special
    ``<|...|>`` / ``<...>`` markers, newline runs, words with their leading space)
    that spell it exactly, with ``text_offset``; each token's log-prob depends on
    the token and, slightly, on the system prompt (so policies differ a little),
    plus one generated token when ``max_tokens`` >= 1 (first log-prob null, as
    OpenAI-style servers do);
  * ``/completions`` with ``logprobs`` and no echo: one token, top log-probs
    " Yes"/" No" from the quality named in the text;
  * ``/completions`` otherwise (generation): 16 .. ``max_tokens`` words and a
    closing ``Quality: 0.xx.`` sentence; quality = 0.6 + a policy effect from the
    system prompt (``unhelpful`` in it: -0.3) + noise from the prompt and seed;
  * ``/chat/completions`` (judge, oracle): score 0-100 = quality found in the text
    + noise (sd 0.15 for a model named ``*judge*``, 0.04 otherwise), as
    ``{"score": N}`` when a JSON-schema ``response_format`` is asked for;
- **missing capabilities** (``lacks``: names of ``cje.llm.presets.CAPABILITIES``), as
  real servers lack them: ``chat`` / ``completions`` answer 404 (no route);
  ``completion_logprobs``, ``prompt_logprobs`` (echo) and ``json_mode``
  (``response_format``) are refused with HTTP 400 (``lack_mode: "refuse"``, as
  llama-server refuses echo) or silently ignored (``"ignore"``: no ``top_logprobs``,
  log-probs of the generated token only, a plain-text answer);
- **request log** (``--log``, JSON lines, flushed every 0.5 s and at exit): one line
  per request: ``t`` (arrival, epoch s), ``done`` (answer or reset sent), ``kind``
  (``generate``, ``echo``, ``logprobs``, ``chat``), ``key`` (sha256 of the canonical
  JSON body: identical requests share it),
  ``status`` (200, 429, 500, 503, or 0 for a reset), ``model``, ``tokens`` (charged),
  ``fault``.

``sim_log.summarize_log(records, rpm, tpm, window_s)`` (re-exported here) counts what a
benchmark reports: requests by status, distinct keys, keys answered 200 more than
once, and the peak requests and tokens in any sliding window compared with the limits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import signal
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from sim_log import peak_in_window, read_log, summarize_log  # noqa: F401 (re-exported)

TOKEN = re.compile(r"<\|[^|>]*\|>|<[a-z_]+>|\n+|\s?[^\s<]+|\s|<")
QUALITY = re.compile(r"Quality: (0\.\d+|1\.0+)")
WORDS = ("the answer depends on what you need most here and there are several ways to "
         "think about it carefully before you decide which option fits your case best").split()


@dataclass
class Settings:
    """Simulator settings (JSON file keys of the same names)."""

    latency_median_s: float = 0.25
    latency_sigma: float = 0.6
    tail_p: float = 0.005
    tail_factor: float = 8.0
    rpm: float | None = None
    tpm: float | None = None
    window_s: float = 60.0
    p_5xx: float = 0.0
    p_reset: float = 0.0
    seed: int = 0
    lacks: tuple = ()
    lack_mode: str = "refuse"


def _u(*parts: object) -> float:
    """A deterministic uniform(0, 1) from ``parts``."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def _text_of(path: str, body: dict) -> str:
    if path.endswith("/chat/completions"):
        return "".join(str(m.get("content", "")) for m in body.get("messages", []))
    prompt = body.get("prompt", "")
    return prompt[0] if isinstance(prompt, list) and prompt else str(prompt)


def _system_of(text: str) -> str:
    """The system prompt of a rendered llama3/chatml/gemma chat ('' when none)."""
    m = re.search(r"system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", text, re.S) or \
        re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", text, re.S)
    return m.group(1) if m else ""


def _usage(text: str, completion: int) -> dict:
    pt = max(1, len(text) // 4)
    return {"prompt_tokens": pt, "completion_tokens": completion, "total_tokens": pt + completion}


def generate(body: dict, text: str) -> tuple[str, int, str]:
    """(response text, completion tokens, finish_reason) of a generation request."""
    system = _system_of(text)
    effect = (-0.3 if "unhelpful" in system.lower() else 0.0) + 0.2 * (_u("policy", system) - 0.5)
    seed = (body.get("seed"), body.get("temperature"))
    noise = 0.25 * (_u("q", text, seed) - 0.5)
    quality = min(0.99, max(0.01, 0.6 + effect + noise))
    max_tokens = int(body.get("max_tokens") or 256)
    n = 16 + int(_u("n", text, seed) * max(1, min(max_tokens, 120) - 20))
    words = [WORDS[int(_u("w", text, seed, i) * len(WORDS))] for i in range(n)]
    out = " ".join(words).capitalize() + f". Quality: {quality:.2f}."
    return out, n + 4, "stop"


def echo_logprobs(text: str, max_tokens: int) -> tuple[dict, int]:
    """Echoed tokens of ``text`` (+ one generated token when ``max_tokens`` >= 1)."""
    system = _system_of(text)
    tokens = TOKEN.findall(text)
    assert "".join(tokens) == text, "tokenizer must spell the text"
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    lps: list[float | None] = [
        -(0.3 + 2.0 * _u("t", t)) - 0.05 * _u("s", system, t) for t in tokens]
    lps[0] = None
    n_gen = 1 if max_tokens >= 1 else 0
    if n_gen:
        tokens.append(" ok")
        offsets.append(pos)
        lps.append(-0.7)
    return {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets,
            "top_logprobs": None}, n_gen


def score_for(text: str, model: str) -> int:
    """The 0-100 score a judge (noisy) or oracle (less noisy) gives ``text``."""
    m = QUALITY.findall(text)
    quality = float(m[-1]) if m else 0.5
    sd = 0.15 if "judge" in model.lower() else 0.04
    z = math.sqrt(-2 * math.log(max(1e-12, _u("z1", model, text)))) * \
        math.cos(2 * math.pi * _u("z2", model, text))
    return int(round(100 * min(1.0, max(0.0, quality + sd * z))))


def lacking(path: str, body: dict, lacks: tuple, mode: str) -> tuple[int, str, dict]:
    """(status, message, body to answer instead) for a request needing a missing capability.

    Status 0: answer ``body`` (unchanged, or with the ignored field dropped)."""
    chat = path.endswith("/chat/completions")
    if ("chat" if chat else "completions") in lacks:
        return 404, f"no route {path} (simulated: this server has no such endpoint)", body
    if chat and body.get("response_format") and "json_mode" in lacks:
        field, message = "response_format", "response_format is not supported (simulated)"
    elif not chat and body.get("echo") and "prompt_logprobs" in lacks:
        field, message = "echo", "Only no echo is supported (simulated)"
    elif not chat and body.get("logprobs") and not body.get("echo") and \
            "completion_logprobs" in lacks:
        field, message = "logprobs", "logprobs is not supported (simulated)"
    else:
        return 0, "", body
    if mode == "refuse":
        return 400, message, body
    if field == "echo":  # answered as without echo: log-probs of the generated token only
        return 0, "", {**{k: v for k, v in body.items() if k != "echo"}, "max_tokens": 1,
                       "cje_sim_generated_logprob": True}
    return 0, "", {k: v for k, v in body.items() if k != field}


def answer(path: str, body: dict) -> tuple[dict, int]:
    """(response JSON, completion tokens) for a valid request."""
    text = _text_of(path, body)
    model = str(body.get("model", "sim"))
    h = hashlib.sha256(text.encode()).hexdigest()[:12]
    base = {"id": f"sim-{h}", "created": int(time.time()), "model": model}
    if path.endswith("/chat/completions"):
        s = score_for(text, model)
        fmt = (body.get("response_format") or {}).get("type")
        content = json.dumps({"score": s}) if fmt == "json_schema" else f"Score: {s}"
        return {**base, "object": "chat.completion", "choices": [{
            "index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}],
            "usage": _usage(text, 6)}, 6
    max_tokens = int(body.get("max_tokens") if body.get("max_tokens") is not None else 16)
    choice: dict = {"index": 0, "finish_reason": "stop", "logprobs": None}
    if body.get("echo"):
        choice["logprobs"], n = echo_logprobs(text, max_tokens)
        choice["text"] = text + (" ok" if n else "")
    elif body.get("cje_sim_generated_logprob"):  # echo ignored: the generated token's only
        choice["text"], n = " ok", 1
        choice["logprobs"] = {"tokens": [" ok"], "token_logprobs": [-0.7],
                              "text_offset": [len(text)], "top_logprobs": [{" ok": -0.7}]}
    elif body.get("logprobs"):
        p = min(0.99, max(0.01, score_for(text, model) / 100))
        top = {" Yes": math.log(p), " No": math.log(1 - p)}
        choice["text"], n = " Yes" if p >= 0.5 else " No", 1
        choice["logprobs"] = {"tokens": [choice["text"]], "token_logprobs": [top[choice["text"]]],
                              "text_offset": [len(text)], "top_logprobs": [top]}
    else:
        choice["text"], n, choice["finish_reason"] = generate(body, text)
    return {**base, "object": "text_completion", "choices": [choice],
            "usage": _usage(text, n)}, n


class Window:
    """Units admitted in the last ``window_s`` seconds (a deque of (time, units))."""

    def __init__(self, limit: float | None, window_s: float):
        self.limit, self.window_s = limit, window_s
        self.events: deque = deque()
        self.total = 0.0

    def _trim(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.window_s:
            self.total -= self.events.popleft()[1]

    def wait_for(self, now: float, units: float) -> float:
        """0 if ``units`` fit now, else seconds until enough units leave the window."""
        if self.limit is None:
            return 0.0
        self._trim(now)
        excess = self.total + units - self.limit
        if excess <= 0:
            return 0.0
        freed = 0.0
        for t, u in self.events:
            freed += u
            if freed >= excess:
                return max(0.001, t + self.window_s - now)
        return self.window_s

    def add(self, now: float, units: float) -> None:
        if self.limit is not None and units:
            self.events.append((now, units))
            self.total += units


class Simulator:
    """The provider: limits, faults, answers and the request log."""

    def __init__(self, settings: Settings, log_path: str | None):
        self.s = settings
        w = settings.window_s
        self.requests = Window(settings.rpm * w / 60 if settings.rpm else None, w)
        self.tokens = Window(settings.tpm * w / 60 if settings.tpm else None, w)
        self.rng = random.Random(settings.seed)
        self.log_path = log_path
        self.pending: list[str] = []

    def latency(self) -> float:
        s = self.s
        lat = s.latency_median_s * math.exp(s.latency_sigma * self.rng.gauss(0.0, 1.0))
        return lat * (s.tail_factor if self.rng.random() < s.tail_p else 1.0)

    def record(self, **fields) -> None:
        self.pending.append(json.dumps(fields, separators=(",", ":")))

    def flush(self) -> None:
        if self.pending and self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write("\n".join(self.pending) + "\n")
        self.pending.clear()

    async def handle(self, path: str, raw: bytes) -> tuple[int, dict, dict, bool]:
        """(status, JSON payload, extra headers, reset) for one POST."""
        t = time.time()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, _error("request body is not JSON"), {}, False
        if not (path.endswith("/completions")):
            return 404, _error(f"no route {path}"), {}, False
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        text = _text_of(path, body)
        charge = len(text) // 4 + int(body.get("max_tokens") or 0)
        wait = max(self.requests.wait_for(t, 1), self.tokens.wait_for(t, charge))
        kind = ("chat" if path.endswith("/chat/completions") else "echo" if body.get("echo")
                else "logprobs" if body.get("logprobs") else "generate")
        meta = dict(t=round(t, 4), kind=kind, key=key, model=body.get("model"), tokens=charge,
                    preflight="cje preflight:" in text)  # cje.llm.stages.preflight.PROBE_PROMPT
        if wait > 0:
            self.record(**meta, done=round(t, 4), status=429, fault="rate_limit")
            return 429, _error("rate limit reached (simulated)"), \
                {"Retry-After": f"{wait:.3f}"}, False
        status, message, body = lacking(path, body, tuple(self.s.lacks), self.s.lack_mode)
        if status:
            self.record(**meta, done=round(t, 4), status=status, fault="lacks")
            return status, _error(message), {}, False
        self.requests.add(t, 1)
        self.tokens.add(t, charge)
        fault = None
        r = self.rng.random()
        if r < self.s.p_reset:
            fault = "reset"
        elif r < self.s.p_reset + self.s.p_5xx:
            fault = "5xx"
        await asyncio.sleep(self.latency() * (0.5 if fault == "reset" else 1.0))
        if fault == "reset":
            self.record(**meta, done=round(time.time(), 4), status=0, fault=fault)
            return 0, {}, {}, True
        if fault == "5xx":
            status = 500 if self.rng.random() < 0.5 else 503
            self.record(**meta, done=round(time.time(), 4), status=status, fault=fault)
            return status, _error("internal error (simulated)"), {}, False
        payload, completion = answer(path, body)
        if body.get("max_tokens") is None:
            self.tokens.add(time.time(), completion)
        self.record(**meta, done=round(time.time(), 4), status=200, fault=None)
        return 200, payload, {}, False


def _error(message: str) -> dict:
    return {"error": {"message": message, "type": "simulated", "code": None}}


async def _serve_connection(sim: Simulator, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            parts = line.decode("latin-1").split()
            if len(parts) < 2:
                return
            method, path = parts[0], parts[1].partition("?")[0]  # a query is not the route
            length = 0
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                name, _, value = h.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            raw = await reader.readexactly(length) if length else b""
            if method == "GET" and path.rstrip("/").endswith("/models"):
                status, payload, headers, reset = 200, {"object": "list", "data": [
                    {"id": "sim", "object": "model"}]}, {}, False
            elif method != "POST":
                status, payload, headers, reset = 404, _error(f"no route {path}"), {}, False
            else:
                status, payload, headers, reset = await sim.handle(path.rstrip("/"), raw)
            if reset:
                writer.transport.abort()
                return
            data = json.dumps(payload).encode()
            head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
                    "Content-Type: application/json", f"Content-Length: {len(data)}",
                    "Connection: keep-alive", *[f"{k}: {v}" for k, v in headers.items()]]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        if not writer.transport.is_closing():
            writer.close()


async def serve(settings: Settings, log_path: str | None, port: int = 0) -> None:
    """Serve until SIGTERM/SIGINT; print the URL first."""
    sim = Simulator(settings, log_path)
    server = await asyncio.start_server(lambda r, w: _serve_connection(sim, r, w),
                                        "127.0.0.1", port, backlog=1024)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    print(f"URL {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(0.5)
            sim.flush()
    task = asyncio.create_task(flusher())
    async with server:
        await stop.wait()
    task.cancel()
    sim.flush()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--settings FILE.json`` (keys of ``Settings``), ``--log FILE``, ``--port``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=None, help="JSON file with Settings fields")
    ap.add_argument("--log", default=None, help="request log (JSON lines)")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    values = json.loads(Path(args.settings).read_text()) if args.settings else {}
    unknown = set(values) - set(asdict(Settings()))
    if unknown:
        print(f"provider_sim: unknown settings {sorted(unknown)}", file=sys.stderr)
        return 2
    if values.get("lack_mode", "refuse") not in ("refuse", "ignore"):
        print("provider_sim: lack_mode must be 'refuse' or 'ignore'", file=sys.stderr)
        return 2
    values["lacks"] = tuple(values.get("lacks", ()))
    asyncio.run(serve(Settings(**values), args.log, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
