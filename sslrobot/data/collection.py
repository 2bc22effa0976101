"""`collect`: fill a dataset directory with episodes, in parallel, crash-safe and resumable.

Workers own whole episodes: each worker process keeps one env and writes complete episodes,
which scales with cores (per-step IPC of a vector env does not pay at these step times, see
issue 3). Episode ``i`` always uses seed ``base_seed + i``, so the dataset does not depend on
how many workers or machines (``shard``) produced it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from sslrobot.data import frames
from sslrobot.data.collect_config import CollectConfig, env_accepts_kwarg, find_env_spec
from sslrobot.data.episode_runner import (
    EpisodeRunner,
    RunSpec,
    die_with_parent,
    env_error,
    make_env,
    run_episode_in_worker,
    split_observation,
)
from sslrobot.data.fileio import write_error
from sslrobot.data.frames import check_frame, get_frame, has_pixel_observation
from sslrobot.data.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    check_same_dataset,
    count_episodes,
    package_versions,
    read_manifest,
    utc_now,
    write_manifest,
)
from sslrobot.data.policies import default_expert, make_policy, uses_expert
from sslrobot.data.storage import (
    ARRAY_DTYPES,
    EPISODES_DIR,
    EVAL_ONLY_ARRAYS,
    FRAME_ARRAYS,
    TMP_PREFIX,
    check_episode,
    episode_path,
    list_episode_ids,
    list_temp_paths,
    remove_path,
    set_aside,
    temp_dir_episode_id,
)
from sslrobot.utils.artifacts import DATASET, refuse_other_artifact
from sslrobot.utils.io import exclusive_lock, fsync_dir, make_dirs, temp_prefix

LOCK_DIR = ".locks"
EVAL_ONLY_NOTE = (
    "state is the privileged simulator state (object/goal positions); it is for evaluation "
    "(probes, experts) only and must never be an input of a learned policy or encoder"
)


def _run_spec(config: CollectConfig) -> RunSpec:
    return RunSpec(
        root=str(config.out),
        env_id=config.env_id,
        make_kwargs=config.make_kwargs(),
        max_episode_steps=config.max_episode_steps,
        policy=config.policy,
        noise=float(config.noise),
        noise_correlation=float(config.noise_correlation),
        mixture=config.mixture_fractions,
        base_seed=config.seed,
        shard=f"{config.shard[0]}/{config.shard[1]}",
        fsync=config.fsync,
    )


def _probe_env(env: gym.Env, spec: RunSpec) -> dict[str, Any]:
    """Check that the env can be recorded and describe it for the manifest.

    Raises:
        ValueError: no time limit, a non-Box action space, no pixels, no expert for a policy
            that needs one, or the env fails to reset or render (a gymnasium error such as a
            missing dependency).
        DegenerateFramesError: the first frame is a single colour (broken renderer).
    """
    env_id = spec.env_id
    max_steps = env.spec.max_episode_steps if env.spec is not None else None
    if max_steps is None:
        raise ValueError(
            f"{env_id} has no time limit, so episodes may never end; pass --max-episode-steps"
        )
    space = env.action_space
    if not isinstance(space, gym.spaces.Box) or not np.all(
        np.isfinite(space.low) & np.isfinite(space.high)
    ):
        raise ValueError(f"{env_id}: only bounded Box action spaces can be collected, got {space}")
    from_obs = has_pixel_observation(env.observation_space)
    if not from_obs and env.render_mode != "rgb_array":
        # The advice to pass render_mode only where the constructor takes it: one without
        # the argument then refused the kwarg, a second error instead of the way on.
        takes_it = env.spec is not None and env_accepts_kwarg(env.spec, "render_mode", True)
        advice = (
            """pass --env-kwargs '{"render_mode": "rgb_array"}'"""
            if takes_it
            else "its constructor takes no render_mode: give it a Dict observation with "
            "'pixels' (uint8 H x W x 3), or a render_mode argument"
        )
        raise ValueError(
            f"{env_id} has neither a Dict observation with 'pixels' nor render_mode='rgb_array' "
            f"(render_mode is {env.render_mode!r}); {advice}"
        )
    try:  # some envs import their renderer (e.g. pygame) only at the first reset or render
        obs, info = env.reset(seed=spec.base_seed)
        frame = get_frame(env, obs, from_obs)
    except gym.error.Error as error:
        raise env_error(env_id, "be reset and rendered", error) from error
    check_frame(frame, env_id, 0, 0)
    policy = make_policy(spec.policy, spec.noise, spec.noise_correlation, spec.mixture)
    if uses_expert(policy):
        try:
            default_expert()(env)
        except (ValueError, AttributeError, NotImplementedError) as error:
            raise ValueError(f"policy {spec.policy!r} needs a scripted expert: {error}") from error
    proprio, state = split_observation(obs, info)
    state_names = getattr(env.unwrapped, "state_names", None)
    view_state_names = getattr(env.unwrapped, "view_state_names", None)
    view_conditions = getattr(env.unwrapped, "view_conditions", None)
    return {
        "max_episode_steps": int(max_steps),
        "frame_shape": list(frame.shape),
        "frame_source": 'obs["pixels"]' if from_obs else "env.render()",
        "proprio_dim": int(proprio.shape[0]),
        "action_dim": int(np.prod(space.shape)),
        "action_low": space.low.astype(float).reshape(-1).tolist(),
        "action_high": space.high.astype(float).reshape(-1).tolist(),
        "state_dim": None if state is None else int(state.shape[0]),
        "state_source": None
        if state is None
        else ('info["state"]' if "state" in info else "observation"),
        "state_names": list(state_names) if state_names is not None else None,
        "view_state_names": list(view_state_names) if view_state_names is not None else None,
        "view_conditions": [list(condition) for condition in view_conditions]
        if view_conditions is not None
        else None,
    }


def entry_point_name(entry_point: Any) -> str:
    """``"module:Name"`` of a gymnasium entry point; a callable's ``str`` holds its memory
    address, which differs in every process, so resume compared it and always refused."""
    if callable(entry_point):
        return f"{entry_point.__module__}:{entry_point.__qualname__}"
    return str(entry_point)


def _new_manifest(config: CollectConfig, spec: RunSpec, probe: dict[str, Any]) -> dict[str, Any]:
    height, width = probe["frame_shape"][:2]
    if (height, width) != (config.image_size, config.image_size):
        # The manifest's image_size is what every later stage trusts (encoders, policies).
        raise ValueError(
            f"{config.env_id} renders {height}x{width} frames with the arguments "
            f"{spec.make_kwargs}, not the {config.image_size}x{config.image_size} asked for "
            "(--image-size): pass the size it renders with --image-size, or arguments that "
            "make it render the size asked for with --env-kwargs"
        )
    env_spec = find_env_spec(config.env_id)
    policy = make_policy(spec.policy, spec.noise, spec.noise_correlation, spec.mixture)
    arrays = {
        name: {
            "dtype": dtype.str,
            "rows": "L+1 (frames)" if name in FRAME_ARRAYS else "L (steps)",
            "eval_only": name in EVAL_ONLY_ARRAYS,
        }
        for name, dtype in ARRAY_DTYPES.items()
        if name != "state" or probe["state_dim"] is not None
    }
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "env_id": config.env_id,
        "env_kwargs": spec.make_kwargs,
        "max_episode_steps": probe.pop("max_episode_steps"),
        "env_spec": {
            "id": env_spec.id,
            "version": env_spec.version,
            "entry_point": entry_point_name(env_spec.entry_point),
        },
        "policy": {"name": policy.name, "params": policy.params()},
        "base_seed": config.seed,
        "seeding": "episode i is reset with seed base_seed + i; policy noise derives from it",
        "image_size": config.image_size,
        **probe,
        "arrays": arrays,
        "eval_only": [k for k in EVAL_ONLY_ARRAYS if k in arrays],
        "eval_only_note": EVAL_ONLY_NOTE,
        "num_episodes_requested": config.num_episodes,
        "versions": package_versions(),
        "created": utc_now(),
    }
    return json.loads(json.dumps(manifest))  # normalise (tuples -> lists) for comparisons


def _prepare_root(config: CollectConfig, manifest: dict[str, Any]) -> dict[str, Any]:
    """Check the dataset directory (under ``_manifest_lock``); return the manifest to keep
    (old ``created``)."""
    root = config.out
    if (root / MANIFEST_NAME).exists():
        existing = read_manifest(root)
        # an older dataset grows in its own format (readers take every supported version)
        manifest = {**manifest, "format_version": existing["format_version"]}
        check_same_dataset(existing, manifest, root)
        manifest = {**manifest, "created": existing.get("created", manifest["created"])}
        requested = existing.get("num_episodes_requested")
        if config.resume and isinstance(requested, int) and requested > config.num_episodes:
            warnings.warn(
                f"{root} was asked for {requested} episodes earlier, this run for "
                f"{config.num_episodes}: episodes past {config.num_episodes - 1} that exist stay "
                f"in the dataset, and the manifest now records {config.num_episodes} requested",
                stacklevel=3,
            )
        earlier = list(existing.get("versions_earlier", []))
        previous = existing.get("versions")
        if previous != manifest["versions"] and previous not in earlier:
            earlier.append(previous)
        if earlier:  # what earlier runs into this directory were made with
            manifest["versions_earlier"] = earlier
    else:
        _refuse_foreign_directory(root)
    mine = set(config.episode_ids())
    done = [i for i in list_episode_ids(root) if i in mine]
    if done and not config.resume:
        shard = f"shard {config.shard[0]}/{config.shard[1]}"
        if len(done) == len(mine):  # "continue to 5 episodes" when 5 are there said nothing
            raise ValueError(
                f"{root} already holds all {len(done)} episodes of {shard} (ids "
                f"{done[0]}..{done[-1]}): nothing to collect; choose another --out, or grow it "
                "with more --episodes and --resume"
            )
        raise ValueError(
            f"{root} already holds {len(done)} episodes of {shard} "
            f"(ids {done[0]}..{done[-1]}); pass --resume to continue to {config.num_episodes} "
            "episodes, or choose another --out"
        )
    return manifest


def _refuse_foreign_directory(root: Path) -> None:
    """Refuse a non-empty ``--out`` without a manifest (someone else's files), checked before
    this run creates anything there (a refused run used to leave its lock folder behind)."""
    if not root.is_dir() or (root / MANIFEST_NAME).exists():
        return
    ours = (LOCK_DIR, TMP_PREFIX, temp_prefix(MANIFEST_NAME))  # locks, a killed run's temps
    if any(not p.name.startswith(ours) for p in root.iterdir()):
        raise ValueError(
            f"{root} is not empty and has no {MANIFEST_NAME}; choose an empty or new --out"
        )


@contextlib.contextmanager
def _manifest_lock(root: Path) -> Iterator[None]:
    """Create ``root`` and hold its dataset-wide lock (waiting for it) while the settings are
    checked against the manifest and the manifest is written, so that two collectors started
    together cannot each find the directory empty and fill it with different datasets."""
    path = root / LOCK_DIR / "manifest.lock"
    with contextlib.ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive_lock(path, "unused", wait=True))
        except OSError as error:
            raise write_error(path, "create lock file", error) from error
        yield


def _write_counts(root: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest with the episodes on disk now, counted under the dataset-wide lock:
    shards that finish together each count after the other's last write, so the manifest
    ends with every shard's episodes counted, not those of whichever counted first."""
    with _manifest_lock(root):
        write_manifest(root, {**manifest, "updated": utc_now(), "counts": count_episodes(root)})


@contextlib.contextmanager
def _shard_lock(root: Path, shard: tuple[int, int]) -> Iterator[None]:
    """Hold an exclusive lock on this shard of ``root`` (released by the OS if we are killed),
    refusing while a collector with another shard layout is writing (its shards overlap ours,
    and each cleans up its own episodes' in-flight files)."""
    lock_dir = root / LOCK_DIR
    path = lock_dir / f"shard-{shard[0]}-of-{shard[1]}.lock"
    busy = (
        f"another collector is writing shard {shard[0]}/{shard[1]} into {root}; wait for it to "
        "finish or collect another shard"
    )
    with contextlib.ExitStack() as stack:
        try:
            lock_dir.mkdir(exist_ok=True)
            stack.enter_context(exclusive_lock(path, busy))
            for other in sorted(lock_dir.glob("shard-*-of-*.lock")):
                if other.name.endswith(f"-of-{shard[1]}.lock"):
                    continue
                layout = other.stem.split("-of-")[-1]
                message = (
                    f"another collector is writing {root} in {layout} shards ({other.name}); "
                    f"collect with the same --shard layout (I {layout}), or wait for it"
                )
                with exclusive_lock(other, message):
                    pass
        except BlockingIOError:
            raise
        except OSError as error:
            raise write_error(path, "create lock file", error) from error
        yield


def _unfinished_marker(root: Path, shard: tuple[int, int]) -> Path:
    """The file that says this shard's collection started and has not finished: created at a
    run's start (kept as it is if an interrupted run left it, so its mtime is when the first
    unfinished run began), removed once the run has written its final manifest."""
    return root / LOCK_DIR / f"shard-{shard[0]}-of-{shard[1]}.unfinished"


def _unfinished_since(root: Path) -> float:
    """When the earliest unfinished run into ``root`` began, by the markers of every shard
    layout (a resume may use another layout than the interrupted run; another shard's marker
    only costs checksums of episodes that are fine), or the manifest's last write when no
    marker says one was (a dataset collected before the marker existed: a run that finished
    rewrote the manifest after its last episode). Markers are per shard, so another shard's
    writes cannot move them, and an interrupted resume keeps the first run's."""
    times = []
    for marker in (root / LOCK_DIR).glob("shard-*-of-*.unfinished"):
        with contextlib.suppress(FileNotFoundError):  # a run that finished meanwhile
            times.append(marker.stat().st_mtime)
    if times:
        return min(times)
    manifest = root / MANIFEST_NAME
    return manifest.stat().st_mtime if manifest.exists() else 0.0


def _set_aside_broken(root: Path, episode_ids: list[int], unfinished_since: float) -> None:
    """Move aside this shard's committed episodes that fail the structural check.

    Without ``fsync``, a power loss (not a SIGKILL) can leave a committed episode with missing
    or zeroed data; resuming collects such an episode again and keeps the broken copy for
    inspection. Episodes written since ``unfinished_since`` (``_unfinished_since``: an
    interrupted run's) are also checked byte for byte against their checksums, which a zeroed
    block only fails.
    """
    for episode_id in episode_ids:
        path = episode_path(root, episode_id)
        recent = path.stat().st_mtime >= unfinished_since
        problems = check_episode(path, checksums=recent)
        if problems:
            target = set_aside(root, episode_id)
            warnings.warn(
                f"episode {episode_id} in {root} is incomplete or damaged ({problems[0]}); "
                f"moved it to {target} and collecting it again",
                stacklevel=3,
            )


def _remove_stale_temps(root: Path, shard: tuple[int, int]) -> None:
    """Delete in-flight leftovers of this shard's episodes (we hold the shard lock)."""
    for path in list_temp_paths(root):
        episode_id = temp_dir_episode_id(path)
        if episode_id is not None and episode_id % shard[1] == shard[0]:
            remove_path(path)


class _Progress:
    """tqdm bar over episodes that also shows frames/s."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="ep", disable=not enabled, dynamic_ncols=True)
        self.frames = 0
        self.start = time.perf_counter()

    def update(self, summary: dict[str, Any]) -> None:
        self.frames += summary["frames"]
        rate = self.frames / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{rate:.0f} frames/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _run_in_process(runner: EpisodeRunner, todo: list[int], progress: _Progress) -> None:
    """Roll out episode i+1 while a writer thread commits episode i.

    Hashing and file writes release the GIL, so storage overlaps the env loop instead of
    adding to it (``scripts/bench_data.py``: collect with 1 worker against the bare env loop).
    At most two episodes are in flight, so a kill loses at most those two; a write error
    surfaces when the next episode is handed over, and an error in a rollout still lets the
    pending write finish; if that write fails too, its error is added to the rollout's as a
    note, so a full disk is not hidden behind whatever stopped the rollout.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sslrobot-writer") as writer:
        pending: Future | None = None
        try:
            for episode_id in todo:
                arrays, meta = runner.rollout(episode_id)
                if pending is not None:
                    progress.update(pending.result())
                pending = writer.submit(runner.commit, episode_id, arrays, meta)
            if pending is not None:
                progress.update(pending.result())
        except BaseException as error:
            write_error = pending.exception() if pending is not None else None  # waits for it
            if write_error is not None and write_error is not error:
                error.add_note(f"the episode being written meanwhile failed too: {write_error!r}")
            raise


def _run_in_pool(spec: RunSpec, todo: list[int], num_workers: int, progress: _Progress) -> None:
    """Run episodes on ``num_workers`` spawned processes, at most two in flight per worker."""
    context = multiprocessing.get_context("spawn")  # fork would copy GL contexts and threads
    pending: set[Future] = set()
    queue = iter(todo)
    with ProcessPoolExecutor(
        max_workers=num_workers,
        mp_context=context,
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        try:
            for episode_id in queue:
                pending.add(pool.submit(run_episode_in_worker, spec, episode_id))
                if len(pending) >= 2 * num_workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        summary = future.result()  # re-raises a worker's error here
                    except BrokenProcessPool as error:
                        # An OSError: the command line reports it in one line, like a full disk.
                        raise ChildProcessError(
                            "a collector worker process died (killed, out of memory, or the "
                            "calling script lacks the `if __name__ == '__main__':` guard that the "
                            "spawn start method needs); finished episodes are kept, rerun with "
                            "--resume (resume=True from Python)"
                        ) from error
                    progress.update(summary)
                    next_id = next(queue, None)
                    if next_id is not None:
                        pending.add(pool.submit(run_episode_in_worker, spec, next_id))
        except BaseException:
            # Episodes in flight still commit, unless the workers were interrupted too (Ctrl-C
            # reaches the whole process group); either way only whole episodes are kept.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


#: What a worker started by the spawn start method says when the calling script collects at
#: import time.
MAIN_GUARD_ERROR = (
    "collect() was called while a worker process imported the calling script: with "
    "num_envs > 1 the workers are started with 'spawn', which imports that script again, so "
    "its work must sit under `if __name__ == '__main__':`"
)


def _refuse_a_worker_importing_the_script() -> None:
    """Stop a spawned worker that is re-importing the caller's script from collecting in its
    turn: it then failed on the parent's dataset lock ("another collector is writing shard
    0/1"), tracebacks that pointed away from the missing guard. ``_inheriting`` is what
    multiprocessing sets while a child imports the parent's main module (it checks it too)."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(MAIN_GUARD_ERROR)


def collect(config: CollectConfig, progress: bool = True) -> Path:
    """Collect ``config.num_episodes`` episodes (this run's shard of them) into ``config.out``.

    Safe to kill at any moment: only fully written episodes become visible, and rerunning with
    ``resume=True`` collects exactly the missing ids. Several machines can fill one directory
    with ``shard=(I, N)``. With ``num_envs > 1`` workers are started with ``spawn``, so a
    script that calls ``collect`` needs the usual ``if __name__ == "__main__":`` guard.

    Args:
        config: What to collect.
        progress: Show a progress bar (episodes, frames/s, ETA) on stderr.

    Returns:
        The dataset directory.

    Raises:
        ValueError: bad settings (env kwargs, no expert, no pixels, existing data without
            ``resume``, a directory holding another dataset).
        DegenerateFramesError: the env renders a black or constant first frame, or frames
            that never change (a later one-colour frame is recorded, with a warning).
        DatasetWriteError: the directory is not writable or the disk is full (names the path;
            episodes already written stay intact).
    """
    _refuse_a_worker_importing_the_script()
    frames.warn_of_constant_frames_again()  # once per collection, not once per process
    spec = _run_spec(config)
    env = make_env(spec)
    try:
        manifest = _new_manifest(config, spec, _probe_env(env, spec))
        root = config.out
        refuse_other_artifact(root, DATASET)  # a file, under one, an encoder's or a policy's
        _refuse_foreign_directory(root)
        try:
            make_dirs(root, fsync=config.fsync)
        except OSError as error:
            raise write_error(root, "create directory", error) from error
        # The shard first: a collector refused because another writes this shard must not
        # have rewritten the manifest that one is filling.
        with _shard_lock(root, config.shard):
            with _manifest_lock(root):
                manifest = _prepare_root(config, manifest)
                unfinished_since = _unfinished_since(root)
                marker = _unfinished_marker(root, config.shard)
                if not marker.exists():
                    try:
                        marker.touch()
                    except OSError as error:
                        raise write_error(marker, "create marker file", error) from error
                write_manifest(
                    root, {**manifest, "updated": utc_now(), "counts": count_episodes(root)}
                )
                if config.fsync:  # before any worker commits into it, not after the first
                    try:  # (after the manifest: a directory without one is refused)
                        (root / EPISODES_DIR).mkdir(exist_ok=True)
                        fsync_dir(root)
                    except OSError as error:
                        raise write_error(root, "create directory", error) from error
            spec = dataclasses.replace(spec, format_version=manifest["format_version"])
            mine = set(config.episode_ids())
            _set_aside_broken(
                root, [i for i in list_episode_ids(root) if i in mine], unfinished_since
            )
            existing = set(list_episode_ids(root))
            todo = [i for i in config.episode_ids() if i not in existing]
            _remove_stale_temps(root, config.shard)
            bar = _Progress(len(todo), f"collect {config.env_id}", progress)
            try:
                if config.num_envs == 1 or len(todo) <= 1:
                    _run_in_process(EpisodeRunner(spec, env=env), todo, bar)
                else:
                    _run_in_pool(spec, todo, min(config.num_envs, len(todo)), bar)
            except BaseException:
                with contextlib.suppress(OSError):  # keep the original error (e.g. disk full)
                    _write_counts(root, manifest)
                raise
            finally:
                bar.close()
            _write_counts(root, manifest)
            # The markers go once this run has checked every episode they cover: a smaller
            # resume leaves an interrupted run's later episodes unchecked, so it keeps them.
            index, count = config.shard
            unchecked = [  # this shard's ids past this run's count (other shards check theirs)
                i
                for i in list_episode_ids(root)
                if i % count == index
                and i not in mine
                and episode_path(root, i).stat().st_mtime >= unfinished_since
            ]
            if not unchecked:
                # A whole-dataset run has just collected (or checked) every layout's episodes.
                finished = [marker]
                if config.shard == (0, 1):
                    finished += (root / LOCK_DIR).glob("shard-*-of-*.unfinished")
                with _manifest_lock(root):  # not while another run reads their times
                    for path in finished:
                        path.unlink(missing_ok=True)
    finally:
        env.close()
    return config.out
