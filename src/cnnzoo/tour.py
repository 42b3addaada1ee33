"""`cnnzoo tour`: the whole lecture in one run, chapter by chapter, printed and written to `OUT/index.html`.

1. The architectures, in the lecture's order: each family's card and every model's size.
2. The lecture's analysis, computed: the AlexNet table at 227, GoogLeNet's stem, the comparison and its charts.
3. The workflow on real data (scikit-learn's handwritten digits): train, test, confusion matrix.
4. Transfer learning in the lecture's three ways, against training from scratch, with one image per class.
5. Deploy: the trained run exported to ONNX (verified against PyTorch), predicting real images.
6. "Which architecture should I use?", measured on this machine.
7. What the network learned: the digits run's filters, activations, Grad-CAM, occlusion and top losses.

Each chapter is a call into the library that a user could make from Python; the tour only prints and
assembles the report.
"""
from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path
from typing import Callable

from .models import get_card, list_models
from .report import Report
from .summary import format_summary, summarize
from .train.config import FIELDS

# The lecture's order: the ILSVRC winners, then "other architectures". Families not named here follow.
LECTURE_ORDER = (
    "AlexNet", "ZFNet", "VGG", "GoogLeNet", "ResNet", "Pre-activation ResNet", "ResNeXt", "Wide ResNet",
    "SE-ResNet", "SE-ResNeXt", "DenseNet", "MobileNet V1", "MobileNet V2", "ShuffleNet", "ShuffleNet V2",
)
QUICK_EPOCHS = 3  # `--quick`: enough for about 90% on the digits, and curves with a shape
COMPARED = ["alexnet", "vgg16", "googlenet", "resnet50", "resnet152", "densenet121", "mobilenet_v2", "shufflenet_v2_x1_0"]


def families() -> list[tuple[str, list[str]]]:
    """Registered models grouped by family, in the lecture's order, oldest first within a family."""
    def rank(name: str) -> tuple:
        card = get_card(name)
        known = card.family in LECTURE_ORDER
        return (not known, LECTURE_ORDER.index(card.family) if known else card.year, card.family)

    names = sorted(list_models(), key=rank)
    return [(family, list(group)) for family, group in itertools.groupby(names, key=lambda n: get_card(n).family)]


def _heading(text: str) -> str:
    return f"\n{text}\n{'=' * len(text)}"


def architectures() -> str:
    """Each family's card in full, then one summary line per model of the family."""
    parts = []
    for family, names in families():
        first = get_card(names[0])
        parts.append(_heading(f"{family} ({first.venue} {first.year})"))
        parts.append(str(first))
        parts.append("")
        width = max(map(len, names))
        for name in names:
            parts.append(f"  {name:<{width}}  {format_summary(summarize(name))}")
    return "\n".join(parts)


# --- chapters: each prints what it found and adds a section to the report -----------------------------------

def chapter_architectures(report: Report, out: Path, quick: bool = False) -> None:
    text = architectures()
    print(text)
    rows = []
    for family, names in families():
        for name in names:
            s = summarize(name)
            card = get_card(name)
            rows.append({"model": name, "family": family, "year": str(card.year),  # a year, not "2,012" "weight layers": s["weight_layers"],
                         "params": f"{s['params']:,}", "input": card.input_size,
                         "torchvision weights": "yes" if card.torchvision else ""})
    report.section("1. The architectures").text(
        f"{len(rows)} models in {len(families())} families, in the lecture's order. Every card names the paper and "
        "each deviation from it; `cnnzoo info MODEL` prints one.")
    report.table(rows)


def chapter_analysis(report: Report, out: Path, quick: bool = False) -> None:
    from matplotlib import pyplot as plt  # noqa: F401  (the plots module needs a backend chosen before use)

    from .analysis import compare, profile
    from .analysis.plots import plot_comparison, plot_layers

    alexnet = profile("alexnet", 227).select("conv", "pool", "flatten", "fc")
    stem = profile("googlenet_paper", 224).select("conv", "pool").head(5)  # the paper's, as the slide
    comparison = compare(COMPARED)  # each at its card's input size: AlexNet at 227
    print(_heading("The lecture's AlexNet table, computed (227x227)"))
    print(alexnet.table())
    print(_heading("GoogLeNet's aggressive stem (224 -> 28)"))
    print(stem.table())
    print(_heading("Comparing complexity (224x224; ratios to the first)"))
    print(comparison.table())
    charts = out / "charts"
    paths = plot_layers(profile("alexnet", 227), charts) + plot_comparison(comparison, charts)

    sec = report.section("2. The lecture's analysis, computed")
    sec.text("Per-layer memory, parameters and multiply-adds, computed on the meta device (no weights, no "
             "activations). Where the slides differ from the arithmetic, docs/lecture-errata.md says where and why.")
    sec.subsection("AlexNet at 227x227").pre(alexnet.table())
    sec.subsection("GoogLeNet's stem").pre(stem.table())
    sec.subsection("Comparing complexity").pre(comparison.table())
    for path in paths:
        if path.suffix == ".png":
            sec.image(path, caption=path.stem)


