"""``benchmarks/demo_load.py``: how it tells a served request from a refused, failed, lost or hung
one (against a stub server), and a short load test of ``attngan demo`` itself: every request
served or refused at once, none lost or hung, memory level."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .test_demo import _require

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_load.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("demo_load", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


demo_load = _load_script()


class _Stub(BaseHTTPRequestHandler):
    """Gradio's two calls, answering as the caption says: ``refuse`` (503), ``bad-post`` (500),
    ``N-images`` (a result of N images a stage), ``error`` (an error event), ``lost`` (the stream
    ends without a result), ``heartbeats`` (heartbeats, never a result), ``silent`` (nothing)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        caption = json.loads(body)["data"][0]
        codes = {"refuse": 503, "bad-post": 500}
        payload = {"event_id": caption} if caption not in codes else {"detail": "Queue is full."}
        self._send(codes.get(caption, 200), json.dumps(payload).encode())

    def do_GET(self) -> None:
        kind = self.path.rsplit("/", 1)[1]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            if kind.endswith("-images"):
                item = {"image": {"url": "http://127.0.0.1/x.png"}, "caption": "image 1"}
                stages = [[item] * int(kind.split("-")[0])] * 2
                self._event("complete", [*stages, [], "summary"])
            elif kind == "error":
                self._event("error", "the caption has no words")
            elif kind == "lost":
                self._event("heartbeat", None)
            elif kind == "heartbeats":
                for _ in range(50):
                    self._event("heartbeat", None)
                    time.sleep(0.1)
            elif kind == "silent":
                time.sleep(3)
        except OSError:  # the client gave up
            pass

    def _event(self, name: str, data) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("caption", "kind", "detail"),
    [
        ("2-images", "served", ""),
        ("refuse", "refused", "HTTP 503"),
        ("bad-post", "error", "HTTP 500"),
        ("3-images", "error", "expected 2 images per stage, got [3, 3]"),
        ("error", "error", "event: error"),
        ("lost", "lost", "ended after event 'heartbeat'"),
        ("heartbeats", "hung", "heartbeats only"),
        ("silent", "hung", "went silent"),
    ],
)
def test_each_answer_is_counted_as_what_it_is(stub, caption, kind, detail):
    start = time.monotonic()
    got, said = demo_load.call(stub, caption, seed=0, images=2, timeout=1.0)
    assert (got, detail in said) == (kind, True), said
    assert time.monotonic() - start < 2.5  # a hung request is given up after --timeout


def test_percentiles_interpolate():
    assert demo_load.percentile([], 0.5) is None
    assert demo_load.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert demo_load.percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)


@pytest.mark.slow
def test_the_demo_under_load_serves_or_refuses_every_request(tmp_path):
    """24 clients for 15 s against a queue of 16: some requests are refused (HTTP 503) at once,
    the others served, none fails, hangs or is lost, and the server's memory stays level."""
    _require("gradio")
    out = tmp_path / "load.json"
    argv = ["--clients", "24", "--duration", "15", "--images", "2", "--timeout", "60"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert (report["errors"], report["hung"], report["lost"]) == (0, 0, 0), done.stdout
    assert report["served"] >= 5 and report["refused"] >= 1, done.stdout
    assert report["refused_max_s"] < 5, done.stdout  # refused at once, not after a wait
    assert report["rss_peak_gb"] > 0.1 and report["rss_growth_mb"] < 300, done.stdout
    assert "served" in done.stdout and "p95" in done.stdout
