"""Pretraining throughput: the full training step (data path included) vs the model's own
forward+backward on a preloaded batch, for the CPU-sized encoders and a DrQ-v2-sized one.

Prints its settings, then per encoder the median samples/s (windows per second) of several
timed repeats, the ratio full/model (the data path's cost) and the speed-up over DrQ-v2. With
``--probe-seconds S`` it also trains each encoder for the same wall-clock time (on ``--data``, else
on synthetic moving squares) and scores the library's ridge probe from frozen features to the
true state on held-out episodes (R^2), the equal-time quality comparison.

    python scripts/bench_pretrain.py --quick
    python scripts/bench_pretrain.py --threads 2 --batch-size 256 --image-size 64
    python scripts/bench_pretrain.py --data runs/push_data --encoders keypoints,cnn
    python scripts/bench_pretrain.py --probe-seconds 120
    python scripts/bench_pretrain.py --data DATASET_DIR --probe-seconds 240
    python scripts/bench_pretrain.py --data DATASET_DIR --encoders keypoints --processes 2

Speeds on a machine shared with other work are noisy: compare the ratios printed by one run
and the CPU-ms/step. The encoders' repeats are interleaved in turns (each repeat times one
block of full steps and one of model-only steps per encoder), and their ratio is the median of
the per-repeat ratios; the one- and several-process runs alternate their order per repeat.
(Before session 15 each encoder's repeats ran one after the other.) With
2 threads on 2 busy cores, OpenMP's spinning barriers can make the many small ops of the
CPU-sized models 20x slower; ``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``) avoids that.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sslrobot.evaluation.probe import fit_linear_probe, probe_representation
from sslrobot.models.encoder import EncoderConfig
from sslrobot.models.features import extract_features
from sslrobot.pretraining.config import PretrainConfig
from sslrobot.pretraining.launch import pretrain_in_processes
from sslrobot.pretraining.synthetic import MovingSquareDataset
from sslrobot.pretraining.trainer import PretrainRun, close_batches

ENCODERS = {
    # The CPU-sized stem with a linear readout (``--encoder-arch cnn``). Named ``default`` in
    # the raw outputs of docs/results/benchmarks: it was the package default until session 14.
    "cnn": EncoderConfig,
    "default": EncoderConfig,
    "drqv2": EncoderConfig.drqv2,
    # The next size up from ``cnn``, for checking its choice of widths.
    "wide": lambda: EncoderConfig(channels=(32, 64, 64)),
    # The package default (``keypoints``): the same stem, a spatial softmax.
    "keypoints": EncoderConfig.keypoints,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset dir (default: synthetic in memory)")
    parser.add_argument("--objective", default="fdm+future")
    parser.add_argument(
        "--encoders", default="keypoints,drqv2", help=f"comma list of {list(ENCODERS)}"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-steps-ahead", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument(
        "--model-batches",
        type=int,
        default=4,
        help="distinct preloaded batches the model-only steps cycle through (1: the same batch "
        "every step, warm in the caches as no real step's is; the default before session 18)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--prefetch", type=int, default=2, help="batches read ahead (0: off)")
    parser.add_argument("--probe-seconds", type=float, default=0.0, help="equal-time probe run")
    parser.add_argument(
        "--quick", action="store_true", help="batch 64, 3 steps x 3 repeats, unless given"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="also time real pretraining runs (needs --data) in one process with --threads "
        "threads against N data-parallel processes of cores/N threads, same global batch",
    )
    parser.add_argument(
        "--process-steps", type=int, default=300, help="steps per run of --processes"
    )
    return parser.parse_args()


def make_dataset(args: argparse.Namespace, seed: int = 0, episodes: int = 48) -> object:
    return MovingSquareDataset(
        num_episodes=episodes,
        episode_length=48,
        num_steps=args.num_steps_ahead,
        image_size=args.image_size,
        action_dim=4,
        seed=seed,
    )


def make_run(args: argparse.Namespace, name: str, out: Path, dataset: object) -> PretrainRun:
    encoder = dataclasses.replace(ENCODERS[name](), image_size=args.image_size)
    config = PretrainConfig(
        out=str(out),
        data=args.data,
        objective=args.objective,
        steps=10**9,
        batch_size=args.batch_size,
        num_steps_ahead=args.num_steps_ahead,
        device=args.device,
        encoder=encoder,
        image_every=0,
        tensorboard=False,
        num_workers=args.num_workers,
        prefetch=args.prefetch,
    )
    return PretrainRun(config, None if args.data else dataset, progress=False)


def _sync(run: PretrainRun) -> None:
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)


class ThroughputTimer:
    """Samples/s of one encoder's full step and model-only step, one repeat at a time, so that
    the repeats of several encoders can be interleaved (this machine's speed drifts over
    minutes; a ratio of medians taken minutes apart carries that drift).

    Full step: what ``sslrobot pretrain`` runs per step, reading windows from the dataset
    (background prefetch as configured), collating, moving to the device, augmenting,
    forward, backward, optimizer and EMA updates. Model only: the same minus the data path,
    on batches read and moved to the device beforehand, ``--model-batches`` of them in turn
    (one batch reused every step stays in the CPU's caches, which flattered the model-only step
    by several percent); augmentation, part of the learning algorithm as in DrQ-v2's
    ``update``, is still done every step. Reader alone: the same batches read with no training
    at all, in CPU-ms per batch: the data path's own cost, free of cache and scheduling
    effects on the model's step.

    Also CPU milliseconds per step (``time.process_time``, all threads): unlike wall time it
    hardly moves when other processes share the cores, so it gives the cost ratio of the two
    variants even on a busy machine.
    """

    def __init__(self, args: argparse.Namespace, run: PretrainRun) -> None:
        self.args, self.run = args, run
        self.batches = run.batches(0)
        self.next_step = 0  # where the next full block's batches start
        self.preloaded = [run.to_device(next(self.batches)) for _ in range(args.model_batches)]
        self.reader_cpu: list[float] = []
        self.full: list[float] = []
        self.model: list[float] = []
        self.waits: list[float] = []
        self.full_cpu: list[float] = []
        self.model_cpu: list[float] = []
        for step in range(2):  # warm-up: oneDNN/cuDNN pick kernels per shape
            run.train_step(next(self.batches))
            self._model_step(step)

    def _model_step(self, step: int) -> None:
        batch = self.preloaded[step % len(self.preloaded)]
        self.run.update(*self.run.augment(*batch, step))

    def repeat(self) -> None:
        """One timed block of ``--steps`` full steps, then one of model-only steps.

        The batch reader starts afresh with each full block and stops at its end: a reader left
        running would fill its queue during the model-only block, so the next full block would
        get its first batches read for free and the model-only block would pay for them.
        """
        args, run = self.args, self.run
        close_batches(self.batches)
        self.next_step += 2 + args.steps  # fresh windows, as a run's later steps read
        self.batches = run.batches(self.next_step)
        _sync(run)
        start, cpu, waited = time.perf_counter(), time.process_time(), 0.0
        for _ in range(args.steps):
            before = time.perf_counter()
            batch = next(self.batches)
            waited += time.perf_counter() - before
            run.train_step(batch)
        _sync(run)
        elapsed = time.perf_counter() - start
        self.full.append(args.steps * args.batch_size / elapsed)
        self.full_cpu.append(1000 * (time.process_time() - cpu) / args.steps)
        self.waits.append(waited / elapsed)
        close_batches(self.batches)
        self.batches = iter(())  # closed: nothing reads during the model-only block
        start, cpu = time.perf_counter(), time.process_time()
        for step in range(args.steps):
            self._model_step(step)
        _sync(run)
        self.model.append(args.steps * args.batch_size / (time.perf_counter() - start))
        self.model_cpu.append(1000 * (time.process_time() - cpu) / args.steps)
        reader = run.batches(self.next_step)  # the full block's windows again: the same reads
        cpu = time.process_time()
        for _ in range(args.steps):
            next(reader)
        self.reader_cpu.append(1000 * (time.process_time() - cpu) / args.steps)
        close_batches(reader)

    def result(self) -> dict[str, float]:
        median = statistics.median
        return {
            "full": median(self.full),
            "model": median(self.model),
            "wait": median(self.waits),
            "full_cpu_ms": median(self.full_cpu),
            "model_cpu_ms": median(self.model_cpu),
            "full_range": (min(self.full), max(self.full)),
            "model_range": (min(self.model), max(self.model)),
            # Per repeat, then the median: the two blocks of a repeat ran side by side.
            "ratio": median(f / m for f, m in zip(self.full, self.model, strict=True)),
            "cpu_ratio": median(m / f for f, m in zip(self.full_cpu, self.model_cpu, strict=True)),
            "reader_cpu_ms": median(self.reader_cpu),
            "reader_share": median(
                r / m for r, m in zip(self.reader_cpu, self.model_cpu, strict=True)
            ),
        }

    def close(self) -> None:
        close_batches(self.batches)
        self.run.close()


def report(name: str, params: int, r: dict[str, float]) -> None:
    print(
        f"{name:8s} encoder params {params:,d}\n"
        f"  full step  (data path included): {r['full']:6.0f} samples/s "
        f"[{r['full_range'][0]:.0f}-{r['full_range'][1]:.0f}], "
        f"{r['full_cpu_ms']:.0f} CPU-ms/step, batch wait {100 * r['wait']:.1f}%\n"
        f"  model only (preloaded batch):    {r['model']:6.0f} samples/s "
        f"[{r['model_range'][0]:.0f}-{r['model_range'][1]:.0f}], "
        f"{r['model_cpu_ms']:.0f} CPU-ms/step\n"
        f"  full/model (median of per-repeat ratios): {r['ratio']:.2f} wall, "
        f"{r['cpu_ratio']:.2f} CPU\n"
        f"  reader alone: {r['reader_cpu_ms']:.1f} CPU-ms/batch, "
        f"{100 * r['reader_share']:.1f}% of the model step's CPU (median of per-repeat ratios)"
    )


@torch.no_grad()
def features(run: PretrainRun, dataset: MovingSquareDataset) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features of every frame of ``dataset`` (the library's extraction) and its state."""
    frames = dataset.pixels.reshape(-1, *dataset.pixels.shape[2:])
    state = dataset.state.reshape(-1, dataset.state.shape[-1])
    return extract_features(run.model.encoder, frames, batch_size=512), state