def _fresh(folder: Path) -> Path:
    """The chapter's own folder, emptied of a previous tour's run (a run folder is never overwritten)."""
    if folder.is_dir():
        shutil.rmtree(folder)
    return folder


def chapter_training(report: Report, out: Path, quick: bool = False) -> Path:
    from .train import evaluate, format_report, read_metrics, train
    from .train.metrics import plot_curves

    run = _fresh(out / "train")
    epochs = QUICK_EPOCHS if quick else FIELDS["epochs"].default
    summary = train(model="resnet18", data="digits", out=str(run), progress=False, epochs=epochs)
    result = evaluate(str(run), split="test")
    print(_heading("Train and test: resnet18 on scikit-learn's handwritten digits"))
    print(format_report(result))
    curves = plot_curves(read_metrics(run / "metrics.jsonl"), run / "curves.png")

    sec = report.section("3. Train and test on real data")
    how = "cnnzoo's defaults" if not quick else f"cnnzoo's defaults but {epochs} epochs (--quick)"
    sec.text(f"resnet18 trained with {how} on the 1,797 handwritten digits shipped with scikit-learn "
             f"(8x8, upscaled): test top-1 {100 * result['top1']:.1f}%, top-5 {100 * result['top5']:.1f}%, "
             f"{summary['train_seconds']:.0f} s of training.")
    sec.image(curves, caption="loss and accuracy per epoch")
    sec.image(run / "confusion-test.png", caption="confusion matrix on the test split")
    sec.pre(format_report(result))
    sec.link(run, "the run directory", note="config.yaml, metrics.jsonl, checkpoints")
    ensemble_step(sec, out, run if epochs == QUICK_EPOCHS else None)
    return run


ENSEMBLE_SEEDS = (1, 2)  # two more runs beside the chapter's seed-0 run


def ensemble_step(sec: Report, out: Path, run: Path | None = None) -> dict:
    """Three digits runs that differ only in their seed, and their ensemble (mean of softmax) against the best
    of them; `run` is a seed-0 run of QUICK_EPOCHS to reuse (else one is trained). About 20 s on a CPU."""
    from .deploy.ensemble import evaluate_ensemble, format_members
    from .train import train

    folder = _fresh(out / "ensemble")
    members = [run] if run is not None else []
    for seed in ENSEMBLE_SEEDS if run is not None else (0, *ENSEMBLE_SEEDS):
        member = folder / f"seed{seed}"
        train(model="resnet18", data="digits", out=str(member), progress=False, epochs=QUICK_EPOCHS, seed=seed,
              tensorboard=False)
        members.append(member)
    result = evaluate_ensemble([str(m) for m in members], out=str(folder / "eval"))
    table = format_members(result)
    print(_heading("An ensemble: three seeds, their softmax averaged"))
    print(table)
    sub = sec.subsection("An ensemble of three runs")
    sub.text(f"The lecture's ILSVRC 2016 winner was an ensemble. Three resnet18 runs of {QUICK_EPOCHS} epochs that "
             f"differ only in their seed (initial weights, data order, augmentation), their softmax averaged: "
             f"test top-1 {100 * result['top1']:.1f}%: {100 * result['gain_top1_over_mean']:+.1f} points over the "
             f"members' mean and {100 * result['gain_top1']:+.1f} over the best of them (picked after the fact, on "
             f"these same test images), for three times the computation. `cnnzoo evaluate RUN1 RUN2 RUN3` measures it; predict, serve and export take "
             f"several runs too.")
    sub.pre(table)
    return result


