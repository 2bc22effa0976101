"""Turn a finished run's artifacts (result JSONs, probe JSONs, metrics CSVs) into the report.

Numbers come only from the files the stages wrote, so the report of a resumed run is the same as
that of an uninterrupted one.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np

from sslrobot.pipeline.presets import (
    DEMO_SEED_BASE,
    EVAL_SEED_BASE,
    UNLABELED_SEED_BASE,
    RunConfig,
)
from sslrobot.pipeline.run import CONTEXT_CHOICE, TaskArtifacts, task_slug
from sslrobot.pipeline.stages import StageResult, read_json_file
from sslrobot.utils.io import atomic_copy, atomic_write_json, atomic_write_to_name

_GIF_MAX_FRAMES = 120
#: Frames per second of the rollout videos (``rollouts.run_episodes``' default), for the GIFs.
_GIF_FPS = 20


def _evaluation_records(
    evaluations: Sequence[tuple[Any, ...]],
) -> list[dict[str, Any]]:
    """Result records labelled with the pipeline's encoder names (not directory names), of
    ``TaskArtifacts.evaluations`` or ``rl_evaluations`` (the encoder first, the stage last)."""
    records = []
    for encoder, *_, stage in evaluations:
        record = read_json_file(stage.path / "result.json")
        record["encoder"] = encoder
        record["_result_path"] = str(stage.path / "result.json")
        records.append(record)
    return records


def _find(rows: Sequence[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(key) == value for key, value in keys.items()):
            return row
    return None


def _video_to_gif(video: Path, gif: Path) -> Path | None:
    """A GIF copy of a rollout video (GIFs embed everywhere; MP4 needs a player)."""
    gif.parent.mkdir(parents=True, exist_ok=True)
    if video.suffix == ".gif":
        return atomic_copy(video, gif)
    try:
        frames = imageio.mimread(video, memtest=False)
    except (OSError, ValueError, RuntimeError):
        return None  # no ffmpeg reader here; the MP4 is still linked from the result JSON
    kept = [np.asarray(frame) for frame in _gif_frames(frames, _GIF_MAX_FRAMES)]
    # Thinned frames last longer, so the GIF plays in the episode's own time and the held
    # outcome frames last as long as in the video (a 271-frame episode played 2.3x fast).
    duration = 1000 / _GIF_FPS * len(frames) / max(len(kept), 1)  # milliseconds per frame
    atomic_write_to_name(gif, lambda tmp: imageio.mimwrite(tmp, kept, duration=duration, loop=0))
    return gif


def _image_step(path: Path) -> tuple[int, str]:
    """Sort key of the trainer's ``step_<N>.png`` images: the step, then the name."""
    digits = path.stem.rsplit("_", 1)[-1]
    return (int(digits) if digits.isdigit() else -1, path.name)


