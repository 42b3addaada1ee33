"""benchmarks/RESULTS.md, shared by the benchmarks: each owns a `## section`, and a rerun replaces only its own
`### subsection` there (another device's, another experiment's stay)."""
from __future__ import annotations

import re
from pathlib import Path


def put_subsection(path: Path, heading: str, block: str, key: str) -> None:
    """Put `block` (its first line a `### ` heading) into the `heading` section of `path`, in place of the
    subsections whose heading starts with `key`; the section is appended to the file when absent."""
    text = path.read_text() if path.exists() else "# Results\n"
    start = text.find(heading + "\n")
    if start < 0:
        path.write_text(text.rstrip("\n") + f"\n\n{heading}\n\n{block.strip()}\n")
        return
    nxt = re.search(r"^## ", text[start + len(heading):], re.M)
    end = start + len(heading) + nxt.start() if nxt else len(text)
    intro, *subs = re.split(r"(?m)^(?=### )", text[start:end])
    subs = [s for s in subs if not s.startswith(key)] + [block]
    section = intro.rstrip("\n") + "\n\n" + "".join(s.strip() + "\n\n" for s in subs)
    path.write_text(text[:start] + section + text[end:].lstrip("\n"))
