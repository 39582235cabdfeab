"""``attngan demo``: request checks, the generate callback, the HTTP API of a server started with
the CLI, and the page in a real browser (Playwright driving Debian's Chromium, headless).

The browser tests skip without gradio, playwright or /usr/bin/chromium, except when ``CI`` is set:
there a missing one fails them. ``ATTNGAN_SCREENSHOTS=DIR`` keeps a screenshot of every page.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from attngan.assets import bundled_model
from attngan.cli import main
from attngan.demo import (
    BUNDLED_NAME,
    MAX_CAPTION_CHARS,
    MAX_IMAGES,
    MAX_SEED,
    DemoInputError,
    check_request,
    model_choices,
)
from attngan.errors import ModelError

CHROMIUM = Path("/usr/bin/chromium")
CAPTION = "a big red heart in the top left corner"
COPY = "shapes-copy"  # the server's --model: a copy of the bundled model, the page's default
NAMES = [BUNDLED_NAME]
LONG = "a red heart " * 24 + "a red square"  # 300 characters, 75 known words


def _require(module: str | None = None, path: Path | None = None) -> None:
    """Skip when a module or file is missing; under CI (``CI`` set), fail instead."""
    if module is not None and importlib.util.find_spec(module) is None:
        missing, fix = f"the {module} package", "pip install -e '.[dev,demo]'"
    elif path is not None and not path.exists():
        missing, fix = str(path), "apt-get install chromium"
    else:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{missing} is missing, and CI must run the demo tests: {fix}")
    pytest.skip(f"{missing} is missing ({fix})")


# --- checking requests (no gradio needed)


def test_a_good_request_is_normalised():
    request = check_request(f"  {CAPTION}  ", BUNDLED_NAME, 7.0, 3.0, True, NAMES)
    assert (request.caption, request.seed, request.num_images) == (CAPTION, 7, 3)
    assert isinstance(request.seed, int) and isinstance(request.num_images, int)
    assert len(LONG) == MAX_CAPTION_CHARS
    assert check_request(LONG, BUNDLED_NAME, MAX_SEED, MAX_IMAGES, False, NAMES).caption == LONG


@pytest.mark.parametrize(
    ("caption", "model", "seed", "num_images", "use_mean", "message"),
    [
        ("", BUNDLED_NAME, 0, 1, False, "empty caption"),
        ("   ", BUNDLED_NAME, 0, 1, False, "empty caption"),
        (None, BUNDLED_NAME, 0, 1, False, "must be text"),
        ("x" * (MAX_CAPTION_CHARS + 1), BUNDLED_NAME, 0, 1, False, "too long: 301 characters"),
        (CAPTION, "birds", 0, 1, False, "unknown model 'birds'"),
        (CAPTION, BUNDLED_NAME, -1, 1, False, "seed must be a whole number from 0"),
        (CAPTION, BUNDLED_NAME, MAX_SEED + 1, 1, False, "seed must be"),
        (CAPTION, BUNDLED_NAME, 1.5, 1, False, "seed must be"),
        (CAPTION, BUNDLED_NAME, "3", 1, False, "seed must be"),
        (CAPTION, BUNDLED_NAME, None, 1, False, "seed must be"),
        (CAPTION, BUNDLED_NAME, 0, 0, False, "number of images must be a whole number from 1"),
        (CAPTION, BUNDLED_NAME, 0, MAX_IMAGES + 1, False, "number of images must be"),
        (CAPTION, BUNDLED_NAME, 0, True, False, "number of images must be"),
        (CAPTION, BUNDLED_NAME, 0, 1, "yes", "use_mean must be true or false"),
    ],
)
def test_bad_requests_are_refused(caption, model, seed, num_images, use_mean, message):
    with pytest.raises(DemoInputError, match=message):
        check_request(caption, model, seed, num_images, use_mean, NAMES)


@pytest.fixture
def cli(capsys):
    """``main`` of the CLI; the logging set-up it makes (to pytest's stderr) is undone after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield main
    root.handlers[:] = handlers
    root.setLevel(level)


def test_demo_without_gradio_is_one_line(cli, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert cli(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "attngan: error: the demo needs gradio: pip install 'attngan[demo]'\n"


# --- the callback, in this process


@pytest.fixture(scope="module")
def demo(server_process):
    """The callback's object, in this process (the server boots meanwhile, on another core)."""
    _require("gradio")
    from attngan.demo import Demo

    return Demo(model_choices())


def test_generate_returns_every_stage_and_the_attention(demo):
    *stages, figures, summary = demo.generate(CAPTION + " zzz", BUNDLED_NAME, 5, 3, False)
    assert [len(stage) for stage in stages] == [3, 3] and len(figures) == 3
    for stage, size in zip(stages, (32, 64), strict=True):
        assert [c for _, c in stage] == ["image 1", "image 2", "image 3"]
        assert all(image.size == (size, size) for image, _ in stage)
    assert figures[0][1] == f"image 1: {CAPTION}"
    assert figures[0][0].width > figures[0][0].height  # a row of per-word maps
    assert "**3 images**, 32/64 px" in summary and "seed 5" in summary
    assert "Unknown words (dropped): `zzz`" in summary
    # the same seed, the same images; the model was loaded once
    again = demo.generate(CAPTION, BUNDLED_NAME, 5, 1, False)
    assert again[1][0][0].tobytes() == stages[1][0][0].tobytes()
    assert demo.pipeline(BUNDLED_NAME) is demo.pipeline(BUNDLED_NAME)


def test_picking_a_model_relabels_the_stage_galleries(demo):
    labels = demo.gallery_labels(BUNDLED_NAME)
    assert [(u["label"], u["visible"]) for u in labels] == [
        ("stage 1: 32 px", True),
        ("stage 2: 64 px", True),
    ]


def test_generate_at_the_length_cap_lists_words_cut_off(demo):
    *stages, _, summary = demo.generate(LONG, BUNDLED_NAME, 0, 1, True)  # the model reads 18
    assert [len(stage) for stage in stages] == [1, 1]
    cut = summary.split("- Cut off (the model reads 18 words): ")[1]
    assert cut == " ".join(f"`{word}`" for word in LONG.split()[18:])
    assert "use_mean" in summary


@pytest.mark.parametrize(
    ("caption", "num_images", "message"),
    [
        ("", 1, "empty caption"),
        ("?!", 1, "the caption has no words"),
        ("zzz qqq", 1, "no known word in the caption (unknown: zzz, qqq)"),
        ("a" * (MAX_CAPTION_CHARS + 1), 1, "too long"),
        (CAPTION, MAX_IMAGES + 1, "number of images"),
    ],
)
def test_generate_shows_bad_input_as_an_error(demo, caption, num_images, message):
    import gradio as gr

    with pytest.raises(gr.Error) as raised:
        demo.generate(caption, BUNDLED_NAME, 0, num_images, False)
    assert message in raised.value.message


def test_unknown_model_folders_fail_at_start(cli, tmp_path, capsys):
    _require("gradio")
    from attngan.demo import Demo

    with pytest.raises(ModelError, match="model not found"):
        Demo({"gone": tmp_path / "gone"})
    assert cli(["demo", "--model", str(tmp_path / "gone")]) == 2
    assert capsys.readouterr().err.startswith("attngan: error: model not found: ")


def test_a_busy_port_is_one_line(cli, capsys):
    _require("gradio")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli(["demo", "--port", str(port), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"attngan: error: cannot serve the demo on 127.0.0.1:{port}: ")
    assert len(err.splitlines()) == 1


# --- a server started with `attngan demo`


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    """``attngan demo --model shapes-copy --port P`` in a subprocess, just started: yields
    ``(process, url, log file)``, and stops it at the end of the module."""
    _require("gradio")
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(bundled_model(), root / COPY)
    port = _free_port()
    argv = ["demo", "--model", COPY, "--port", str(port), "--device", "cpu"]
    with (root / "server.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "attngan", *argv], cwd=root, stdout=log, stderr=log
        )
    try:
        yield process, f"http://127.0.0.1:{port}/", root / "server.log"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(server_process):
    """The URL of the demo server, once it answers."""
    process, url, log = server_process
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the demo did not start:\n{log.read_text()}")
        time.sleep(0.25)


def test_gradio_client_calls_generate(server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    # a generous timeout: a loaded CI machine may take seconds to answer
    client = Client(server, verbose=False, httpx_kwargs={"timeout": 120})
    stage1, stage2, attention, summary = client.predict(
        CAPTION, BUNDLED_NAME, 3, 2, False, api_name="/generate"
    )
    for stage, size in ((stage1, 32), (stage2, 64)):
        assert [item["caption"] for item in stage] == ["image 1", "image 2"]
        assert all(Image.open(item["image"]).size == (size, size) for item in stage)
    assert [item["caption"] for item in attention] == [f"image {n}: {CAPTION}" for n in (1, 2)]
    assert "model `shapes (bundled)`, seed 3" in summary
    with pytest.raises(AppError, match="no known word"):
        client.predict("zzz qqq", BUNDLED_NAME, 0, 1, False, api_name="/generate")
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio checks it too
        client.predict(CAPTION, "/etc", 0, 1, False, api_name="/generate")


def test_plain_http_calls_generate(server):
    """The README's curl example: POST the inputs, then read the event stream."""
    body = json.dumps({"data": [CAPTION, COPY, 0, 1, False]}).encode()
    post = urllib.request.Request(
        server + "gradio_api/call/generate", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(post, timeout=30) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{server}gradio_api/call/generate/{event_id}", timeout=60) as r:
        stream = r.read().decode()
    assert "event: complete" in stream
    data = json.loads(stream.split("data: ", 1)[1].splitlines()[0])
    assert [len(x) for x in data[:3]] == [1, 1, 1] and f"`{COPY}`" in data[3]
    assert data[1][0]["image"]["url"].startswith(server)  # the images are served locally


# --- the page in a browser


@pytest.fixture(scope="module")
def browser(server):
    _require("playwright")
    _require(path=CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server, request, tmp_path):
    """The demo page, loaded. After the test: a screenshot (into ``tmp_path`` and
    ``$ATTNGAN_SCREENSHOTS``), and a check that every request went to the local server (Gradio
    serves its frontend itself: the page works offline) and that no script, style sheet, font or
    image failed to load."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen, failed = [], []
    page.on("request", lambda r: seen.append((r.url, r.resource_type)))
    page.on("requestfailed", lambda r: failed.append((r.url, r.resource_type)))
    page.set_default_timeout(30_000)
    page.goto(server)
    page.locator("#generate").wait_for()
    yield page
    page.wait_for_load_state("networkidle")
    folders = [tmp_path]
    if os.environ.get("ATTNGAN_SCREENSHOTS"):
        folders.append(Path(os.environ["ATTNGAN_SCREENSHOTS"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        name = request.node.name.removeprefix("test_")
        page.screenshot(path=str(folder / f"demo-{name}.png"), full_page=True)
    page.close()
    assert {"document", "script", "stylesheet"} <= {kind for _, kind in seen}
    assert [url for url, _ in seen if not url.startswith((server, "data:", "blob:"))] == []
    assets = ("document", "script", "stylesheet", "font", "image")
    assert [url for url, kind in failed if kind in assets] == []


def _generate(page, caption: str) -> None:
    page.locator("#caption textarea").fill(caption)
    page.locator("#generate").click()


def test_page_shows_every_stage_and_the_word_attention(page):
    page.locator("#num-images input[type=number]").fill("3")
    page.locator("#num-images input[type=number]").press("Enter")
    _generate(page, CAPTION)
    page.locator("#attention img").nth(2).wait_for()
    for k, size in ((1, 32), (2, 64)):
        gallery = page.locator(f"#stage{k}")
        assert f"stage {k}: {size} px" in gallery.locator("label").first.inner_text()
        images = gallery.locator("img")
        assert images.count() == 3
        alts = [images.nth(n).get_attribute("alt") for n in range(3)]
        assert alts == ["image 1", "image 2", "image 3"]
        images.last.evaluate("img => img.decode()")
        assert images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)") == [size] * 3
    figures = page.locator("#attention img")
    assert figures.count() == 3
    assert figures.nth(0).get_attribute("alt") == f"image 1: {CAPTION}"
    summary = " ".join(page.locator("#summary").inner_text().split())
    assert "3 images, 32/64 px, of model shapes-copy, seed 0" in summary
    assert f"Words used: {CAPTION} Unknown words (dropped): none" in summary


def test_page_lists_unknown_words_and_uses_the_picked_model(page):
    page.locator("#model input").click()
    page.get_by_role("option", name=BUNDLED_NAME).click()
    _generate(page, "a big shiny red heart in the top left corner please")
    page.locator("#summary").get_by_text("Unknown words (dropped)").wait_for()
    summary = " ".join(page.locator("#summary").inner_text().split())
    assert "Unknown words (dropped): shiny please" in summary
    assert "4 images, 32/64 px, of model shapes (bundled)" in summary  # 4: the default
    assert page.locator("#stage2 img").count() == 4 and page.locator("#attention img").count() == 4


def test_page_shows_bad_captions_as_errors(page):
    _generate(page, "")
    page.get_by_text("empty caption: type a sentence").wait_for()
    _generate(page, "zzz qqq")
    page.get_by_text("no known word in the caption (unknown: zzz, qqq)").wait_for()
    assert page.locator("#stage1 img").count() == 0
    assert "image" not in page.locator("#summary").inner_text()  # nothing was drawn
    box = page.locator("#caption textarea")  # the box takes at most MAX_CAPTION_CHARS
    assert box.get_attribute("maxlength") == str(MAX_CAPTION_CHARS)
    box.fill("x" * (MAX_CAPTION_CHARS + 50))
    assert len(box.input_value()) == MAX_CAPTION_CHARS
