"""Report rendering: numbers come from the records, pictures are embedded, verdicts follow."""

import base64
import copy

import numpy as np
import pytest
import torch

from sslrobot.evaluation.plots import plot_prediction_psnr
from sslrobot.evaluation.report import (
    format_ci,
    format_seconds,
    package_versions,
    render_report,
    verdict,
)

# A 1x1 GIF, so that the GIF path of the HTML embedding is exercised.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==")


def _rows(fdm=(0.8125, 0.7375, 0.8875), none=(0.3125, 0.2375, 0.3875)):
    return [
        {
            "encoder": "fdm+future",
            "success": dict(zip(("mean", "low", "high"), fdm, strict=True)),
            "probe_r2": 0.6875,
            "psnr": 27.125,
            "psnr_copy_last": 24.375,
            "wall_time_s": {"pretrain": 95.25, "train_policy": 30.5},
        },
        {
            "encoder": "none",
            "success": dict(zip(("mean", "low", "high"), none, strict=True)),
            "probe_r2": 0.1875,
            "wall_time_s": {"train_policy": 29.0},
        },
        {"encoder": "state", "success": {"mean": 0.9375, "low": 0.875, "high": 1.0}},
    ]


def _report(tmp_path):
    plot = plot_prediction_psnr({"future": [27.0, 25.0]}, tmp_path / "plots" / "psnr.png")
    (tmp_path / "gifs").mkdir()
    (tmp_path / "gifs" / "push.gif").write_bytes(GIF)
    return {
        "title": "Does pretraining help?",
        "header": {
            "command": "sslrobot run --preset quick --out runs/q",
            "config": {"preset": "quick", "num_demos": 25},
            "package_versions": {"torch": "2.13.0", "mujoco": "4.0.0"},
            "seeds": [0, 1, 2],
        },
        "tasks": [
            {
                "task": "sslrobot/Push-v0",
                "rows": _rows(),
                "plots": [{"path": "plots/psnr.png", "caption": "PSNR vs k"}],
                "media": [{"path": str(tmp_path / "gifs" / "push.gif"), "caption": "rollout"}],
            }
        ],
        "notes": ["Timings are on 2 CPU cores."],
    }, plot


def test_report_tables_hold_the_record_numbers(tmp_path):
    report, _ = _report(tmp_path)
    md_path, html_path = render_report(report, tmp_path)
    assert (md_path, html_path) == (tmp_path / "report.md", tmp_path / "report.html")
    for text in (md_path.read_text(), html_path.read_text()):
        for expected in (
            "81.2% [73.8, 88.8]",
            "31.2% [23.8, 38.8]",
            "0.688",
            "0.188",
            "27.12",
            "24.38",
            "1m 35s",
            "30.5 s",
            "sslrobot run --preset quick --out runs/q",
            "2.13.0",
            "Timings are on 2 CPU cores.",
        ):
            assert expected in text, expected
    markdown = md_path.read_text()
    assert "![PSNR vs k](plots/psnr.png)" in markdown
    assert "| none | 31.2% [23.8, 38.8] | 0.188 | — | — | — | 29.0 s |" in markdown


def test_report_shows_the_all_frames_probe_where_view_conditions_apply(tmp_path):
    report, _ = _report(tmp_path)
    del report["tasks"][0]["plots"], report["tasks"][0]["media"]
    rows = report["tasks"][0]["rows"]
    rows[0].update(probe_gain=0.5, probe_r2_all_frames=0.625, probe_gain_all_frames=0.25)
    rows[1].update(probe_r2_all_frames=0.375)
    markdown = render_report(report, tmp_path)[0].read_text()
    assert "Probe R², all frames | Gain, all frames" in markdown
    assert "| 0.688 | +0.500 | 0.625 | +0.250 |" in markdown


def test_report_changes_with_the_records(tmp_path):
    report, _ = _report(tmp_path)
    del report["tasks"][0]["plots"], report["tasks"][0]["media"]
    other = copy.deepcopy(report)
    other["tasks"][0]["rows"] = _rows(fdm=(0.5, 0.25, 0.75))
    first = render_report(report, tmp_path / "a")
    second = render_report(other, tmp_path / "b")
    assert "81.2%" in first[0].read_text() and "81.2%" not in second[0].read_text()
    assert "50.0% [25.0, 75.0]" in second[1].read_text()


def test_html_is_self_contained(tmp_path):
    report, plot = _report(tmp_path)
    _, html_path = render_report(report, tmp_path)
    page = html_path.read_text()
    assert "data:image/png;base64," + base64.b64encode(plot.read_bytes()).decode() in page
    assert "data:image/gif;base64," + base64.b64encode(GIF).decode() in page
    assert 'src="plots/' not in page and "http" not in page and "<link" not in page
    assert page.count("<table>") == 2  # package versions + the task table


