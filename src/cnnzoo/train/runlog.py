"""What a run tells its user: `log.txt`, the progress bar, and TensorBoard when it is installed."""
from __future__ import annotations

import sys
import time
from pathlib import Path


class RunLog:
    """Appends timestamped lines to `log.txt` and echoes them to stdout; silent off rank 0 (path None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, message: str, echo: bool = True) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")
        if echo:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """A tqdm bar per epoch: step, loss, learning rate, images/s, the epoch's ETA and the run's."""

    def __init__(self, enabled: bool, total_steps: int, done_steps: int) -> None:
        self.enabled, self.total, self.done = enabled, total_steps, done_steps
        self.start, self.start_done = time.perf_counter(), done_steps

    def epoch(self, epoch: int, epochs: int, steps: int):
        if not self.enabled:
            return None
        from tqdm import tqdm

        return tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False, file=sys.stderr,
                    dynamic_ncols=True, bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {postfix} [{elapsed}<{remaining}]")

    def update(self, bar, epoch_step: int, step: int, loss: float, lr: float, images_per_s: float) -> None:
        self.done = step
        if bar is None:
            return
        rate = (self.done - self.start_done) / max(time.perf_counter() - self.start, 1e-9)
        eta = _duration((self.total - self.done) / rate) if rate > 0 else "?"
        bar.set_postfix_str(f"loss {loss:.4f} lr {lr:.2e} {images_per_s:.0f} img/s run ETA {eta}", refresh=False)
        bar.update(epoch_step - bar.n)

    def close(self, bar) -> None:
        if bar is not None:
            bar.close()


def tensorboard_writer(run: Path, wanted: bool, log: RunLog):
    """A SummaryWriter on `run/tensorboard` if TensorBoard is installed (and wanted), else None."""
    if not wanted:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("TensorBoard is not installed (pip install tensorboard); metrics go to metrics.jsonl only", echo=False)
        return None
    return SummaryWriter(log_dir=str(run / "tensorboard"))
