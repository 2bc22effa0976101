"""Render a results report (Markdown and self-contained HTML) from result records only.

Every number and picture in the report comes from the ``report`` dict passed in; this module
computes nothing but formatting and the plain-language verdict. The dict's layout:

.. code-block:: python

    {
        "title": "sslrobot report",                      # optional
        "header": {                                      # shown first, so anyone can rerun it
            "command": "sslrobot run --preset default",
            "config": {...},                             # any JSON-able value
            "package_versions": {"torch": "2.13.0", ...},
            "seeds": {"run": 0, "policy_seeds": [0, 1, 2], ...},  # sslrobot run's
            ...                                          # other keys: shown as key/value rows
        },
        "tasks": [
            {
                "task": "sslrobot/Push-v0",
                "rows": [                                # one per encoder
                    {
                        "encoder": "fdm+future",
                        "success": {"mean": 0.8, "low": 0.7, "high": 0.9},  # or None
                        "probe_r2": 0.61,                # optional, mean held-out R^2
                        "probe_r2_std": 0.02,            # optional, over random inits
                        "probe_r2_inits": 5,             # optional, how many inits
                        "probe_r2_over": "inits",        # optional, what they are
                        "probe_gain": 0.2,               # optional, probe_r2 - baseline's
                        "probe_r2_all_frames": 0.58,     # optional, where view conditions
                        "probe_gain_all_frames": 0.1,    #   made probe_r2 differ from it
                        "psnr": 27.1,                    # optional, dB at k = 1
                        "psnr_copy_last": 24.0,          # optional, same frames
                        "wall_time_s": {"pretrain": 95.0, "train_policy": 30.0},  # optional
                    },
                ],
                "verdict": "...",                        # optional; else verdict(rows)
                "rl_label": "Online RL (SAC, ...)",      # optional: a second table, of
                "rl_rows": [...],                        #   another protocol, rows as above
                "plots": ["plots/push_success.png"],     # or {"path": ..., "caption": ...}
                "media": [{"path": "gifs/push_fdm.gif", "caption": "fdm+future, success"}],
            },
        ],
        "across_tasks": [                                # optional, one table per block
            {
                "label": "final checkpoints",
                "num_demos": 25,
                "reference": "state",
                "rows": [                                # across_tasks.success_across_tasks
                    {
                        "encoder": "fdm+future",
                        "tasks": ["sslrobot/Push-v0", "sslrobot/Reach-v0"],
                        "success": {"mean": 0.5, "low": 0.4, "high": 0.6},
                        "of_reference": {"mean": 0.6, "low": 0.5, "high": 0.7},  # or None
                        "gain_over": {"none": {"mean": 15.0, "low": 8.0, "high": 22.0}},
                    },
                ],
            },
        ],
        "plots": [...],                                  # report-wide pictures
        "media": [...],
        "notes": ["..."],                                # optional free text
    }

Relative picture paths are relative to ``out_dir``. Markdown links to the files; HTML embeds
them as base64 data URIs (PNG, GIF, JPEG, SVG images; MP4/WebM videos), so the one file can be
mailed around.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sslrobot.evaluation.statistics import intervals_overlap
from sslrobot.utils.io import atomic_write_text
from sslrobot.utils.versions import package_versions as installed_versions

_MIME_TYPES = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}
_MISSING = "—"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .95em; }
th, td { border: 1px solid #ccc; padding: .35em .7em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
code, pre { background: #f6f6f6; border-radius: 3px; }
pre { padding: .7em; overflow-x: auto; }
.verdict { background: #eef5ff; border-left: 4px solid #3a78c2; padding: .6em 1em; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figure img, figure video { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
""".strip()


def package_versions(
    names: Sequence[str] = (
        "sslrobot",
        "torch",
        "numpy",
        "mujoco",
        "gymnasium",
        "stable-baselines3",
        "matplotlib",
    ),
) -> dict[str, str]:
    """Installed versions of the packages that decide the results, for the report header."""
    return installed_versions(names, missing="not installed")


def format_rate(value: float) -> str:
    """A success rate in [0, 1] as a percentage with one decimal: ``0.8125 -> '81.2%'``."""
    return f"{100.0 * value:.1f}%"


def format_ci(mean: float, low: float, high: float) -> str:
    """A rate with its interval: ``'81.2% [70.0, 90.0]'``."""
    return f"{format_rate(mean)} [{100.0 * low:.1f}, {100.0 * high:.1f}]"


