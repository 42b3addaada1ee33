"""How fast does the command line answer? `cnnzoo --help` and `cnnzoo list` against `python -c "import torch"`.

    .venv/bin/python benchmarks/cli_start.py              # 15 rounds, prints the table
    .venv/bin/python benchmarks/cli_start.py --write      # and puts it into RESULTS.md ("Command-line start-up")

Each round runs the three commands in turn (A B C, A B C, ...: a slow moment of a shared machine hits them alike),
each a fresh process, timed from spawn to exit; its peak memory is the child's maxrss (`os.wait4`). Each ratio is
the median over rounds of (command / import torch) in the same round. Targets (issue #17): at most 0.25x the torch
import, under 0.5 s on a quiet machine, peak memory under 100 MB. The benchmark first checks that each command did
its job (exit 0, the expected text), so a broken command cannot look fast.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import put_subsection  # noqa: E402

BIN = Path(sys.executable).with_name("cnnzoo")
COMMANDS = {
    "cnnzoo --help": ([str(BIN), "--help"], "usage: cnnzoo"),
    "cnnzoo list": ([str(BIN), "list"], "resnet50"),
    "import torch": ([sys.executable, "-c", "import torch; print(torch.__version__)"], "."),
}


def run(argv: list[str], expect: str) -> tuple[float, float]:
    """Seconds from spawn to exit, and peak resident memory in MB, of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or expect.encode() not in out:
        sys.exit(f"{' '.join(argv)} failed (exit {proc.returncode}): not timing a broken command")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    for argv, expect in COMMANDS.values():  # warm the file cache once, untimed
        run(argv, expect)
    times = {name: [] for name in COMMANDS}
    peaks = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, (argv, expect) in COMMANDS.items():
            t, mb = run(argv, expect)
            times[name].append(t)
            peaks[name].append(mb)
    torch_t = times["import torch"]
    load = os.getloadavg()
    lines = [f"### {platform.node() or 'this machine'}: {os.cpu_count()} cores, Python {platform.python_version()}",
             "", f"{args.rounds} interleaved rounds; load average {load[0]:.1f} {load[1]:.1f} at the end.", "",
             "| command | median s | min s | ratio to `import torch` (median of rounds) | peak MB (max) | target |",
             "|---|--:|--:|--:|--:|---|"]
    ok = True
    for name in COMMANDS:
        ratio = statistics.median(a / b for a, b in zip(times[name], torch_t))
        peak = max(peaks[name])
        target = "" if name == "import torch" else ("met" if ratio <= 0.25 and peak < 100 and
                                                   statistics.median(times[name]) < 0.5 else "MISSED")
        ok &= target != "MISSED"
        lines.append(f"| `{name}` | {statistics.median(times[name]):.3f} | {min(times[name]):.3f} | {ratio:.3f} | "
                     f"{peak:.0f} | {target} |")
    block = "\n".join(lines)
    print(block)
    if args.write:
        put_subsection(Path(__file__).with_name("RESULTS.md"), "## Command-line start-up", block,
                       block.split(":", 1)[0])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
