"""cnnzoo.report: the HTML it writes, and a headless Chromium that opens it and sees every section and image."""
from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest

from cnnzoo.errors import CnnzooError
from browser import ARTIFACTS, chromium_missing, headless_page
from cnnzoo.report import Report

# A 2x1 PNG (one red, one blue pixel), so that the file-image path needs no matplotlib.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAAEElEQVR4nGP4z8DAwMDAAAAN"
                       "+wH/vQnM2QAAAABJRU5ErkJggg==")
SVG = ('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
       '<rect width="120" height="40" fill="teal"/></svg>')


def build(tmp: Path) -> tuple[Report, Path]:
    """A report with every kind of block; returns it and the path it should be written to."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    (tmp / "run" / "train").mkdir(parents=True)
    (tmp / "run" / "train" / "metrics.jsonl").write_text("{}\n")
    (tmp / "pixels.png").write_bytes(PNG)
    (tmp / "box.svg").write_text(SVG)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [1, 4, 9])

    r = Report("cnnzoo tour <test>", subtitle="every block once")
    r.text("Before any section: an introduction with `code`.")
    r.section("Architectures").text("First paragraph.\n\nSecond <b>not bold</b> & escaped.")
    r.pre("model     params\nresnet50  25,557,032")
    r.section("Charts").image(fig, caption="a matplotlib figure").image(tmp / "pixels.png", caption="a PNG file")
    r.image(tmp / "box.svg", caption="an SVG file")
    r.section("Tables").table([{"model": "resnet50", "top-1": 76.13, "params": 25557032, "note": None}],
                              caption="from dicts")
    r.table([("vgg16", 0.5), ("alexnet", 1234.5678)], columns=["model", "ms"])
    r.subsection("Runs")
    r.link(tmp / "run" / "train", "the training run").link(tmp / "run" / "train" / "metrics.jsonl", note="metrics")
    r.link("https://arxiv.org/abs/1512.03385", "ResNet paper")
    r.section("Charts")  # a repeated title gets its own anchor
    plt.close(fig)
    return r, tmp / "run" / "index.html"


def test_html_has_every_block(tmp_path):
    report, path = build(tmp_path)
    out = report.write(path)
    page = out.read_text()
    assert out == path and report.sections == ["Architectures", "Charts", "Tables", "Charts"]
    assert page.startswith("<!DOCTYPE html>") and "<title>cnnzoo tour &lt;test&gt;</title>" in page
    assert re.findall(r'<section id="([^"]+)">', page) == ["architectures", "charts", "tables", "charts-2"]
    assert page.count("<li><a href=\"#") == 4  # the table of contents
    assert "Second &lt;b&gt;not bold&lt;/b&gt; &amp; escaped." in page and "<code>code</code>" in page
    assert "<pre>model     params\nresnet50  25,557,032</pre>" in page
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 2 and base64.b64decode(imgs[1]) == PNG
    assert base64.b64decode(imgs[0])[:4] == b"\x89PNG"
    assert '<svg xmlns="http://www.w3.org/2000/svg" width="120"' in page and "<?xml" not in page
    assert '<td class="num">76.13</td>' in page and '<td class="num">25,557,032</td>' in page
    assert '<td class="num">0.5</td>' in page and '<td class="num">1,234.57</td>' in page
    # file links are relative to the report's folder, so that the run folder can move
    assert ('<ul class="links"><li><a href="train/">the training run</a></li>\n'
            '<li><a href="train/metrics.jsonl">train/metrics.jsonl</a> &mdash; metrics</li>\n'
            '<li><a href="https://arxiv.org/abs/1512.03385">ResNet paper</a></li></ul>') in page
    assert "src=\"http" not in page and "<script" not in page and "<link" not in page  # self-contained


def test_report_refuses_bad_blocks(tmp_path):
    r = Report("x")
    with pytest.raises(CnnzooError, match="give `columns`"):
        r.table([("a", 1)])
    with pytest.raises(CnnzooError, match="needs 2 cells"):
        r.table([("a", 1, 2)], columns=["name", "value"])
    with pytest.raises(CnnzooError, match="no image file"):
        r.image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CnnzooError, match="expected .png"):
        r.image(tmp_path / "notes.txt")


@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
def test_chromium_renders_every_section_and_image(tmp_path):
    report, path = build(tmp_path)
    report.write(path)
    with headless_page() as (page, errors):
        page.goto(path.resolve().as_uri())
        page.wait_for_load_state("load")
        assert page.title() == "cnnzoo tour <test>"
        headings = page.eval_on_selector_all("section > h2", "els => els.map(e => e.textContent)")
        assert headings == report.sections
        for sid in ("architectures", "charts", "tables", "charts-2"):
            assert page.locator(f"section#{sid} > h2").is_visible()
        images = page.eval_on_selector_all(
            "figure img", "els => els.map(e => [e.complete, e.naturalWidth, e.getBoundingClientRect().width])")
        assert len(images) == 2 and all(ok and w > 0 and shown > 0 for ok, w, shown in images), images
        svg = page.locator("figure svg").bounding_box()
        assert svg and svg["width"] > 0 and svg["height"] > 0
        assert page.locator("table").count() == 2 and page.locator("td.num").count() == 4
        page.click("nav a[href='#tables']")  # the table of contents works
        assert page.evaluate("location.hash") == "#tables"
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        assert not errors, errors
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
    shutil.copy(path, ARTIFACTS / "report.html")
