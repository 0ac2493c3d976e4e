"""The browser page in a real browser: headless Chromium (Debian's package, driven by Playwright)
with its fake microphone, against `legato serve` run as an operator runs it. Skipped, saying
why, where Chromium or Playwright is missing (.ci/run installs Chromium when it can)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
from live import legato_serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RATE = 44100


@pytest.fixture(scope="module")
def served_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`legato serve --library` on a free port; yields the page's URL."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    home = tmp_path_factory.mktemp("browser")
    library = home / "music"
    library.mkdir()
    t = np.arange(6 * RATE) / RATE
    loud = np.clip(2.5 * np.sin(2 * np.pi * 220 * t), -1, 1) * 0.95
    sf.write(library / "loud.wav", np.stack([loud, loud], 1).astype(np.float32), RATE, "FLOAT")
    database = f"sqlite:///{home / 'legato.db'}"
    with legato_serve(home, "--library", str(library), "--db", database) as port:
        yield f"http://127.0.0.1:{port}/"


def test_the_page_analyses_the_microphone_and_plays_a_mastered_track(served_page: str) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",  # a microphone that beeps
                "--autoplay-policy=no-user-gesture-required",
                "--no-sandbox",
            ],
        )
        try:
            page = browser.new_context(permissions=["microphone"]).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(served_page)
            page.wait_for_function("document.querySelector('#server').textContent.includes('v1')")
            options = "els => els.map(e => e.value)"
            assert page.eval_on_selector_all("#live-pipeline option", options) == ["analyze"]
            assert page.eval_on_selector_all("#play-pipeline option", options) == ["playback"]

            page.click("#live-start")
            page.wait_for_function("Number(document.querySelector('#onsets').textContent) >= 2")
            assert page.inner_text("#marking") in {"ppp", "pp", "p", "mp", "mf", "f", "ff", "fff"}
            page.click("#live-stop")
            page.wait_for_function(
                "document.querySelector('#live-status').textContent.startsWith('completed')"
            )
            practice = json.loads(page.inner_text("#live-summary"))
            assert practice["counts"]["notes"] >= 2 and practice["dynamics_range_db"] is not None

            page.fill("#track", "loud.wav")
            page.click("#play-start")
            page.wait_for_function(
                "document.querySelector('#mastering').textContent.includes('compressed_loud')"
            )
            page.wait_for_function("document.querySelector('#play-time').textContent !== ''")
            assert page.inner_text("#tp-after") == "-1.0 dBTP"
            page.eval_on_selector(
                "#seek", "el => { el.value = 4 * 44100; el.dispatchEvent(new Event('change')); }"
            )
            page.wait_for_function(
                "parseFloat(document.querySelector('#play-time').textContent) >= 4"
            )
            page.click("#play-stop")
            page.wait_for_function(
                "document.querySelector('#play-status').textContent.startsWith('completed')"
            )

            page.fill("#track", "../outside.wav")
            page.click("#play-start")
            page.wait_for_function(
                "document.querySelector('#play-status').textContent.includes('refused')"
            )
        finally:
            browser.close()
    assert errors == []
