"""Report figures: each writes a real PNG from plain records, without pyplot state."""

import subprocess
import sys

import numpy as np
import pytest

from sslrobot.evaluation.plots import (
    frame_strip,
    plot_data_efficiency,
    plot_loss_curves,
    plot_prediction_psnr,
    plot_probe_r2,
    plot_success,
    read_metrics_csv,
    save_frame_strip,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_plot_success_and_data_efficiency(tmp_path):
    success = [
        {"task": "Reach", "encoder": "fdm+future", "mean": 0.8, "low": 0.7, "high": 0.9},
        {"task": "Reach", "encoder": "none", "mean": 0.3, "low": 0.2, "high": 0.4},
        {"task": "Push", "encoder": "fdm+future", "mean": 0.5, "low": 0.4, "high": 0.6},
    ]
    _assert_png(plot_success(success, tmp_path / "success.png", title="success"))
    # The picture is drawn from the numbers: another mean, or only another interval, shows.
    drawn = (tmp_path / "success.png").read_bytes()
    for change in ({"mean": 0.75}, {"low": 0.5, "high": 0.95}):
        changed = [{**success[0], **change}, *success[1:]]
        assert plot_success(changed, tmp_path / "other.png", title="success").read_bytes() != drawn
    efficiency = [
        {"encoder": e, "num_demos": n, "mean": m, "low": m - 0.1, "high": m + 0.05}
        for e, base in (("fdm+future", 0.4), ("none", 0.1))
        for n, m in ((5, base), (10, base + 0.1), (25, base + 0.2), (50, base + 0.3))
    ]
    _assert_png(plot_data_efficiency(efficiency, tmp_path / "efficiency.png"))
    drawn = (tmp_path / "efficiency.png").read_bytes()
    changed = [{**efficiency[0], "mean": 0.9, "low": 0.8, "high": 0.95}, *efficiency[1:]]
    assert plot_data_efficiency(changed, tmp_path / "other.png").read_bytes() != drawn
    with pytest.raises(ValueError, match="lacks"):
        plot_success([{"encoder": "x", "mean": 0.5}], tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"encoder 'x'.*low <= mean <= high"):
        plot_success([{"encoder": "x", "mean": 0.5, "low": 0.6, "high": 0.9}], tmp_path / "b")


def test_loss_curves_from_metrics_csv(tmp_path):
    for name, scale in (("fdm", 1.0), ("recon", 2.0)):
        lines = ["step,pretrain/loss,pretrain/lr"]
        lines += [f"{s},{scale / (s + 1):.5f}," for s in range(0, 200, 10)]
        lines.append("200,,0.001")  # a row without the loss
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    columns = read_metrics_csv(tmp_path / "fdm.csv")
    assert columns["step"].shape == (21,) and np.isnan(columns["pretrain/loss"][-1])
    runs = {"fdm": tmp_path / "fdm.csv", "recon": tmp_path / "recon.csv"}
    _assert_png(plot_loss_curves(runs, tmp_path / "loss.png"))
    # Seeds of one encoder share a colour and a legend entry: a different picture.
    one_group = {"fdm": "encoder", "recon": "encoder"}
    grouped = plot_loss_curves(runs, tmp_path / "grouped.png", groups=one_group, log_scale=False)
    linear = plot_loss_curves(runs, tmp_path / "linear.png", log_scale=False)
    _assert_png(grouped)
    assert grouped.read_bytes() != linear.read_bytes()
    with pytest.raises(ValueError, match="no column 'pretrain/loss_fdm'"):
        plot_loss_curves(runs, tmp_path / "x.png", key="pretrain/loss_fdm")
    (tmp_path / "bad.csv").write_text("step,pretrain/loss\n1,abc\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        read_metrics_csv(tmp_path / "bad.csv")


def test_probe_r2_and_psnr_plots(tmp_path):
    r2 = {
        "fdm+future": {"object_x": 0.9, "object_y": 0.8, "goal_x": None},
        "none": {"object_x": 0.2, "object_y": -3.0, "goal_x": float("nan")},
    }
    _assert_png(plot_probe_r2(r2, tmp_path / "r2.png"))
    marked = plot_probe_r2(r2, tmp_path / "r2_marked.png", marked=["object_x"])
    _assert_png(marked)  # the labels differ ("object_x *", bold): so do the pixels
    assert marked.read_bytes() != (tmp_path / "r2.png").read_bytes()
    psnr = {"future": [30.0, 27.0, 25.0], "copy-last": [28.0, 24.0, 22.0]}
    _assert_png(plot_prediction_psnr(psnr, tmp_path / "psnr.png"))


def test_the_psnr_plot_marks_the_points_it_cannot_draw(tmp_path, monkeypatch):
    """An exact prediction's infinite PSNR (stored as null in the results) or a NaN left a
    silent gap in the line; the probe plot already says "n/a"."""
    from sslrobot.evaluation import plots

    figures = []
    save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda figure, out: (figures.append(figure), save(figure, out))[1]
    )
    psnr = {"m": [20.0, None, 18.0], "copy-last": [float("inf"), 25.0, float("nan")]}
    _assert_png(plots.plot_prediction_psnr(psnr, tmp_path / "psnr.png"))
    marks = sorted((text.get_text(), int(text.xy[0])) for text in figures[0].axes[0].texts)
    assert marks == [("n/a", 3), ("∞", 1), ("∞", 2)]


def test_a_data_efficiency_interval_must_hold_its_mean(tmp_path):
    record = {"encoder": "x", "num_demos": 5, "mean": 0.5, "low": 0.6, "high": 0.4}
    with pytest.raises(ValueError, match=r"data-efficiency record of encoder 'x'.*low <= mean"):
        plot_data_efficiency([record], tmp_path / "bad.png")


def test_loss_curves_go_on_a_log_axis_only_across_a_decade(tmp_path, monkeypatch):
    """Within one decade a log axis labelled only odd minor ticks ("8x10^0"): linear there;
    steps on the x axis are whole; the y label is the column's last part."""
    from sslrobot.evaluation import plots

    drawn = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda f, p: (drawn.append(f.axes[0]), save(f, p))[1])
    for name, values in (("narrow", [9.0, 8.5, 8.0]), ("wide", [50.0, 5.0, 0.5])):
        rows = "".join(f"{step},{value}\n" for step, value in enumerate(values, 1))
        (tmp_path / f"{name}.csv").write_text("step,pretrain/loss\n" + rows)
        plot_loss_curves({"fdm": tmp_path / f"{name}.csv"}, tmp_path / f"{name}.png")
    narrow, wide = drawn
    assert (narrow.get_yscale(), wide.get_yscale()) == ("linear", "log")
    assert narrow.get_ylabel() == "loss"
    assert all(float(t).is_integer() for t in narrow.get_xticks())