def test_html_escapes_record_text(tmp_path):
    report = {
        "tasks": [{"task": "<b>task</b>", "rows": [{"encoder": "<script>", "success": None}]}]
    }
    _, html_path = render_report(report, tmp_path)
    page = html_path.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_missing_picture_is_an_error(tmp_path):
    report = {"tasks": [], "plots": ["plots/absent.png"]}
    with pytest.raises(FileNotFoundError, match=r"absent\.png"):
        render_report(report, tmp_path)


def test_verdict_with_separated_intervals():
    text = verdict(_rows())
    assert "fdm+future has the highest success, 81.2% [73.8, 88.8]" in text
    assert "50.0 percentage points above none (31.2% [23.8, 38.8])" in text
    assert "do not overlap" in text
    assert "state reference reaches 93.8% [87.5, 100.0]" in text
    assert "achieves 87% of it" in text  # 0.8125 / 0.9375


def test_verdict_with_overlapping_intervals():
    text = verdict(_rows(fdm=(0.5, 0.375, 0.625), none=(0.4375, 0.3125, 0.5625)))
    assert "fdm+future has the highest success" in text
    assert "6.2 percentage points above none" in text
    assert "intervals overlap, so this run cannot tell them apart" in text
    assert "do not overlap" not in text


def test_verdict_mentions_the_baseline_when_it_is_not_runner_up():
    rows = [*_rows(), {"encoder": "scratch", "success": {"mean": 0.75, "low": 0.6, "high": 0.85}}]
    text = verdict(rows)
    assert "above scratch" in text and "overlap, so this run cannot" in text
    assert (
        "Against the none baseline (31.2% [23.8, 38.8]) the lead is 50.0 percentage points" in text
    )


def test_verdict_edge_cases():
    assert "No encoder" in verdict([{"encoder": "state", "success": None}])
    single = verdict([{"encoder": "fdm", "success": (0.25, 0.125, 0.375)}])
    assert single.startswith("Only fdm was evaluated: success 25.0% [12.5, 37.5]")
    tie = verdict(
        [
            {"encoder": "a", "success": (0.5, 0.4, 0.6)},
            {"encoder": "b", "success": (0.5, 0.3, 0.7)},
        ]
    )
    assert "tie at 50.0%" in tie
    # Means of seed means in another order differ in the last bit: still a tie.
    rates = [0.1, 0.2, 0.3]
    assert np.mean(rates) != np.mean(rates[::-1])
    near = verdict(
        [
            {"encoder": "a", "success": (float(np.mean(rates)), 0.1, 0.3)},
            {"encoder": "b", "success": (float(np.mean(rates[::-1])), 0.1, 0.3)},
        ]
    )
    assert "tie at 20.0%" in near
    # A zero-width interval (a bootstrap of identical outcomes) is no evidence of a clear gap.
    zero = verdict(
        [
            {"encoder": "a", "success": (0.013, 0.003, 0.03)},
            {"encoder": "b", "success": (0.0, 0.0, 0.0)},
        ]
    )
    assert "cannot tell them apart" in zero and "do not overlap" not in zero
    with pytest.raises(ValueError, match="low <= high"):
        verdict([{"encoder": "a", "success": (0.5, 0.7, 0.6)}])


def test_formatting_helpers():
    assert format_ci(0.8125, 0.7, 0.9) == "81.2% [70.0, 90.0]"
    assert [format_seconds(s) for s in (4.25, 185, 3720)] == ["4.2 s", "3m 05s", "1h 02m"]


def test_package_versions():
    versions = package_versions(("torch", "surely-not-a-package"))
    assert versions["torch"] == torch.__version__
    assert versions["surely-not-a-package"] == "not installed"
    assert versions["python"].count(".") == 2


def test_report_opens_with_its_summary_and_keeps_run_details_for_the_end(tmp_path):
    """People look before they read: the summary, then results; the machine, versions and
    config (half a screen of JSON) after the notes. Each training seed's success is shown."""
    report, _ = _report(tmp_path)
    report["summary"] = "On Push-v0: fdm+future against none."
    report["tasks"][0]["rows"][0]["success_per_seed"] = [0.75, 0.8125, 0.875]
    md_path, html_path = render_report(report, tmp_path)
    for text in (md_path.read_text(), html_path.read_text()):
        order = [
            text.index("On Push-v0: fdm+future against none."),
            text.index("sslrobot/Push-v0"),  # the task's section
            text.index("Timings are on 2 CPU cores."),  # the notes
            text.index("Run details"),
            text.index("2.13.0"),  # package versions
        ]
        assert order == sorted(order)
        assert "Per training seed" in text and "75 / 81 / 88%" in text


def test_time_columns_follow_the_pipeline_not_the_keys_order():
    """results.json sorts keys, so a report rebuilt from it put evaluate before pretrain."""
    from sslrobot.evaluation.report import _table

    rows = [{"encoder": "fdm", "wall_time_s": {"evaluate": 1.0, "pretrain": 2.0,
                                                "train_policy": 3.0}}]  # fmt: skip
    titles, _ = _table(rows)
    times = [title for title in titles if title.startswith("Time")]
    assert times == ["Time: pretrain", "Time: train_policy", "Time: evaluate"]