def _gif_frames(frames: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` frames, evenly spaced over the whole episode and always ending on its
    last ones (the held frames that mark success or failure, which the caption names); the
    first ``limit`` frames alone cut off a Push or Navigate episode before its outcome."""
    if len(frames) <= limit:
        return list(frames)
    index = np.linspace(0, len(frames) - 1, limit).round().astype(int)
    return [frames[i] for i in index]


def _rollout_gifs(
    records: Sequence[dict[str, Any]],
    main_demos: int,
    slug: str,
    media_dir: Path,
    out: Path,
    kind: str = "",
) -> list[dict[str, str]]:
    """GIFs of the first rollout of the main comparison's evaluations (train look), one per
    encoder, captioned with its demonstrations, training seed and outcome. (The data-efficiency
    sweep's other counts used to overwrite the same file under their own captions.) ``kind``:
    a prefix of the files and captions (``rl``: online RL's, beside BC's of the same encoder)."""
    media = []
    prefix = f"{kind}_" if kind else ""
    for record in records:
        wanted = record["visual_preset"] == "train" and record.get("num_demos") == main_demos
        if not (wanted and record.get("videos")):
            continue
        video = Path(record["_result_path"]).parent / record["videos"][0]
        name = f"{slug}_{prefix}{record['encoder'].replace('+', '_')}.gif"
        gif = _video_to_gif(video, media_dir / name)
        if gif is not None:
            outcome = "success" if record["episodes"][0]["success"] else "failure"
            caption = (
                f"{kind.upper() + ' ' if kind else ''}{record['encoder']} "
                f"({record.get('num_demos')} demos, training seed "
                f"{record.get('seed')}): {outcome}"
            )
            media.append({"path": str(gif.relative_to(out)), "caption": caption})
    return media


def _stage_seconds(results: Sequence[StageResult], prefix: str) -> float | None:
    """Seconds of the stage named ``prefix`` and of the stages under it (``prefix/...``);
    ``.../pretrain/fdm`` does not match ``.../pretrain/fdm+future``."""
    prefix = prefix.rstrip("/")
    seconds = [r.seconds for r in results if r.name == prefix or r.name.startswith(prefix + "/")]
    return float(sum(seconds)) if seconds else None


def _probe_r2_over_draws(inits: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The probe over several draws of one encoder, from their probe records: mean R² with
    their standard deviation and count, and the mean R² of each variable (for the
    per-variable plot). For ``none``'s random initialisations this is the baseline every
    pretrained encoder's gain is measured against; also used over pretraining seeds."""
    values = [p["probe/r2_mean"] for p in inits if p.get("probe/r2_mean") is not None]
    if not values:  # None: nothing varied on the held-out episodes
        return None
    per_variable = {
        name: [_headline_r2(p).get(name) for p in inits if "probe/r2" in p]
        for name in _headline_r2(inits[0])
    }
    all_frames = [_all_frames_r2(p) for p in inits]
    return {
        "probe_r2": float(np.mean(values)),
        "probe_r2_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        "probe_r2_inits": len(values),
        "probe_r2_all_frames": None if None in all_frames else float(np.mean(all_frames)),
        "per_variable": {
            name: None if None in r2 else float(np.mean(r2)) for name, r2 in per_variable.items()
        },
    }


def _headline_r2(probe: dict[str, Any]) -> dict[str, float]:
    """R² per variable as the headline mean scores it: a view-conditioned variable in view
    (``probe/r2_in_view``), every other one on every frame (``probe/r2``), and so does a
    conditioned one too rarely in view to score there (``fit_linear_probe``: its in-view R²
    is n/a, and the plot showed n/a for a variable the table's mean counted)."""
    in_view = {
        name: score
        for name, score in (probe.get("probe/r2_in_view") or {}).items()
        if score is not None and math.isfinite(score)
    }
    return {**probe.get("probe/r2", {}), **in_view}


def _all_frames_r2(probe: dict[str, Any]) -> float | None:
    """The probe's mean with every variable scored on every frame, where view conditions made
    its headline differ (Navigate's goal scored in view); None where there are none."""
    if not probe.get("probe/view_conditions"):
        return None
    return probe.get("probe/r2_mean_all_frames")


def _task_section(
    config: RunConfig,
    out: Path,
    artifacts: TaskArtifacts,
    stage_results: Sequence[StageResult],
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The task's report section, its aggregated rows and the evaluation records they came
    from."""
    from sslrobot.evaluation import plots
    from sslrobot.evaluation.evaluate import aggregate_results
    from sslrobot.evaluation.report import verdict

    env_id, slug = artifacts.env_id, task_slug(artifacts.env_id)
    plots_dir, media_dir = out / "plots", out / "media"
    records = _evaluation_records(artifacts.evaluations)
    aggregated = aggregate_results(records, min_seeds=min(3, len(config.policy_seeds)))
    for row in aggregated:
        row["task"] = slug
    main_demos = config.main_demos
    probes = {
        name: read_json_file(stage.path / "probe.json") for name, stage in artifacts.probe.items()
    }
    none_inits = [read_json_file(stage.path / "probe.json") for stage in artifacts.none_init_probes]
    none_r2 = _probe_r2_over_draws([probes["none"], *none_inits]) if "none" in probes else None
    over_seeds = {  # pretrain_seed_per_policy: each objective's probe over its seeds
        name: _probe_r2_over_draws(
            [probes[name], *(read_json_file(s.path / "probe.json") for s in stages)]
        )
        for name, stages in artifacts.seed_probes.items()
        if name in probes
    }

    rows = []
    for encoder in config.encoder_names:
        main = {"encoder": encoder, "num_demos": main_demos, "checkpoint": "final"}
        train = _find(aggregated, **main, visual_preset="train")
        heldout = _find(aggregated, **main, visual_preset="heldout")
        best = _find(aggregated, **{**main, "checkpoint": "best"}, visual_preset="train")
        heldout_best = _find(aggregated, **{**main, "checkpoint": "best"}, visual_preset="heldout")
        probe = probes.get(encoder, {})
        probe_r2 = probe.get("probe/r2_mean")
        probe_fields: dict[str, Any] = {
            "probe_r2": probe_r2,
            "probe_r2_all_frames": _all_frames_r2(probe),
        }
        if encoder == "none" and none_r2 is not None:
            probe_fields = {k: v for k, v in none_r2.items() if k != "per_variable"}
        elif over_seeds.get(encoder) is not None:
            seeded = over_seeds[encoder]
            probe_fields = {k: v for k, v in seeded.items() if k != "per_variable"}
            probe_fields["probe_r2_over"] = "pretraining seeds"
            probe_r2 = seeded["probe_r2"]
        if encoder != "none" and probe_r2 is not None and none_r2 is not None:
            probe_fields["probe_gain"] = probe_r2 - none_r2["probe_r2"]
            if None not in (
                probe_fields.get("probe_r2_all_frames"),
                none_r2["probe_r2_all_frames"],
            ):
                probe_fields["probe_gain_all_frames"] = (
                    probe_fields["probe_r2_all_frames"] - none_r2["probe_r2_all_frames"]
                )
        pretrain_stage = (
            f"mixed/pretrain/{config.transfer_objective}"  # shared by every task
            if encoder == config.mixed_encoder_name
            else f"{slug}/pretrain/{encoder}"
        )
        pretrain_stages = [pretrain_stage] + [  # and its further pretraining seeds, if any
            stage.name
            for (name, _seed), stage in artifacts.seed_pretrain.items()
            if name == encoder
        ]
        seconds = [_stage_seconds(stage_results, name) for name in pretrain_stages]
        pretrain_seconds = [s for s in seconds if s is not None]
        wall = {
            "pretrain": sum(pretrain_seconds)
            if encoder in artifacts.pretrain and pretrain_seconds
            else None,
            "train_policy": _stage_seconds(
                stage_results, f"{slug}/policy/{encoder}/demos{main_demos}/"
            ),
            "evaluate": _stage_seconds(stage_results, f"{slug}/eval/{encoder}/demos{main_demos}/"),
        }
        rows.append(
            {
                "encoder": encoder,
                "success": train["success"] if train else None,
                "success_heldout": heldout["success"] if heldout else None,
                "success_best": best["success"] if best else None,
                "success_heldout_best": heldout_best["success"] if heldout_best else None,
                "success_per_seed": train.get("success_per_seed") if train else None,
                "num_seeds": train["num_seeds"] if train else 0,
                **probe_fields,
                "psnr": probe.get("pred/psnr_k1"),
                "psnr_copy_last": probe.get("pred/psnr_copy_last_k1"),
                "wall_time_s": {k: v for k, v in wall.items() if v is not None},
            }
        )

    section_plots: list[dict[str, str]] = []
    success_records = [
        {"encoder": r["encoder"], "task": slug, **r["success"]} for r in rows if r["success"]
    ]
    if success_records:
        path = plots.plot_success(
            success_records,
            plots_dir / f"{slug}_success.png",
            title=f"{slug}: success rate, final checkpoint",
        )
        section_plots.append({"path": str(path.relative_to(out)), "caption": "success, 95% CI"})
    r2_by_encoder = {  # as the table's mean scores them (Navigate's goal: in view)
        name: _headline_r2(probe) for name, probe in probes.items() if "probe/r2" in probe
    }
    if none_r2 is not None and "none" in r2_by_encoder:
        r2_by_encoder["none"] = none_r2["per_variable"]  # the mean over its inits, as the table
    for name, seeded in over_seeds.items():
        if seeded is not None and name in r2_by_encoder:
            r2_by_encoder[name] = seeded["per_variable"]  # the mean over its seeds, as the table
    if r2_by_encoder:
        variables = {v for scores in r2_by_encoder.values() for v in scores}
        averaged = next(
            (set(p["probe/mean_over"]) for p in probes.values() if p.get("probe/mean_over")),
            variables,
        )
        # Only variables the mean really averages: one with no finite R^2 (constant on the
        # scored frames) is n/a, not starred as averaged.
        scored = {
            v
            for scores in r2_by_encoder.values()
            for v, r2 in scores.items()
            if r2 is not None and np.isfinite(r2)
        }
        marked = sorted(averaged & scored) if averaged < variables else []
        path = plots.plot_probe_r2(
            r2_by_encoder,
            plots_dir / f"{slug}_probe_r2.png",
            title=f"{slug}: probe R² per variable",
            marked=marked,
        )
        caption = "linear probes (a view-conditioned variable scored in view)"
        if marked:
            caption += "; * the variables the table's mean averages"
        section_plots.append({"path": str(path.relative_to(out)), "caption": caption})
    curves = {
        name: stage.path / "encoder" / "metrics.csv"
        for name, stage in artifacts.pretrain.items()
        if name != "none"  # random init: no training, no curve
        and (stage.path / "encoder" / "metrics.csv").is_file()
        and (stage.path / "encoder" / "metrics.csv").stat().st_size > 0
    }
    if curves:
        path = plots.plot_loss_curves(
            curves, plots_dir / f"{slug}_pretrain_loss.png", title=f"{slug}: pretraining loss"
        )
        section_plots.append({"path": str(path.relative_to(out)), "caption": "pretraining loss"})
    psnr_curves = {}
    for name, probe in probes.items():
        ks = sorted(int(key.rsplit("_k", 1)[1]) for key in probe if key.startswith("pred/psnr_k"))
        if ks:
            psnr_curves[name] = [probe[f"pred/psnr_k{k}"] for k in ks]
            psnr_curves.setdefault("copy-last", [probe[f"pred/psnr_copy_last_k{k}"] for k in ks])
    if psnr_curves:
        path = plots.plot_prediction_psnr(
            psnr_curves, plots_dir / f"{slug}_psnr.png", title=f"{slug}: prediction PSNR"
        )
        section_plots.append({"path": str(path.relative_to(out)), "caption": "PSNR vs horizon"})
    if env_id == config.data_efficiency_task:
        curve = [
            {"encoder": row["encoder"], "num_demos": row["num_demos"], **row["success"]}
            for row in aggregated
            if row["visual_preset"] == "train" and row["checkpoint"] == "final"
        ]
        path = plots.plot_data_efficiency(
            curve, plots_dir / f"{slug}_data_efficiency.png", title=f"{slug}: data efficiency"
        )
        section_plots.append({"path": str(path.relative_to(out)), "caption": "data efficiency"})

    media: list[dict[str, str]] = []
    pictures = (
        (
            "predictions",
            "per example, rows: the real o_t..o_t+K; predicted with the decoder's copy path (what "
            "the PSNR column scores); predicted from the latent alone (what the encoder holds)",
        ),
        ("keypoints", "learned keypoints on o_t of several examples (one colour per keypoint)"),
    )
    for name, stage in artifacts.pretrain.items():
        for kind, caption in pictures:
            # By step number: step_100000.png sorts before step_99000.png as a string.
            strips = sorted((stage.path / "encoder" / kind).glob("*.png"), key=_image_step)
            if strips:
                target = media_dir / f"{slug}_{name.replace('+', '_')}_{kind}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_copy(strips[-1], target)
                media.append(
                    {"path": str(target.relative_to(out)), "caption": f"{name}: {caption}"}
                )
    media += _rollout_gifs(records, main_demos, slug, media_dir, out)
    section = {
        "task": env_id,
        "rows": rows,
        "verdict": verdict(rows),
        "plots": section_plots,
        "media": media,
    }
    if artifacts.rl_evaluations:
        rl_rows, rl_aggregated, rl_records = _rl_rows(config, artifacts, stage_results)
        section["rl_label"] = rl_label(config)
        section["rl_rows"] = rl_rows
        for row in rl_aggregated:
            row["task"] = slug
        aggregated = [*aggregated, *rl_aggregated]
        records = [*records, *rl_records]
        media += _rollout_gifs(rl_records, config.rl_num_demos, slug, media_dir, out, kind="rl")
        if any(row["success"] for row in rl_rows):
            path = plots.plot_success(
                [{"encoder": r["encoder"], "task": slug, **r["success"]} for r in rl_rows],
                plots_dir / f"{slug}_rl_success.png",
                title=f"{slug}: online RL (SAC) success, final checkpoint",
            )
            section_plots.append(
                {"path": str(path.relative_to(out)), "caption": "online RL success, 95% CI"}
            )
    return section, aggregated, records


def rl_label(config: RunConfig) -> str:
    """What the RL tables measured, as their heading says it."""
    demos = (
        f"{config.rl_num_demos} demonstrations in {config.rl_demo_share:g} of each batch"
        if config.rl_num_demos
        else "no demonstrations"
    )
    critics = ", critics on the state" if config.rl_critic_input == "state" else ""
    return f"Online RL (SAC, {config.rl_steps:,} environment steps, {demos}{critics})"


def rl_note(config: RunConfig) -> str:
    """How the online RL tables were made, and why they stand apart from BC's."""
    demos = (
        f"with {config.rl_demo_share:g} of every batch drawn from the task's first "
        f"{config.rl_num_demos} demonstrations (RLPD's symmetric sampling; they also set the "
        "feature statistics)"
        if config.rl_num_demos
        else "from its own experience alone"
    )
    return (
        f"Online RL: Stable-Baselines3 SAC at the package's defaults for {config.rl_steps:,} "
        f"environment steps on the task's dense reward, {demos}, on each of "
        f"{', '.join(config.rl_encoder_names)} frozen (the state oracle reads the state), "
        + (
            "with SAC's critics reading the privileged state and its actor, which alone acts, "
            "the frozen features and proprio (asymmetric actor-critic), "
            if config.rl_critic_input == "state"
            else ""
        )
        + "one policy per training seed, evaluated on the same episodes as BC's; final "
        "checkpoints. RL and BC are separate protocols: each has its own tables, and its "
        "encoders are compared with its own oracle."
    )


def _rl_rows(
    config: RunConfig, artifacts: TaskArtifacts, stage_results: Sequence[StageResult]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The task's online RL table (final checkpoints, train and held-out look), its
    aggregated rows and records: RL's rows never share a table with BC's."""
    from sslrobot.evaluation.evaluate import aggregate_results

    slug = task_slug(artifacts.env_id)
    records = _evaluation_records(artifacts.rl_evaluations)
    aggregated = aggregate_results(records, min_seeds=min(3, len(config.policy_seeds)))
    rows = []
    for encoder in config.rl_encoder_names:
        train = _find(aggregated, encoder=encoder, visual_preset="train")
        heldout = _find(aggregated, encoder=encoder, visual_preset="heldout")
        wall = {
            "train_policy": _stage_seconds(stage_results, f"{slug}/rl/{encoder}/"),
            "evaluate": _stage_seconds(stage_results, f"{slug}/eval_rl/{encoder}/"),
        }
        rows.append(
            {
                "encoder": encoder,
                "success": train["success"] if train else None,
                "success_heldout": heldout["success"] if heldout else None,
                "success_per_seed": train.get("success_per_seed") if train else None,
                "num_seeds": train["num_seeds"] if train else 0,
                "wall_time_s": {k: v for k, v in wall.items() if v is not None},
            }
        )
    return rows, aggregated, records


#: The looks and checkpoints summarised over the tasks, in the report's order.
_ACROSS_TASKS_BLOCKS = (
    ("train", "final", "final checkpoints"),
    ("train", "best", "best checkpoints"),
    ("heldout", "final", "held-out look, final checkpoints"),
    ("heldout", "best", "held-out look, best checkpoints"),
)


def run_summary(config: RunConfig) -> str:
    """One paragraph at the top of the report: what was compared, on what, how measured."""
    tasks = ", ".join(task_slug(task) for task in config.tasks)
    described = {
        "none": "a frozen random encoder (none)",
        "scratch": "the same encoder trained end to end (scratch)",
        "state": "the privileged-state oracle (state)",
    }
    baselines = ", ".join(described.get(name, name) for name in config.encoders)
    if config.objectives:
        compared = (
            f"{config.encoder_arch} encoders pretrained by {', '.join(config.objectives)} on "
            f"{config.num_unlabeled_episodes} unlabeled {config.unlabeled_policy} episodes per "
            "task"
            + (
                f", and one pretrained on every task's episodes ({config.mixed_encoder_name})"
                if config.mixed_encoder_name
                else ""
            )
            + f", frozen, against {baselines}"
        )
    else:
        compared = f"{config.encoder_arch} encoders: {baselines}"
    seeds, episodes = len(config.policy_seeds), config.eval_episodes
    interval = (
        "a bootstrap of training seeds, then episodes, no narrower than Wilson's"
        if seeds > 1
        else "Wilson's, of the one seed's count"
    )
    sweep = (
        f"; success against the number of demonstrations on "
        f"{task_slug(config.data_efficiency_task)}"
        if config.data_efficiency_task
        else ""
    )
    smoke = (
        "Smoke run (quick preset): toy sizes, so the numbers test the machinery and mean "
        "nothing about the methods. "
        if config.preset == "quick"
        else ""
    )
    rl = (
        f"; apart from it, {rl_label(config)[0].lower()}{rl_label(config)[1:]} on "
        f"{', '.join(config.rl_encoder_names)}"
        if config.rl_encoder_names
        else ""
    )
    return (
        f"{smoke}On {tasks}: {compared}; behaviour cloning from {config.main_demos} expert "
        f"demonstrations{rl}, {seeds} training seed(s) x {episodes} evaluation episodes per "
        f"encoder and task. Success is the final checkpoint's, with a 95% interval ({interval})"
        f"{sweep}. Notes at the end "
        "say how each number is made; the run's machine, versions and config follow them."
    )


def across_tasks_blocks(
    config: RunConfig, records: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The run's mean success over its tasks, per look and checkpoint evaluated, with each
    encoder's share of the state oracle's and lead over ``none`` and scratch (issue 5's bar,
    measured with intervals), BC's and then online RL's (each protocol's encoders against
    its own oracle); nothing with fewer than two tasks."""
    from sslrobot.evaluation.across_tasks import outcomes_by_encoder, success_across_tasks

    protocols = [("bc", config.main_demos, config.encoder_names, "")]
    if config.rl_encoder_names:
        rl = f"online RL (SAC, {config.rl_steps:,} steps, {config.rl_num_demos} demos), "
        protocols.append(("rl-sac", config.rl_num_demos, config.rl_encoder_names, rl))
    blocks = []
    for algo, num_demos, names, prefix in protocols:
        for preset, checkpoint, label in _ACROSS_TASKS_BLOCKS:
            outcomes = outcomes_by_encoder(records, num_demos, preset, checkpoint, algo=algo)
            ordered = {name: outcomes[name] for name in names if name in outcomes}
            rows = success_across_tasks(ordered, tasks=config.tasks, seed=config.seed)
            if rows:
                blocks.append(
                    {
                        "label": prefix + label,
                        "num_demos": config.main_demos,
                        "reference": "state",
                        "rows": rows,
                    }
                )
    return blocks


#: What a stage's numbers depend on beyond its config, of ``stage_provenance``'s record: the
#: package versions (but the plotting library's, which draws and stores no number), the
#: CPU's instruction set (the rounding of seeded CPU results), the device type. The CPU's
#: name and the platform describe; they are not compared.
_COMPARED_MACHINE = ("torch_cpu_capability",)
_UNCOMPARED_PACKAGES = ("matplotlib",)


def _compared_versions(made_on: Mapping[str, Any]) -> dict[str, Any]:
    versions = made_on.get("package_versions")
    if not isinstance(versions, Mapping):
        return {}
    return {k: v for k, v in versions.items() if k not in _UNCOMPARED_PACKAGES}


def _provenance_key(made_on: Mapping[str, Any]) -> str:
    machine = made_on.get("machine")
    machine = machine if isinstance(machine, Mapping) else {}
    compared = {
        "package_versions": _compared_versions(made_on),
        "machine": {key: machine.get(key) for key in _COMPARED_MACHINE},
        "device": made_on.get("device"),
    }
    return json.dumps(compared, sort_keys=True)


def _provenance_difference(made_on: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """What of ``made_on`` differs from ``now``: ``torch 2.12.0 (now 2.13.0), AVX2 ...``."""
    parts = []
    versions, current = _compared_versions(made_on), _compared_versions(now)
    for name in sorted(set(versions) | set(current)):
        if versions.get(name) != current.get(name):
            parts.append(f"{name} {versions.get(name)} (now {current.get(name)})")
    machine, here = made_on.get("machine"), now.get("machine")
    machine = machine if isinstance(machine, Mapping) else {}
    here = here if isinstance(here, Mapping) else {}
    for key in _COMPARED_MACHINE:
        if machine.get(key) != here.get(key):
            parts.append(f"CPU {machine.get(key)} on {machine.get('cpu')} (now {here.get(key)})")
    if made_on.get("device") != now.get("device"):
        parts.append(f"device {made_on.get('device')} (now {now.get('device')})")
    return ", ".join(parts)


def stages_made_otherwise(
    stage_results: Sequence[StageResult], now: Mapping[str, Any] | None
) -> str | None:
    """A sentence naming the stages this invocation reused that were made with other package
    versions, on another instruction set or device than ``now`` (this invocation's
    ``stage_provenance``), or before stages recorded what they were made with; None when
    there are none. The header's versions and machine are this invocation's, and a skipped
    stage's numbers are not."""
    groups: dict[str, list[StageResult]] = {}
    for result in stage_results:
        if not isinstance(result.made_on, Mapping):  # before stages kept it (or hand-edited)
            groups.setdefault("", []).append(result)
        elif now is not None and _provenance_key(result.made_on) != _provenance_key(now):
            groups.setdefault(_provenance_key(result.made_on), []).append(result)
    parts = []
    for key, results in sorted(groups.items()):
        example = results[0].name
        if key:
            what = _provenance_difference(results[0].made_on or {}, now or {})
            parts.append(f"{len(results)} made with {what} (e.g. {example})")
        else:
            parts.append(
                f"{len(results)} made before stages recorded their versions and machine "
                f"(e.g. {example})"
            )
    if not parts:
        return None
    return (
        f"of the {len(stage_results)} stages, " + "; ".join(parts) + ": their numbers are "
        "those of the code and machine that made them, where the package versions and machine "
        "given here are this invocation's"
    )


def _stages_line(stage_results: Sequence[Any]) -> str:
    """How many stages this invocation made, and that it reused the rest (if any)."""
    made = sum(not r.skipped for r in stage_results)
    line = f"{made} of {len(stage_results)} made by this invocation"
    return line if made == len(stage_results) else f"{line}, the others reused from earlier ones"


def seed_coverage_note(num_seeds: int) -> str:
    """What the intervals' coverage is with few training seeds (a sentence to append to the
    success note; empty with one seed, whose interval is Wilson's, or five and more)."""
    if not 1 < num_seeds < 5:
        return ""
    return (
        f" With {num_seeds} training seeds the bootstrap over seeds runs narrow where the seeds' "
        "own success differs (simulated with 3 seeds x 100 episodes at 20%: about 97% coverage "
        "at a 4-point standard deviation between seeds, 89% at 8, lower beyond; "
        "scripts/check_interval_coverage.py): rows whose per-seed rates lie far apart hold "
        "the true rate less often than 95%. The verdicts' overlap test stays conservative "
        "(under 3% of equal pairs called apart); more seeds: --set policy_seeds=0,1,2,3,4."
    )


def context_choice_note(config: RunConfig, artifacts: Sequence[TaskArtifacts]) -> str:
    """What ``bc_context="auto"`` chose, per task and encoder: how many of its policies
    kept the first frame's context."""
    from sslrobot.policy.config import SELECTION_SEED_BASE

    counts: dict[str, list[str]] = {}
    for task in artifacts:
        for encoder, _demos, _seed, stage in task.policies:
            path = stage.path / CONTEXT_CHOICE
            if path.is_file():
                chosen = read_json_file(path)["chosen"]
                counts.setdefault(f"{task_slug(task.env_id)} {encoder}", []).append(chosen)
    listed = "; ".join(
        f"{key} {choices.count('first')} of {len(choices)}" for key, choices in counts.items()
    )
    return (
        "Context: every BC head of a frozen encoder and of the state oracle was trained "
        "twice, on the current frame alone and with its episode's first frame's features "
        f"beside it, and the one with the higher success on {config.bc_select_episodes} "
        f"validation episodes (reset seeds from {SELECTION_SEED_BASE:,}, which evaluation "
        "never uses; ties keep the current frame alone) was evaluated; scratch reads the "
        "current frame alone. "
        f"Policies that kept the first frame: {listed or 'none'}."
    )


def build_report(
    config: RunConfig,
    out: Path,
    artifacts: Sequence[TaskArtifacts],
    stage_results: Sequence[StageResult],
    command: str,
    wall_time_s: float,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``results.json``, ``report.md`` and ``report.html`` into ``out``; returns the HTML.
    ``provenance``: this invocation's ``stage_provenance``, against which the stages it
    reused are compared (the header names those made otherwise)."""
    from sslrobot.evaluation.report import package_versions, render_report
    from sslrobot.utils.versions import machine_description

    sections, all_rows, all_records = [], [], []
    for task_artifacts in artifacts:
        section, rows, records = _task_section(config, out, task_artifacts, stage_results)
        sections.append(section)
        all_rows.extend(rows)
        all_records.extend(records)
    across_tasks = across_tasks_blocks(config, all_records)
    header = {
        "command": command,
        "config": config.to_dict(),
        "package_versions": package_versions(),
        "seeds": {
            "run": config.seed,
            "policy_seeds": list(config.policy_seeds),
            # What `sslrobot collect --seed` / `evaluate --seed` take to remake them.
            "unlabeled_episodes_from": config.seed + UNLABELED_SEED_BASE,
            "demonstrations_from": config.seed + DEMO_SEED_BASE,
            "evaluation_episodes_from": config.seed + EVAL_SEED_BASE,
        },
        "python": sys.version.split()[0],
        "machine": machine_description(),
        "wall_time": f"{wall_time_s:.0f} s this invocation; "
        f"{sum(r.seconds for r in stage_results):.0f} s summed over all stages",
        "stages": _stages_line(stage_results),
        "written": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    elsewhere = stages_made_otherwise(stage_results, provenance)
    if elsewhere:
        header["stages made otherwise"] = elsewhere
    results = {
        "header": header,
        "aggregated": all_rows,
        # The report's tables as numbers (probes, PSNR, times, verdicts): from files alone.
        "tasks": [
            {
                key: section[key]
                for key in ("task", "rows", "verdict", "rl_label", "rl_rows")
                if key in section
            }
            for section in sections
        ],
    }
    if across_tasks:
        results["across_tasks"] = across_tasks
    report = {
        "title": f"sslrobot report ({config.preset} preset)",
        "summary": run_summary(config),
        "header": header,
        "tasks": sections,
        "across_tasks": across_tasks,
        "notes": [
            "Success: mean over training seeds of the per-seed success rate on "
            f"{config.eval_episodes} evaluation episodes, with a two-level bootstrap 95% CI "
            "(training seeds, then their episodes, resampled; every seed is evaluated from "
            "the same start states, so one draw of episodes serves all the seeds of a "
            "resample, and a start state hard for every policy counts once), widened where "
            "needed to hold Wilson's interval of the pooled count (the bootstrap undercovers "
            "near 0% and "
            "100%, and has no width when every episode ends alike); one training seed: "
            "Wilson's interval." + seed_coverage_note(len(config.policy_seeds)),
            "Probe R²: ridge regression from frozen features to the true state, fitted on "
            "training episodes of the unlabeled stream and scored on the episodes every "
            "pretraining held out, mean "
            "over the variables one frame determines (the env's view_state_names), each scored "
            "on the frames where it is in view when the env says when (view_conditions: "
            "Navigate's goal distance and bearing while the goal is within the camera's +-45 "
            "degrees; 'all frames' scores every frame); for "
            f"none, the mean (± standard deviation) over {config.none_probe_inits} random "
            "initialisation(s). Probe gain: an encoder's probe R² minus that mean. A variable "
            "constant on the scored frames has no R²: it is left out of the mean and marked n/a "
            "in the plot.",
            "PSNR k=1: one-step predicted frame vs the real one; copy-last predicts the current "
            "frame unchanged (the baseline to beat).",
        ],
    }
    if config.bc_val_episodes:
        report["notes"].insert(
            1,
            "Checkpoints: 'Success' is each policy's final checkpoint; 'best checkpoint' the "
            f"one of its validation checks with the highest success on {config.bc_val_episodes} "
            "online validation episodes (seeds apart from the evaluation's), evaluated on the same "
            "evaluation episodes. The final checkpoint is the headline: choosing by a few "
            "validation episodes adds their noise. The train_policy times include the "
            "validation rollouts.",
        )
    timed = [
        *(["the best checkpoints'"] if config.bc_val_episodes else []),
        *(["the held-out look's"] if config.heldout_eval else []),
    ]
    report["notes"].append(
        "Times: each stage's wall time on the run's machine; 'evaluate' adds up every "
        "evaluation of the encoder's main policies ("
        + ", ".join(["the final checkpoints'", *timed])
        + ")"
        + (
            "; the transfer encoder, pretrained once on every task's stream, shows that one "
            "pretraining in each task's row"
            if config.transfer_objective is not None
            else ""
        )
        + "."
    )
    if config.bc_augment_copies:
        report["notes"].append(
            f"BC heads of frozen encoders (pretrained and none) also fitted on "
            f"{config.bc_augment_copies} shifted and recoloured copies of every demonstration "
            "frame; scratch shifts its own frames every step; the state oracle reads no pixels."
        )
    if config.bc_context == "first":
        report["notes"].append(
            "Context: the BC heads of frozen encoders and of the state oracle also read the "
            "features (or state) of their episode's first frame, kept through the episode; "
            "scratch, trained end to end, reads the current frame alone."
        )
    if config.bc_context == "auto":
        report["notes"].append(context_choice_note(config, artifacts))
    if config.rl_encoder_names:
        report["notes"].append(rl_note(config))
    if not config.heldout_eval:
        report["notes"].append(
            "Robustness to visual change was not measured in this run: no policy was evaluated "
            "in the held-out look (palettes and camera moves never seen in training); "
            "--set heldout_eval=true adds those evaluations and their columns."
        )
    if config.pretrain_seed_per_policy:
        report["notes"].append(
            "Pretraining seeds: the BC policy of training seed s used encoders pretrained from "
            f"seed {config.seed} + s, so success intervals span the pretraining's variance; "
            "a pretrained encoder's probe is the mean (± standard deviation) over its seeds; "
            f"its PSNR is the world model of seed {config.seed}'s alone."
        )
    if config.demos_per_policy_seed:
        report["notes"].append(
            "Demonstrations: the BC policy of training seed s trained on its own draw, "
            f"episodes s x {config.largest_demos} on of the task's demonstration set, so "
            "success intervals span which demonstrations were drawn too."
        )
    if config.look_targets:
        report["notes"].append(
            "Look targets: each task's unlabeled stream was collected again in the authored "
            "look (data/unlabeled_authored), and the pretrained encoders took their targets "
            "(decoded frames, fdm's target latents) from it while reading the varied look; "
            "their predictions are scored against it."
        )
    transported = [task for task in config.tasks if config.transports(task)]
    if transported:
        others = [task for task in config.tasks if task not in transported]
        report["notes"].append(
            f"Transport: on {', '.join(transported)} (fixed cameras) every pretrained objective "
            f"also had keypoint transport at weight {config.transport_weight:g} with "
            f"{config.transport_keypoints or 'all'} keypoints, each window's frame drawn from "
            "another episode's authored twin (the encoders keep their objective's name)"
            + (
                f"; {', '.join(others)} (a camera that moves with the robot) pretrained without it."
                if others
                else "."
            )
        )
    _md_path, html_path = render_report(report, out)
    # Last: a run stopped between the files leaves no results.json newer than its report.
    atomic_write_json(out / "results.json", results)
    return html_path
