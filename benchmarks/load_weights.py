"""How long does loading cached ImageNet weights by name take, against torchvision's own loader?

    .venv/bin/python benchmarks/load_weights.py            # resnet50, 9 interleaved rounds
    .venv/bin/python benchmarks/load_weights.py --write    # and the table into RESULTS.md ("Weights by name")

No internet: the benchmark writes a random resnet50 state_dict into a temporary TORCH_HOME under the file name of
torchvision's DEFAULT weights. Such a file cannot carry the digest in that name, so cnnzoo's child process swaps
the row's checksum for the file's own before loading (cnnzoo then verifies it as it would the real file; torchvision
does not check cached files). Each round, in a fresh process each (nothing warm but the OS file cache, which both
share):
- A: `torchvision.models.resnet50(weights="DEFAULT")`
- B: `cnnzoo.create_model("resnet50", pretrained=True)`
timed from before the import of the library to a finished model (the import included: a user pays it). Both must
produce the same logits on one image, else the benchmark stops. Target (issue #13): B / A <= 1.2 (median of rounds).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import put_subsection  # noqa: E402

CALLS = {"torchvision": 'torchvision.models.resnet50(weights="DEFAULT")',
         "cnnzoo": 'cnnzoo.create_model("resnet50", pretrained=True)'}
CHILD = r"""
import sys, time, json
t0 = time.perf_counter()
which = sys.argv[1]
if which == "torchvision":
    import torchvision
    model = torchvision.models.resnet50(weights="DEFAULT")
else:
    import dataclasses
    import cnnzoo
    from cnnzoo.pretrained import tables
    rows = tables._torchvision()["resnet50"]
    rows[:] = [dataclasses.replace(r, sha256=sys.argv[2]) if r.default else r for r in rows]
    model = cnnzoo.create_model("resnet50", pretrained=True)
seconds = time.perf_counter() - t0
import torch
x = torch.linspace(-1, 1, 3 * 224 * 224).reshape(1, 3, 224, 224)
with torch.no_grad():
    y = model.eval()(x)
print(json.dumps({"seconds": seconds, "checksum": float(y.double().sum()), "argmax": int(y.argmax())}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import torch
    import torchvision

    url = torchvision.models.ResNet50_Weights.DEFAULT.url
    name = url.rsplit("/", 1)[1]
    with tempfile.TemporaryDirectory() as home:
        folder = Path(home) / "hub" / "checkpoints"
        folder.mkdir(parents=True)
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet50().state_dict(), folder / name)
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        env = {**os.environ, "TORCH_HOME": home}
        env.pop("CNNZOO_CACHE", None)
        run = lambda which: json.loads(subprocess.run(  # noqa: E731
            [sys.executable, "-c", CHILD, which, digest[:8]], env=env, capture_output=True, text=True, check=True).stdout)
        first = {w: run(w) for w in ("torchvision", "cnnzoo")}  # the first cnnzoo load hashes and remembers the file
        if abs(first["torchvision"]["checksum"] - first["cnnzoo"]["checksum"]) > 1e-3 * abs(first["torchvision"]["checksum"]):
            sys.exit(f"the two loaders computed different logits ({first}): not timing a wrong load")
        times = {"torchvision": [], "cnnzoo": []}
        for _ in range(args.rounds):
            for which in times:
                times[which].append(run(which)["seconds"])
    ratio = statistics.median(b / a for a, b in zip(times["torchvision"], times["cnnzoo"]))
    load = os.getloadavg()
    block = "\n".join([
        f"### {platform.node() or 'this machine'}: resnet50 from a warm torch.hub cache, {os.cpu_count()} cores",
        "", f"{args.rounds} interleaved rounds, a fresh process each, import included; load average "
        f"{load[0]:.1f} at the end; the same logits from both.", "",
        "| loader | median s | min s |", "|---|--:|--:|",
        *(f"| `{CALLS[w]}` | {statistics.median(t):.3f} | {min(t):.3f} |" for w, t in times.items()),
        "", f"cnnzoo / torchvision: **{ratio:.2f}x** (median of the per-round ratios; target <= 1.2x: "
        f"{'met' if ratio <= 1.2 else 'MISSED'})."])
    print(block)
    if args.write:
        put_subsection(Path(__file__).with_name("RESULTS.md"), "## Weights by name", block, block.split(":", 1)[0])
    sys.exit(0 if ratio <= 1.2 else 1)


if __name__ == "__main__":
    main()
