"""Data-layer speed and memory: storage formats, collection, window reading, peak RSS.

Sections (all by default; pick with ``--sections``):

- ``formats``: per-episode storage candidates on frames from ``--env``: one uncompressed
  ``.npz`` per episode read in place (what sslrobot writes, format 2: link commit, CRC-32 per
  member, with and without fsync), a directory of raw ``.npy`` files (format 1: rename commit,
  sha256 per file), and ``.npz`` / compressed ``.npz`` read with ``numpy.load``. Write speed,
  random-window read speed (each window opens its episode, as in a dataset far larger than
  the page cache's share), size on disk. Formats are interleaved repeat by repeat (order
  rotated), and format 2's ratios to the others are medians of per-repeat ratios.
- ``collect``: frames/s of the bare env loop (step + frame, random actions), of the collector's
  rollout without writing, and of ``collect`` with 1 and 2 workers (targets: 2 workers >= 1.7x
  1 worker; collect with 1 worker within 10% of the bare loop).
- ``overhead``: what recording and storage add to the env loop, measured paired: per repeat,
  the same block of episode seeds runs as the bare env loop and as the collector's own
  steady-state loop (one process: rollout, checks, writer thread, atomic commits) into a fresh
  directory under ``--workdir`` and, where it exists, under ``/dev/shm`` (memory, no disk), in
  random order; the median of the per-repeat time ratios is the overhead (target: 10%). The
  paired ratio cancels the machine's drift, which spreads unpaired runs by tens of percent.
- ``read``: windows/s that ``WindowDataset`` delivers through a ``DataLoader`` (0 and 2
  workers) to a loop that only consumes the batches (compare with the pretraining step's
  windows/s).
- ``rss``: peak RSS (main + DataLoader workers) of reading a fixed number of random windows
  from a small and a 10x larger synthetic dataset (target: within 20%).

Prints its settings, the median of ``--repeats`` runs, and markdown tables.

Usage:
    python scripts/bench_data.py                       # full run (several minutes, ~3 GB disk)
    python scripts/bench_data.py --quick               # short check
    python scripts/bench_data.py --env sslrobot/Push-v0 --sections collect,read
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# A script (not the library) may choose the GL backend for its process and its children.
os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import numpy as np

from sslrobot.data import CollectConfig, collect, open_dataset
from sslrobot.data.collection import _run_spec
from sslrobot.data.episode_runner import EpisodeRunner, make_env
from sslrobot.data.frames import get_frame, has_pixel_observation
from sslrobot.data.manifest import FORMAT_NAME, FORMAT_VERSION, write_manifest
from sslrobot.data.storage import ArrayLocation, episode_path, locate_arrays, write_episode

SECTIONS = ("formats", "collect", "overhead", "read", "rss")
SYNTHETIC_EPISODE_STEPS = 50


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- formats


def sample_episodes(env_id: str, image_size: int, workdir: Path, count: int) -> list[dict]:
    """Real episodes of ``env_id`` (random policy), the raw material of the format test."""
    config = CollectConfig(
        env_id=env_id, out=workdir / "sample", num_episodes=count, image_size=image_size
    )
    dataset = open_dataset(collect(config, progress=False))
    return [
        {k: np.array(v) for k, v in dataset.load_episode(i, include_state=True).items()}
        for i in dataset.episode_ids
    ]


def _write_npz(path: Path, arrays: dict, compressed: bool) -> None:
    tmp = path.with_name(f".tmp-{path.name}")  # commit by rename, as sslrobot does
    with open(tmp, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
    os.replace(tmp, path)


def _read_window_npz(path: Path, t: int, k: int) -> np.ndarray:
    with np.load(path) as data:  # numpy reads the whole member of a zip
        return np.array(data["pixels"][t : t + k + 1])


def _read_window_in_place(where: ArrayLocation, t: int, k: int) -> np.ndarray:
    """sslrobot's reader (``WindowDataset``): the pixels' location comes from the index built
    once per dataset; each window opens the file and reads its rows where they lie."""
    out = np.empty((k + 1, *where.shape[1:]), where.dtype)
    fd = os.open(where.path, os.O_RDONLY)
    try:
        os.preadv(fd, [memoryview(out).cast("B")], where.offset + t * out[0].nbytes)
    finally:
        os.close(fd)
    return out


#: Format name -> (how it is written, whether it is read in place by sslrobot).
FORMATS = {
    "npz, read in place (format 2)": ("sslrobot", 2, False),
    "npz+fsync (format 2)": ("sslrobot", 2, True),
    "npy-dir (format 1)": ("sslrobot", 1, False),
    "npy-dir+fsync (format 1)": ("sslrobot", 1, True),
    "npz, numpy.load": ("numpy", False, False),
    "npz-zlib, numpy.load": ("numpy", True, False),
}


def bench_formats(args: argparse.Namespace, workdir: Path) -> None:
    samples = sample_episodes(args.env, args.image_size, workdir, args.format_samples)
    episodes = [samples[i % len(samples)] for i in range(args.format_episodes)]
    frames = sum(len(e["pixels"]) for e in episodes)
    raw_mb = sum(sum(a.nbytes for a in e.values()) for e in episodes) / 1e6
    k = args.num_steps
    rng = np.random.default_rng(0)

    def writer(kind: str) -> Callable[[Path, int, dict], None]:
        library, option, fsync = FORMATS[kind]
        if library == "sslrobot":
            return lambda root, i, arrays: write_episode(
                root, i, arrays, {"seed": i}, fsync=fsync, format_version=option
            )
        return lambda root, i, arrays: _write_npz(root / f"ep_{i:06d}.npz", arrays, option)

    def measure(kind: str, root: Path) -> tuple[float, float, float]:
        """One repeat of one format: write every episode, then random windows in place."""
        write = writer(kind)
        root.mkdir()
        start = time.perf_counter()
        for i, arrays in enumerate(episodes):
            write(root, i, arrays)
        write_fps = frames / (time.perf_counter() - start)
        size_mb = dir_bytes(root) / 1e6
        if FORMATS[kind][0] == "sslrobot":  # indexed once, as WindowDataset does
            paths = [
                locate_arrays(episode_path(root, i), ["pixels"])["pixels"]
                for i in range(len(episodes))
            ]
            read = _read_window_in_place
        else:
            paths = [root / f"ep_{i:06d}.npz" for i in range(len(episodes))]
            read = _read_window_npz
        picks = rng.integers(0, len(paths), args.format_windows)
        start = time.perf_counter()
        for i in picks:
            length = len(episodes[i]["action"])
            read(paths[i], int(rng.integers(0, length - k + 1)), k)
        read_wps = args.format_windows / (time.perf_counter() - start)
        shutil.rmtree(root)
        return write_fps, read_wps, size_mb

    # Formats interleaved repeat by repeat (the order rotated each repeat), so that the
    # machine's drift hits every format alike and the ratios below are of paired repeats.
    kinds = list(FORMATS)
    measured: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
    for repeat in range(args.repeats):
        for turn in range(len(kinds)):
            kind = kinds[(turn + repeat) % len(kinds)]
            measured[kind].append(measure(kind, workdir / f"fmt-{repeat}-{turn}"))
    rows = [
        (
            kind,
            statistics.median(m[0] for m in measured[kind]),
            statistics.median(m[0] for m in measured[kind]) * raw_mb / frames,
            statistics.median(m[1] for m in measured[kind]),
            measured[kind][-1][2],
        )
        for kind in kinds
    ]
    print(f"\n## formats: {len(episodes)} episodes, {frames} frames of {args.env}, window K={k}")
    print(f"raw arrays: {raw_mb:.1f} MB; files per episode: format 2: 1, format 1: 8 + a dir")
    print("| format | write frames/s | write MB/s | random windows/s | size MB | crash safety |")
    print("|---|---|---|---|---|---|")
    safety = {
        "npz, read in place (format 2)": "SIGKILL-safe (file link commit); CRC-32 per member",
        "npz+fsync (format 2)": "also power-loss safe (file and dir fsynced around the link)",
        "npy-dir (format 1)": "SIGKILL-safe (dir rename commit); sha256 per file",
        "npy-dir+fsync (format 1)": "also power-loss safe (files and dirs fsynced)",
        "npz, numpy.load": "as format 2",
        "npz-zlib, numpy.load": "as format 2",
    }
    for kind, fps, mbps, wps, size in rows:
        print(f"| {kind} | {fps:.0f} | {mbps:.1f} | {wps:.0f} | {size:.1f} | {safety[kind]} |")
    chosen = kinds[0]
    print(f"\nformat 2 ({chosen!r}) over each format, medians of the {args.repeats} per-repeat")
    print("ratios (paired: both measured in the same repeat)")
    print("| format | write: format 2 / it | random windows: format 2 / it |")
    print("|---|---|---|")
    for kind in kinds[1:]:
        pairs = list(zip(measured[chosen], measured[kind], strict=True))
        write_ratio = statistics.median(ours[0] / theirs[0] for ours, theirs in pairs)
        read_ratio = statistics.median(ours[1] / theirs[1] for ours, theirs in pairs)
        print(f"| {kind} | {write_ratio:.2f}x | {read_ratio:.2f}x |")


# ----------------------------------------------------------------------------- collect


def bare_env_fps(config: CollectConfig, num_frames: int) -> float:
    """Frames/s of reset/step/frame with seeded random actions: the floor collection stands on."""
    env = make_env(_run_spec(config))
    from_obs = has_pixel_observation(env.observation_space)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    get_frame(env, obs, from_obs)
    frames = 1
    start = time.perf_counter()
    while frames < num_frames:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        get_frame(env, obs, from_obs)
        frames += 1
        if terminated or truncated:
            obs, _ = env.reset(seed=frames)
            get_frame(env, obs, from_obs)
            frames += 1
    seconds = time.perf_counter() - start
    env.close()
    return frames / seconds


def rollout_fps(config: CollectConfig, num_episodes: int) -> float:
    """Frames/s of the collector's rollout (policy, checks, stacking) without writing."""
    runner = EpisodeRunner(_run_spec(config))
    runner.rollout(0)  # warm-up: first render
    frames = 0
    start = time.perf_counter()
    for episode_id in range(1, num_episodes + 1):
        arrays, _ = runner.rollout(episode_id)
        frames += len(arrays["pixels"])
    seconds = time.perf_counter() - start
    runner.close()
    return frames / seconds


