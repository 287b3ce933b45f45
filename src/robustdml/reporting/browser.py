"""Look at a report in a real browser (headless Chromium): page height, sideways overflow, where the
key findings end, and screenshots, at any window width.

    python -m robustdml.reporting.browser reports/demo/report.html --widths 1400,420 --screenshots shots/

Headless Chromium will not make its window narrower than 500 px, so the page is loaded into an
iframe exactly ``width`` px wide (a harness file written next to the page, so relative image paths
resolve, and removed afterwards); a script in the harness writes the measurements into the DOM,
which ``--dump-dom`` prints. Nothing is installed or downloaded: without a browser on PATH,
:class:`BrowserUnavailable` says so.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--allow-file-access-from-files", "--virtual-time-budget=10000"]
# Measured inside the iframe once it has loaded (images included).
_PROBE = """
<script>
const frame = document.getElementById("page");
frame.addEventListener("load", () => {
  const doc = frame.contentDocument, root = doc.documentElement;
  const box = doc.getElementById("key-findings");
  const first = box && (box.querySelector("li") || box);
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify({width: frame.contentWindow.innerWidth, scrollWidth: root.scrollWidth,
    height: root.scrollHeight, headline_bottom: first ? Math.round(first.getBoundingClientRect().bottom) : null,
    images: doc.images.length, broken_images: [...doc.images].filter(i => !i.complete || !i.naturalWidth).length});
  document.body.appendChild(out);
});
</script>"""


class BrowserUnavailable(RuntimeError):
    """No usable headless browser on this machine."""


def find_browser() -> Optional[str]:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _harness(page: Path, width: int, height: int) -> Path:
    harness = page.parent / f".layout-{width}x{height}.html"
    harness.write_text(f"<!doctype html><html><body style='margin:0'><iframe id='page' src='{page.name}' "
                       f"style='width:{width}px;height:{height}px;border:0;display:block'></iframe>{_PROBE}"
                       "</body></html>")
    return harness


def _run(browser: Optional[str], args: List[str], timeout: float) -> subprocess.CompletedProcess:
    browser = browser or find_browser()
    if not browser:
        raise BrowserUnavailable(f"no headless browser found (looked for {', '.join(BROWSERS)} on PATH); on "
                                 "Debian/Ubuntu: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                                text=True, timeout=timeout)
    if result.returncode != 0:
        raise BrowserUnavailable(f"{browser} exited with {result.returncode}: {result.stderr.strip()[-500:]}")
    return result


def measure(page: Path, width: int, browser: Optional[str] = None, timeout: float = 90) -> Dict[str, int]:
    """Layout of ``page`` in a viewport ``width`` px wide: ``width``, ``scrollWidth`` (more than
    ``width``: the page scrolls sideways), ``height`` (px), ``headline_bottom`` (px from the top to
    the end of the first key finding), ``images`` and ``broken_images``."""
    page = Path(page).resolve()
    harness = _harness(page, width, 900)
    try:
        result = _run(browser, ["--window-size=1400,900", "--dump-dom", harness.as_uri()], timeout)
    finally:
        harness.unlink(missing_ok=True)
    found = re.search(r'<pre id="layout">([^<]*)</pre>', result.stdout)
    if not found:
        raise RuntimeError(f"the browser loaded {page} but the layout probe never ran (page did not finish "
                           f"loading?); stderr: {result.stderr.strip()[-500:]}")
    return json.loads(found.group(1).replace("&quot;", '"'))


def screenshot(page: Path, width: int, path: Path, height: int = 900, browser: Optional[str] = None,
               timeout: float = 90) -> Path:
    """A PNG of the top ``height`` px of ``page`` in a viewport ``width`` px wide (pass the measured
    height for the whole page). Narrower than 500 px, the image has blank space on the right."""
    page, path = Path(page).resolve(), Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    harness = _harness(page, width, height)
    try:
        _run(browser, [f"--window-size={max(width, 500)},{height}", f"--screenshot={path}", harness.as_uri()], timeout)
    finally:
        harness.unlink(missing_ok=True)
    if not path.is_file():
        raise RuntimeError(f"the browser wrote no screenshot to {path}")
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--widths", default="1400,420", help="comma-separated viewport widths in px")
    parser.add_argument("--screenshots", type=Path, help="folder for full-page screenshots (PAGE-WIDTH.png)")
    args = parser.parse_args(argv)
    problems = 0
    for width in (int(w) for w in args.widths.split(",")):
        layout = measure(args.page, width)
        overflow = layout["scrollWidth"] > layout["width"]
        problems += overflow + bool(layout["broken_images"])
        print(f"{width} px: page {layout['height']} px tall, first key finding ends at {layout['headline_bottom']} px, "
              f"{'SCROLLS SIDEWAYS (' + str(layout['scrollWidth']) + ' px)' if overflow else 'no sideways scrolling'}, "
              f"{layout['images']} images ({layout['broken_images']} broken)")
        if args.screenshots:
            shot = screenshot(args.page, width, args.screenshots / f"{args.page.stem}-{width}.png",
                              height=min(layout["height"], 16000))
            print(f"  screenshot: {shot}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