def probe_r2(args: argparse.Namespace, run: PretrainRun) -> float:
    """Mean held-out R^2 of the library's ridge probe (``sslrobot probe``) on the encoder.

    With ``--data``: the dataset's held-out episodes and its ``view_state_names``, exactly
    what ``sslrobot probe`` reports. Synthetic: fresh moving-square episodes (square and
    marker positions).
    """
    if args.data:
        # This run trains on the data's default split (seed 0): score on the rest only.
        trained = run.train_episode_ids or {}
        metrics = probe_representation(
            run.model.encoder,
            args.data,
            val_fraction=run.config.val_fraction,
            seed=run.config.episode_split_seed,
            device=args.device,
            exclude_from_validation=[i for ids in trained.values() for i in ids],
        )
        return float(metrics["probe/r2_mean"])
    probe_train = MovingSquareDataset(24, 32, 1, args.image_size, 4, seed=101)
    probe_test = MovingSquareDataset(12, 32, 1, args.image_size, 4, seed=202)
    train_x, train_y = features(run, probe_train)
    test_x, test_y = features(run, probe_test)
    names = [f"state_{i}" for i in range(train_y.shape[1])]
    return fit_linear_probe(train_x, train_y, test_x, test_y, names).r2_mean


def equal_time_probe(
    args: argparse.Namespace, name: str, out: Path, seconds: float
) -> tuple[float, int]:
    """Train for ``seconds`` of wall-clock, then probe; returns (mean R^2, steps done)."""
    train = None if args.data else make_dataset(args, seed=0, episodes=48)
    run = make_run(args, name, out, train)
    batches = run.batches(0)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        run.train_step(next(batches))
        run.step += 1
        steps += 1
    close_batches(batches)
    r2 = probe_r2(args, run)
    run.close()
    return r2, steps


