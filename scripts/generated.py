"""What every `scripts/make_*.py` does with the file it generates: write it, or with `--check` only say whether
the file on disk is current (exit 1 if not; the tests run the checks)."""
from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(path: Path, text: str, what: str = "") -> None:
    if "--check" in sys.argv:
        sys.exit(0 if path.exists() and path.read_text() == text else 1)
    path.write_text(text)
    print(f"wrote {path}{f' ({what})' if what else ''}")
