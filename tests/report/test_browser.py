"""The report renders in headless Chromium without console errors; a screenshot is taken.

Environment:
  CELLMAE_REPORT_RUN         report this run directory instead of the fake one (e.g. a demo run)
  CELLMAE_REPORT_SCREENSHOT  also copy the screenshot there (docs/img/report_screenshot.png)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cellmae.report.build import build_report

# Launch flags for a sandboxed CI container: no GPU, no network side traffic, no first-run UI.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    pytest.skip("headless Chromium not found: no `chromium`, `chromium-browser` or `google-chrome` binary on PATH "
                "(install Debian's `chromium`; .ci/run does)")


@pytest.mark.browser
def test_report_renders_without_console_errors(fake_run: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="python package `playwright` (dev extra) is missing")
    executable = _chromium()
    run = Path(os.environ.get("CELLMAE_REPORT_RUN", fake_run))
    report = build_report(run, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    messages: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: messages.append(f"requestfailed: {r.url}"))
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
            width = page.evaluate("document.documentElement.scrollWidth")
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert messages == []
    assert images, "the report has no figures"
    broken = [alt for complete, w, alt in images if not complete or w == 0]
    assert broken == [], f"images that did not decode: {broken}"
    assert "Relationship recall" in headings and "Overview" in headings
    assert width <= 1280, "the page scrolls sideways at a laptop width"
    assert shot.stat().st_size > 10_000
    target = os.environ.get("CELLMAE_REPORT_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
