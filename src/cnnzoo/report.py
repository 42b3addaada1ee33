"""A self-contained HTML report in one file: sections, text, tables, images, links. No dependency, no network.

    report = Report("cnnzoo tour")
    report.section("Architectures").text("The lecture's tables, computed.").pre(profile.table())
    report.table([{"model": "resnet50", "top-1": 76.13}], caption="Published accuracy")
    report.image(fig, caption="Pareto front")       # a matplotlib figure, a .png/.jpg file or an .svg file
    report.link("runs/tour/train", "the training run")  # a file or folder: written relative to the report
    report.write("runs/tour/index.html")

Images are embedded (PNG as base64 data URIs, SVG inline), so the file can be mailed or opened anywhere;
links to files stay links, made relative to where the report is written so that the run folder can move.
Everything given as text is HTML-escaped.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import CnnzooError

_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { font-size: 1.9em; margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
h3 { margin-top: 1.5em; } .subtitle, .meta, figcaption, caption { color: #555; }
nav ol { columns: 2; } pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 12.5px;
  line-height: 1.35; } code { background: #f6f8fa; padding: 0 0.2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; } caption { text-align: left; padding: 0.3em 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2em 0; } figure img, figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
.links li { margin: 0.2em 0; }
"""


def _slug(title: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def _cell(v: Any) -> tuple[str, bool]:
    """(text, numeric): ints with thousands separators, floats to 2 decimals (3 significant digits below 1)."""
    if v is None:
        return "", False
    if isinstance(v, bool):
        return str(v), False
    if isinstance(v, int):
        return f"{v:,}", True
    if isinstance(v, float):
        return (f"{v:.3g}" if 0 < abs(v) < 1 else f"{v:,.2f}"), True
    return str(v), False


def _is_url(href: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", href, re.I)) or href.startswith("#")


class Report:
    """An HTML report built block by block; `write(path)` renders it into one self-contained file."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title, self.subtitle = title, subtitle
        self._intro: list[Any] = []  # blocks before the first section
        self._sections: list[tuple[str, str, list[Any]]] = []  # (id, title, blocks)
        self._ids: set[str] = set()

    @property
    def sections(self) -> list[str]:
        return [title for _, title, _ in self._sections]

    def _add(self, block: Any) -> Report:
        (self._sections[-1][2] if self._sections else self._intro).append(block)
        return self

    def section(self, title: str) -> Report:
        """Start a section (a heading in the table of contents); what follows goes into it."""
        self._sections.append((_slug(title, self._ids), title, []))
        return self

    def subsection(self, title: str) -> Report:
        return self._add(("h3", title))

    def text(self, text: str) -> Report:
        """Paragraphs (separated by blank lines); `backticks` become code."""
        return self._add(("text", text))

    def pre(self, text: str) -> Report:
        """Preformatted text: a fixed-width table, a log, a command's output."""
        return self._add(("pre", text))

    def table(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str] | None = None,
              caption: str = "") -> Report:
        """An HTML table from dicts (columns: the given ones, or the first row's keys) or sequences."""
        rows = list(rows)
        if columns is None:
            if not rows or not isinstance(rows[0], Mapping):
                raise CnnzooError("Report.table: give `columns` when the rows are not dicts")
            columns = list(rows[0])
        body = [[r.get(c) for c in columns] if isinstance(r, Mapping) else list(r) for r in rows]
        if any(len(r) != len(columns) for r in body):
            raise CnnzooError(f"Report.table: every row needs {len(columns)} cells ({', '.join(columns)})")
        return self._add(("table", list(columns), body, caption))

    def image(self, image: Any, caption: str = "", alt: str | None = None) -> Report:
        """Embed a matplotlib figure (as PNG), a .png/.jpg/.gif file (base64) or an .svg file (inline)."""
        if hasattr(image, "savefig"):
            buf = io.BytesIO()
            image.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            src = ("img", "image/png", buf.getvalue())
        else:
            path = Path(image)
            if not path.is_file():
                raise CnnzooError(f"Report.image: no image file at {path}")
            suffix = path.suffix.lower()
            if suffix == ".svg":
                svg = path.read_text()
                src = ("svg", svg[svg.find("<svg"):] if "<svg" in svg else svg)
            elif suffix in _IMAGE_TYPES:
                src = ("img", _IMAGE_TYPES[suffix], path.read_bytes())
            else:
                raise CnnzooError(f"Report.image: {path.name}: expected .png, .jpg, .gif or .svg")
        return self._add(("image", src, caption, alt if alt is not None else caption))

    def link(self, href: str | os.PathLike, text: str | None = None, note: str = "") -> Report:
        """A link: a URL as it is, or a file/folder path, written relative to the report's own folder."""
        return self._add(("link", href, text, note))

    # --- rendering ------------------------------------------------------------------------------------------
    def _href(self, href: str | os.PathLike, folder: Path) -> str:
        if isinstance(href, str) and _is_url(href):
            return href
        path = Path(href)
        rel = Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
        return rel + "/" if path.is_dir() and not rel.endswith("/") else rel

    def _block(self, block: tuple, folder: Path) -> str:
        kind, esc = block[0], html.escape
        if kind == "h3":
            return f"<h3>{esc(block[1])}</h3>"
        if kind == "text":
            paras = [p.strip() for p in re.split(r"\n\s*\n", block[1]) if p.strip()]
            return "\n".join("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(p)) + "</p>" for p in paras)
        if kind == "pre":
            return f"<pre>{esc(block[1])}</pre>"
        if kind == "table":
            _, columns, body, caption = block
            out = ["<table>"] + ([f"<caption>{esc(caption)}</caption>"] if caption else [])
            out.append("<thead><tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in columns) + "</tr></thead><tbody>")
            for row in body:
                cells = [_cell(v) for v in row]
                out.append("<tr>" + "".join(f"<td class=\"num\">{esc(t)}</td>" if num else f"<td>{esc(t)}</td>"
                                            for t, num in cells) + "</tr>")
            return "\n".join(out + ["</tbody></table>"])
        if kind == "image":
            _, src, caption, alt = block
            if src[0] == "svg":
                body = src[1]
            else:
                data = base64.b64encode(src[2]).decode("ascii")
                body = f"<img src=\"data:{src[1]};base64,{data}\" alt=\"{esc(alt)}\">"
            cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
            return f"<figure>{body}{cap}</figure>"
        if kind == "link":
            _, href, text, note = block
            target = self._href(href, folder)
            note = f" &mdash; {esc(note)}" if note else ""
            return f"<li><a href=\"{esc(target)}\">{esc(text or target)}</a>{note}</li>"
        raise AssertionError(kind)

    def _render(self, blocks: list[tuple], folder: Path) -> list[str]:
        """The blocks in order, consecutive links gathered into one list."""
        out: list[str] = []
        for i, b in enumerate(blocks):
            first = b[0] == "link" and (i == 0 or blocks[i - 1][0] != "link")
            last = b[0] == "link" and (i + 1 == len(blocks) or blocks[i + 1][0] != "link")
            out.append(("<ul class=\"links\">" if first else "") + self._block(b, folder) + ("</ul>" if last else ""))
        return out

    def html(self, folder: str | Path = ".") -> str:
        """The whole page; file links are made relative to `folder` (where the page will live)."""
        folder = Path(folder)
        esc = html.escape
        from . import __version__

        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
                 f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body><main>",
                 f"<h1>{esc(self.title)}</h1>"]
        if self.subtitle:
            parts.append(f"<p class=\"subtitle\">{esc(self.subtitle)}</p>")
        parts.append(f"<p class=\"meta\">Written by cnnzoo {__version__} on {stamp}.</p>")
        parts += self._render(self._intro, folder)
        if self._sections:
            parts.append("<nav><h2>Contents</h2><ol>" + "".join(
                f"<li><a href=\"#{sid}\">{esc(title)}</a></li>" for sid, title, _ in self._sections) + "</ol></nav>")
        for sid, title, blocks in self._sections:
            parts.append(f"<section id=\"{sid}\"><h2>{esc(title)}</h2>")
            parts += self._render(blocks, folder)
            parts.append("</section>")
        parts.append("</main></body></html>")
        return "\n".join(parts) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the page to `path` (folders created); returns the path."""
        from .fileio import make_folder, write_text

        path = Path(path)
        make_folder(path.parent)
        return write_text(path, self.html(path.parent))
