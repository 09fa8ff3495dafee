"""The page as a person sees it: headless Chromium (the system's, driven by Playwright) uploads photos, presses
Analyse, waits for the saliency overlay and saves a screenshot.

`python -m facediag.app.screenshot url=http://127.0.0.1:7860/ photo=<image> out=<png>` prints what the page showed
(the top class, the overlay's size, the flags). The browser test and the docs' screenshot use it. Needs
``pip install playwright`` (no browser download: it drives ``chromium`` from the system, e.g. Debian's package).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@dataclass
class Seen:
    """What the page showed after Analyse."""

    top_class: str
    probabilities: str
    saliency_size: tuple[int, int]  # the overlay image's natural width, height (0, 0: no image)
    flags: str


def system_chromium() -> str | None:
    """The system's Chromium (or Chrome) executable, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def browse(url: str, photos: Sequence[str | os.PathLike], png: str | os.PathLike, chromium: str | None = None,
           timeout_s: float = 180, width: int = 1280) -> Seen:
    """Open ``url``, upload ``photos`` on the photos tab, press Analyse, wait for the overlay; save ``png``."""
    from playwright.sync_api import sync_playwright

    executable = chromium or system_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    timeout_ms = timeout_s * 1000
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 1100})
            page.goto(url, timeout=timeout_ms)
            page.set_input_files("#photos input[type=file]", [str(p) for p in photos], timeout=timeout_ms)
            page.wait_for_function(  # the upload finished: the file list shows every name
                "n => document.querySelectorAll('#photos tr, #photos .file').length >= n", arg=len(photos),
                timeout=timeout_ms)
            page.click("#analyse")
            overlay = page.wait_for_selector("#saliency img", timeout=timeout_ms)
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=overlay, timeout=timeout_ms)
            size = page.evaluate("el => [el.naturalWidth, el.naturalHeight]", overlay)
            seen = Seen(page.inner_text("#probabilities [data-testid=label-output-value]"),
                        page.inner_text("#probabilities"), (int(size[0]), int(size[1])), page.inner_text("#flags"))
            Path(png).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(png), full_page=True)
            return seen
        finally:
            browser.close()


def main(argv: Sequence[str] | None = None) -> int:
    options = dict(arg.partition("=")[::2] for arg in (sys.argv[1:] if argv is None else argv))
    if not {"url", "photo", "out"} <= set(options):
        raise SystemExit("usage: python -m facediag.app.screenshot url=<page> photo=<image> out=<png>")
    seen = browse(options["url"], [options["photo"]], options["out"])
    print(f"top class {seen.top_class}; overlay {seen.saliency_size[0]}x{seen.saliency_size[1]} px; "
          f"{seen.flags!r}; screenshot {options['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