def format_seconds(seconds: float) -> str:
    """Wall time, readable: ``'42.0 s'``, ``'3m 05s'``, ``'1h 02m'``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _per_seed_cell(row: Mapping[str, Any]) -> str:
    """Each training seed's success rate, e.g. ``38 / 34 / 42%``: three seeds' intervals hide
    how far apart they are."""
    rates = row.get("success_per_seed")
    if not rates:
        return _MISSING
    return " / ".join(f"{100 * float(rate):.0f}" for rate in rates) + "%"


def _success(row: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """(mean, low, high) of a row's success, or None when it has none."""
    value = row.get("success")
    if value is None:
        return None
    if isinstance(value, Mapping):
        try:
            triple = (float(value["mean"]), float(value["low"]), float(value["high"]))
        except KeyError as error:
            raise ValueError(
                f"encoder {row.get('encoder')!r}: success needs mean, low, high; missing {error}"
            ) from None
    else:
        if len(value) != 3:
            raise ValueError(
                f"encoder {row.get('encoder')!r}: success must be (mean, low, high), got {value}"
            )
        triple = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in triple) or triple[1] > triple[2]:
        raise ValueError(
            f"encoder {row.get('encoder')!r}: success must be finite with low <= high, got {triple}"
        )
    return triple


def _points(a: float, b: float) -> str:
    difference = 100.0 * abs(a - b)
    return f"{difference:.1f} percentage point" + ("" if difference == 1.0 else "s")


def verdict(
    task_results: Sequence[Mapping[str, Any]],
    reference_encoders: Sequence[str] = ("state",),
    baseline_encoder: str | None = "none",
) -> str:
    """A plain-language verdict for one task, computed from its success rates and intervals.

    Names the best encoder (reference encoders such as the state oracle are upper bounds, not
    contestants), its lead over the runner-up and over the random-init baseline, and whether the
    confidence intervals overlap; overlapping intervals are reported as "cannot tell apart".

    Args:
        task_results: Rows with ``encoder`` and ``success`` (``{"mean", "low", "high"}``).
        reference_encoders: Encoders reported as references (e.g. ``"state"``).
        baseline_encoder: The baseline to compare the winner with, when present.
    """
    rows = [(str(r["encoder"]), _success(r)) for r in task_results]
    rows = [(name, ci) for name, ci in rows if ci is not None]
    references = [(n, ci) for n, ci in rows if n in reference_encoders]
    contestants = sorted(
        ((n, ci) for n, ci in rows if n not in reference_encoders), key=lambda item: -item[1][0]
    )
    if not contestants:
        return "No encoder has success results for this task yet."
    winner, win_ci = contestants[0]
    sentences = []
    if len(contestants) == 1:
        sentences.append(f"Only {winner} was evaluated: success {format_ci(*win_ci)}.")
    else:
        runner, run_ci = contestants[1]
        overlap = _cannot_separate(win_ci, run_ci)
        # Means of seed means depend on summation order: equal rates may differ by 1e-17.
        if math.isclose(win_ci[0], run_ci[0], rel_tol=0.0, abs_tol=1e-9):
            sentences.append(
                f"{winner} and {runner} tie at {format_rate(win_ci[0])} success "
                f"({format_ci(*win_ci)} and {format_ci(*run_ci)})."
            )
        else:
            sentences.append(
                f"{winner} has the highest success, {format_ci(*win_ci)}, "
                f"{_points(win_ci[0], run_ci[0])} above {runner} ({format_ci(*run_ci)})."
            )
        clause = _overlap_clause(overlap)
        sentences.append(clause[:1].upper() + clause[1:])
        baseline = next((ci for n, ci in contestants[2:] if n == baseline_encoder), None)
        if baseline is not None:
            sentences.append(
                f"Against the {baseline_encoder} baseline ({format_ci(*baseline)}) the lead is "
                f"{_points(win_ci[0], baseline[0])}; "
                + _overlap_clause(_cannot_separate(win_ci, baseline))
            )
    for name, ref_ci in references:
        sentence = f"The {name} reference reaches {format_ci(*ref_ci)}"
        if ref_ci[0] > 0:
            sentence += f"; {winner} achieves {100.0 * win_ci[0] / ref_ci[0]:.0f}% of it."
        else:
            sentence += "."
        sentences.append(sentence)
    return " ".join(sentences)