def chapter_transfer(report: Report, out: Path, quick: bool = False) -> None:
    from .pretrained.load import cached
    from .transfer.experiment import format_table, quick_experiment, summarize

    # "Don't be a hero": start from ImageNet when its weights are already on this machine (the tour downloads
    # nothing); else from a ResNet-18 trained here on digits 0-4.
    start = "imagenet" if cached("resnet18") else None
    result = quick_experiment(out=_fresh(out / "transfer"), log=lambda line: None, start=start)
    print(_heading("Transfer learning: digits 0-4 -> digits 5-9, one labelled image per class" if start is None else
                   "Transfer learning: ImageNet -> digits 5-9, one labelled image per class"))
    table = format_table(result)
    print(table)
    stats = summarize(result)
    scratch = next(top1 for (_, arm), (top1, _, _) in stats.items() if arm == "scratch")
    rows = [{"mode": arm, "test top-1": f"{100 * top1:.1f}%", "vs scratch": f"{100 * (top1 - scratch):+.1f} points"}
            for (_, arm), (top1, _, _) in stats.items()]

    sec = report.section("4. Transfer learning")
    if start is None:
        origin = (f"ResNet-18 is trained on digits 0-4 (test top-1 {100 * result['pretrain']['test_top1']:.1f}%); "
                  f"torchvision's ImageNet weights were not in the cache (`cnnzoo predict resnet18 --weights "
                  f"imagenet IMAGE` fetches them, and the tour then starts from them)")
    else:
        origin = ("ResNet-18 starts from torchvision's ImageNet weights, found in the cache (its first convolution "
                  "summed to one grey channel, a new head)")
    sec.text(f"The lecture's three ways of reusing a trained network. {origin}. It is then used for digits 5-9 with "
             f"a single labelled image per class: its activations as features for logistic regression, a new "
             f"last layer on the frozen network, or the whole network fine-tuned; against the same network "
             f"trained from scratch on the same five images with the same budget. One seed here; "
             f"benchmarks/RESULTS.md has the full experiment (1 to 10 images per class, five seeds).")
    sec.table(rows, caption=f"test top-1 on all {result.get('test_images', 179)} test images of digits 5-9")
    sec.link(out / "transfer", "the transfer runs", note="one run folder per mode, with results.json")


