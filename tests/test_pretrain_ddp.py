"""DistributedDataParallel on CPU: two gloo processes stay in sync and match one big batch."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.multiprocessing as mp

from sslrobot.models import DecoderConfig, EncoderConfig
from sslrobot.pretraining.config import PretrainConfig
from sslrobot.pretraining.distributed import check_distributed_device
from sslrobot.pretraining.synthetic import MovingSquareDataset
from sslrobot.pretraining.trainer import PretrainRun

K = 2
BATCH = 8


def _config(
    out: Path, batch_size: int, objective: str = "fdm+future", readout: str = "linear"
) -> PretrainConfig:
    return PretrainConfig(
        out=str(out),
        objective=objective,
        steps=3,
        batch_size=batch_size,
        num_steps_ahead=K,
        decoded_steps=K,  # decode every k: no per-rank random choice
        augment="none",  # idem, so one process with 2x the batch computes the same step
        log_every=1,
        checkpoint_every=0,
        image_every=0,
        tensorboard=False,
        encoder=EncoderConfig(
            image_size=32,
            channels=(8, 16),
            kernel_sizes=(4, 3),
            strides=(4, 2),
            paddings=(0, 1),
            feature_dim=16,
            readout=readout,
            layer_norm=readout != "keypoints",  # keypoint terms measure raw coordinates
        ),
        decoder=DecoderConfig(channels=(16, 8), shuffle=4),
        transition_hidden_dim=32,
        head_hidden_dim=32,
        projection_dim=16,
    )


def _dataset() -> MovingSquareDataset:
    return MovingSquareDataset(num_episodes=4, episode_length=12, num_steps=K, image_size=32)


def _worker(
    rank: int, world_size: int, port: int, out: str, results: str, *config_args: str
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    run = PretrainRun(_config(Path(out), BATCH, *config_args), _dataset(), progress=False)
    try:
        assert run.ddp is not None and run.context.world_size == world_size
        run.train()
        safetensors.torch.save_file(
            {k: v.contiguous() for k, v in run.model.state_dict().items()},
            str(Path(results) / f"rank{rank}.safetensors"),
        )
    finally:
        run.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(worker, *args) -> None:
    """Run ``worker(rank, 2, port, *args)`` in two processes joined by one port.

    Each process ends with ``os._exit`` once its worker returned (its files written and its
    process group destroyed): Python's own exit then runs C++ teardown in torch's gloo
    threads, which now and then aborts the process (SIGABRT, "terminate called without an
    active exception"; it failed a CI run so) after all the work was done and checked.
    A worker's exception still fails the test: torch reports it before this exit is reached.
    """
    try:
        mp.spawn(_exit_when_done, args=(worker, 2, _free_port(), *args), nprocs=2, join=True)
    except mp.ProcessRaisedException as error:
        # The free port was taken in the seconds before rank 0 bound it (another process on
        # the machine): once more on another. Workers fail before any work on that.
        if "EADDRINUSE" not in str(error) and "address already in use" not in str(error):
            raise
        mp.spawn(_exit_when_done, args=(worker, 2, _free_port(), *args), nprocs=2, join=True)


def _exit_when_done(rank: int, worker, *args) -> None:
    worker(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_two_cpu_processes_stay_in_sync(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    _spawn(_worker, str(tmp_path / "ddp"), str(results))
    rank0 = safetensors.torch.load_file(str(results / "rank0.safetensors"))
    rank1 = safetensors.torch.load_file(str(results / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    # The ranks saw different windows, yet agree: gradients were averaged. One process with
    # the two ranks' batches together takes the same steps (up to float summation order).
    torch.set_num_threads(1)
    single = PretrainRun(_config(tmp_path / "single", 2 * BATCH), _dataset(), progress=False)
    single.train()
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(value, rank0[name], rtol=1e-4, atol=1e-5, msg=name)
    assert (tmp_path / "ddp" / "encoder.safetensors").is_file()
    # The logged losses are the global batch's too (rank 0 used to log its own share's).
    logged = [_losses(tmp_path / name) for name in ("ddp", "single")]
    np.testing.assert_allclose(logged[0], logged[1], rtol=1e-4)
    # A resume in another number of processes would continue another data order: refused.
    resumed = dataclasses.replace(_config(tmp_path / "ddp", BATCH), steps=4, resume=True)
    with pytest.raises(ValueError, match="trained in 2 process"):
        PretrainRun(resumed, _dataset(), progress=False)


def _resume_worker(rank: int, world_size: int, port: int, outs: list[str], results: str) -> None:
    """Rank r resumes from ``outs[r]``: a machine that sees another --out than rank 0."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    config = dataclasses.replace(_config(Path(outs[rank]), BATCH), steps=4, resume=True)
    try:
        PretrainRun(config, _dataset(), progress=False).close()
        message = "resumed"
    except ValueError as error:
        message = str(error)
    Path(results, f"rank{rank}.txt").write_text(message)


def test_ranks_that_find_other_checkpoints_refuse_to_resume(tmp_path: Path) -> None:
    """On machines without a shared --out one rank started over with fresh Adam moments while
    the other continued, and their weights drifted apart under the same averaged gradients."""
    import shutil
    import warnings

    results = tmp_path / "results"
    results.mkdir()
    first = dataclasses.replace(_config(tmp_path / "run", BATCH), steps=2, checkpoint_every=1)
    _spawn(_first_run_worker, first)
    shutil.copytree(tmp_path / "run", tmp_path / "machine0")
    (tmp_path / "machine1").mkdir()  # the other machine's --out: no checkpoint there
    outs = [str(tmp_path / "machine0"), str(tmp_path / "machine1")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _spawn(_resume_worker, outs, str(results))
    for rank in (0, 1):
        message = (results / f"rank{rank}.txt").read_text()
        assert "found checkpoints at different steps (0 to 2)" in message, message
    shutil.copytree(tmp_path / "run", tmp_path / "machine1", dirs_exist_ok=True)  # shared now
    _spawn(_resume_worker, outs, str(results))
    assert [(results / f"rank{r}.txt").read_text() for r in (0, 1)] == ["resumed"] * 2


def _first_run_worker(rank: int, world_size: int, port: int, config: PretrainConfig) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    run = PretrainRun(config, _dataset(), progress=False)
    try:
        run.train()
    finally:
        run.close()


def _losses(out: Path) -> list[float]:
    with (out / "metrics.csv").open(newline="") as file:
        return [float(row["pretrain/loss"]) for row in csv.DictReader(file)]


def test_a_ranks_bad_input_stays_a_value_error() -> None:
    """A rank refusing bad input (a batch larger than the data) reached the CLI as a
    RuntimeError, so as a traceback; other failures stay RuntimeErrors."""
    from sslrobot.pretraining.launch import rank_failure

    trace = "Traceback (most recent call last):\n  ...\nValueError: batch_size 99: a step takes"
    error = rank_failure(2, "enc", 1, {"message": trace})
    assert isinstance(error, ValueError)
    assert str(error).endswith("rank 1: ValueError: batch_size 99: a step takes")
    assert type(rank_failure(2, "enc", 0, "x\nKeyError: 'pixels'")) is RuntimeError


def test_ctrl_c_in_the_launcher_is_a_keyboard_interrupt(tmp_path: Path, monkeypatch) -> None:
    """torch's launcher agent turns SIGINT into its SignalException, which reached the command
    line as a traceback and exit 1 instead of the CLI's "interrupted; rerun" line."""
    import signal

    import torch.distributed.launcher.api as launcher
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from sslrobot.pretraining.launch import pretrain_in_processes

    def stopped(sigval):
        def launch(config, entrypoint):
            def run(*args):
                raise SignalException("Process got signal", sigval)

            return run

        return launch

    monkeypatch.setattr(launcher, "elastic_launch", stopped(signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        pretrain_in_processes(_config(tmp_path / "a", BATCH), 2)
    monkeypatch.setattr(launcher, "elastic_launch", stopped(signal.SIGTERM))
    with pytest.raises(SignalException):  # a termination stays what it is
        pretrain_in_processes(_config(tmp_path / "b", BATCH), 2)

    # The launcher leaves its own handlers installed: a Ctrl-C in a later stage of the same
    # process became a SignalException too. Ours come back once it returns.
    def installs_handlers(config, entrypoint):
        def run(*args):
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: None)
            return {0: str(tmp_path / "c")}

        return run

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(launcher, "elastic_launch", installs_handlers)
    assert pretrain_in_processes(_config(tmp_path / "c", BATCH), 2) == tmp_path / "c"
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_two_cpu_processes_shift_the_windows_of_one(tmp_path: Path) -> None:
    """The equivariance term shifts each window by its place in the global batch; it used to
    count from 0 on every rank, so two ranks shifted other windows than one process did. The
    first step's terms (same weights, same windows) are compared: later steps of a keypoint
    encoder drift apart by Adam's response to float noise in gradients that are zero in exact
    arithmetic (biases the spatial softmax is invariant to), not by this."""
    args = ("fdm+future+equivariant:0.01", "keypoints")
    where = str(tmp_path / "ddp")
    _spawn(_worker, where, str(tmp_path), *args)
    torch.set_num_threads(1)
    PretrainRun(_config(tmp_path / "single", 2 * BATCH, *args), _dataset(), progress=False).train()
    first = [_first_row(tmp_path / name) for name in ("ddp", "single")]
    for term in ("pretrain/loss_equivariant", "pretrain/loss_fdm", "pretrain/loss_future"):
        assert float(first[0][term]) == pytest.approx(float(first[1][term]), rel=1e-5), term


def _first_row(out: Path) -> dict[str, str]:
    with (out / "metrics.csv").open(newline="") as file:
        return next(csv.DictReader(file))


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda:1", "each process takes the GPU of its LOCAL_RANK"), ("mps", "gloo")],
)
def test_process_groups_refuse_one_gpu_index_and_mps(device, message, monkeypatch):
    with pytest.raises(ValueError, match=message):
        check_distributed_device(device, world_size=2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for fine in ("cpu", "cuda", "auto"):  # auto: the CPU, without CUDA or MPS
        check_distributed_device(fine, world_size=2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(ValueError, match="resolves to MPS"):
        check_distributed_device("auto", world_size=2)  # auto on a Mac


def test_a_rank_killed_after_the_encoder_is_written_is_not_a_failed_run(
    tmp_path: Path, monkeypatch
) -> None:
    """gloo's teardown at a process's exit aborts it now and then (SIGABRT) after all its
    work: the launcher reported a finished run as failed. Only a signal after this launch
    wrote the encoder is forgiven; an exception, or a signal before, stays a failure."""
    import torch.distributed.launcher.api as launcher
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from sslrobot.pretraining.launch import pretrain_in_processes

    def failing(exitcode: int, writes: bool, error_file: str = "/nonexistent/error.json"):
        def launch(config, entrypoint):
            def run(config_dict, *args):
                if writes:
                    out = Path(config_dict["out"])
                    out.mkdir(parents=True, exist_ok=True)
                    (out / "encoder.safetensors").write_bytes(b"weights")
                failure = ProcessFailure(
                    local_rank=0, pid=1, exitcode=exitcode, error_file=error_file
                )
                raise ChildFailedError("rank", {0: failure})

            return run

        return launch

    monkeypatch.setattr(launcher, "elastic_launch", failing(-6, writes=True))
    with pytest.warns(UserWarning, match=r"rank 0 died by SIGABRT after .* was written"):
        assert pretrain_in_processes(_config(tmp_path / "a", BATCH), 2) == tmp_path / "a"
    # The same encoder again (not rewritten by this launch): a failure.
    monkeypatch.setattr(launcher, "elastic_launch", failing(-6, writes=False))
    with pytest.raises(RuntimeError, match=r"rank 0: Signal 6 \(SIGABRT\)"):
        pretrain_in_processes(_config(tmp_path / "a", BATCH), 2)
    # A Python exception (its error file) after the encoder: a failure too.
    error_file = tmp_path / "error.json"
    error_file.write_text(
        json.dumps({"message": {"message": "RuntimeError: boom", "extraInfo": {"timestamp": "0"}}})
    )
    monkeypatch.setattr(launcher, "elastic_launch", failing(1, True, str(error_file)))
    with pytest.raises(RuntimeError, match="boom"):
        pretrain_in_processes(_config(tmp_path / "b", BATCH), 2)


def _other_data_worker(rank: int, world_size: int, port: int, out: str, results: str) -> None:
    """Rank 1 indexes one episode more, as after a concurrent collect --resume's commit."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    data = MovingSquareDataset(num_episodes=4 + rank, episode_length=12, num_steps=K,
                               image_size=32)  # fmt: skip
    try:
        PretrainRun(_config(Path(out), BATCH), data, progress=False).close()
        message = "started"
    except ValueError as error:
        message = str(error)
    Path(results, f"rank{rank}.txt").write_text(message)


def test_ranks_that_index_other_windows_refuse_to_start(tmp_path: Path) -> None:
    """Each rank indexes the data itself: ranks that saw other episodes drew other windows
    under the same indices, their batches overlapping or missing windows without a word."""
    results = tmp_path / "results"
    results.mkdir()
    _spawn(_other_data_worker, str(tmp_path / "run"), str(results))
    for rank in (0, 1):
        message = (results / f"rank{rank}.txt").read_text()
        assert "the ranks indexed other training windows" in message, message