def _cannot_separate(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the (mean, low, high) intervals overlap, or either has zero width (a bootstrap
    of identical outcomes, as results aggregated before Wilson's fallback hold: no evidence
    of certainty, so never grounds for calling a difference clear)."""
    return intervals_overlap(a[1:], b[1:]) or a[1] == a[2] or b[1] == b[2]


def _overlap_clause(overlap: bool) -> str:
    if overlap:
        return "the 95% intervals overlap, so this run cannot tell them apart."
    return "the 95% intervals do not overlap, so the difference is clear at this sample size."


def _picture_items(items: Sequence[Any] | None, out_dir: Path) -> list[tuple[Path, str]]:
    pictures = []
    for item in items or []:
        if isinstance(item, Mapping):
            path, caption = Path(item["path"]), str(item.get("caption", ""))
        else:
            path, caption = Path(item), ""
        resolved = path if path.is_absolute() else out_dir / path
        if not resolved.is_file():
            raise FileNotFoundError(f"report picture not found: {resolved}")
        if resolved.suffix.lower() not in _MIME_TYPES:
            raise ValueError(
                f"report picture {resolved} has an unsupported type; use one of "
                f"{sorted(_MIME_TYPES)}"
            )
        pictures.append((resolved, caption or resolved.stem))
    return pictures


#: How the pipeline's stages follow each other, for the time columns (others after them).
_STAGE_ORDER = ("collect", "pretrain", "probe", "train_policy", "evaluate")


def _probe_cell(row: Mapping[str, Any]) -> str:
    """``'0.735'``, or averaged over several draws, ``'0.682 ± 0.019 (5 inits)'`` (a baseline's
    random inits) or ``'0.729 ± 0.011 (3 pretraining seeds)'``."""
    if row.get("probe_r2") is None:
        return _MISSING
    text = f"{float(row['probe_r2']):.3f}"
    if row.get("probe_r2_std") is not None:
        over = row.get("probe_r2_over", "inits")
        text += f" ± {float(row['probe_r2_std']):.3f} ({int(row['probe_r2_inits'])} {over})"
    return text


def _table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Column titles and formatted cells of a task table; empty columns are left out."""
    stages: list[str] = []
    for row in rows:
        for stage in row.get("wall_time_s") or {}:
            if stage not in stages:
                stages.append(stage)
    # The pipeline's order, not the rows' key order: results.json sorts keys, so a report
    # rebuilt from it put evaluate first.
    known = {stage: i for i, stage in enumerate(_STAGE_ORDER)}
    stages.sort(key=lambda stage: known.get(stage, len(known)))
    columns: list[tuple[str, Any]] = [("Encoder", lambda r: str(r["encoder"]))]

    def optional(key: str, fmt: str) -> Any:
        return lambda r: _MISSING if r.get(key) is None else fmt.format(float(r[key]))

    if any(r.get("success") is not None for r in rows):
        columns.append(
            (
                "Success [95% CI]",
                lambda r: _MISSING if _success(r) is None else format_ci(*_success(r)),
            )
        )
    if any(r.get("success_per_seed") for r in rows):
        columns.append(("Per training seed", _per_seed_cell))
    for key, title in (
        ("success_heldout", "Success, held-out visuals"),
        ("success_best", "Success, best checkpoint"),
        ("success_heldout_best", "Success, held-out visuals, best checkpoint"),
    ):
        if any(r.get(key) is not None for r in rows):
            columns.append(
                (
                    title,
                    lambda r, key=key: (
                        _MISSING
                        if r.get(key) is None
                        else format_ci(*(r[key][k] for k in ("mean", "low", "high")))
                    ),
                )
            )
    if any(r.get("probe_r2") is not None for r in rows):
        columns.append(("Probe R²", _probe_cell))
    for key, title, fmt in (
        ("probe_gain", "Probe gain over none", "{:+.3f}"),
        ("probe_r2_all_frames", "Probe R², all frames", "{:.3f}"),
        ("probe_gain_all_frames", "Gain, all frames", "{:+.3f}"),
        ("psnr", "PSNR k=1 (dB)", "{:.2f}"),
        ("psnr_copy_last", "Copy-last PSNR (dB)", "{:.2f}"),
    ):
        if any(r.get(key) is not None for r in rows):
            columns.append((title, optional(key, fmt)))
    for stage in stages:
        columns.append(
            (
                f"Time: {stage}",
                lambda r, s=stage: (
                    _MISSING
                    if (r.get("wall_time_s") or {}).get(s) is None
                    else format_seconds(float(r["wall_time_s"][s]))
                ),
            )
        )
    return [title for title, _ in columns], [[cell(r) for _, cell in columns] for r in rows]


def _across_tasks_table(block: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Column titles and cells of one look/checkpoint's table of means over the tasks."""
    rows = block["rows"]
    reference = block.get("reference", "state")
    baselines: list[str] = []
    for row in rows:
        baselines += [b for b in row.get("gain_over", {}) if b not in baselines]

    def interval(value: Mapping[str, float] | None, scale: float, fmt: str) -> str:
        if value is None:
            return _MISSING
        low, high = (
            "unbounded" if value[k] is None else fmt.format(scale * value[k])
            for k in ("low", "high")
        )
        return f"{fmt.format(scale * value['mean'])} [{low}, {high}]"

    titles = ["Encoder", f"Mean success over {len(rows[0]['tasks'])} tasks [95% CI]"]
    has_share = any(row.get("of_reference") is not None for row in rows)
    if has_share:
        titles.append(f"Share of {reference}'s (%)")
    titles += [f"Over {b} (points)" for b in baselines]
    cells = []
    for row in rows:
        success = format_ci(*(row["success"][k] for k in ("mean", "low", "high")))
        line = [str(row["encoder"]), success]
        if has_share:
            line.append(interval(row.get("of_reference"), 100.0, "{:.0f}"))
        line += [interval(row["gain_over"].get(b), 1.0, "{:+.1f}") for b in baselines]
        cells.append(line)
    return titles, cells


def _across_tasks_intro(blocks: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The section's heading and the sentence that says how its numbers are made."""
    first = blocks[0]
    tasks = ", ".join(first["rows"][0]["tasks"])
    heading = f"Over the tasks ({first['num_demos']} demonstrations)"
    share = any(row.get("of_reference") for block in blocks for row in block["rows"])
    text = f"Mean over {tasks} of each task's success" + (
        f"; the share is the ratio of an encoder's mean to {first.get('reference', 'state')}'s"
        if share
        else ""
    )
    text += (
        "; the lead is the difference in points; intervals from a bootstrap of every task's "
        "training seeds and episodes (a cell's seeds evaluated from the same start states "
        "are drawn the same episodes; the cells are resampled independently, so intervals of "
        "shares and leads run a little wide; a cell whose every episode ended alike drawn "
        "from its count's Jeffreys posterior; Wilson's interval for a mean whose every "
        "episode ended alike)."
    )
    return heading, text


def _header_items(header: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Scalar header entries other than command/config/versions, as (key, text)."""
    skip = {"command", "config", "package_versions"}
    items = []
    for key, value in header.items():
        if key in skip:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        items.append((str(key), text))
    return items


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(titles: Sequence[str], cells: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(t) for t in titles) + " |"]
    lines.append("|" + "|".join([" --- "] + [" ---: "] * (len(titles) - 1)) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in cells]
    return lines


def _md_pictures(pictures: Sequence[tuple[Path, str]], out_dir: Path) -> list[str]:
    lines = []
    for path, caption in pictures:
        link = Path(os.path.relpath(path, out_dir)).as_posix()
        if _MIME_TYPES[path.suffix.lower()].startswith("video/"):
            lines.append(f"[{caption}]({link})")
        else:
            lines.append(f"![{caption}]({link})")
        lines.append("")
    return lines


def render_markdown(report: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> str:
    """The report as Markdown text, with pictures linked relative to ``out_dir``."""
    out_dir = Path(out_dir)
    header = report.get("header", {})
    lines = [f"# {report.get('title', 'sslrobot report')}", ""]
    if report.get("summary"):
        lines += [str(report["summary"]), ""]
    if "command" in header:
        lines += ["Command:", "", "```", str(header["command"]), "```", ""]
    blocks = report.get("across_tasks") or []
    if blocks:  # the headline first: what people look for before they read
        heading, text = _across_tasks_intro(blocks)
        lines += [f"## {heading}", "", text, ""]
        for block in blocks:
            lines += [f"### {block['label']}", "", *_md_table(*_across_tasks_table(block)), ""]
    for task in report.get("tasks", []):
        rows = task.get("rows", [])
        lines += [f"## {task['task']}", ""]
        if rows:
            lines += _md_table(*_table(rows))
            lines.append("")
        lines += [f"**Verdict.** {task.get('verdict') or verdict(rows)}", ""]
        if task.get("rl_rows"):  # another protocol: its own table, never BC's rows
            lines += [f"### {task.get('rl_label', 'Online RL')}", ""]
            lines += [*_md_table(*_table(task["rl_rows"])), ""]
        lines += _md_pictures(_picture_items(task.get("plots"), out_dir), out_dir)
        lines += _md_pictures(_picture_items(task.get("media"), out_dir), out_dir)
    extra = _picture_items(report.get("plots"), out_dir) + _picture_items(
        report.get("media"), out_dir
    )
    if extra:
        lines += ["## Figures", "", *_md_pictures(extra, out_dir)]
    notes = report.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    items = _header_items(header)
    versions = header.get("package_versions")
    if items or versions or "config" in header:
        lines += ["## Run details", ""]
    for key, text in items:
        lines.append(f"- **{key}**: {text}")
    if items:
        lines.append("")
    if versions:
        lines += ["Package versions:", ""]
        lines += _md_table(["Package", "Version"], [[str(k), str(v)] for k, v in versions.items()])
        lines.append("")
    if "config" in header:
        config_text = json.dumps(header["config"], indent=2, sort_keys=True)
        lines += ["Config:", "", "```json", config_text, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _data_uri(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{_MIME_TYPES[path.suffix.lower()]};base64,{encoded}"


def _html_pictures(pictures: Sequence[tuple[Path, str]]) -> list[str]:
    parts = []
    for path, caption in pictures:
        uri, alt = _data_uri(path), html.escape(caption)
        if _MIME_TYPES[path.suffix.lower()].startswith("video/"):
            media = f'<video controls loop muted src="{uri}"></video>'
        else:
            media = f'<img alt="{alt}" src="{uri}">'
        parts.append(f"<figure>{media}<figcaption>{alt}</figcaption></figure>")
    return parts


def _html_table(titles: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for t in titles)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> str:
    """The report as one self-contained HTML page: inline CSS, pictures as data URIs."""
    out_dir = Path(out_dir)
    header = report.get("header", {})
    title = html.escape(str(report.get("title", "sslrobot report")))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
    ]
    if report.get("summary"):
        parts.append(f"<p>{html.escape(str(report['summary']))}</p>")
    if "command" in header:
        parts.append(
            f"<p>Command:</p><pre><code>{html.escape(str(header['command']))}</code></pre>"
        )
    blocks = report.get("across_tasks") or []
    if blocks:  # the headline first: what people look for before they read
        heading, text = _across_tasks_intro(blocks)
        parts += [f"<h2>{html.escape(heading)}</h2>", f"<p>{html.escape(text)}</p>"]
        for block in blocks:
            parts.append(f"<h3>{html.escape(str(block['label']))}</h3>")
            parts.append(_html_table(*_across_tasks_table(block)))
    for task in report.get("tasks", []):
        rows = task.get("rows", [])
        parts.append(f"<h2>{html.escape(str(task['task']))}</h2>")
        if rows:
            parts.append(_html_table(*_table(rows)))
        text = task.get("verdict") or verdict(rows)
        parts.append(f'<p class="verdict"><strong>Verdict.</strong> {html.escape(text)}</p>')
        if task.get("rl_rows"):
            parts.append(f"<h3>{html.escape(str(task.get('rl_label', 'Online RL')))}</h3>")
            parts.append(_html_table(*_table(task["rl_rows"])))
        parts += _html_pictures(_picture_items(task.get("plots"), out_dir))
        parts += _html_pictures(_picture_items(task.get("media"), out_dir))
    extra = _picture_items(report.get("plots"), out_dir) + _picture_items(
        report.get("media"), out_dir
    )
    if extra:
        parts.append("<h2>Figures</h2>")
        parts += _html_pictures(extra)
    notes = report.get("notes") or []
    if notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{html.escape(str(note))}</li>" for note in notes]
        parts.append("</ul>")
    items = _header_items(header)
    versions = header.get("package_versions")
    if items or versions or "config" in header:
        parts.append("<h2>Run details</h2>")
    if items:
        parts.append(
            "<ul>"
            + "".join(
                f"<li><strong>{html.escape(k)}</strong>: {html.escape(v)}</li>" for k, v in items
            )
            + "</ul>"
        )
    if versions:
        parts.append("<p>Package versions:</p>")
        parts.append(
            _html_table(["Package", "Version"], [[str(k), str(v)] for k, v in versions.items()])
        )
    if "config" in header:
        config_text = html.escape(json.dumps(header["config"], indent=2, sort_keys=True))
        parts.append(f"<details><summary>Config</summary><pre>{config_text}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_report(report: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` and a self-contained ``out_dir/report.html``, atomically.

    Args:
        report: Result records in the layout of the module docstring.
        out_dir: Directory for both files; relative picture paths are resolved against it.

    Returns:
        ``(markdown_path, html_path)``.
    """
    out_dir = Path(out_dir)
    if not isinstance(report.get("tasks", []), Sequence):
        raise ValueError("report['tasks'] must be a list of task records")
    markdown = render_markdown(report, out_dir)
    page = render_html(report, out_dir)
    return (
        atomic_write_text(out_dir / "report.md", markdown),
        atomic_write_text(out_dir / "report.html", page),
    )
