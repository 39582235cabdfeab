"""Load test of ``attngan demo``: many clients call its HTTP API at once, over plain HTTP to
127.0.0.1, for a fixed time; every request must be served or refused at once, none lost or hung,
and the server's memory must stay level.

    python benchmarks/demo_load.py [--clients 32] [--duration 60] [--images 8] [--json out.json]

It starts ``attngan demo`` on a free port (the bundled model, on the CPU; Gradio's files in a
temporary folder), makes one warm-up request (which loads the model), then runs ``--clients``
threads until ``--duration`` seconds have passed. Each client POSTs a caption to
``/gradio_api/call/generate`` and reads the result from the event stream, then sends the next;
a client refused because the queue is full (HTTP 503) waits ``--backoff`` seconds. Requests under
way at the end are finished, up to ``--timeout`` seconds.

Every request is counted once:

- ``served``: ``event: complete`` with ``--images`` images in every stage gallery;
- ``refused``: HTTP 503 (Gradio's "Queue is full"), timed to show it comes at once;
- ``errors``: any other answer (an HTTP error, an ``event: error``, a malformed result);
- ``hung``: no answer within ``--timeout`` seconds;
- ``lost``: accepted (an event id), but the stream ended without a result.

It prints those counts, the served requests' p50/p95 latency and throughput, the refusals' p95
and worst latency, and the server's resident memory (sampled every 0.25 s): at the start of the
load, its peak (``VmHWM``), and the mean over the first and the last third of the load window.
Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import argparse
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

CAPTIONS = (
    "a big red heart in the top left corner",
    "a small blue square at the bottom",
    "a green star left of a yellow circle",
)
MODEL = "shapes (bundled)"
STAGES = 2  # the bundled model's galleries: 32 and 64 px


@dataclass
class Outcome:
    kind: str  # served, refused, error, hung or lost
    start: float  # seconds since the load began
    seconds: float
    detail: str = ""


@dataclass
class Report:
    clients: int
    duration_s: float
    images: int
    served: int = 0
    refused: int = 0
    errors: int = 0
    hung: int = 0
    lost: int = 0
    served_p50_s: float | None = None
    served_p95_s: float | None = None
    served_per_s: float = 0.0
    refused_p95_s: float | None = None
    refused_max_s: float | None = None
    rss_start_gb: float | None = None
    rss_peak_gb: float | None = None
    rss_first_third_gb: float | None = None
    rss_last_third_gb: float | None = None
    rss_growth_mb: float | None = None
    error_samples: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0 to 1) by linear interpolation; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def memory_kb(pid: int, key: str = "VmRSS") -> int | None:
    """A ``/proc/PID/status`` memory figure in kB (``VmRSS`` now, ``VmHWM`` the peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def start_server(port: int, temp: Path, log: Path) -> subprocess.Popen:
    """``attngan demo`` on ``port`` (bundled model, CPU), its Gradio files under ``temp``."""
    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp)}
    argv = [sys.executable, "-m", "attngan", "demo", "--port", str(port), "--device", "cpu"]
    with log.open("w") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out)


def wait_until_up(url: str, server: subprocess.Popen | None, log: Path | None, limit: float):
    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server is not None and server.poll() is not None:
            raise SystemExit(f"the demo exited:\n{log.read_text() if log else ''}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the demo did not answer in {limit:.0f} s")
        time.sleep(0.25)


