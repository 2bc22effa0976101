"""Training metrics: ``metrics.csv`` always, TensorBoard events if ``tensorboard`` is installed."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sslrobot.pretraining import artifacts
from sslrobot.utils.io import atomic_write_text

STEP = "step"


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as dicts of floats (``step`` as int); unparsable rows (a torn
    last line after a crash) are skipped."""
    if not path.is_file():
        return []
    rows: list[dict[str, float]] = []
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            try:
                parsed = {
                    k: float(v) for k, v in row.items() if k is not None and v not in ("", None)
                }
                parsed[STEP] = int(parsed[STEP])
            except (KeyError, ValueError, TypeError):
                continue
            rows.append(parsed)
    return rows


class MetricsLog:
    """Append-only CSV with a fixed header (plus optional TensorBoard mirror).

    Args:
        out: The run's output directory.
        keys: Metric names, namespaced (``pretrain/loss_fdm``); the CSV header is
            ``step`` followed by these.
        resume_step: When resuming, rows after this step (logged after the checkpoint the run
            resumes from) are dropped, so the CSV reads as one unbroken run.
        tensorboard: Mirror scalars and images to ``out/tensorboard`` if possible.
    """

    def __init__(
        self, out: Path, keys: list[str], resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.path = out / artifacts.METRICS
        self.keys = list(keys)
        header = [STEP, *self.keys]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        if resume_step is not None:
            for row in read_metrics(self.path):
                if row[STEP] <= resume_step:
                    writer.writerow([_format(row.get(k, math.nan)) for k in header])
        atomic_write_text(self.path, buffer.getvalue())
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        # On resume TensorBoard drops its events after the checkpoint too (purge_step), as the
        # CSV drops its rows: they came back a second time, one step drawn twice.
        purge = None if resume_step is None else resume_step + 1
        self._tensorboard = (
            _summary_writer(out / artifacts.TENSORBOARD, purge) if tensorboard else None
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        """Append one row; keys outside the header are an error (fixed columns)."""
        extra = set(values) - set(self.keys)
        if extra:
            raise KeyError(f"metrics {sorted(extra)} are not in the CSV header {self.keys}")
        self._writer.writerow([step, *(_format(values.get(k, math.nan)) for k in self.keys)])
        self._file.flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(key, value, step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Mirror an (H, W, 3) uint8 image to TensorBoard (the PNG is written by the caller)."""
        if self._tensorboard is not None:
            self._tensorboard.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "" if math.isnan(value) else f"{value:.6g}"


#: Whether this process has said that TensorBoard is missing (once is enough: a run of
#: several pretrainings said it for each).
_TENSORBOARD_MISSING_SAID = False


def _summary_writer(path: Path, purge_step: int | None = None) -> Any:
    global _TENSORBOARD_MISSING_SAID
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        if not _TENSORBOARD_MISSING_SAID:
            _TENSORBOARD_MISSING_SAID = True
            warnings.warn(
                f"tensorboard is not installed: metrics go to metrics.csv only, not {path} "
                "or the other runs' (pip install 'sslrobot[tensorboard]' for both)",
                stacklevel=3,
            )
        return None
    return SummaryWriter(log_dir=str(path), purge_step=purge_step)