def chapter_deploy(report: Report, out: Path, quick: bool = False) -> None:
    from matplotlib import pyplot as plt

    from .deploy import export_run, load_source, predict, sample_images
    from .deploy.export import format_report
    from .deploy.predict import format_predictions
    from .errors import CnnzooError

    run = out / "train"
    if not (run / "checkpoints" / "best.pt").is_file():
        raise CnnzooError("the deploy chapter deploys the training chapter's run; run the tour with "
                          "--chapters training,deploy")
    folder = _fresh(out / "deploy")
    source = load_source(run)  # read once: the export and the sample images share it
    exported = export_run(source, "onnx", folder / "model.onnx")
    images = sample_images(source.meta, folder / "images", n=10)
    result = predict(exported.path, [str(path) for path, _ in images], top_k=3)
    print(_heading("Deploy: export to ONNX, verify, predict"))
    print(format_report(exported))
    print(f"predicting {len(images)} test digits with {result.backend} ({result.backend_reason}):")
    print(format_predictions(result))
    serve = f"cnnzoo serve {exported.path}"
    print(f"to serve it: {serve}  (then open http://127.0.0.1:8000)")

    figure, axes = plt.subplots(1, len(images), figsize=(1.3 * len(images), 1.8))
    for ax, (path, truth), p in zip(axes, images, result.predictions):
        label, prob = p.top[0]
        ax.imshow(plt.imread(path), cmap="gray")
        ax.set_title(f"{label} ({100 * prob:.0f}%)", fontsize=9, color="black" if label == truth else "red")
        ax.set_xlabel(f"true {truth}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    sec = report.section("5. Deploy")
    sec.text(f"The run of chapter 3 exported to ONNX and checked against PyTorch on random and real inputs "
             f"(largest difference {exported.max_abs_diff:.1e}), then used through {result.backend} on test "
             f"digits the network never saw. Serve it with `{serve}` and open http://127.0.0.1:8000 to drop "
             f"images on its page.")
    sec.image(figure, caption="predicted class (probability) above each test digit; red where it is wrong")
    plt.close(figure)
    sec.pre(format_report(exported) + "\n\n" + format_predictions(result))
    sec.link(exported.path, "the ONNX file")


def chapter_recommend(report: Report, out: Path, quick: bool = False) -> None:
    from matplotlib import pyplot as plt

    from .bench import recommend

    rec = recommend(threads=1, repeats=2 if quick else 5)
    folder = out / "recommend"
    rec.bench.save(folder)
    plot = rec.plot(folder / "recommend.png")
    print(_heading("Which architecture should I use? Measured on this machine"))
    print(rec.table())
    print("\n".join(rec.reasons))

    sec = report.section("6. Which architecture should I use?")
    sec.text("\n\n".join(rec.reasons)).pre(rec.table())
    sec.image(plot, caption="published ImageNet top-1 against latency measured here; the Pareto front")
    figure = rec.bench.figure()
    sec.image(figure, caption="roofline: achieved GFLOP/s against the measured matmul peak")
    plt.close(figure)


def chapter_learned(report: Report, out: Path, quick: bool = False) -> Report:
    """ZFNet's questions asked of the digits run: its filters, a digit's activations, Grad-CAM and occlusion,
    and the test digits it is most confidently wrong about. Returns the section, so a later addition (the
    ensemble numbers) is one more call on it."""
    from matplotlib import pyplot as plt

    from .deploy import load_source, sample_images
    from .errors import CnnzooError
    from .explain import activations, default_layer, explain, filters
    from .explain.pictures import draw_overlay

    run = out / "train"
    if not (run / "checkpoints" / "best.pt").is_file():
        raise CnnzooError("this chapter looks inside the training chapter's run; run the tour with "
                          "--chapters training,learned")
    folder = _fresh(out / "learned")
    source = load_source(run)
    images = sample_images(source.meta, folder / "images", n=5)
    layer = default_layer(source.module, source.meta.input_size)
    grid = filters(source, folder / "filters.png")
    acts = activations(source, images[0][0], layer, folder / "activations.png", strongest=11)
    figure, axes = plt.subplots(2, len(images), figsize=(1.9 * len(images), 4.4))
    for col, (path, truth) in enumerate(images):
        for row, method in enumerate(("gradcam", "occlusion")):
            e = explain(source, path, method)
            draw_overlay(axes[row][col], e, title=f"{method}: {e.predicted} (true {truth})", fontsize=8)
    print(_heading("What the network learned"))
    print(f"first-layer filters: {grid}\nactivations of {layer}: {acts}")

    sec = report.section("7. What the network learned")
    sec.text("Zeiler and Fergus built ZFNet by looking inside AlexNet. The same questions, asked of the digits run "
             "of chapter 3: what its first layer's filters are, which channels of a layer respond to a digit, and "
             "where it looks when it decides (Grad-CAM at its last stage with a map of 7x7 or more, and "
             "occlusion: a grey patch slid over the digit, the heat where covering it costs the class most). "
             f"`cnnzoo filters {run}`, `cnnzoo activations`, `cnnzoo explain` make these for any run.")
    sec.image(grid, caption="first-layer filters, each scaled to its own range (ZFNet Fig. 2)")
    sec.image(acts, caption=f"the strongest channels of {layer} for one test digit")
    sec.image(figure, caption="Grad-CAM (top) and occlusion (bottom) for five test digits")
    plt.close(figure)
    losses = run / "top-losses-test.png"
    if losses.is_file():  # the training chapter's evaluation drew it; none when every test digit is right
        sec.image(losses, caption="the test digits it is most confidently wrong about, with the Grad-CAM of the "
                                  "class it said")
    # the ensemble numbers of issue 15 are in chapter 3 (ensemble_step); a later addition here is one call on sec
    return sec


CHAPTERS: dict[str, Callable[[Report, Path, bool], object]] = {
    "architectures": chapter_architectures,
    "analysis": chapter_analysis,
    "training": chapter_training,
    "transfer": chapter_transfer,
    "deploy": chapter_deploy,
    "recommendation": chapter_recommend,
    "learned": chapter_learned,
}


def run_tour(out: str | Path = "runs/tour", chapters: list[str] | None = None, quick: bool = False) -> Path:
    """Run the chapters (all by default), print them, write the self-contained report `out/index.html`.
    `quick` trains for 3 epochs instead of 20 and times fewer runs: the same report in about half the time."""
    from .errors import CnnzooError

    unknown = sorted(set(chapters or ()) - set(CHAPTERS))
    if unknown:
        raise CnnzooError(f"unknown tour chapter {', '.join(unknown)}; the chapters are {', '.join(CHAPTERS)}")
    from .fileio import make_folder

    out = make_folder(out)  # a bad --out fails now, not after an hour of chapters
    report = Report("cnnzoo tour", subtitle="The CNN architectures lecture, computed on this machine")
    print("cnnzoo tour: the CNN architectures lecture, computed")
    for name, chapter in CHAPTERS.items():
        if chapters and name not in chapters:
            continue
        start = time.perf_counter()
        chapter(report, out, quick)
        print(f"\n[tour] {name}: {time.perf_counter() - start:.0f} s", flush=True)
    index = report.write(out / "index.html")
    print(f"\ncnnzoo tour: done; the report is {index.resolve()}")
    return index
