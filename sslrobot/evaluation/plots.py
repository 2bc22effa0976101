"""Report figures as PNG files, drawn on ``Figure`` objects (Agg), never pyplot global state."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sslrobot.utils.io import atomic_write

_DPI = 110


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches the Agg canvas; no pyplot, no backend switch
    return figure


def _save(figure: Figure, out_path: str | os.PathLike[str]) -> Path:
    return atomic_write(Path(out_path), lambda file: figure.savefig(file, format="png"))


def _require(record: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"{what} record {dict(record)} lacks {missing}")


def _require_ordered_interval(record: Mapping[str, Any], kind: str) -> None:
    """An interval drawn around its mean must hold it: a swapped ``low`` and ``high`` drew a
    band or error bar that looked like any other."""
    if not float(record["low"]) <= float(record["mean"]) <= float(record["high"]):
        raise ValueError(
            f"{kind} record of encoder {record['encoder']!r} needs low <= mean <= high, "
            f"got {record['low']}, {record['mean']}, {record['high']}"
        )


def _ordered(values: Sequence[Any]) -> list[Any]:
    """Unique values in first-seen order (so plots follow the caller's order)."""
    return list(dict.fromkeys(values))


def plot_success(
    records: Sequence[Mapping[str, Any]], out_path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Bar chart of success rate per encoder with confidence-interval error bars.

    Args:
        records: Dicts with ``encoder``, ``mean``, ``low``, ``high`` (rates in [0, 1]) and
            optionally ``task``; one panel per task.
        out_path: PNG to write.
        title: Figure title.
    """
    if not records:
        raise ValueError("plot_success needs at least one record")
    for record in records:
        _require(record, ("encoder", "mean", "low", "high"), "success")
        _require_ordered_interval(record, "success")
    tasks = _ordered([r.get("task", "") for r in records])
    figure = _new_figure(max(4.0, 3.2 * len(tasks)), 3.4)
    axes = figure.subplots(1, len(tasks), squeeze=False, sharey=True)[0]
    for ax, task in zip(axes, tasks, strict=True):
        rows = [r for r in records if r.get("task", "") == task]
        means = np.array([float(r["mean"]) for r in rows]) * 100.0
        errors = (
            np.array(
                [
                    [float(r["mean"]) - float(r["low"]), float(r["high"]) - float(r["mean"])]
                    for r in rows
                ]
            ).T
            * 100.0
        )  # (2, E): distances below and above the mean
        positions = np.arange(len(rows))
        # The state oracle is the reference, not a contender: drawn apart, in grey.
        colours = ["0.6" if r["encoder"] == "state" else "C0" for r in rows]
        ax.bar(positions, means, yerr=errors, capsize=4, color=colours, alpha=0.85)
        ax.set_xticks(positions, [str(r["encoder"]) for r in rows], rotation=30, ha="right")
        ax.set_ylim(0, 105)
        if len(tasks) > 1 or not title:  # one panel under a title needs no second one
            ax.set_title(str(task))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("success rate (%) with 95% CI")
    if title:
        figure.suptitle(title)
    return _save(figure, out_path)


def plot_data_efficiency(
    records: Sequence[Mapping[str, Any]], out_path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Success rate against number of demonstrations, one line per encoder with a CI band.

    Args:
        records: Dicts with ``encoder``, ``num_demos``, ``mean``, ``low``, ``high``.
        out_path: PNG to write.
        title: Figure title.
    """
    if not records:
        raise ValueError("plot_data_efficiency needs at least one record")
    for record in records:
        _require(record, ("encoder", "num_demos", "mean", "low", "high"), "data-efficiency")
        _require_ordered_interval(record, "data-efficiency")
    figure = _new_figure(5.0, 3.6)
    ax = figure.subplots()
    for index, encoder in enumerate(_ordered([r["encoder"] for r in records])):
        rows = sorted((r for r in records if r["encoder"] == encoder), key=lambda r: r["num_demos"])
        demos = [int(r["num_demos"]) for r in rows]
        color = f"C{index % 10}"
        ax.plot(demos, [100.0 * r["mean"] for r in rows], marker="o", color=color, label=encoder)
        ax.fill_between(
            demos,
            [100.0 * r["low"] for r in rows],
            [100.0 * r["high"] for r in rows],
            color=color,
            alpha=0.2,
        )
    demos_all = sorted({int(r["num_demos"]) for r in records})
    if len(demos_all) > 1 and demos_all[0] > 0 and demos_all[-1] / demos_all[0] >= 8:
        ax.set_xscale("log")
    ax.set_xticks(demos_all, [str(d) for d in demos_all])
    ax.minorticks_off()
    ax.set_xlabel("number of demonstrations")
    ax.set_ylabel("success rate (%) with 95% CI")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return _save(figure, out_path)


def read_metrics_csv(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Columns of a metrics CSV as float arrays (empty cells become NaN).

    Args:
        path: CSV with a header row, e.g. a pretraining run's ``metrics.csv``.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty metrics CSV (no header row)")
        columns: dict[str, list[float]] = {name: [] for name in reader.fieldnames}
        for line_number, row in enumerate(reader, start=2):
            for name in reader.fieldnames:
                cell = row.get(name)
                try:
                    columns[name].append(float(cell) if cell not in (None, "") else math.nan)
                except ValueError:
                    raise ValueError(
                        f"{path}:{line_number}: column {name!r} holds {cell!r}, not a number"
                    ) from None
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


def plot_loss_curves(
    runs: Mapping[str, str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    key: str = "pretrain/loss",
    step_key: str = "step",
    title: str = "",
    log_scale: bool | None = None,
    groups: Mapping[str, str] | None = None,
) -> Path:
    """Training-loss curves of several runs read from their metrics CSV files.

    Args:
        runs: Label (e.g. the objective) -> path of that run's metrics CSV.
        out_path: PNG to write.
        key: Column to plot; rows where it is empty are skipped.
        step_key: Column of the x axis.
        title: Figure title.
        log_scale: Logarithmic y axis; ``None``: when every value is positive and they span
            at least a decade (within one, a log axis labels only odd minor ticks).
        groups: Label -> group (e.g. the seeds of one encoder): a group's runs share a colour
            and one legend entry, its later runs in other line styles.
    """
    if not runs:
        raise ValueError("plot_loss_curves needs at least one run")
    figure = _new_figure(5.0, 3.6)
    ax = figure.subplots()
    all_positive = True
    lowest, highest = np.inf, -np.inf
    group_of = {label: (groups or {}).get(label, label) for label in runs}
    colours = {group: f"C{i % 10}" for i, group in enumerate(_ordered(list(group_of.values())))}
    drawn: dict[str, int] = {}
    for label, path in runs.items():
        columns = read_metrics_csv(path)
        for column in (key, step_key):
            if column not in columns:
                raise ValueError(f"{path}: no column {column!r}; columns are {sorted(columns)}")
        keep = np.isfinite(columns[key]) & np.isfinite(columns[step_key])
        if not keep.any():
            raise ValueError(f"{path}: column {key!r} has no values")
        values = columns[key][keep]
        all_positive &= bool(np.all(values > 0))
        lowest, highest = min(lowest, float(values.min())), max(highest, float(values.max()))
        group = group_of[label]
        repeat = drawn[group] = drawn.get(group, -1) + 1
        ax.plot(
            columns[step_key][keep],
            values,
            color=colours[group],
            linestyle=("-", "--", ":", "-.")[repeat % 4],
            label=group if repeat == 0 else None,
        )
    if log_scale is None:
        log_scale = all_positive and highest >= 10.0 * lowest
    if log_scale:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole
    ax.set_xlabel(step_key)
    ax.set_ylabel(key.rsplit("/", 1)[-1].replace("_", " "))  # "pretrain/loss" -> "loss"
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return _save(figure, out_path)


def plot_probe_r2(
    r2_by_encoder: Mapping[str, Mapping[str, float | None]],
    out_path: str | os.PathLike[str],
    title: str = "",
    marked: Sequence[str] = (),
) -> Path:
    """Grouped bars: held-out probe R^2 per state variable, one bar per encoder.

    Args:
        r2_by_encoder: Encoder -> {state variable -> R^2}; ``None``/NaN values are not drawn.
        out_path: PNG to write.
        title: Figure title.
        marked: Variables to mark with ``*`` and bold labels (the ones a headline mean
            averages, when it averages fewer than all: Navigate's 4 of 26).
    """
    if not r2_by_encoder:
        raise ValueError("plot_probe_r2 needs at least one encoder")
    variables = _ordered([v for scores in r2_by_encoder.values() for v in scores])
    if not variables:
        raise ValueError("plot_probe_r2: no state variables in the records")
    encoders = list(r2_by_encoder)
    figure = _new_figure(max(5.0, 0.35 * len(variables) * len(encoders) + 1.5), 3.6)
    ax = figure.subplots()
    width = 0.8 / len(encoders)
    positions = np.arange(len(variables))
    lowest = 0.0
    for index, encoder in enumerate(encoders):
        scores = r2_by_encoder[encoder]
        heights = np.array(
            [
                np.nan if scores.get(v) is None else float(scores[v])  # type: ignore[arg-type]
                for v in variables
            ]
        )
        if np.isfinite(heights).any():
            lowest = min(lowest, float(np.nanmin(heights)))
        offset = (index - (len(encoders) - 1) / 2.0) * width
        ax.bar(positions + offset, heights, width, color=f"C{index % 10}", label=encoder)
    ax.axhline(0.0, color="black", linewidth=0.8)
    labels = [f"{v} *" if v in marked else v for v in variables]
    ax.set_xticks(positions, labels, rotation=30, ha="right")
    for label, variable in zip(ax.get_xticklabels(), variables, strict=True):
        if variable in marked:
            label.set_fontweight("bold")
    ax.set_ylabel("held-out R²")
    bottom = max(lowest, -1.0) - 0.05  # very negative R^2 would hide the rest: clip, label
    ax.set_ylim(bottom, 1.05)
    ax.set_xlim(-0.5, len(variables) - 0.5)  # every group, drawn bars or not
    for index, encoder in enumerate(encoders):
        offset = (index - (len(encoders) - 1) / 2.0) * width
        for position, variable in zip(positions, variables, strict=True):
            value = r2_by_encoder[encoder].get(variable)
            # Upright labels, so that neighbouring clipped bars' values cannot overlap.
            if value is None or not np.isfinite(value):
                text = "n/a"  # not scored (e.g. a variable constant on the held-out frames)
            elif value < bottom:
                text = f"{value:.2g}"
            else:
                continue
            ax.annotate(
                text,
                (position + offset, max(bottom, 0.0) if text == "n/a" else bottom),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                rotation=90,
                fontsize="x-small",
            )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return _save(figure, out_path)


def plot_prediction_psnr(
    psnr_by_model: Mapping[str, Sequence[float]],
    out_path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """PSNR against prediction horizon k = 1..K, one line per model (e.g. vs copy-last).

    Args:
        psnr_by_model: Label -> PSNR in dB for k = 1..K; ``inf`` (frames predicted exactly)
            or None (what the JSON results store for it) is marked "∞" at the top of the
            axes, NaN "n/a", instead of a gap in the line that says nothing.
        out_path: PNG to write.
        title: Figure title.
    """
    if not psnr_by_model:
        raise ValueError("plot_prediction_psnr needs at least one model")
    figure = _new_figure(5.0, 3.6)
    ax = figure.subplots()
    marks = []
    for index, (label, values) in enumerate(psnr_by_model.items()):
        if len(values) == 0:
            raise ValueError(f"plot_prediction_psnr: no values for {label!r}")
        given = np.array([np.inf if v is None else float(v) for v in values], dtype=np.float64)
        horizons = np.arange(1, len(given) + 1)
        color = f"C{index % 10}"
        drawn = np.where(np.isfinite(given), given, np.nan)
        ax.plot(horizons, drawn, marker="o", color=color, label=label)
        for horizon, value in zip(horizons, given, strict=True):
            if not np.isfinite(value):
                marks.append((horizon, "∞" if value > 0 else "n/a", color))
    for horizon, text, color in marks:
        ax.annotate(
            text,
            (horizon, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -3),
            textcoords="offset points",
            ha="center",
            va="top",
            color=color,
        )
    ax.set_xlabel("prediction horizon k (steps)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole steps, not 1.25
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return _save(figure, out_path)


def frame_strip(rows: Mapping[str, np.ndarray], gap: int = 2) -> np.ndarray:
    """Tile frame sequences into one image: a row per label (e.g. real, predicted).

    Args:
        rows: Label -> uint8 frames (K, H, W, 3), all of one shape.
        gap: White pixels between frames and rows.

    Returns:
        uint8 image (R*H + (R-1)*gap, K*W + (K-1)*gap, 3).
    """
    arrays = [np.asarray(frames) for frames in rows.values()]
    if not arrays:
        raise ValueError("frame_strip needs at least one row")
    shape = arrays[0].shape
    for label, array in zip(rows, arrays, strict=True):
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(
                f"row {label!r} must be uint8 (K, H, W, 3), got {array.dtype} {array.shape}"
            )
        if array.shape != shape:
            raise ValueError(f"row {label!r} has shape {array.shape}, others {shape}")
    k, h, w, _ = shape
    image = np.full((len(arrays) * (h + gap) - gap, k * (w + gap) - gap, 3), 255, np.uint8)
    for r, array in enumerate(arrays):
        for c in range(k):
            image[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = array[c]
    return image


def save_frame_strip(
    rows: Mapping[str, np.ndarray], out_path: str | os.PathLike[str], scale: int = 2
) -> Path:
    """Save a labelled strip of frames (e.g. real vs predicted o_{t+1..t+K}) as a PNG.

    Args:
        rows: Label -> uint8 frames (K, H, W, 3).
        out_path: PNG to write.
        scale: Pixel upscaling, so that 64x64 frames are visible (nearest neighbour).
    """
    gap = 2
    image = frame_strip(rows, gap=gap)
    labels = list(rows)
    num_frames, frame_height, frame_width = np.asarray(next(iter(rows.values()))).shape[:3]
    height, width = image.shape[:2]
    figure = _new_figure((width * scale) / _DPI + 1.6, (height * scale) / _DPI + 0.6)
    ax = figure.subplots()
    ax.imshow(image, interpolation="nearest")
    ax.set_yticks([r * (frame_height + gap) + frame_height / 2 for r in range(len(labels))], labels)
    ax.set_xticks(
        [k * (frame_width + gap) + frame_width / 2 for k in range(num_frames)],
        [f"t+{k + 1}" for k in range(num_frames)],
    )
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return _save(figure, out_path)
