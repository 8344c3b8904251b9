"""The embedded OpenAI-compatible model server, and the context manager that runs it.

``local_server(n_threads=1, port=None)`` starts ``python -m cje.llm.local.server``
as a child process bound to 127.0.0.1 (a free port unless ``port`` is given),
waits for ``GET /health``, yields ``http://127.0.0.1:PORT/v1`` and stops the
child on exit, on exceptions and on SIGTERM. The child pins its threads
(llama.cpp ``n_threads`` plus ``OMP_NUM_THREADS`` & co.: OpenMP threads
competing for the cores cut throughput from ~27 to < 1 token/s) and exits by
itself if its parent dies (even by SIGKILL), so no server outlives its stage.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (semantics in :mod:`cje.llm.local.api`). Requests
are served one at a time (one model, ``n_threads`` threads).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from cje.atomic import atomic_write_text
from cje.llm.local import api as local_api
from cje.llm.local.model import MODEL_ID, MODEL_PACKAGE, ensure_model_file

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS")
STARTUP_TIMEOUT_S = 120.0


def pinned_env(n_threads: int) -> dict[str, str]:
    """Return a copy of ``os.environ`` with every thread-count variable set to ``n_threads``.

    Parameters
    ----------
    n_threads : int
        Threads.

    Returns
    -------
    dict of str to str
        The environment for the server's child process.
    """
    env = dict(os.environ)
    env.update({name: str(n_threads) for name in THREAD_ENV_VARS})
    return env


# -- child side: the HTTP server ----------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ModelHTTPServer"

    def setup(self) -> None:
        super().setup()  # no Nagle: header and body writes leave at once (saves ~40 ms a call)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args) -> None:  # access log only when asked
        if os.environ.get("CJE_LOCAL_SERVER_ACCESS_LOG"):
            super().log_message(fmt, *args)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok", "model": MODEL_ID, "pid": os.getpid()})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "cje"}]})
        else:
            self._send(404, {"error": {"message": f"no route GET {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802

        routes = {"/v1/completions": local_api.completions, "/v1/chat/completions": local_api.chat_completions}
        handler = routes.get(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if handler is None:
            self._send(404, {"error": {"message": f"no route POST {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise local_api.ApiError("request body must be a JSON object")
            with self.server.model_lock:
                if handler is local_api.chat_completions:
                    payload = handler(self.server.engine, body, self.server.chat_template)
                else:
                    payload = handler(self.server.engine, body)
            self._send(200, payload)
        except json.JSONDecodeError as exc:
            self._send(400, {"error": {"message": f"request body is not JSON: {exc}", "type": "invalid_request_error"}})
        except local_api.ApiError as exc:
            self._send(exc.status, exc.body)
        except Exception as exc:  # a bug or a llama.cpp failure: report, keep serving
            self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}})


class _ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, engine, chat_template: str):
        super().__init__(address, _Handler)
        self.engine = engine
        self.chat_template = chat_template
        self.model_lock = threading.Lock()


def serve(
    model_path: str,
    host: str = "127.0.0.1",
    port: int = 0,
    n_threads: int = 1,
    port_file: str | None = None,
    parent_pid: int | None = None,
    chat_template: str = "gemma",
    n_ctx: int = 4096,
) -> None:
    """Load the model and serve until SIGTERM/SIGINT or until ``parent_pid`` dies.

    The bound port (``port=0``: any free one) is written atomically to
    ``port_file`` once the server is listening and the model loaded.

    Parameters
    ----------
    model_path : str
        The .gguf file.
    host : str, default='127.0.0.1'
        The address to bind.
    port : int, default=0
        The port (0: any free one).
    n_threads : int, default=1
        llama.cpp threads.
    port_file : str or None, default=None
        Where to write the bound port.
    parent_pid : int or None, default=None
        Exit when this process is gone.
    chat_template : str, default='gemma'
        Template of ``/v1/chat/completions``.
    n_ctx : int, default=4096
        The context window.
    """
    # llama-cpp-python (the `local` extra) is loaded only when the server starts
    from cje.llm.local.engine import LocalEngine

    engine = LocalEngine(model_path, n_threads=n_threads, n_ctx=n_ctx)
    httpd = _ModelHTTPServer((host, port), engine, chat_template)
    stopping = threading.Event()

    def stop(*_args) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if parent_pid:
        def watch_parent() -> None:
            while not stopping.wait(0.5):
                if os.getppid() != parent_pid:
                    stop()

        threading.Thread(target=watch_parent, daemon=True).start()
    if port_file:
        atomic_write_text(port_file, str(httpd.server_address[1]))
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        engine.close()


# -- parent side: start, health-check, stop -----------------------------------------


def _health(base: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextlib.contextmanager
def local_server(
    n_threads: int = 1,
    port: int | None = None,
    model_package: str = MODEL_PACKAGE,
    chat_template: str = "gemma",
    log_file: str | os.PathLike | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> Iterator[str]:
    """Run the embedded model server for the duration of a ``with`` block.

    Parameters
    ----------
    n_threads : int, default=1
        llama.cpp and OpenMP threads.
    port : int or None, default=None
        None = a free port chosen by the OS.
    model_package : str, default=MODEL_PACKAGE
        See :func:`ensure_model_file`.
    chat_template : str, default='gemma'
        For ``/v1/chat/completions``.
    log_file : str, PathLike or None, default=None
        The child's stderr (default: a temporary file, quoted in errors).
    startup_timeout_s : float, default=STARTUP_TIMEOUT_S
        How long to wait for ``/health``.

    Yields
    ------
    str
        The base URL ``http://127.0.0.1:PORT/v1``.

    Raises
    ------
    RuntimeError
        With the server log, if the child dies or is not healthy within ``startup_timeout_s``.
    """
    model_path = ensure_model_file(model_package)
    workdir = Path(tempfile.mkdtemp(prefix="cje-local-server-"))
    port_file = workdir / "port"
    log_path = Path(log_file) if log_file else workdir / "server.log"
    cmd = [
        sys.executable, "-m", "cje.llm.local.server",
        "--model", str(model_path), "--port", str(port or 0), "--threads", str(n_threads),
        "--port-file", str(port_file), "--parent-pid", str(os.getpid()), "--chat-template", chat_template,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=pinned_env(n_threads))
    previous, installed = None, False
    if threading.current_thread() is threading.main_thread():
        def on_sigterm(signum, frame):
            if previous == signal.SIG_IGN:
                return
            _stop(proc)
            if callable(previous):
                previous(signum, frame)  # the stage's own handler decides what happens next
            else:
                raise SystemExit(128 + signum)  # default action, but run `finally` blocks first

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        installed = True
    try:
        deadline = time.monotonic() + startup_timeout_s
        base = None
        while base is None or not _health(base):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"local model server exited with code {proc.returncode} during startup; log {log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"local model server not healthy after {startup_timeout_s:.0f} s; log {log_path}:\n{_tail(log_path)}"
                )
            if base is None and port_file.exists():
                base = f"http://127.0.0.1:{int(port_file.read_text())}"
            time.sleep(0.1)
        yield f"{base}/v1"
    finally:
        _stop(proc)
        if installed:  # None: a handler not set from Python; fall back to the default
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        for path in (port_file, workdir / "server.log"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            workdir.rmdir()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process (``python -m cje.llm.local.server``).

    Parameters
    ----------
    argv : list of str or None, default=None
        Command-line arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code, 0.
    """
    parser = argparse.ArgumentParser(prog="python -m cje.llm.local.server", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path of the .gguf file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--chat-template", default="gemma")
    parser.add_argument("--port-file", default=None, help="write the bound port here once ready")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    for name in THREAD_ENV_VARS:  # effective only if set before llama.cpp loads OpenMP
        os.environ.setdefault(name, str(args.threads))
    serve(args.model, args.host, args.port, args.threads, args.port_file, args.parent_pid, args.chat_template, args.n_ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
