"""Headless Chromium for the page tests: /usr/bin/chromium (scripts/ensure-chromium.sh installs it), driven
by the playwright package, never by playwright's own browser downloads (no network). Screenshots go to
test-artifacts/ at the repository root, which CI keeps."""
from __future__ import annotations

import contextlib
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def chromium_missing() -> str | None:
    """Why the page tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"no {CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@contextlib.contextmanager
def headless_page(width: int = 1200, height: int = 900):
    """A fresh page; yields (page, errors): console errors and failed requests, for the test to assert empty."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            yield page, errors
        finally:
            browser.close()
