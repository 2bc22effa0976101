"""Evaluate a trained policy on seeded episodes into one self-describing JSON record, and
aggregate such records over training seeds."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sslrobot.evaluation.rollouts import run_episodes
from sslrobot.evaluation.statistics import (
    bootstrap_ci,
    stratified_bootstrap_ci,
    success_interval,
)
from sslrobot.policy.checkpoint import CHECKPOINTS
from sslrobot.utils.artifacts import check_result_file
from sslrobot.utils.io import atomic_write_json

RESULT_FORMAT = "sslrobot/eval-v1"
EVALUATION_RESULT = f"an sslrobot evaluation result ({RESULT_FORMAT})"


def is_evaluation_result(record: Any) -> bool:
    """Whether a parsed JSON file is an evaluation's record (which a rerun may replace)."""
    return isinstance(record, dict) and record.get("format") == RESULT_FORMAT


#: Fields that identify a configuration; records that share them differ only by training seed.
GROUP_KEYS = ("encoder", "env_id", "num_demos", "algo", "checkpoint", "visual_preset")
#: Fields the records of one group must share (else they are not one configuration's seeds:
#: e.g. a transfer test beside native runs, or other evaluation episodes).
SAME_WITHIN_GROUP = ("policy_env_id", "eval_seed", "num_episodes")
#: Like ``SAME_WITHIN_GROUP``, compared only among the records that hold it (results written
#: before it was recorded hold none): a 30k-step run's seeds beside a 60k-step run's were one
#: group, silently, and so were seeds trained on demonstrations of another look (the demos'
#: path is a per-seed setting, so ``train_settings`` does not tell them apart).
#: RL's feature statistics from demonstrations or from random rollouts likewise (its records
#: say ``num_demos`` 0 either way), and (since session 35) encoders of another architecture
#: under one label (``encoder`` is the objective or the directory's name) and demonstrations
#: collected otherwise (another policy, look or image size; their seed may differ).
RECORDED_SAME_WITHIN_GROUP = (
    "train_settings",
    "policy_visual_preset",
    "policy_normalization",
    "encoder_settings",
    "demos_settings",
)
#: Training settings that may differ between one configuration's seeds: the seed itself, how
#: a run ran, the encoder's and demonstrations' paths (seeds with encoders pretrained from
#: their own seed, ``pretrain_seed_per_policy``, or runs moved between machines) and which
#: demonstrations of the set (``demos_per_policy_seed``; absent from records before it).
_PER_SEED_SETTINGS = (
    "seed", "out", "device", "progress", "resume", "overwrite", "cache_dir", "encoder", "demos",
    "demo_offset",
)  # fmt: skip
#: Training settings added since records were first written, left out of ``train_settings``
#: at the value every earlier policy had: a new seed beside old ones stays one configuration.
_SETTINGS_ADDED_AT = {"rl_critic_input": "policy"}


def train_settings(record: Mapping[str, Any]) -> str | None:
    """A hash of what a policy was trained with (its ``train_config``) but for the settings
    that may differ between seeds of one configuration; None for records without one."""
    from sslrobot.utils.config import config_hash

    config = record.get("train_config")
    if not isinstance(config, Mapping):
        return None
    return config_hash(
        {
            k: v
            for k, v in config.items()
            if k not in _PER_SEED_SETTINGS and _SETTINGS_ADDED_AT.get(k, object()) != v
        }
    )


def _critic_input(record: Mapping[str, Any]) -> str | None:
    """An RL policy's ``rl_critic_input`` (``"policy"`` before it existed); None for BC."""
    if record.get("algo") == "bc":
        return None
    config = record.get("train_config")
    return str(config.get("rl_critic_input", "policy")) if isinstance(config, Mapping) else None


def encoder_settings(encoder: Mapping[str, Any]) -> str:
    """A hash of a policy's encoder record's kind and architecture (its ``EncoderConfig``),
    not its weights or path: seeds of one configuration may have encoders pretrained from
    seeds of their own, never of another architecture, readout or width."""
    from sslrobot.utils.config import config_hash

    return config_hash({"kind": encoder.get("kind"), "config": encoder.get("config")})


