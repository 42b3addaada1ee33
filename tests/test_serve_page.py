"""The web page of `cnnzoo serve`, in headless Chromium: pick or drop an image, the top-5 bars appear.

Needs /usr/bin/chromium (`scripts/ensure-chromium.sh` installs it); driven by the playwright package,
never by its own browser downloads. The screenshot is kept in test-artifacts/ at the repository root.
"""
from __future__ import annotations

import base64

import pytest

from browser import ARTIFACTS, chromium_missing, headless_page
from cnnzoo.deploy.serve import serve_in_background
from deploy_run import ONE_THREAD, shared_run, write_digit_pngs

pytestmark = [pytest.mark.xdist_group(name="deploy-page"),
              pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))]


def bars(page) -> list[tuple[str, float]]:
    rows = page.locator("#bars .row")
    return [(rows.nth(i).locator(".label").inner_text(), float(rows.nth(i).locator(".pct").inner_text().rstrip("%")))
            for i in range(rows.count())]


def test_page_shows_top5_bars(tmp_path_factory, tmp_path):
    run = shared_run(tmp_path_factory)
    digits = write_digit_pngs(tmp_path / "digits", 2)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with (serve_in_background(run, "--backend", "eager", log=tmp_path / "serve.log", env=ONE_THREAD) as url,
          headless_page(900, 520) as (page, _)):  # its 415 on purpose logs a console error
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('info').textContent.includes('10 classes')")
        assert page.title() == "cnnzoo: resnet18"

        # pick a file
        (path, label) = digits[0]
        page.set_input_files("#file", str(path))
        page.wait_for_function("document.querySelectorAll('#bars .row').length === 5")
        shown = bars(page)
        assert shown[0][0] == str(label) and shown[0][1] > 50
        assert [p for _, p in shown] == sorted((p for _, p in shown), reverse=True)
        width = page.locator("#bars .fill").first.evaluate("e => e.getBoundingClientRect().width")
        track = page.locator("#bars .track").first.evaluate("e => e.getBoundingClientRect().width")
        assert abs(width / track - shown[0][1] / 100) < 0.02  # the bar's length is its probability
        assert "backend eager" in page.locator("#status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "serve_page.png"))

        # drop a second image onto the drop zone
        (path2, label2) = digits[1]
        page.evaluate("""([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "image/png" }));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
        }""", [base64.b64encode(path2.read_bytes()).decode(), path2.name])
        page.wait_for_function(f"document.getElementById('status').textContent.startsWith('{path2.name}')")
        assert bars(page)[0][0] == str(label2)

        # a file that is no image: the page shows the server's error
        page.set_input_files("#file", str(text))
        page.wait_for_function("document.getElementById('status').classList.contains('error')")
        assert "error 415" in page.locator("#status").inner_text()
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 5000