def run_samples_per_s(
    args: argparse.Namespace, name: str, out: Path, processes: int, threads: int
) -> float:
    """Median logged samples/s of a real ``pretrain`` run (data path and all, one or
    ``processes`` DDP ranks through ``pretrain_in_processes``), first log row dropped."""
    config = PretrainConfig(
        out=str(out),
        data=args.data,
        objective=args.objective,
        steps=args.process_steps,
        batch_size=args.batch_size,
        num_steps_ahead=args.num_steps_ahead,
        device=args.device,
        encoder=dataclasses.replace(ENCODERS[name](), image_size=args.image_size),
        image_every=0,
        checkpoint_every=0,
        log_every=max(1, args.process_steps // 6),
        tensorboard=False,
        prefetch=args.prefetch,
        num_workers=args.num_workers,
    )
    pretrain_in_processes(config, processes, threads, progress=False)
    with (out / "metrics.csv").open(newline="") as file:
        rates = [float(row["pretrain/samples_per_s"]) for row in csv.DictReader(file)]
    shutil.rmtree(out)
    return statistics.median(rates[1:] or rates)


def bench_processes(args: argparse.Namespace, names: list[str], workdir: Path) -> None:
    """One process (``--threads`` threads) vs ``--processes`` ranks, repeats interleaved."""
    if not args.data:
        raise SystemExit("--processes times real pretraining runs: give --data DATASET_DIR")
    cores = os.cpu_count() or 1
    variants = {
        f"1 process x {args.threads} threads": (1, args.threads),
        f"{args.processes} processes x {max(1, cores // args.processes)} threads": (
            args.processes,
            max(1, cores // args.processes),
        ),
    }
    repeats = max(1, args.repeats // 2)
    print(
        f"\n## pretrain runs: {args.process_steps} steps, global batch {args.batch_size}, "
        f"median of {repeats} interleaved runs (each: median of its logged rates)"
    )
    print("| encoder | variant | samples/s | runs |")
    print("|---|---|---:|---|")
    for name in names:
        rates: dict[str, list[float]] = {variant: [] for variant in variants}
        for repeat in range(repeats):
            order = list(variants.items())  # alternated: the machine runs faster just after
            for variant, (processes, threads) in order[:: 1 if repeat % 2 == 0 else -1]:
                out = workdir / f"proc_{name}_{processes}_{repeat}"
                rates[variant].append(run_samples_per_s(args, name, out, processes, threads))
        medians = {variant: statistics.median(values) for variant, values in rates.items()}
        for variant, values in rates.items():
            shown = ", ".join(f"{v:.0f}" for v in values)
            print(f"| {name} | {variant} | {medians[variant]:.0f} | {shown} |")
        ones, manys = rates.values()
        paired = [many / one for one, many in zip(ones, manys, strict=True)]  # run by run
        shown = ", ".join(f"{ratio:.2f}" for ratio in paired)
        print(f"| {name} | ratio (median of the paired runs') | {statistics.median(paired):.2f}x"
              f" | {shown} |")  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.quick:  # smaller defaults; sizes given on the command line stay as given
        given = {arg.split("=")[0] for arg in sys.argv[1:]}
        for flag, value in (("--batch-size", 64), ("--steps", 3), ("--repeats", 3)):
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    print(
        f"bench_pretrain: objective={args.objective} image={args.image_size} "
        f"batch={args.batch_size} K={args.num_steps_ahead} threads={torch.get_num_threads()} "
        f"device={args.device} "
        f"data={args.data or 'synthetic in-memory'} workers={args.num_workers} "
        f"prefetch={args.prefetch} model_batches={args.model_batches} "
        f"steps/repeat={args.steps} repeats={args.repeats} torch={torch.__version__} "
        f"cpu={platform.processor() or platform.machine()} "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    dataset = None if args.data else make_dataset(args)
    with tempfile.TemporaryDirectory() as tmp:
        timers = {name: ThroughputTimer(args, make_run(args, name, Path(tmp) / name, dataset))
                  for name in names}  # fmt: skip
        try:
            for repeat in range(args.repeats):  # encoders interleaved, in turns
                shift = repeat % len(names)
                for name in names[shift:] + names[:shift]:
                    timers[name].repeat()
            for name, timer in timers.items():
                params = sum(p.numel() for p in timer.run.model.encoder.parameters())
                report(name, params, timer.result())
            first = timers[names[0]]
            for name in names[1:]:  # the median of the ratios of repeats taken side by side
                other = timers[name]
                wall = statistics.median(a / b for a, b in zip(first.full, other.full, strict=True))
                cpu = statistics.median(
                    a / b for a, b in zip(other.full_cpu, first.full_cpu, strict=True)
                )
                print(
                    f"{names[0]} vs {name}, full step: {wall:.2f}x faster (wall), {cpu:.2f}x "
                    "(CPU); medians of the per-repeat ratios, encoders interleaved"
                )
        finally:
            for timer in timers.values():
                timer.close()
        if args.processes > 1:
            bench_processes(args, names, Path(tmp))
        if args.probe_seconds > 0:
            for name in names:
                r2, steps = equal_time_probe(
                    args, name, Path(tmp) / f"probe_{name}", args.probe_seconds
                )
                target = "--data held-out episodes" if args.data else "square/marker positions"
                print(
                    f"{name:8s} after {args.probe_seconds:.0f} s ({steps} steps): "
                    f"mean probe R^2 = {r2:.3f} ({target})"
                )


if __name__ == "__main__":
    main()