def timed_collect(
    args: argparse.Namespace, out: Path, episodes: int, **kwargs
) -> tuple[int, float]:
    """(frames, seconds) of one ``collect`` call into a fresh directory (removed after)."""
    config = CollectConfig(
        env_id=args.env, out=out, num_episodes=episodes, image_size=args.image_size, **kwargs
    )
    start = time.perf_counter()
    collect(config, progress=False)
    seconds = time.perf_counter() - start
    frames = open_dataset(out).manifest["counts"]["frames"]
    shutil.rmtree(out)
    return frames, seconds


def bench_collect(args: argparse.Namespace, workdir: Path) -> None:
    """Steady-state frames/s: collect N and 2N episodes, rate = extra frames / extra seconds.

    The difference cancels the fixed start-up (env creation, spawning workers, first render),
    which is reported separately.
    """
    n = args.collect_episodes
    base = CollectConfig(
        env_id=args.env, out=workdir / "collect", num_episodes=n, image_size=args.image_size
    )
    settings = {
        "collect 1 worker": {"num_envs": 1},
        "collect 2 workers": {"num_envs": 2},
        "collect 1 worker --fsync": {"num_envs": 1, "fsync": True},
    }
    results: dict[str, list[float]] = {"bare env loop": [], "rollout, no write": []}
    results.update({name: [] for name in settings})
    startup: dict[str, list[float]] = {name: [] for name in settings}
    overall: dict[str, list[float]] = {name: [] for name in settings}
    for repeat in range(args.repeats):  # interleaved, so machine load hits all alike
        results["bare env loop"].append(bare_env_fps(base, args.bare_frames))
        results["rollout, no write"].append(rollout_fps(base, max(2, n // 4)))
        for name, kwargs in settings.items():
            out = workdir / f"collect-{repeat}"
            frames_1, seconds_1 = timed_collect(args, out, n, **kwargs)
            frames_2, seconds_2 = timed_collect(args, out, 2 * n, **kwargs)
            rate = (frames_2 - frames_1) / (seconds_2 - seconds_1)
            results[name].append(rate)
            startup[name].append(seconds_1 - frames_1 / rate)
            overall[name].append(frames_2 / seconds_2)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n## collect: {args.env} at {args.image_size}px, random policy")
    print(f"steady state from {n} vs {2 * n} episodes; bare loop: {args.bare_frames} frames")
    print("| loop | frames/s (median) | all repeats | start-up s | incl. start-up frames/s |")
    print("|---|---|---|---|---|")
    for key, values in results.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        start = f"{statistics.median(startup[key]):.2f}" if key in startup else ""
        total = f"{statistics.median(overall[key]):.0f}" if key in overall else ""
        print(f"| {key} | {med[key]:.0f} | {shown} | {start} | {total} |")

    # Ratios per repeat, then the median: the loops of one repeat ran side by side.
    def paired(numerator: str, denominator: str) -> float:
        pairs = zip(results[numerator], results[denominator], strict=True)
        return statistics.median(a / b for a, b in pairs)

    ratio = paired("collect 2 workers", "collect 1 worker")
    print(f"2 workers / 1 worker: {ratio:.2f}x, median of per-repeat ratios (target >= 1.7)")
    for name in ("collect 1 worker", "collect 1 worker --fsync"):
        overhead = paired("bare env loop", name) - 1.0
        print(f"{name} vs bare env loop: {100 * overhead:+.1f}% time per frame (target <= 10%)")


def bare_block(runner: EpisodeRunner, episode_ids: list[int]) -> tuple[int, float]:
    """(frames, seconds) of reset/step/frame with seeded random actions over ``episode_ids``,
    on the runner's own env (the floor the collector's loop stands on)."""
    env, from_obs = runner.env, runner.frames_from_obs
    frames = 0
    start = time.perf_counter()
    for episode_id in episode_ids:
        env.action_space.seed(episode_id)
        obs, _ = env.reset(seed=runner.spec.base_seed + episode_id)
        get_frame(env, obs, from_obs)
        frames += 1
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            get_frame(env, obs, from_obs)
            frames += 1
            done = terminated or truncated
    return frames, time.perf_counter() - start


def collector_block(runner: EpisodeRunner, episode_ids: list[int], root: Path) -> tuple[int, float]:
    """(frames, seconds) of the collector's steady-state loop writing ``episode_ids`` into a
    new directory ``root`` (``collect`` runs this after its start-up; the private loop is used
    so the env stays the same as the bare loop's). Nothing is deleted until the section ends:
    on a filesystem mounted with ``discard``, freeing the previous block's files just before
    timing could bill their TRIMs to this block."""
    from sslrobot.data.collection import _Progress, _run_in_process

    runner.spec = dataclasses.replace(runner.spec, root=str(root))
    progress = _Progress(len(episode_ids), "overhead", enabled=False)
    start = time.perf_counter()
    _run_in_process(runner, episode_ids, progress)
    seconds = time.perf_counter() - start
    progress.close()
    return progress.frames, seconds


def bench_overhead(args: argparse.Namespace, workdir: Path) -> None:
    """Paired, interleaved blocks: bare env loop vs the collector's loop on each filesystem."""
    config = CollectConfig(
        env_id=args.env, out=workdir / "overhead", num_episodes=1, image_size=args.image_size
    )
    runner = EpisodeRunner(_run_spec(config))
    runner.rollout(0)  # warm-up: first render
    roots = {"collect 1 process, --workdir disk": workdir / "overhead"}
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        roots["collect 1 process, /dev/shm (memory)"] = Path(tempfile.mkdtemp(dir=shm))
    loops: dict[str, Callable[[list[int]], tuple[int, float]]] = {
        "bare env loop": lambda ids: bare_block(runner, ids)
    }
    for name, root in roots.items():
        loops[name] = lambda ids, root=root: collector_block(runner, ids, root / f"ids-{ids[0]}")
    rates: dict[str, list[float]] = {name: [] for name in loops}  # frames/s per block
    order = np.random.default_rng(0)
    n = args.overhead_episodes
    try:
        for repeat in range(args.overhead_repeats):
            ids = list(range(1 + repeat * n, 1 + (repeat + 1) * n))  # same seeds for every loop
            for index in order.permutation(len(loops)):
                name = list(loops)[index]
                frames, elapsed = loops[name](ids)
                rates[name].append(frames / elapsed)
    finally:
        runner.close()
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n## overhead: {args.env} at {args.image_size}px, random policy, paired blocks")
    print(f"{args.overhead_repeats} repeats x {n} episodes, loops in random order per repeat")
    print("| loop | frames/s (median) | time per frame vs bare loop (median of paired ratios) |")
    print("|---|---|---|")
    bare = rates["bare env loop"]
    for name in loops:
        ratios = [b / r for r, b in zip(rates[name], bare, strict=True)]  # time per frame
        extra = "" if name == "bare env loop" else f"{100 * (statistics.median(ratios) - 1):+.1f}%"
        print(f"| {name} | {statistics.median(rates[name]):.0f} | {extra} |")
    print("target: collect within 10% of the bare loop")


# ----------------------------------------------------------------------------- read / rss


def synthetic_dataset(root: Path, num_frames: int, image_size: int) -> Path:
    """A dataset of ``num_frames`` frames written by the storage writer (no env needed)."""
    if (root / "manifest.json").exists():
        return root
    root.mkdir(parents=True)
    length = SYNTHETIC_EPISODE_STEPS
    num_episodes = max(1, num_frames // (length + 1))
    write_manifest(
        root,
        {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "env_id": "synthetic",
            "frame_shape": [image_size, image_size, 3],
            "proprio_dim": 9,
            "action_dim": 3,
            "state_dim": None,
            "num_episodes_requested": num_episodes,
        },
    )
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (length + 1, image_size, image_size, 3), dtype=np.uint8)
    for i in range(num_episodes):
        write_episode(
            root,
            i,
            {
                "pixels": base + np.uint8(i % 251),
                "proprio": rng.standard_normal((length + 1, 9)).astype(np.float32),
                "action": rng.uniform(-1, 1, (length, 3)).astype(np.float32),
                "reward": rng.standard_normal(length).astype(np.float32),
                "terminated": np.zeros(length, bool),
                "truncated": np.arange(length) == length - 1,
            },
            {"seed": i},
        )
    return root


def windows_per_second(
    root: Path, num_steps: int, batch_size: int, workers: int, num_windows: int
) -> float:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from sslrobot.data import WindowDataset

    torch.set_num_threads(1)
    windows = WindowDataset(root, num_steps, split="all")
    sampler = RandomSampler(windows, replacement=True, num_samples=num_windows + batch_size)
    loader = DataLoader(windows, batch_size=batch_size, sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    next(iterator)  # workers started, first batch out: excluded
    delivered = 0
    start = time.perf_counter()
    for batch in iterator:
        delivered += batch["pixels"].shape[0]  # the training loop's side: consume the batch
    return delivered / (time.perf_counter() - start)


def bench_read(args: argparse.Namespace, workdir: Path) -> None:
    root = synthetic_dataset(workdir / "read-dataset", args.read_frames, args.image_size)
    print(f"\n## read: WindowDataset K={args.num_steps}, batch {args.batch_size}")
    print(f"dataset: {args.read_frames} synthetic frames at {args.image_size}px")
    print("| DataLoader workers | windows/s (median) | all repeats |")
    print("|---|---|---|")
    for workers in (0, 2):
        values = [
            windows_per_second(root, args.num_steps, args.batch_size, workers, args.read_windows)
            for _ in range(args.repeats)
        ]
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {workers} | {statistics.median(values):.0f} | {shown} |")


def rss_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: read random windows, print peak RSS of self and workers."""
    windows_per_second(Path(args.rss_child), args.num_steps, args.batch_size, 2, args.rss_windows)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"main_mb": own, "worker_mb": children}))


def bench_rss(args: argparse.Namespace, workdir: Path) -> None:
    small, large = args.rss_frames, 10 * args.rss_frames
    results = {}
    for frames in (small, large):
        root = synthetic_dataset(workdir / f"rss-{frames}", frames, args.image_size)
        command = [
            sys.executable, __file__, "--rss-child", str(root), "--rss-windows",
            str(args.rss_windows), "--num-steps", str(args.num_steps), "--batch-size",
            str(args.batch_size),
        ]  # fmt: skip
        runs = [
            json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            for _ in range(args.repeats)
        ]
        results[frames] = (
            statistics.median(r["main_mb"] for r in runs),
            statistics.median(r["worker_mb"] for r in runs),
            dir_bytes(root) / 1e6,
        )
        shutil.rmtree(root)
    print(f"\n## rss: {args.rss_windows} random windows, K={args.num_steps}, 2 DataLoader workers")
    print("| dataset frames | size on disk MB | peak RSS main MB | peak RSS per worker MB |")
    print("|---|---|---|---|")
    for frames, (main_mb, worker_mb, disk_mb) in results.items():
        print(f"| {frames} | {disk_mb:.0f} | {main_mb:.0f} | {worker_mb:.0f} |")
    total = {f: m + 2 * w for f, (m, w, _) in results.items()}
    print(
        f"peak RSS (main + 2 workers) {large} vs {small} frames: {total[large] / total[small]:.2f}x"
    )
    print("(target: within 1.20x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="sslrobot/Reach-v0")
    parser.add_argument("--quick", action="store_true", help="short check, smaller sizes")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-steps", type=int, default=5, help="window length K")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rss-windows", type=int, default=None)
    args = parser.parse_args()
    quick = args.quick
    sizes = {
        "repeats": 1 if quick else 3,
        "format_samples": 2 if quick else 4,
        "format_episodes": 8 if quick else 40,
        "format_windows": 200 if quick else 2000,
        "bare_frames": 1000 if quick else 5000,
        "collect_episodes": 10 if quick else 100,
        "overhead_episodes": 10 if quick else 40,
        "overhead_repeats": 2 if quick else 15,
        "read_frames": 5_000 if quick else 20_000,
        "read_windows": 2_000 if quick else 20_000,
        "rss_frames": 2_000 if quick else 20_000,
        "rss_windows": 2_000 if quick else 20_000,
    }
    for key, value in sizes.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.rss_child:
        rss_child(args)
        return
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print("settings:", json.dumps({k: v for k, v in settings.items() if k != "rss_child"}))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, gymnasium {gym.__version__}, "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}")  # fmt: skip
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for section in sections:
            {
                "formats": bench_formats,
                "collect": bench_collect,
                "overhead": bench_overhead,
                "read": bench_read,
                "rss": bench_rss,
            }[section](args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