def test_probe_plot_labels_clipped_and_unscored_bars_inside_the_axes(tmp_path, monkeypatch):
    """Values below the clip are written upright (side by side they overlapped); a variable
    without a score says n/a, and the x axis keeps its group even where no bar is drawn."""
    from sslrobot.evaluation import plots

    drawn = {}
    save = plots._save

    def keep_axes(figure, path):
        drawn["axes"] = figure.axes[0]
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", keep_axes)
    r2 = {"a": {"x": 0.8, "elbow": -460.0, "goal": None}, "b": {"x": 0.3, "elbow": -480.0}}
    plot_probe_r2(r2, tmp_path / "r2.png")
    ax = drawn["axes"]
    texts = sorted((t.get_text(), t.get_rotation()) for t in ax.texts)
    assert texts == [("-4.6e+02", 90.0), ("-4.8e+02", 90.0), ("n/a", 90.0), ("n/a", 90.0)]
    low, high = ax.get_xlim()
    assert low <= -0.4 and high >= 2.4  # the goal's two n/a, at 1.8 and 2.2, are inside


def test_frame_strip_layout_and_png(tmp_path):
    real = np.zeros((3, 4, 5, 3), np.uint8)
    predicted = np.full((3, 4, 5, 3), 100, np.uint8)
    image = frame_strip({"real": real, "predicted": predicted}, gap=1)
    assert image.shape == (2 * 4 + 1, 3 * 5 + 2, 3)
    assert (image[:4, :5] == 0).all() and (image[5:, 6:11] == 100).all()
    assert (image[4] == 255).all() and (image[:, 5] == 255).all()
    _assert_png(save_frame_strip({"real": real, "predicted": predicted}, tmp_path / "s.png"))
    with pytest.raises(ValueError, match="shape"):
        frame_strip({"real": real, "predicted": predicted[:2]})


def test_plots_do_not_touch_pyplot(tmp_path):
    code = (
        "import sys; from sslrobot.evaluation.plots import plot_prediction_psnr; "
        f"plot_prediction_psnr({{'a': [1.0, 2.0]}}, r'{tmp_path / 'p.png'}'); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