def call(url: str, caption: str, seed: int, images: int, timeout: float) -> tuple[str, str]:
    """One request: POST the inputs, read the event stream. Returns ``(kind, detail)``."""
    deadline = time.monotonic() + timeout
    body = json.dumps({"data": [caption, MODEL, seed, images, False]}).encode()
    post = urllib.request.Request(
        url + "gradio_api/call/generate", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(post, timeout=timeout) as response:
            event_id = json.load(response)["event_id"]
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")[:200]
        return ("refused" if exc.code == 503 else "error"), f"HTTP {exc.code}: {text}"
    except (OSError, ValueError, KeyError) as exc:
        if _timed_out(exc):
            return "hung", "no answer to the POST"
        return "error", f"POST: {exc!r}"[:200]
    event = None
    try:
        stream_url = f"{url}gradio_api/call/generate/{event_id}"
        with urllib.request.urlopen(stream_url, timeout=timeout) as stream:
            for raw in stream:  # heartbeats keep the socket busy: check the whole wait too
                if time.monotonic() > deadline:
                    return "hung", "no result in time (heartbeats only)"
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event in ("complete", "error"):
                    return result(event, line[len("data: ") :], images)
    except OSError as exc:
        if _timed_out(exc):
            return "hung", "the event stream went silent"
        return "error", f"stream: {exc!r}"[:200]
    return "lost", f"the stream ended after event {event!r}"


def _timed_out(exc: BaseException) -> bool:
    """A socket timeout, also as urllib wraps it (``URLError(reason=TimeoutError)``)."""
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


def result(event: str, data: str, images: int) -> tuple[str, str]:
    if event == "error":
        return "error", f"event: error: {data[:200]}"
    try:
        galleries = json.loads(data)[:STAGES]
        counts = [len(g) for g in galleries]
        urls = all(item["image"]["url"] for g in galleries for item in g)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        return "error", f"malformed result: {exc!r}"[:200]
    if counts != [images] * STAGES or not urls:
        return "error", f"expected {images} images per stage, got {counts}"
    return "served", ""


def run_load(args: argparse.Namespace, url: str, pid: int | None) -> Report:
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    rss: list[tuple[float, int]] = []
    begin = time.monotonic()
    end = begin + args.duration
    done = threading.Event()

    def client(number: int) -> None:
        n = 0
        while time.monotonic() < end:
            start = time.monotonic()
            seed = number * 100_000 + n
            kind, detail = call(url, CAPTIONS[n % 3], seed, args.images, args.timeout)
            outcome = Outcome(kind, start - begin, time.monotonic() - start, detail)
            with lock:
                outcomes.append(outcome)
            n += 1
            if kind == "refused":
                time.sleep(args.backoff)

    def sampler() -> None:
        while not done.is_set():
            value = memory_kb(pid) if pid else None
            if value is not None:
                rss.append((time.monotonic() - begin, value))
            done.wait(0.25)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:  # a request started before the end takes at most --timeout
        thread.join(timeout=max(0.0, end + args.timeout + 30 - time.monotonic()))
    done.set()
    watcher.join()
    report = Report(args.clients, args.duration, args.images)
    with lock:
        finished = list(outcomes)
    report.hung += sum(thread.is_alive() for thread in threads)  # stuck past every timeout
    for outcome in finished:
        kind = "errors" if outcome.kind == "error" else outcome.kind
        setattr(report, kind, getattr(report, kind) + 1)
        if outcome.kind not in ("served", "refused") and len(report.error_samples) < 5:
            report.error_samples.append(f"{outcome.kind}: {outcome.detail}")
    served = [o.seconds for o in finished if o.kind == "served"]
    refused = [o.seconds for o in finished if o.kind == "refused"]
    report.served_p50_s = percentile(served, 0.5)
    report.served_p95_s = percentile(served, 0.95)
    report.served_per_s = len(served) / args.duration
    report.refused_p95_s = percentile(refused, 0.95)
    report.refused_max_s = max(refused, default=None)
    if rss:
        third = args.duration / 3
        first = [v for t, v in rss if t <= third] or [rss[0][1]]
        last = [v for t, v in rss if args.duration - third <= t <= args.duration] or [rss[-1][1]]
        report.rss_start_gb = rss[0][1] / 1024**2
        report.rss_first_third_gb = sum(first) / len(first) / 1024**2
        report.rss_last_third_gb = sum(last) / len(last) / 1024**2
        report.rss_growth_mb = (report.rss_last_third_gb - report.rss_first_third_gb) * 1024
        peak = memory_kb(pid, "VmHWM") if pid else None
        report.rss_peak_gb = max(peak or 0, *(v for _, v in rss)) / 1024**2
    return report


def show(report: Report) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    def gb(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} GB"

    growth = "-" if report.rss_growth_mb is None else f"{report.rss_growth_mb:+.0f} MB"
    lines = [
        f"{report.clients} clients, {report.duration_s:.0f} s, {report.images} images a request",
        f"served   {report.served:6d}   p50 {seconds(report.served_p50_s)}, "
        f"p95 {seconds(report.served_p95_s)}, {report.served_per_s:.2f} requests/s",
        f"refused  {report.refused:6d}   (HTTP 503, queue full) p95 "
        f"{seconds(report.refused_p95_s)}, worst {seconds(report.refused_max_s)}",
        f"errors   {report.errors:6d}",
        f"hung     {report.hung:6d}",
        f"lost     {report.lost:6d}",
        f"server RSS: {gb(report.rss_start_gb)} at the start, peak {gb(report.rss_peak_gb)}; "
        f"first third {gb(report.rss_first_third_gb)}, last third "
        f"{gb(report.rss_last_third_gb)} ({growth})",
    ]
    lines += [f"  {sample}" for sample in report.error_samples]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (60)")
    parser.add_argument("--images", type=int, default=8, help="images a request, 1-8 (8)")
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds before a request counts as hung"
    )
    parser.add_argument(
        "--backoff", type=float, default=1.0, help="seconds a refused client waits (1)"
    )
    parser.add_argument(
        "--url", help="an `attngan demo` already running (else one is started on a free port)"
    )
    parser.add_argument("--pid", type=int, help="with --url: its process, for the memory figures")
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.images <= 8:
        parser.error("--images must be from 1 to 8")
    if args.clients < 1 or args.duration <= 0:
        parser.error("--clients and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="demo-load-") as temp:
        server = None
        log = Path(temp) / "server.log"
        if args.url:
            url, pid = args.url.rstrip("/") + "/", args.pid
        else:
            url = f"http://127.0.0.1:{free_port()}/"
            server = start_server(int(url.rsplit(":", 1)[1].strip("/")), Path(temp), log)
            pid = server.pid
        try:
            wait_until_up(url, server, log, limit=180)
            kind, detail = call(url, CAPTIONS[0], 0, args.images, args.timeout)  # loads the model
            if kind != "served":
                raise SystemExit(f"the warm-up request was {kind}: {detail}")
            report = run_load(args, url, pid)
        finally:
            if server is not None:
                server.send_signal(signal.SIGINT)
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
    print(show(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
