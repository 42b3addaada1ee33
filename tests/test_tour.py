"""`cnnzoo tour`, every chapter for real, and its report opened in headless Chromium.

The tour is the lecture in one run (issue 6): this test runs all of it once, `--quick` (it trains,
transfers, exports and benchmarks for real, with 3 training epochs instead of 20), and checks, in a browser,
that every chapter is in the report with its charts drawn and its links pointing at files that exist. To
check the report that `make demo` wrote instead of making a new one:

    CNNZOO_TOUR_REPORT=runs/tour/index.html .venv/bin/python -m pytest tests/test_tour.py
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import urllib.parse
from pathlib import Path

import pytest

from browser import ARTIFACTS, chromium_missing, headless_page
from cnnzoo.cli import main
from cnnzoo.tour import CHAPTERS

pytestmark = pytest.mark.xdist_group(name="tour")

# Chapter heading -> the charts it must show (figures with a drawn image).
SECTIONS = {
    "1. The architectures": 0,
    "2. The lecture's analysis, computed": 4,  # AlexNet's memory, params and flops per layer; the comparison
    "3. Train and test on real data": 2,  # curves, confusion matrix
    "4. Transfer learning": 0,
    "5. Deploy": 1,  # the test digits with their predictions
    "6. Which architecture should I use?": 2,  # the Pareto front, the roofline
    "7. What the network learned": 3,  # filters, activations, Grad-CAM and occlusion (and top losses if any)
}


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> tuple[Path, str | None]:
    """(index.html, what the tour printed): a fresh tour, or the report named by CNNZOO_TOUR_REPORT."""
    given = os.environ.get("CNNZOO_TOUR_REPORT")
    if given:
        return Path(given), None
    out = tmp_path_factory.mktemp("tour")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["tour", "--out", str(out), "--quick"]) == 0
    return out / "index.html", printed.getvalue()


def test_tour_runs_every_chapter_and_says_where_the_report_is(tour):
    index, printed = tour
    if printed is None:
        pytest.skip("checking a given report: the tour was not run here")
    for name in CHAPTERS:
        assert f"[tour] {name}: " in printed, name
    assert f"the report is {index.resolve()}" in printed
    assert "top-1" in printed and "digits 5-9" in printed  # the training and transfer chapters' results
    assert "ensemble (mean of 3 softmax)" in printed and "gain over the best member" in printed
    assert "exported resnet18 to" in printed and "max |diff|" in printed  # the export was verified
    assert "cnnzoo serve " in printed  # and the reader is told how to serve it


@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
def test_chromium_sees_every_chapter_chart_and_link(tour):
    index, _ = tour
    with headless_page(1200, 900) as (page, errors):
        page.goto(index.resolve().as_uri())
        page.wait_for_load_state("load")
        headings = page.eval_on_selector_all("section > h2", "els => els.map(e => e.textContent)")
        assert headings == list(SECTIONS)
        for i, (title, charts) in enumerate(SECTIONS.items(), start=1):
            section = f"section:nth-of-type({i})"
            assert page.locator(f"{section} > h2").inner_text() == title
            drawn = page.eval_on_selector_all(
                f"{section} figure img",
                "els => els.map(e => e.complete && e.naturalWidth > 0 && e.getBoundingClientRect().width > 0)")
            assert len(drawn) >= charts and all(drawn), (title, drawn)
            assert page.locator(f"{section} p, {section} table, {section} pre").count() > 0, title
        assert page.locator("section:nth-of-type(1) table tbody tr").count() == len(_models())
        assert page.locator("section:nth-of-type(4) table tbody tr").count() == 4  # scratch and the three modes
        for href in page.eval_on_selector_all("section a", "els => els.map(e => e.getAttribute('href'))"):
            if "://" not in href:  # links to the run folders and the exported model
                assert (index.parent / urllib.parse.unquote(href)).exists(), href
        page.screenshot(path=str(ARTIFACTS / "tour.png"), full_page=True)
        assert not errors, errors
    assert (ARTIFACTS / "tour.png").stat().st_size > 50_000
    shutil.copy(index, ARTIFACTS / "tour.html")


def _models() -> list[str]:
    from cnnzoo import list_models

    return list_models()
