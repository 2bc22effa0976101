"""``sslrobot run``: collect, pretrain, probe, train policies, evaluate, report.

Every stage calls the same library function as its own subcommand (``collect``, ``pretrain``,
``probe``, ``train-policy``, ``evaluate``); this module only decides what to run, with which
settings, in which directory, and skips what already finished with the same settings.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from sslrobot.pipeline.presets import (
    DEMO_SEED_BASE,
    EVAL_SEED_BASE,
    UNLABELED_SEED_BASE,
    RunConfig,
    inert_settings,
    make_run_config,
    only_adds_stages,
    parse_overrides,
)
from sslrobot.pipeline.stages import (
    StageResult,
    StageRunner,
    noting_interrupts,
    read_json_file,
    stop_if_interrupted,
)
from sslrobot.utils.architectures import POLICY_CONTEXTS
from sslrobot.utils.io import atomic_write_json, exclusive_lock, remove_interrupted_writes

if TYPE_CHECKING:
    from sslrobot.policy import PolicyConfig

#: Lock file of a run directory (held while ``run_pipeline`` works in it).
RUN_LOCK = ".run.lock"
#: A BC stage's record of the context ``bc_context="auto"`` chose, beside its ``policy/``.
CONTEXT_CHOICE = "context_choice.json"


def none_init_name(seed: int) -> str:
    """Stage name of the random-init (``none``) encoder drawn from ``seed`` (not the run's)."""
    return f"none-init{seed}"


def seed_encoder_name(objective: str, seed: int) -> str:
    """Stage name of ``objective``'s encoder pretrained from a further seed."""
    return f"{objective}-seed{seed}"


def task_slug(env_id: str) -> str:
    """``sslrobot/Push-v0`` -> ``Push-v0`` (a directory name)."""
    return env_id.split("/")[-1]


@dataclass
class TaskArtifacts:
    """What the stages of one task produced, for the report."""

    env_id: str
    unlabeled: StageResult | None = None
    #: the unlabeled stream again in the authored look (``RunConfig.look_targets``)
    unlabeled_twin: StageResult | None = None
    demos: StageResult | None = None
    pretrain: dict[str, StageResult] = field(default_factory=dict)
    probe: dict[str, StageResult] = field(default_factory=dict)
    #: probes of the further random initialisations of ``none`` (``none_probe_inits`` - 1)
    none_init_probes: list[StageResult] = field(default_factory=list)
    #: encoders pretrained from further seeds, by (objective, seed), and their probes by
    #: objective (``pretrain_seed_per_policy``)
    seed_pretrain: dict[tuple[str, int], StageResult] = field(default_factory=dict)
    seed_probes: dict[str, list[StageResult]] = field(default_factory=dict)
    policies: list[tuple[str, int, int, StageResult]] = field(default_factory=list)
    evaluations: list[tuple[str, int, int, str, StageResult]] = field(default_factory=list)
    #: online RL's evaluations (``RunConfig.rl_steps``): (encoder, seed, look, stage); kept
    #: apart from BC's, another protocol
    rl_evaluations: list[tuple[str, int, str, StageResult]] = field(default_factory=list)


def _trained_in_other_processes(encoder_dir: Path, processes: int) -> bool:
    """Whether the interrupted pretraining in ``encoder_dir`` ran in another number of
    processes than ``processes`` (its checkpoint then cannot be continued here)."""
    from sslrobot.pretraining import artifacts

    path = encoder_dir / artifacts.PRETRAIN_CONFIG
    if not path.is_file():
        return False
    saved = read_json_file(path)  # older records without the count: the trainer decides
    return "world_size" in saved and int(saved["world_size"]) != processes


def warn_of_dropped_tasks(out: Path, config: RunConfig) -> list[str]:
    """Warn when ``out`` holds an earlier run of tasks this one leaves out, and return them.

    The default tasks are the newest version of each (since ``Navigate-v1``), so rerunning an
    older run directory without ``--tasks`` would quietly switch it to the new version: its
    earlier stages stay on disk but drop out of the report.
    """
    path = out / "config.json"
    if not path.is_file():
        return []
    recorded = read_json_file(path)
    earlier = recorded.get("tasks", [])
    dropped = [task for task in earlier if task not in config.tasks]
    transfer = config.transfer_objective
    mixed_again = (
        transfer is not None
        and recorded.get("transfer_objective") == transfer
        and set(earlier) != set(config.tasks)
    )
    remade = (
        f"; the transfer encoder ({transfer}, pretrained on every task's stream) is made "
        f"again on the streams of {list(config.tasks)}, and every stage that uses it"
        if mixed_again
        else ""
    )
    if dropped:
        warnings.warn(
            f"{out} holds an earlier run of {dropped}, which this run's tasks "
            f"{list(config.tasks)} leave out (their own stages are kept but not reported"
            f"{remade}); pass --tasks {' '.join(earlier)} to continue that run",
            stacklevel=2,
        )
    elif mixed_again:
        warnings.warn(
            f"{out} holds an earlier run of the tasks {earlier}{remade}; pass --tasks "
            f"{' '.join(earlier)} to continue that run",
            stacklevel=2,
        )
    return dropped


def warn_of_unused_run_encoders(config: RunConfig) -> bool:
    """With ``pretrain_seed_per_policy`` and no policy seed 0, the run's own encoders (its
    seed's) are still pretrained, for the probes, predictions, keypoint drawings and
    transfer, yet no policy uses them: said, since the report's probes average them in and
    their pretraining is a whole one's cost. Returns whether it warned."""
    if not config.pretrain_seed_per_policy or 0 in config.policy_seeds:
        return False
    warnings.warn(
        f"pretrain_seed_per_policy with policy_seeds {list(config.policy_seeds)}: the run's own "
        f"encoders (pretraining seed {config.seed}) are pretrained for the probes, "
        "predictions and transfer, but no policy uses them; add policy seed 0 to use them",
        stacklevel=3,
    )
    return True


#: Run settings no stage keys on: changing them redoes nothing (collection workers give the
#: same episodes, tested bitwise).
UNSTAGED_SETTINGS = ("num_workers",)

#: The file an earlier run's config is kept in when a run with other settings replaces it.
PREVIOUS_CONFIG = "config.previous.json"


#: What the report is made of: set aside together into ``previous/`` once a run changes
#: something (an interrupted run left the earlier run's report beside stages it had
#: replaced). Together, so that the earlier report.md's relative links still reach its own
#: plots and media: renamed in place, ``report.previous.md`` showed the new run's pictures.
REPORT_FILES = ("results.json", "report.md", "report.html")
REPORT_DIRS = ("plots", "media")
PREVIOUS_REPORT = "previous"


def set_aside_previous_report(out: Path) -> None:
    """Move the earlier run's report (files and pictures) into ``out/previous/``, replacing
    an older one there, so that ``out`` holds a report only when it describes the stages
    there; the run writes its own when it finishes.

    The report is gathered in ``previous.partial/`` first and swapped in by renames; what an
    interruption left there is put back before anything else moves.
    """
    staging, previous = out / f"{PREVIOUS_REPORT}.partial", out / PREVIOUS_REPORT
    replaced = out / f"{PREVIOUS_REPORT}.replaced"
    if staging.is_dir():
        for item in staging.iterdir():
            if not (out / item.name).exists():
                os.replace(item, out / item.name)
        shutil.rmtree(staging)
    if replaced.is_dir():  # interrupted between the two renames below: the older one back
        if previous.exists():
            shutil.rmtree(replaced)
        else:
            os.replace(replaced, previous)
    if not any((out / name).is_file() for name in REPORT_FILES):
        return  # no report to keep (pictures alone are the next report's to overwrite)
    staging.mkdir()
    for name in (*REPORT_FILES, *REPORT_DIRS):
        if (out / name).exists():
            os.replace(out / name, staging / name)
    if previous.exists():
        os.replace(previous, replaced)
        os.replace(staging, previous)
        shutil.rmtree(replaced)
    else:
        os.replace(staging, previous)


def config_differs(out: Path, config: RunConfig) -> bool:
    """Whether ``out`` records a config other than ``config`` in any field, the tasks and
    the settings no stage depends on included."""
    path = out / "config.json"
    return path.is_file() and read_json_file(path) != json.loads(json.dumps(config.to_dict()))


def keep_previous_config(out: Path, config: RunConfig) -> None:
    """Keep ``out``'s recorded config as ``config.previous.json`` when ``config`` differs from
    it (``config_differs``; the warnings name only the changes that redo stages or drop
    tasks)."""
    if config_differs(out, config):
        atomic_write_json(out / PREVIOUS_CONFIG, read_json_file(out / "config.json"))


def warn_of_changed_settings(out: Path, config: RunConfig, replace: bool = True) -> list[str]:
    """Say when ``out`` holds an earlier run made with other settings, and return the fields.

    A stage whose settings changed is made again and its earlier result deleted, which is
    right for a deliberate ``--set`` but not after a preset's default moved under a user
    (``bc_augment_copies``, session 19), nor after a mistyped value: rerunning a finished run
    directory would replace its policies or its encoders' hour of pretraining. The message
    names each change and the command that continues the earlier run instead (its preset,
    and a ``--set`` for every field it set otherwise than that preset does today). A field an
    older run did not record counts as its default then, ``RunConfig``'s. Dropped tasks are
    ``warn_of_dropped_tasks``'s. Changes that only add stages (``presets.only_adds_stages``:
    RL or the held-out evaluation turned on) are said in one line, not warned of: the
    warning's advice to stop and continue the earlier run would be wrong for them.

    Args:
        replace: Whether the stages they change may be made again (``sslrobot run
            --replace``); if not, the warning says that the run stops, before deleting
            anything, at the first stage that would be (``StageRunner.replace``).
    """
    path = out / "config.json"
    if not path.is_file():
        return []
    defaults = _plain(RunConfig())
    recorded = read_json_file(path)
    earlier, now = {**defaults, **recorded}, _plain(config)
    skipped = ("preset", "encoders", "tasks", *UNSTAGED_SETTINGS)
    inert = inert_settings(earlier) & inert_settings(now)  # read by no stage, then or now
    changed = [
        key for key in now if key not in skipped and key not in inert and earlier[key] != now[key]
    ]
    described = ", ".join(f"{key} {earlier[key]!r} -> {now[key]!r}" for key in changed)
    if changed and all(only_adds_stages(key, earlier) for key in changed):
        print(
            f"[grow] {out} holds an earlier run; {described} only add stages to it: "
            "nothing it finished is made again",
            file=sys.stderr,
        )
    elif changed:
        assignments = _assignments(earlier, skip=UNSTAGED_SETTINGS)
        command = _run_command(earlier["preset"], assignments, out)
        # Said before anything is redone: stopped now (Ctrl-C), the earlier run is whole;
        # once this one has replaced stages, its command makes them again.
        continuation = (
            "To continue that run instead, stop this one now and run (stages it has replaced "
            f"by then are made again): {command}"
        )
        try:  # the command suggested must work: a hand-edited config may not
            make_run_config(earlier["preset"], **parse_overrides(assignments))
        except ValueError as error:
            continuation = f"This version cannot continue that run ({error})."
        unknown = sorted(set(recorded) - set(defaults))
        if unknown:
            continuation += f" Its config.json also holds fields this version ignores: {unknown}."
        if replace:
            effect = "the stages they change are made again (replacing the earlier ones)"
        else:
            effect = (
                "stages they add are made, and the run stops before deleting any finished one "
                "they change (--replace makes those again)"
            )
        warnings.warn(
            f"{out} holds an earlier run made with other settings ({described}): {effect}, "
            f"grown, or left out of the report; its config is kept as {PREVIOUS_CONFIG}. "
            f"{continuation}",
            stacklevel=2,
        )
    return changed


def _assignments(values: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """``KEY=VALUE`` for every field of ``values`` (a config as ``config.json`` holds it) that
    its preset sets otherwise today, but for ``skip``: the ``--set``s that remake it."""
    try:
        preset = _plain(make_run_config(values["preset"]))
    except ValueError:  # a preset this version no longer has
        preset = _plain(RunConfig())
    ignored = ("preset", "encoders", *skip)
    return [
        f"{key}={_set_value(values[key])}"
        for key in preset
        if key not in ignored and key in values and values[key] != preset[key]
    ]


def _run_command(preset: str, assignments: list[str], out: Path) -> str:
    """The ``sslrobot run`` command line of a preset with ``--set`` assignments."""
    keep = [f"--set {shlex.quote(assignment)}" for assignment in assignments]
    return " ".join(["sslrobot run --preset", preset, *keep, "--out", shlex.quote(str(out))])


def equivalent_command(config: RunConfig, out: Path) -> str:
    """The ``sslrobot run`` command that makes ``config`` into ``out``: what a report made by
    ``run_pipeline`` from Python records as its command (rather than a bare ``sslrobot run``,
    which would run the default preset elsewhere)."""
    return _run_command(config.preset, _assignments(_plain(config)), out)


def _plain(config: RunConfig) -> dict[str, Any]:
    """The config as ``config.json`` holds it (lists, not tuples)."""
    return json.loads(json.dumps(config.to_dict()))


def _set_value(value: Any) -> str:
    """``value`` as ``--set`` reads it back: lists comma-separated, JSON for the rest."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return value if isinstance(value, str) else json.dumps(value)


def _best_is_final(policy_dir: Path) -> bool:
    """Whether a policy's best checkpoint is its last validation check (the final weights).

    Raises:
        ValueError: naming the policy when it kept no best checkpoint (trained without
            validation), which a run with ``bc_val_episodes`` should never meet.
    """
    trained = read_json_file(policy_dir / "policy_config.json")
    best_step = (trained.get("best") or {}).get("step")
    if best_step is None:
        raise ValueError(
            f"{policy_dir} kept no best checkpoint (trained without validation); rerun its "
            "policy stage with bc_val_episodes > 0"
        )
    return best_step == trained["metrics"]["step"]


def warn_of_unswept_demo_counts(config: RunConfig) -> list[int]:
    """Warn when ``num_demos`` names counts that no task will run, and return them: every
    task runs the main count, only ``data_efficiency_task`` the others (``--set
    num_demos=10,25`` alone used to run 25 and drop 10 without a word)."""
    if config.data_efficiency_task is not None:
        return []
    unswept = sorted(set(config.num_demos) - {config.main_demos})
    if unswept:
        warnings.warn(
            f"num_demos {list(config.num_demos)}: every task runs {config.main_demos}; the "
            f"other counts {unswept} run on data_efficiency_task only, which is not set "
            "(--set data_efficiency_task=<task id>)",
            stacklevel=2,
        )
    return unswept


def warn_of_unmixed_transfer(config: RunConfig) -> bool:
    """Warn when the mixed-stream encoder would see one task's stream only (a transfer
    objective on a one-task run), and say so: it was reported beside the task's own encoder
    as if it had been pretrained on several."""
    if config.mixed_encoder_name is None or len(config.tasks) > 1:
        return False
    warnings.warn(
        f"transfer_objective {config.transfer_objective!r} with the one task "
        f"{config.tasks[0]}: {config.mixed_encoder_name} is pretrained on that task's stream "
        "alone (nothing to mix; pass two tasks or more to measure transfer)",
        stacklevel=2,
    )
    return True


def stage_provenance(device: str) -> dict[str, Any]:
    """What this invocation's stages are made with: the package versions, the machine (its
    CPU's instruction set sets the rounding of seeded CPU results) and the device type. Each
    finished stage keeps it, so a report can say which of its numbers came from elsewhere."""
    from sslrobot.evaluation.report import package_versions
    from sslrobot.utils.device import resolve_device
    from sslrobot.utils.versions import machine_description

    return {
        "package_versions": package_versions(),
        "machine": machine_description(),
        "device": resolve_device(device).type,
    }


class Pipeline:
    """Runs the stages of one ``RunConfig`` into ``out``.

    Args:
        config: what to run.
        out: the run directory (resumable: rerunning skips finished stages).
        device: torch device for pretraining, probes and policies (``auto`` picks CUDA/MPS/CPU).
        progress: show progress bars (the one line per stage event, ``[start]``, ``[done]``,
            ``[skip]``, goes to stderr either way: it is the run's log).
        replace: whether stages of an earlier run in ``out`` made with other settings of
            their own may be made again, deleting them (``StageRunner.replace``); if not, the
            run stops before the first such stage.
    """

    def __init__(
        self,
        config: RunConfig,
        out: Path,
        device: str = "auto",
        progress: bool = True,
        replace: bool = False,
    ) -> None:
        self.config = config
        self.out = Path(out)
        self.device = device
        self.progress = progress
        self.replace = replace
        self._bar: tqdm | None = None
        self._config_recorded = False
        self.runner = StageRunner(
            self.out,
            log=self._log,
            before_first_change=self._first_change,
            provenance=stage_provenance(device),
            replace=replace,
        )

    # --- orchestration -------------------------------------------------------------------
    def count_stages(self) -> int:
        """Stages this config runs (finished ones included), for the overall progress bar."""
        config = self.config
        evaluations_per_policy = 2 if config.heldout_eval else 1
        total = 0
        if config.mixed_encoder_name:
            total += 1 + len(config.tasks)  # one mixed-stream pretraining, a probe per task
        for task in config.tasks:
            total += 2 + 2 * (1 + len(config.objectives))  # data, pretrain + probe per encoder
            total += 2 * (config.none_probe_inits - 1)  # further random inits, probed
            total += 2 * len(config.objectives) * len(config.extra_pretrain_seeds)
            policies = len(config.encoder_names) * len(config.demo_counts(task))
            checkpoints = 2 if config.bc_val_episodes else 1
            total += (
                policies * len(config.policy_seeds) * (1 + evaluations_per_policy * checkpoints)
            )
            rl_policies = len(config.rl_encoder_names) * len(config.policy_seeds)
            total += rl_policies * (1 + evaluations_per_policy)
        return total

    def run(self) -> list[TaskArtifacts]:
        total = self.count_stages()
        self.out.mkdir(parents=True, exist_ok=True)
        warn_of_dropped_tasks(self.out, self.config)
        warn_of_changed_settings(self.out, self.config, replace=self.replace)
        warn_of_unswept_demo_counts(self.config)
        warn_of_unmixed_transfer(self.config)
        # No remaining-time estimate: stages last from a second (a probe) to most of an hour
        # (a pretraining), so one from the stages done so far was off by hours; each long
        # stage shows its own rate and estimate.
        with tqdm(
            total=total,
            desc="sslrobot run",
            unit="stage",
            disable=not self.progress,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} stages [{elapsed} elapsed]",
        ) as self._bar:
            collected = [self._collect_task(task) for task in self.config.tasks]
            mixed = self._pretrain_mixed(collected)
            learned = [self._learn_task(artifacts, mixed) for artifacts in collected]
        if not self._config_recorded and config_differs(self.out, self.config):
            # Every stage found done, and the report about to be rewritten for other settings
            # (fewer tasks, no held-out look): the earlier one is kept as at a change.
            set_aside_previous_report(self.out)
        self.record_config()  # every stage found done: the config is this run's all the same
        return learned

    def _first_change(self) -> None:
        """Before the first stage this run writes or deletes: the earlier report stops
        describing the directory (set aside), and this run's config becomes its record."""
        set_aside_previous_report(self.out)
        self.record_config()

    def record_config(self) -> None:
        """Write ``config.json`` (keeping a different earlier one as ``config.previous.json``)
        once this run changes something, or finishes: a run stopped after reading the
        changed-settings warning, before any stage was redone, leaves the record as it was."""
        if self._config_recorded:
            return
        keep_previous_config(self.out, self.config)
        atomic_write_json(self.out / "config.json", self.config.to_dict())
        self._config_recorded = True

    def _log(self, line: str) -> None:
        if self._bar is None:
            print(line, file=sys.stderr)
            return
        if line.startswith(("[done]", "[skip]")):
            self._bar.update(1)
        self._bar.set_postfix_str(line.split("] ", 1)[-1][:50])
        self._bar.write(line, file=sys.stderr)  # one line per stage event, bars or not

    def _stage(
        self,
        name: str,
        settings: dict[str, Any],
        fn: Callable[[Path, bool], Any],
        depends_on: tuple[StageResult, ...] = (),
        count: tuple[str, int] | None = None,
        resumes: bool = False,
    ) -> StageResult:
        return self.runner.run(name, settings, fn, depends_on, count, resumes)

    def _collect_task(self, env_id: str) -> TaskArtifacts:
        """The task's unlabeled stream and demonstrations."""
        config, slug = self.config, task_slug(env_id)
        artifacts = TaskArtifacts(env_id)
        artifacts.unlabeled = self._collect(
            f"{slug}/data/unlabeled",
            env_id,
            config.unlabeled_policy,
            config.num_unlabeled_episodes,
            config.seed + UNLABELED_SEED_BASE,
        )
        if config.look_targets:
            artifacts.unlabeled_twin = self._collect(
                f"{slug}/data/unlabeled_authored",
                env_id,
                config.unlabeled_policy,
                config.num_unlabeled_episodes,
                config.seed + UNLABELED_SEED_BASE,
                visual_preset="none",
            )
        artifacts.demos = self._collect(
            f"{slug}/data/demos",
            env_id,
            "expert",
            config.demo_episodes_collected,
            config.seed + DEMO_SEED_BASE,
            grows=True,
        )
        return artifacts

    def _pretrain_mixed(self, collected: list[TaskArtifacts]) -> StageResult | None:
        """One encoder pretrained on every task's unlabeled stream (transfer), if configured."""
        if self.config.transfer_objective is None:
            return None
        # In the package's order of the ids, not --tasks': the same tasks listed in another
        # order make the same encoder (and keep the finished one).
        from sslrobot.envs import ENV_IDS

        order = {env_id: index for index, env_id in enumerate(ENV_IDS)}
        ordered = sorted(collected, key=lambda a: (order.get(a.env_id, len(order)), a.env_id))
        streams = tuple(artifacts.unlabeled for artifacts in ordered)
        return self._pretrain("mixed", self.config.transfer_objective, streams)

    def _learn_task(self, artifacts: TaskArtifacts, mixed: StageResult | None) -> TaskArtifacts:
        """Pretrain and probe the task's encoders, then train and evaluate its policies."""
        config, env_id = self.config, artifacts.env_id
        slug = task_slug(env_id)
        twin = artifacts.unlabeled_twin
        for objective in ("none", *config.objectives):
            encoder = self._pretrain(
                slug, objective, (artifacts.unlabeled,), twin=twin, env_id=env_id
            )
            artifacts.pretrain[objective] = encoder
            artifacts.probe[objective] = self._probe(slug, objective, encoder, artifacts.unlabeled)
        for objective in config.objectives:
            for seed in config.extra_pretrain_seeds:
                name = seed_encoder_name(objective, seed)
                encoder = self._pretrain(
                    slug, objective, (artifacts.unlabeled,), seed, name, twin=twin, env_id=env_id
                )
                artifacts.seed_pretrain[objective, seed] = encoder
                probe = self._probe(slug, name, encoder, artifacts.unlabeled)
                artifacts.seed_probes.setdefault(objective, []).append(probe)
        for seed in range(config.seed + 1, config.seed + config.none_probe_inits):
            name = none_init_name(seed)
            encoder = self._pretrain(slug, "none", (artifacts.unlabeled,), seed=seed, name=name)
            artifacts.none_init_probes.append(self._probe(slug, name, encoder, artifacts.unlabeled))
        if mixed is not None and config.mixed_encoder_name:
            name = config.mixed_encoder_name
            artifacts.pretrain[name] = mixed
            artifacts.probe[name] = self._probe(slug, name, mixed, artifacts.unlabeled)
        for encoder_name in config.encoder_names:
            for num_demos in config.demo_counts(env_id):
                for seed in config.policy_seeds:
                    policy = self._train_policy(
                        slug, env_id, encoder_name, num_demos, seed, artifacts
                    )
                    artifacts.policies.append((encoder_name, num_demos, seed, policy))
                    presets = ("train", "heldout") if config.heldout_eval else ("train",)
                    for preset in presets:
                        # The smallest seed, not the first listed: reordering the seeds
                        # evaluated a seed again only to move its videos.
                        videos = config.num_videos if seed == min(config.policy_seeds) else 0
                        evaluation = self._evaluate(
                            slug, env_id, encoder_name, num_demos, seed, preset, videos, policy
                        )
                        artifacts.evaluations.append(
                            (encoder_name, num_demos, seed, preset, evaluation)
                        )
                        if config.bc_val_episodes:
                            best = self._evaluate(
                                slug, env_id, encoder_name, num_demos, seed, preset, 0, policy,
                                final=evaluation,
                            )  # fmt: skip
                            artifacts.evaluations.append(
                                (encoder_name, num_demos, seed, preset, best)
                            )
        for encoder_name in config.rl_encoder_names:
            for seed in config.policy_seeds:
                policy = self._train_rl(slug, env_id, encoder_name, seed, artifacts)
                for preset in ("train", "heldout") if config.heldout_eval else ("train",):
                    videos = config.num_videos if seed == min(config.policy_seeds) else 0
                    evaluation = self._evaluate(
                        slug, env_id, encoder_name, config.rl_num_demos, seed, preset, videos,
                        policy, kind="eval_rl",
                    )  # fmt: skip
                    artifacts.rl_evaluations.append((encoder_name, seed, preset, evaluation))
        return artifacts

    # --- stages --------------------------------------------------------------------------
    def _collect(
        self,
        name: str,
        env_id: str,
        policy: str,
        num_episodes: int,
        seed: int,
        grows: bool = False,
        visual_preset: str | None = None,
    ) -> StageResult:
        """A dataset of episodes ``seed + i``. With ``grows`` (demonstrations: policies read
        their first ``num_demos`` episodes and no validation ones from the end) more episodes
        extend it without rerunning what uses it; an unlabeled stream is pretrained on whole,
        so its size stays in its hash. ``visual_preset``: the envs' look (None: their own,
        ``train``)."""
        from sslrobot.data import CollectConfig, collect

        settings = {
            "env_id": env_id,
            "policy": policy,
            "seed": seed,
            "image_size": self.config.image_size,
        }
        if not grows:
            settings["num_episodes"] = num_episodes  # else the runner keys on it (count)
        if visual_preset is not None:  # only then: the other stages keep their keys
            settings["visual_preset"] = visual_preset

        def run(stage_dir: Path, resume: bool) -> dict[str, Any]:
            collect(
                CollectConfig(
                    env_id=env_id,
                    out=stage_dir / "dataset",
                    policy=policy,
                    num_episodes=num_episodes,
                    num_envs=self.config.num_workers,
                    seed=seed,
                    resume=resume and (stage_dir / "dataset").exists(),
                    image_size=self.config.image_size,
                    visual_preset=visual_preset,
                ),
                progress=self.progress,
            )
            return {"dataset": "dataset"}

        count = ("num_episodes", num_episodes) if grows else None
        return self._stage(name, settings, run, count=count, resumes=True)

    def _pretrain(
        self,
        slug: str,
        objective: str,
        data: tuple[StageResult, ...],
        seed: int | None = None,
        name: str | None = None,
        twin: StageResult | None = None,
        env_id: str | None = None,
    ) -> StageResult:
        """Pretrain ``objective`` on the unlabeled streams ``data`` (several: mixed), in the
        stage ``<slug>/pretrain/<name>`` (``name``: the objective's by default) from ``seed``
        (the run's by default); with ``twin``, a look twin of the one stream, its targets come
        from it where the objective has any (``PretrainConfig.look_target_data``). ``env_id``:
        the one stream's task, where ``RunConfig.transport_weight`` may add transport."""
        from sslrobot.models.encoder import encoder_config_for
        from sslrobot.pretraining import PretrainConfig
        from sslrobot.pretraining.config import LOOK_TARGET_TERMS
        from sslrobot.pretraining.launch import pretrain_in_processes
        from sslrobot.pretraining.objectives import parse_objective

        seed = self.config.seed if seed is None else seed

        steps = 0 if objective == "none" else self.config.pretrain_steps
        trained = self.config.transport_objective(objective, env_id)
        if not (steps and set(parse_objective(trained)) & LOOK_TARGET_TERMS):
            twin = None  # a random init, or an objective without targets (inverse)
        arch = self.config.encoder_arch
        settings = {
            "encoder_arch": arch,
            "objective": objective,
            "steps": steps,
            "seed": seed,
        }
        if steps:  # a random init is the same whatever the batch and horizon it never trains on
            settings["batch_size"] = self.config.pretrain_batch_size
            settings["num_steps_ahead"] = self.config.num_steps_ahead

        # Every pretraining of the run holds out the same episodes (those of the run's seed),
        # so the probes score all encoders, extra seeds too, on episodes none trained on.
        if seed != self.config.seed and steps:
            settings["split_seed"] = self.config.seed
        processes = self._pretrain_processes(steps)
        if steps and self.config.pretrain_processes > 1:
            # The setting, not the device's effective count (one process on an accelerator):
            # the device is no stage's key, so a run continued on another machine keeps its
            # finished stages rather than redoing them as "changed" (numerics differ slightly
            # between devices and process counts alike; each encoder records its own).
            settings["processes"] = self.config.pretrain_processes
        if twin is not None:  # only then: the other pretrainings keep their keys
            settings["look_targets"] = "authored"
        transport = {}
        if trained != objective:  # likewise: a run without transport keeps its stages
            transport = {
                "transport_pairs": "batch",
                "transport_keypoints": self.config.transport_keypoints,
            }
            settings.update(trained_objective=trained, **transport)

        def run(stage_dir: Path, resume: bool) -> dict[str, Any]:
            out = stage_dir / "encoder"
            if steps == 0 and out.exists():
                # A random init has no checkpoints to resume from: one killed after writing
                # its weights was refused as "finished" on every rerun; write it again.
                shutil.rmtree(out)
            if resume and _trained_in_other_processes(out, processes):
                # Interrupted on a device that ran another number of processes: its data
                # order cannot continue here, so the pretraining starts again.
                self._log(f"[restart] {stage_dir.name}: interrupted in another process count")
                shutil.rmtree(out)
            pretrain_in_processes(
                PretrainConfig(
                    out=str(out),
                    data=tuple(str(stream.path / "dataset") for stream in data),
                    look_target_data=None if twin is None else str(twin.path / "dataset"),
                    objective=trained,
                    encoder=encoder_config_for(arch, self.config.image_size),
                    steps=steps,
                    batch_size=self.config.pretrain_batch_size,
                    num_steps_ahead=self.config.num_steps_ahead,
                    seed=seed,
                    split_seed=self.config.seed,
                    device=self.device,
                    checkpoint_every=max(1, steps // 4) if steps else 0,
                    image_every=max(1, steps // 2) if steps else 0,
                    log_every=max(1, min(50, steps // 10)) if steps else 50,
                    resume=resume and steps > 0 and out.exists(),
                    **transport,
                ),
                processes,
                progress=self.progress,
            )
            return {"encoder": "encoder"}

        stage_name = f"{slug}/pretrain/{name or objective}"
        # A pretraining continues from its checkpoint; a random init is written again.
        upstream = data if twin is None else (*data, twin)
        return self._stage(stage_name, settings, run, depends_on=upstream, resumes=steps > 0)

    def _pretrain_processes(self, steps: int) -> int:
        """Data-parallel processes for one pretraining: ``pretrain_processes`` on a CPU device
        (an accelerator runs one process; several GPUs: ``torchrun`` per encoder)."""
        from sslrobot.utils.device import resolve_device

        if steps == 0 or resolve_device(self.device).type != "cpu":
            return 1
        return self.config.pretrain_processes

    def _probe(
        self, slug: str, objective: str, encoder: StageResult, data: StageResult
    ) -> StageResult:
        from sslrobot.evaluation.probe import ProbeConfig, run_probe
        from sslrobot.pretraining import PretrainConfig

        # scoring 2: view variables scored in view where the env gives conditions (session 14);
        # 3: predictions scored on the world model's own held-out episodes (session 15); 4:
        # probes scored on the pretrainings' held-out episodes, not 20% of which half were
        # pretrained on (session 17). A new value reruns the probes of finished runs, which
        # are cheap, and nothing else.
        val_fraction = PretrainConfig.val_fraction
        settings = {"val_fraction": val_fraction, "seed": self.config.seed, "scoring": 4}

        def run(stage_dir: Path, resume: bool) -> dict[str, Any]:
            return run_probe(
                ProbeConfig(
                    encoder=str(encoder.path / "encoder"),
                    data=str(data.path / "dataset"),
                    out=str(stage_dir / "probe.json"),
                    val_fraction=val_fraction,
                    seed=self.config.seed,
                    device=self.device,
                    horizon=self.config.num_steps_ahead,
                )
            )

        return self._stage(f"{slug}/probe/{objective}", settings, run, depends_on=(encoder, data))

    def _encoder_source(
        self, encoder_name: str, seed: int, artifacts: TaskArtifacts
    ) -> tuple[str, tuple[StageResult, ...]]:
        """``train-policy --encoder`` for ``encoder_name`` at policy seed ``seed``, and the
        pretraining stage it reads (none for a baseline the policy learner builds)."""
        if encoder_name in artifacts.pretrain and encoder_name != "none":
            source = artifacts.seed_pretrain.get(
                (encoder_name, self.config.pretrain_seed(seed)), artifacts.pretrain[encoder_name]
            )
            return str(source.path / "encoder"), (source,)
        return encoder_name, ()  # none / scratch / state: built by the policy learner

    def _train_policy(
        self,
        slug: str,
        env_id: str,
        encoder_name: str,
        num_demos: int,
        seed: int,
        artifacts: TaskArtifacts,
    ) -> StageResult:
        from sslrobot.policy import PolicyConfig
        from sslrobot.policy.checkpoint import can_resume

        encoder_arg, pretrained = self._encoder_source(encoder_name, seed, artifacts)
        depends = (artifacts.demos, *pretrained)
        settings = {
            "encoder": encoder_name,
            "num_demos": num_demos,
            "seed": seed,
            "steps": self.config.bc_steps,
            "batch_size": self.config.bc_batch_size,
            "image_size": self.config.image_size,
        }
        if encoder_name != "state":  # the oracle reads no pixels: any architecture is its
            settings["encoder_arch"] = self.config.encoder_arch
        copies = 0 if encoder_name in ("scratch", "state") else self.config.bc_augment_copies
        color = self.config.bc_augment_color if copies else PolicyConfig.augment_color
        if copies:  # absent when off: the policies of earlier runs keep their keys
            settings["augment_copies"] = copies
            if color != PolicyConfig.augment_color:  # likewise
                settings["augment_color"] = color
        context = "none" if encoder_name == "scratch" else self.config.bc_context
        if context != "none":  # likewise
            settings["context"] = context
        if context == "auto":
            settings["select_episodes"] = self.config.bc_select_episodes
        if self.config.bc_val_episodes:  # likewise
            settings["val_episodes"] = self.config.bc_val_episodes
        demo_offset = self.config.demo_offset(seed)
        if demo_offset:  # likewise
            settings["demo_offset"] = demo_offset

        pixels_trained = encoder_name in ("scratch", "state")
        arch = PolicyConfig.encoder_arch if encoder_name == "state" else self.config.encoder_arch

        def run(stage_dir: Path, resume: bool) -> dict[str, Any]:
            config = PolicyConfig(
                env_id=env_id,
                encoder=encoder_arg,
                algo="bc",
                out=stage_dir / "policy",
                seed=seed,
                demos=artifacts.demos.path / "dataset",
                num_demos=num_demos,
                demo_offset=demo_offset,
                steps=self.config.bc_steps,
                batch_size=self.config.bc_batch_size,
                image_size=self.config.image_size,
                # Frozen pixel encoders only: scratch and the oracle would ignore these.
                cache_dir=None if pixels_trained else self.out / "feature_cache",
                device=self.device,
                progress=self.progress,
                encoder_arch=arch,
                augment_copies=copies,
                augment_color=color,
                context="none" if context == "auto" else context,
                val_episodes=self.config.bc_val_episodes,
                overwrite=True,  # the stage runner decides what to redo in its directories
                resume=resume and can_resume(stage_dir / "policy"),
            )
            if context == "auto":
                self._choose_context(name, stage_dir, config, resume)
            else:
                self._train_or_restart(name, config)
            return {"policy": "policy"}

        name = f"{slug}/policy/{encoder_name}/demos{num_demos}/seed{seed}"
        return self._stage(name, settings, run, depends_on=depends, resumes=True)

    def _train_rl(
        self, slug: str, env_id: str, encoder_name: str, seed: int, artifacts: TaskArtifacts
    ) -> StageResult:
        """SAC on the frozen ``encoder_name`` (or the state) for ``rl_steps`` environment
        steps, with ``rl_demo_share`` of every batch from the task's demonstrations and its
        critics on ``rl_critic_input`` (the oracle's read the state anyway); an interrupted
        stage continues from its last resume checkpoint."""
        from sslrobot.policy import PolicyConfig
        from sslrobot.policy.checkpoint import can_resume

        config = self.config
        encoder_arg, pretrained = self._encoder_source(encoder_name, seed, artifacts)
        num_demos = config.rl_num_demos
        demo_offset = config.demo_offset(seed) if num_demos else 0
        depends = (*((artifacts.demos,) if num_demos else ()), *pretrained)
        settings: dict[str, Any] = {
            "encoder": encoder_name,
            "algo": "sac",
            "steps": config.rl_steps,
            "seed": seed,
            "num_demos": num_demos,
            "demo_share": config.rl_demo_share if num_demos else 0.0,
            "image_size": config.image_size,
        }
        if encoder_name != "state":  # the oracle reads no pixels: any architecture is its
            settings["encoder_arch"] = config.encoder_arch
        # Named only when on, so that the stages made before the setting stay done.
        critic_input = "policy" if encoder_name == "state" else config.rl_critic_input
        if critic_input != "policy":
            settings["critic_input"] = critic_input
        if demo_offset:
            settings["demo_offset"] = demo_offset
        arch = PolicyConfig.encoder_arch if encoder_name == "state" else config.encoder_arch

        def run(stage_dir: Path, resume: bool) -> dict[str, Any]:
            policy = PolicyConfig(
                env_id=env_id,
                encoder=encoder_arg,
                algo="rl",
                out=stage_dir / "policy",
                seed=seed,
                demos=artifacts.demos.path / "dataset" if num_demos else None,
                num_demos=num_demos or None,
                demo_offset=demo_offset,
                rl_demo_share=settings["demo_share"],
                rl_critic_input=critic_input,
                steps=config.rl_steps,
                image_size=config.image_size,
                device=self.device,
                progress=self.progress,
                encoder_arch=arch,
                overwrite=True,  # the stage runner decides what to redo in its directories
                resume=resume and can_resume(stage_dir / "policy"),
            )
            self._train_or_restart(name, policy)
            return {"policy": "policy"}

        name = f"{slug}/rl/{encoder_name}/seed{seed}"
        return self._stage(name, settings, run, depends_on=depends, resumes=True)

    def _choose_context(
        self, name: str, stage_dir: Path, config: PolicyConfig, resume: bool
    ) -> None:
        """``bc_context="auto"``: train the policy with each context under
        ``candidates/<context>/``, score each on ``bc_select_episodes`` validation episodes
        (reset seeds from ``SELECTION_SEED_BASE``; ties keep the plain head), copy the better
        one to ``policy/`` and record the choice in ``context_choice.json``."""
        from sslrobot.evaluation.evaluate import evaluate
        from sslrobot.policy.checkpoint import can_resume, read_policy_config, write_policy_config
        from sslrobot.policy.config import SELECTION_SEED_BASE

        episodes = self.config.bc_select_episodes
        scores = {}
        for option in POLICY_CONTEXTS:
            out = stage_dir / "candidates" / option / "policy"
            candidate = replace(config, context=option, out=out, resume=resume and can_resume(out))
            self._train_or_restart(f"{name} ({option})", candidate)
            result = evaluate(
                out, num_episodes=episodes, seed=SELECTION_SEED_BASE, device=self.device
            )
            scores[option] = result["success_rate"]
        chosen = max(POLICY_CONTEXTS, key=lambda option: scores[option])  # ties: the first
        choice = {
            "chosen": chosen,
            "success": scores,
            "episodes": episodes,
            "seed": SELECTION_SEED_BASE,
        }
        target, staged = stage_dir / "policy", stage_dir / "policy.copying"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(stage_dir / "candidates" / chosen / "policy", staged)
        # The seeds of one configuration may choose differently: their records say "auto",
        # what was asked (and what evaluation groups them by), beside what each kept.
        record = read_policy_config(staged)
        record["train_config"]["context"] = "auto"
        write_policy_config(staged, {**record, "context_choice": choice})
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
        atomic_write_json(stage_dir / CONTEXT_CHOICE, choice)

    def _train_or_restart(self, name: str, config: PolicyConfig) -> None:
        """Train the policy ``config`` describes; a resume its checkpoint refuses (e.g. the
        run directory moved: its paths changed) trains it anew instead."""
        from sslrobot.policy import train_policy
        from sslrobot.policy.checkpoint import ResumeError

        try:
            train_policy(config)
        except ResumeError as error:
            self._log(f"[redo] {name}: cannot resume ({error}); training it anew")
            train_policy(replace(config, resume=False))

    def _evaluate(
        self,
        slug: str,
        env_id: str,
        encoder_name: str,
        num_demos: int,
        seed: int,
        preset: str,
        num_videos: int,
        policy: StageResult,
        final: StageResult | None = None,
        kind: str = "eval",
    ) -> StageResult:
        """The policy evaluated on the run's seeded episodes: its final checkpoint, or, given
        the ``final`` checkpoint's evaluation, its best one (by online validation; no videos).
        ``kind``: the stage's directory under the task (``eval_rl`` for online RL's).

        When validation chose the last check, the best checkpoint holds the final weights, and
        evaluation is deterministic for a seed: the final's record is taken, relabelled,
        instead of rolling the same episodes out again.
        """
        from sslrobot.evaluation.evaluate import evaluate

        checkpoint = "final" if final is None else "best"
        settings: dict[str, Any] = {
            "episodes": self.config.eval_episodes,
            "eval_seed": self.config.seed + EVAL_SEED_BASE,
            "visual_preset": preset,
            "num_videos": num_videos,
        }
        if final is not None:  # absent for the final one: earlier runs keep their keys
            settings["checkpoint"] = checkpoint

        def run(stage_dir: Path, resume: bool) -> dict[str, Any]:
            if final is not None and _best_is_final(policy.path / "policy"):
                record = read_json_file(final.path / "result.json")
                record.update(checkpoint="best", same_weights_as="final", videos=[])
                atomic_write_json(stage_dir / "result.json", record)
            else:
                record = evaluate(
                    policy.path / "policy",
                    env_id=env_id,
                    num_episodes=self.config.eval_episodes,
                    seed=self.config.seed + EVAL_SEED_BASE,
                    visual_preset=preset,
                    out_json=stage_dir / "result.json",
                    num_videos=num_videos,
                    checkpoint=checkpoint,
                    device=self.device,
                    progress=self.progress,
                )
            return {"result": "result.json", "success_rate": record["success_rate"]}

        suffix = "" if final is None else "-best"
        name = f"{slug}/{kind}/{encoder_name}/demos{num_demos}/seed{seed}/{preset}{suffix}"
        # The best's record may be the final's, made with the same settings (episodes, seed,
        # look) just before; depending on it would redo best rollouts when only the final's
        # videos changed.
        return self._stage(name, settings, run, depends_on=(policy,))


def run_pipeline(
    config: RunConfig,
    out: str | os.PathLike[str],
    device: str = "auto",
    progress: bool = True,
    command: str | None = None,
    replace: bool = False,
) -> Path:
    """Run every stage of ``config`` into ``out`` and write the report; returns its HTML path.

    Without ``replace``, an earlier run in ``out`` made with other settings is extended by the
    stages they add (seeds, tasks, the held-out look) and the run stops, before deleting it,
    at the first finished stage they change."""
    from sslrobot.pipeline.report_builder import build_report
    from sslrobot.utils.artifacts import refuse_other_artifact
    from sslrobot.utils.device import resolve_device

    start = time.perf_counter()
    resolve_device(device)  # a missing device fails here, not after the first collection
    warn_of_unused_run_encoders(config)
    out = Path(out)
    # A file, a path under one, or a dataset, encoder or policy given as --out by mistake:
    # refused by name, never mixed into.
    refuse_other_artifact(out, "a run (`sslrobot run --out`)")
    out.mkdir(parents=True, exist_ok=True)
    # One run per directory at a time: another with other settings would redo, under this
    # one, the stages they share (the stage cache keys on settings).
    busy = f"another `sslrobot run` is using {out}; wait for it or choose another --out"
    with exclusive_lock(out / RUN_LOCK, busy), noting_interrupts():
        # What an earlier run killed mid-write left (the lock keeps other writers out).
        left = remove_interrupted_writes(out)
        if left:
            print(
                f"[cleanup] removed {len(left)} temp files of writes an interrupted run cut "
                f"short (e.g. {left[0]})",
                file=sys.stderr,
            )
        pipeline = Pipeline(config, out, device=device, progress=progress, replace=replace)
        artifacts = pipeline.run()
        stop_if_interrupted()  # a Ctrl-C swallowed during the last stage
        return build_report(
            config,
            out,
            artifacts,
            stage_results=pipeline.runner.results,
            command=command or equivalent_command(config, out),
            wall_time_s=time.perf_counter() - start,
            provenance=pipeline.runner.provenance,
        )
