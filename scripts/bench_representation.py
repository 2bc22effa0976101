"""Representation quality: issue 4's "must show" numbers, from the probe files of a run.

Runs (or resumes) the stages of ``sslrobot run`` up to what the table needs, through
``run_pipeline``, then prints per task, for every pretrained encoder and the random-init
``none`` encoder: the mean held-out linear-probe R^2 (over the env's ``view_state_names``,
each scored on the frames where it is in view when the env gives ``view_conditions``, as
Navigate does for its goal; then the same mean with every frame scored, and the mean over every
state variable), one-step PSNR against copying the last frame, and the latent standard
deviation (collapse check), followed by the issue's checks:

- ``fdm+future`` mean probe R^2 at least 0.2 above ``none`` on every task, ``none``'s being
  the mean over the run's ``none_probe_inits`` random initialisations (one is a noisy
  baseline) and, beside it, the run's own initialisation alone, and the gap with every frame
  scored (where view conditions make it differ);
- ``future`` (here ``fdm+future``'s decoder) beats copy-last-frame PSNR at k = 1;
- no collapse: per-dimension latent standard deviation well above zero.

Usage:
    python scripts/bench_representation.py --out runs/default   # reuses a default run
    python scripts/bench_representation.py --out runs/default --from-files  # reads only
    python scripts/bench_representation.py --quick --out /tmp/rep_quick
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import statistics
from pathlib import Path

from sslrobot.pipeline.presets import RunConfig, make_run_config
from sslrobot.pipeline.run import none_init_name, run_pipeline, task_slug

#: Latent std (mean over dimensions of the per-dimension std) below this counts as collapse.
COLLAPSE_STD = 0.01


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/default"))
    parser.add_argument("--quick", action="store_true", help="the quick preset's tiny sizes")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--from-files",
        action="store_true",
        help="only read the probe files of --out (a finished run, e.g. one extended by "
        "bench_control.py, whose other settings a rerun of the default preset would undo)",
    )
    return parser.parse_args()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def final_latent_std(encoder_dir: Path) -> float | None:
    """Last logged ``pretrain/latent_std`` of a pretraining run (None without a log)."""
    path = encoder_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as file:
        values = [row.get("pretrain/latent_std") for row in csv.DictReader(file)]
    values = [float(v) for v in values if v not in (None, "")]
    return values[-1] if values else None


def main() -> None:
    args = parse_args()
    config = make_run_config("quick" if args.quick else "default")
    if args.from_files:  # the run's own settings (its tasks may be a subset, its seed another)
        saved = json.loads((args.out / "config.json").read_text())
        known = {item.name for item in dataclasses.fields(RunConfig)}  # older runs: extra keys
        config = RunConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
        )
    print("settings:", json.dumps(config.to_dict(), sort_keys=True))
    print("machine:", platform.platform(), "| device:", args.device)
    if not args.from_files:
        run_pipeline(
            config, args.out, device=args.device, command="scripts/bench_representation.py"
        )

    none_inits = [none_init_name(config.seed + i) for i in range(1, config.none_probe_inits)]
    encoders = ("none", *none_inits, *config.objectives)
    checks: list[tuple[str, bool]] = []
    conditioned: dict[str, dict[str, dict]] = {}  # tasks whose view variables have conditions
    print(
        "\n| task | encoder | probe R² (view, in view) | (view, all frames) | probe R² (all) "
        "| PSNR k=1 | copy-last | latent std |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for task in config.tasks:
        slug = task_slug(task)
        probes = {
            name: json.loads((args.out / slug / "probe" / name / "probe.json").read_text())
            for name in encoders
        }
        for name in encoders:
            probe = probes[name]
            std = final_latent_std(args.out / slug / "pretrain" / name / "encoder")
            print(
                f"| {slug} | {name} | {_fmt(probe['probe/r2_mean'])} | "
                f"{_fmt(probe.get('probe/r2_mean_all_frames'))} | "
                f"{_fmt(probe.get('probe/r2_mean_all'))} | {_fmt(probe.get('pred/psnr_k1'), 2)} | "
                f"{_fmt(probe.get('pred/psnr_copy_last_k1'), 2)} | {_fmt(std)} |"
            )
        if "fdm+future" not in probes:
            continue
        main_probe = probes["fdm+future"]
        if main_probe.get("probe/view_conditions"):
            conditioned[slug] = probes
        none_r2 = [probes[name]["probe/r2_mean"] for name in ("none", *none_inits)]
        gap = main_probe["probe/r2_mean"] - statistics.mean(none_r2)
        gap_first = main_probe["probe/r2_mean"] - none_r2[0]
        every_frame = ""
        if main_probe.get("probe/view_conditions"):
            none_all = [probes[name]["probe/r2_mean_all_frames"] for name in ("none", *none_inits)]
            all_gap = main_probe["probe/r2_mean_all_frames"] - statistics.mean(none_all)
            every_frame = f"; every frame scored: {all_gap:+.3f}"
        checks.append(
            (
                f"{slug}: fdm+future - none probe R² = {gap:+.3f} over {len(none_r2)} random "
                f"init(s) (the run's init alone: {gap_first:+.3f}{every_frame}) (>= +0.2)",
                gap >= 0.2,
            )
        )
        psnr, copy = main_probe.get("pred/psnr_k1"), main_probe.get("pred/psnr_copy_last_k1")
        if psnr is not None and copy is not None:
            checks.append(
                (f"{slug}: PSNR k=1 {psnr:.2f} dB vs copy-last {copy:.2f} dB", psnr > copy)
            )
        std = final_latent_std(args.out / slug / "pretrain" / "fdm+future" / "encoder")
        if std is not None:
            checks.append((f"{slug}: latent std {std:.3f} (> {COLLAPSE_STD})", std > COLLAPSE_STD))
    for slug, probes in conditioned.items():
        print_view_variables(slug, probes, ("none", *none_inits))
    print("\n## Checks\n")
    for text, met in checks:
        print(f"- {text}: {'MET' if met else 'NOT MET'}")


def print_view_variables(slug: str, probes: dict[str, dict], none_names: tuple[str, ...]) -> None:
    """Per-variable R² of the view-conditioned variables (in view and every frame), for
    fdm+future and the mean over the random inits: the numbers behind the mean's gap."""
    conditioned = list(probes["fdm+future"].get("probe/r2_in_view") or {})
    print(f"\n{slug}, view-conditioned variables (R², in view / every frame):\n")
    print("| variable | none, mean of inits | fdm+future |")
    print("| --- | ---: | ---: |")
    for variable in conditioned:

        def pair(names: tuple[str, ...], variable: str = variable) -> str:
            in_view = statistics.mean(probes[n]["probe/r2_in_view"][variable] for n in names)
            every = statistics.mean(probes[n]["probe/r2"][variable] for n in names)
            return f"{in_view:.3f} / {every:.3f}"

        print(f"| {variable} | {pair(none_names)} | {pair(('fdm+future',))} |")


if __name__ == "__main__":
    main()