def _normalization_kind(record: Mapping[str, Any]) -> str | None:
    """Where an RL policy's feature statistics came from, ``"demonstrations"``, or random
    ``"rollouts"`` (``"rollouts, a reset every N"`` since session 34; whole episodes before,
    whose statistics differ: seeds of the two are not one configuration's); None for BC
    (always its demonstrations) and records without one."""
    source = record.get("normalization")
    if record.get("algo") == "bc" or not isinstance(source, str):
        return None
    if source.startswith("demonstrations"):
        return "demonstrations"
    resets = re.search(r"a reset every \d+", source)
    return "rollouts" if resets is None else f"rollouts, {resets.group(0)}"


def evaluate(
    policy_dir: str | os.PathLike[str],
    env_id: str | None = None,
    num_episodes: int = 50,
    seed: int = 0,
    visual_preset: str | None = None,
    out_json: str | os.PathLike[str] | None = None,
    num_videos: int = 0,
    checkpoint: str = "final",
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``num_episodes`` seeded episodes of a policy and write the result JSON
    (``progress``: a bar of episodes, rate, ETA and successes on stderr).

    Episode ``i`` is reset with seed ``seed + i``, so the same policy, seed and preset give the
    same record. Keep evaluation seeds below ``sslrobot.policy.config.VALIDATION_SEED_BASE``
    (1,000,000), where training-time validation episodes start, and away from the
    demonstrations' seeds (recorded in the policy; shared ones are listed in the record).

    Args:
        policy_dir: A ``train-policy --out`` directory.
        env_id: Task to evaluate on; None means the task the policy was trained on.
        num_episodes: Evaluation episodes (the issue asks for >= 50 per training seed).
        seed: Seed of the first episode.
        visual_preset: ``"train"``, ``"heldout"`` (generalisation gap) or ``"none"``; None
            (the default) is the look the policy trained in, its demonstrations' (or RL's
            env's): ``"train"`` whatever the policy's look turned a policy trained in
            ``none`` into a generalisation test without a word.
        out_json: Where to write the record (atomically); None writes nothing.
        num_videos: Rollout videos of the first episodes, written beside ``out_json`` in
            ``<stem>_videos/`` with success marked on the frames.
        checkpoint: ``"final"`` or ``"best"``.
        device: Where the policy runs.

    Returns:
        The record: ``success_rate``, ``success_ci95`` [low, high] (Wilson's score interval of
        the count), ``mean_return``, ``return_ci95`` (a percentile bootstrap), ``episodes``
        (seed, success, return, length per episode) and labels.
    """
    from sslrobot.policy import load_policy
    from sslrobot.policy.config import VALIDATION_SEED_BASE
    from sslrobot.policy.environment import env_shapes, make_env

    if (
        isinstance(num_episodes, bool)
        or not isinstance(num_episodes, numbers.Integral)
        or num_episodes < 1
    ):
        raise ValueError(f"num_episodes must be an int >= 1, got {num_episodes!r}")
    num_episodes = int(num_episodes)  # NumPy's integers too
    # Checked before the policy loads: gymnasium only refuses a negative seed at the first
    # reset, with a traceback of its own.
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(
            f"seed must be an int >= 0 (episode i is reset with seed + i), got {seed!r}"
        )
    seed = int(seed)  # NumPy's integers too, as plain ints in the JSON
    if num_videos < 0:
        raise ValueError(f"num_videos must be >= 0, got {num_videos}")
    if num_videos and out_json is None:
        raise ValueError("num_videos > 0 needs out_json (videos are written beside it)")
    if out_json is not None:  # before the episodes, not after them
        check_result_file(Path(out_json), is_evaluation_result, EVALUATION_RESULT, "out_json")
    with _staged_videos(out_json) as (video_dir, staging):
        policy = load_policy(policy_dir, checkpoint=checkpoint, device=device)
        record = policy.record
        env_id = env_id or policy.env_id
        trained_in = record.get("train_visual_preset") or record.get("demos_visual_preset")
        if visual_preset is None:
            visual_preset = trained_in or "train"
        env = make_env(env_id, policy.image_size, policy.obs_mode, visual_preset=visual_preset)
        start = time.perf_counter()
        try:
            _check_policy_fits(policy, env_shapes(env, env_id), env_id, Path(policy_dir))
            if env_id != policy.env_id:
                warnings.warn(
                    f"policy {policy_dir} was trained on {policy.env_id!r}; evaluating it on "
                    f"{env_id!r} (a transfer test, recorded as policy_env_id in the result)",
                    stacklevel=2,
                )
            seeds = [seed + i for i in range(num_episodes)]
            results, videos = run_episodes(
                env,
                policy,
                seeds,
                num_videos=num_videos,
                video_dir=staging,
                video_prefix=checkpoint,
                progress=progress,
            )
        finally:
            env.close()
        successes = np.array([r.success for r in results], dtype=np.float64)
        returns = np.array([r.episode_return for r in results], dtype=np.float64)
        success_mean, success_low, success_high = success_interval([successes], seed=0)
        return_mean, return_low, return_high = bootstrap_ci(returns, seed=0)
        shared = sorted(set(seeds) & set(record.get("demo_seeds", [])))
        if shared:
            # RL's demonstrations set only the feature statistics: a milder overlap, said so.
            role = "demonstration" if record["algo"] == "bc" else "normalisation-demonstration"
            warnings.warn(
                f"{len(shared)} evaluation seeds are also {role} seeds of {policy_dir} "
                f"(e.g. {shared[:5]}); pass a --seed past them for an honest score",
                stacklevel=2,
            )
        started = sorted(set(seeds) & set(record.get("train_reset_seeds", [])))
        if started:  # RL: its first training episodes began from these seeds' start states
            warnings.warn(
                f"{len(started)} evaluation seeds are seeds {policy_dir} was trained from (its "
                f"first training episodes, e.g. {started[:5]}); pass a --seed past them",
                stacklevel=2,
            )
        # The online validation episodes picked the best checkpoint: scoring on them flatters it.
        validated = sorted(set(seeds) & set(_validation_seeds(record)))
        if validated:
            warnings.warn(
                f"{len(validated)} evaluation seeds are the online validation seeds of "
                f"{policy_dir} (e.g. {validated[:5]}), which chose its best checkpoint; evaluate "
                f"below {VALIDATION_SEED_BASE} for an honest score",
                stacklevel=2,
            )
        pretrained = _seeds_shared_with_pretraining(record, env_id, seeds)
        if pretrained:
            warnings.warn(
                f"{len(pretrained)} evaluation seeds are reset seeds of the {env_id} episodes "
                f"encoder {record['encoder']['source']} was pretrained on (e.g. {pretrained[:5]}): "
                "its unlabeled frames began from these start states; pass a --seed past them "
                "(collect --seed S resets episode i with seed S + i)",
                stacklevel=2,
            )
        result = {
            "format": RESULT_FORMAT,
            "env_id": env_id,
            "policy_env_id": policy.env_id,
            "task": env_id.split("/")[-1].split("-v")[0],
            "encoder": record["encoder"]["name"],
            "encoder_kind": record["encoder"]["kind"],
            "encoder_source": record["encoder"]["source"],
            "encoder_settings": encoder_settings(record["encoder"]),
            "demos_settings": record.get("demos_settings"),
            "algo": record["algo"] if record["algo"] == "bc" else f"rl-{record['rl_algorithm']}",
            # What SAC's critics read (rl_critic): the state is another protocol than the
            # features, though the actor that acts reads the features either way.
            "rl_critic_input": _critic_input(record),
            "seed": record["seed"],
            "num_demos": record.get("num_demos", 0),
            "checkpoint": checkpoint,
            "visual_preset": visual_preset,
            # The look the policy trained in (its demonstrations', or RL's): evaluating in
            # another is a generalisation test, not an in-distribution score.
            "policy_visual_preset": trained_in,
            "policy_normalization": _normalization_kind(record),
            "eval_seed": seed,
            "num_episodes": num_episodes,
            "train_settings": train_settings(record),
            "success_rate": float(success_mean),
            "success_ci95": [success_low, success_high],
            "mean_return": float(return_mean),
            "return_ci95": [return_low, return_high],
            "mean_length": float(np.mean([r.length for r in results])),
            "seeds_shared_with_demos": shared,
            "seeds_shared_with_validation": validated,
            "seeds_shared_with_training": started,
            "seeds_shared_with_pretraining": pretrained,
            "episodes": [r.to_dict() for r in results],
            "videos": [],
            "policy_dir": str(Path(policy_dir).resolve()),
            "eval_wall_time_s": time.perf_counter() - start,
        }
        if out_json is not None:
            out_path = Path(out_json)
            videos, replaced = _move_videos_in(staging, video_dir, videos)
            result["videos"] = [os.path.relpath(v, out_path.parent) for v in videos]
            try:
                atomic_write_json(out_path, result)
            except BaseException:
                for target, earlier in replaced:  # the record in place names them
                    os.replace(earlier, target)
                raise
            _remove_stale_videos(video_dir, videos)
        return result


@contextlib.contextmanager
def _staged_videos(out_json: str | os.PathLike[str] | None) -> Iterator[tuple[Path, Path]]:
    """``(<stem>_videos, its staging folder)`` beside ``out_json``: videos are written to the
    staging folder and moved in just before the record that names them is written (an
    evaluation cut short used to overwrite the videos the record already in place names,
    with other episodes). The staging folder, and a killed evaluation's, is removed on the
    way out, whatever happened."""
    out = Path(out_json if out_json is not None else "evaluation.json")
    video_dir = out.with_name(f"{out.stem}_videos")
    staging = video_dir.with_name(f"{video_dir.name}{VIDEO_STAGING_SUFFIX}")
    if out_json is not None:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        yield video_dir, staging
    finally:
        if out_json is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _move_videos_in(
    staging: Path, video_dir: Path, videos: list[Path]
) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Move the finished videos from ``staging`` into ``video_dir`` (each rename atomic),
    keeping each file they replace in ``staging``; returns the moved paths and the
    ``(path, replaced copy)`` pairs, which put the earlier record's videos back if its
    successor cannot be written (a full disk)."""
    if not videos:
        return [], []
    video_dir.mkdir(parents=True, exist_ok=True)
    moved, replaced = [], []
    for video in videos:
        target = video_dir / Path(video).name
        if target.exists():
            earlier = staging / f"{target.name}.replaced"
            os.replace(target, earlier)
            replaced.append((target, earlier))
        os.replace(video, target)
        moved.append(target)
    return moved, replaced


#: Where an evaluation writes its videos until it has them all: ``<stem>_videos`` + this.
VIDEO_STAGING_SUFFIX = ".partial"
#: The names evaluation gives videos: ``<checkpoint>_seed<seed>.mp4`` (or ``.gif``).
_VIDEO_NAME = re.compile(rf"({'|'.join(CHECKPOINTS)})_seed\d+\.(mp4|gif)")


def _remove_stale_videos(video_dir: Path, kept: list[Path]) -> None:
    """Remove the videos of a record this one replaced (an earlier evaluation to the same
    ``out_json``): a folder beside a ``best`` record held the ``final`` videos of another
    evaluation, easily taken for this one's. Only files named as evaluation videos go."""
    if not video_dir.is_dir():
        return
    keep = {Path(v).resolve() for v in kept}
    for path in video_dir.iterdir():
        if _VIDEO_NAME.fullmatch(path.name) and path.resolve() not in keep:
            path.unlink(missing_ok=True)


def _check_policy_fits(policy: Any, shapes: Any, env_id: str, policy_dir: Path) -> None:
    record = policy.record
    if shapes.action_dim != record["action_dim"]:
        raise ValueError(
            f"policy {policy_dir} outputs {record['action_dim']} actions, {env_id} takes "
            f"{shapes.action_dim}"
        )
    widths = [("proprio", record["proprio_dim"], shapes.proprio_dim)]
    if shapes.obs_mode == "state":  # a state oracle's input is the privileged state
        widths.append(("state", record["feature_dim"], shapes.state_dim))
    unlike = [f"{name} {trained} vs {given}" for name, trained, given in widths if trained != given]
    if unlike:
        raise ValueError(
            f"policy {policy_dir} was trained on observations of {record['env_id']} that do not "
            f"match {env_id}'s ({', '.join(unlike)})"
        )


def load_results(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read result JSONs written by ``evaluate``, with an error naming any that is not one."""
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read evaluation result {path}: {error}") from error
        if not is_evaluation_result(record):
            raise ValueError(f"{path} is not {EVALUATION_RESULT}")
        check_result_record(record, str(path))
        records.append(record)
    return records


def check_result_record(record: Mapping[str, Any], where: str) -> None:
    """Refuse a result record the aggregation cannot use, naming ``where`` and the field (a
    hand-edited or truncated file used to fail as a bare ``KeyError`` deep in the bootstrap).

    Raises:
        ValueError: a missing label or seed, no episodes, an episode without ``success`` or
            ``return``, or fewer episodes than its ``num_episodes`` says.
    """
    missing = [name for name in (*GROUP_KEYS, "seed", "episodes") if name not in record]
    if missing:
        raise ValueError(f"evaluation result {where} lacks {missing}")
    episodes = record["episodes"]
    if not isinstance(episodes, list) or not episodes:
        raise ValueError(f"evaluation result {where} holds no episodes")
    for index, episode in enumerate(episodes):
        if not isinstance(episode, Mapping) or not {"success", "return"} <= set(episode):
            raise ValueError(f"evaluation result {where}: episode {index} lacks success or return")
        success, value = episode["success"], episode["return"]
        if not (isinstance(success, numbers.Real | np.bool_) and success in (0, 1)):
            raise ValueError(
                f"evaluation result {where}: episode {index}'s success must be true or false, "
                f"got {success!r}"
            )
        if not (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        ):
            raise ValueError(
                f"evaluation result {where}: episode {index}'s return must be a finite "
                f"number, got {value!r}"
            )
    expected = record.get("num_episodes")
    if expected is not None and expected != len(episodes):
        raise ValueError(
            f"evaluation result {where} says num_episodes={expected} but holds "
            f"{len(episodes)} episodes"
        )


def _seeds_shared_with_pretraining(
    record: Mapping[str, Any], env_id: str, seeds: list[int]
) -> list[int]:
    """Evaluation seeds among the reset seeds of the episodes the policy's encoder was
    pretrained on (none for the baselines, or an encoder whose directory records none)."""
    from sslrobot.pretraining.artifacts import pretraining_reset_seeds

    encoder = record.get("encoder") or {}
    if encoder.get("kind") != "pretrained" or not encoder.get("source"):
        return []
    return sorted(set(seeds) & set(pretraining_reset_seeds(Path(encoder["source"]), env_id)))


def _validation_seeds(record: Mapping[str, Any]) -> list[int]:
    """The online validation seeds of a policy (recorded since session 15; before, derived
    from its ``val_episodes``)."""
    from sslrobot.policy.config import VALIDATION_SEED_BASE

    if "val_seeds" in record:
        return list(record["val_seeds"])
    count = (record.get("train_config") or {}).get("val_episodes") or 0
    return [VALIDATION_SEED_BASE + i for i in range(count)]


#: The record fields that list evaluation seeds a policy's own training also started from.
SHARED_SEED_FIELDS = (
    "seeds_shared_with_demos",
    "seeds_shared_with_validation",
    "seeds_shared_with_training",
    "seeds_shared_with_pretraining",
)


def aggregate_results(
    records: Iterable[Mapping[str, Any]],
    min_seeds: int = 3,
    confidence: float = 0.95,
    resample_seeds: bool = True,
    bootstrap_seed: int = 0,
) -> list[dict[str, Any]]:
    """Mean success and return over training seeds, with two-level bootstrap intervals.

    Records are grouped by ``GROUP_KEYS`` (encoder, task, num_demos, algo, checkpoint, visual
    preset); ``stratified_bootstrap_ci`` resamples the training seeds and then episodes within
    each (``resample_seeds``, the default, which covers seed-to-seed variation), or, with
    ``resample_seeds=False``, episodes within each seed only (seeds as strata: narrower, the
    head's variance left out). Where the seeds were evaluated from the same start states
    (``episodes_shared``), one draw of episodes serves every seed of a resample.

    Args:
        records: Evaluation records (``evaluate``'s return value or ``load_results``).
        min_seeds: Fewest training seeds a group may have (the issue asks for >= 3).
        confidence: Coverage of the intervals.
        resample_seeds: Resample training seeds as well as episodes.
        bootstrap_seed: Seed of the resampling.

    Returns:
        One dict per group, sorted: the group keys, ``num_seeds``, ``seeds``,
        ``num_episodes``, ``success`` and ``return`` as ``{"mean", "low", "high"}``,
        ``success_per_seed``, ``episodes_shared`` (every seed's i-th episode began from the
        same start state, and the intervals resampled them together), and
        ``seeds_shared_with``: what the group's evaluation seeds overlap (``demos``,
        ``validation``, ``training``, ``pretraining``; said in a warning).

    Raises:
        ValueError: a group has fewer than ``min_seeds`` seeds or the same seed twice, or its
            records differ in a ``SAME_WITHIN_GROUP`` field.
    """
    groups: dict[tuple[Any, ...], dict[int, Mapping[str, Any]]] = {}
    for index, record in enumerate(records):
        check_result_record(record, f"record {index} ({record.get('encoder')!r}, seed "
                                    f"{record.get('seed')})")  # fmt: skip
        key = tuple(record[name] for name in GROUP_KEYS)
        by_seed = groups.setdefault(key, {})
        if record["seed"] in by_seed:
            raise ValueError(
                f"training seed {record['seed']} appears twice for "
                f"{dict(zip(GROUP_KEYS, key, strict=True))}"
            )
        by_seed[record["seed"]] = record
    rows = []
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        by_seed = groups[key]
        labels = dict(zip(GROUP_KEYS, key, strict=True))
        for name in (*SAME_WITHIN_GROUP, *RECORDED_SAME_WITHIN_GROUP):
            values = {
                str(record.get(name))
                for record in by_seed.values()
                if name in SAME_WITHIN_GROUP or record.get(name) is not None
            }
            if len(values) > 1:
                # Each seed's value and file: a run whose seeds were trained under two
                # versions' defaults must say which policies to train again.
                each = "; ".join(
                    f"seed {seed}: {record.get(name)}"
                    + (f" ({record['_result_path']})" if "_result_path" in record else "")
                    for seed, record in sorted(by_seed.items())
                )
                raise ValueError(
                    f"{labels}: its seeds' records differ in {name} ({each}), so they are not "
                    "one configuration's seeds; aggregate them separately, or train the odd "
                    "seeds again (in `sslrobot run`: delete their policy stages)"
                )
        if len(by_seed) < min_seeds:
            raise ValueError(
                f"{labels} has {len(by_seed)} training seeds ({sorted(by_seed)}); "
                f"need >= {min_seeds}"
            )
        seeds = sorted(by_seed)
        overlaps = sorted(
            {
                name.removeprefix("seeds_shared_with_")
                for record in by_seed.values()
                for name in SHARED_SEED_FIELDS
                if record.get(name)
            }
        )
        if overlaps:
            warnings.warn(
                f"{labels}: some seeds' evaluation episodes began from seeds they share with "
                f"their {', '.join(overlaps)} (each record's seeds_shared_with_* lists them); "
                "the aggregate includes them",
                stacklevel=2,
            )
        success = [[float(e["success"]) for e in by_seed[s]["episodes"]] for s in seeds]
        returns = [[float(e["return"]) for e in by_seed[s]["episodes"]] for s in seeds]
        options = {
            "confidence": confidence,
            "resample_seeds": resample_seeds,
            "seed": bootstrap_seed,
            "shared_episodes": episodes_shared([by_seed[s]["episodes"] for s in seeds]),
        }
        rows.append(
            {
                **labels,
                "num_seeds": len(seeds),
                "seeds": seeds,
                "num_episodes": sum(len(s) for s in success),
                "success": _interval(success_interval(success, **options)),
                "return": _interval(stratified_bootstrap_ci(returns, **options)),
                "success_per_seed": [float(np.mean(s)) for s in success],
                "episodes_shared": options["shared_episodes"],
                "seeds_shared_with": overlaps,
            }
        )
    return rows


def episodes_shared(per_seed_episodes: Sequence[Sequence[Mapping[str, Any]]]) -> bool:
    """Whether every training seed's i-th episode began from the same start state (the same
    reset seed), as one ``evaluate --seed`` for all of them gives: the intervals then draw the
    same episodes for every seed (``statistics.stratified_bootstrap_ci``'s ``shared_episodes``),
    so that a start state hard for every policy counts as the one draw it is."""
    orders = {tuple(episode.get("seed") for episode in episodes) for episodes in per_seed_episodes}
    return len(orders) == 1 and None not in next(iter(orders))


def _interval(values: tuple[float, float, float]) -> dict[str, float]:
    mean, low, high = values
    return {"mean": mean, "low": low, "high": high}
