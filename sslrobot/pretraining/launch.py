"""Pretraining in several local processes (DistributedDataParallel), launched through torchrun's
own machinery (``torch.distributed.launcher``), so a library caller gets what
``torchrun --standalone --nproc_per_node N -m sslrobot pretrain`` gives on the command line.

Why processes rather than threads: the CPU-sized encoders run many small convolutions, which
torch's intra-op threads hardly speed up. Measured on the 2-core development machine
(``fdm+future``, 64 px, batch 256, ``scripts/bench_pretrain.py --processes 2``): one process
with 2 threads trained 1,461 windows/s with the keypoint encoder and 1,723 with ``cnn``; two
processes with one thread each and the same global batch 2,083 and 2,222.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import os
import signal
import sys
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

from sslrobot.pretraining.artifacts import ENCODER_WEIGHTS
from sslrobot.pretraining.config import PretrainConfig


def pretrain_in_processes(
    config: PretrainConfig,
    num_processes: int,
    threads_per_process: int | None = None,
    progress: bool = True,
) -> Path:
    """``pretrain(config)`` as ``num_processes`` data-parallel ranks on this machine.

    ``config.batch_size`` is the *global* batch here: each rank takes ``batch_size /
    num_processes`` windows per step, so the optimiser sees the batch of one process with the
    same config (the trainer averages gradients and the fdm target centre over the ranks;
    ``contrastive`` and ``slow`` are the exceptions: the negatives of one and the variance
    hinge of the other are each rank's own windows). The random
    choices (shifts, jitter, decoded frames) are drawn per rank, so the step matches one
    process's in distribution; bit for bit only without them.
    One process calls ``pretrain`` directly.

    Args:
        config: The run's settings (a CPU device; on CUDA use one process per GPU via torchrun).
        num_processes: Ranks to start, >= 1.
        threads_per_process: torch intra-op threads per rank; None: this process's thread
            count divided evenly (one process: left as it is).
        progress: Show rank 0's progress bar.

    Returns:
        The output directory, as ``pretrain``.

    Raises:
        ValueError: a batch that the processes cannot split evenly, or a bad count.
        RuntimeError: a rank failed; the message ends with its exception line, the rank's
            traceback is chained (``__cause__``).
    """
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes must be an int >= 1, got {num_processes!r}")
    import torch

    if threads_per_process is None and config.resume:  # the count it trained with
        threads_per_process = saved_cpu_threads(config, num_processes)
    if num_processes == 1:
        from sslrobot.pretraining.trainer import pretrain

        threads_before = torch.get_num_threads()  # the caller's, given back after
        if threads_per_process is not None:
            torch.set_num_threads(threads_per_process)
        try:
            return pretrain(config, progress=progress)
        finally:
            torch.set_num_threads(threads_before)
    if threads_per_process is None:  # torch's own count honours OMP_NUM_THREADS
        threads_per_process = max(1, torch.get_num_threads() // num_processes)
    if config.batch_size % num_processes:
        raise ValueError(
            f"batch_size {config.batch_size} cannot be split evenly over {num_processes} "
            "processes; choose a multiple"
        )
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    per_rank = dataclasses.replace(config, batch_size=config.batch_size // num_processes)
    launch = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_processes,
        run_id=f"sslrobot-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # torch's launcher installs its own handlers for these and leaves them: a Ctrl-C in any
    # later stage of `sslrobot run` became its SignalException (a traceback, exit 1).
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    handled = [getattr(signal, name) for name in names if hasattr(signal, name)]
    restore = threading.current_thread() is threading.main_thread()  # only it may set them
    handlers = {signum: signal.getsignal(signum) for signum in handled} if restore else {}
    encoder = Path(config.out) / ENCODER_WEIGHTS
    written_before = _modified(encoder)
    try:
        outputs = elastic_launch(launch, _rank_main)(
            per_rank.to_dict(), threads_per_process, progress
        )
    except ChildFailedError as error:
        killed = _killed_after_writing(error, encoder, written_before)
        if killed is None:
            rank, failure = error.get_first_failure()
            raise rank_failure(num_processes, config.out, rank, failure.message) from error
        warnings.warn(
            f"pretraining in {num_processes} processes: {killed} after {encoder} was written; "
            "the run is complete (gloo's teardown at a process's exit aborts it now and then)",
            stacklevel=2,
        )
        return Path(config.out)
    except SignalException as error:
        # The launcher's agent turns Ctrl-C into its own exception (a traceback and exit 1
        # at the command line); as a KeyboardInterrupt the CLI says how to continue.
        if error.sigval == signal.SIGINT:
            raise KeyboardInterrupt from error
        raise
    finally:
        for signum, handler in handlers.items():
            if handler is not None:  # None: set from outside Python, not ours to restore
                signal.signal(signum, handler)
    return Path(outputs[0])


def _modified(path: Path) -> tuple[int, int] | None:
    """``path``'s inode and modification time (ns): a new file is written to a new inode and
    renamed into place. None if it is missing."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _killed_after_writing(
    error: Any, encoder: Path, written_before: tuple[int, int] | None
) -> str | None:
    """Which ranks died by a signal, when that is all that failed and this launch wrote the
    final encoder (rank 0 writes it once every step is done, after the last collective):
    torch's gloo threads abort a process at its exit now and then ("terminate called without
    an active exception"), which turned a finished run into a failed one. None otherwise:
    a Python exception on any rank, or no encoder of this launch's."""
    failures = error.failures
    # A Python exception leaves its error file (``record``); a signal leaves none.
    signalled = [f.exitcode < 0 and not Path(f.error_file).is_file() for f in failures.values()]
    if not failures or not all(signalled):
        return None
    if _modified(encoder) in (None, written_before):
        return None
    return ", ".join(
        f"rank {rank} died by {failure.signal_name()}" for rank, failure in sorted(failures.items())
    )


def rank_failure(num_processes: int, out: str, rank: int, message: object) -> Exception:
    """The error for a failed rank, ending with its exception line. A rank's ``ValueError``
    (bad input: a batch larger than the data, degenerate frames ...) or ``OSError`` (a full
    disk, an output directory not empty) is the user's to fix: it stays one, so the CLI
    prints one line instead of a traceback, as for one process; anything else is a
    ``RuntimeError``."""
    line = _last_line(message)
    kind = _exception_kind(line)
    return kind(f"pretraining in {num_processes} processes failed (out={out}): rank {rank}: {line}")


def _exception_kind(line: str) -> type[Exception]:
    """``ValueError`` or ``OSError`` when the exception line names one of theirs (a builtin
    such as ``FileExistsError``, or the package's own, e.g. ``DegenerateFramesError``), else
    ``RuntimeError``."""
    name = line.split(":", 1)[0].strip()
    module, _, class_name = name.rpartition(".")
    found = None
    if not module:
        found = getattr(builtins, class_name, None)
    elif module.split(".")[0] == "sslrobot":  # only the package's modules are imported
        try:
            found = getattr(importlib.import_module(module), class_name, None)
        except ImportError:
            found = None
    for kind in (OSError, ValueError):
        if isinstance(found, type) and issubclass(found, kind):
            return kind
    return RuntimeError


def _last_line(message: object) -> str:
    """The exception line of a rank's recorded traceback (its last non-empty line)."""
    if isinstance(message, dict):  # the error file's {"message": ..., "extraInfo": ...}
        message = message.get("message", message)
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[-1] if lines else "no error message was recorded"


def _rank_main(config: dict[str, Any], threads: int, progress: bool) -> str:
    """One rank: join the group that the launcher described in the environment, train."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_train_rank)(config, threads, progress)


def _train_rank(config: dict[str, Any], threads: int, progress: bool) -> str:
    import torch

    from sslrobot.cli import warning_printer
    from sslrobot.pretraining.trainer import pretrain

    # The package's advice once, as the command line words it: every rank gave it in
    # Python's form with its source line ("--resume: no checkpoint ..." twice).
    quiet = os.environ.get("RANK", "0") != "0"
    warnings.showwarning = warning_printer("pretrain", warnings.showwarning, quiet=quiet)
    torch.set_num_threads(threads)
    return str(pretrain(PretrainConfig.from_dict(config), progress=progress))


def saved_cpu_threads(config: PretrainConfig, num_processes: int = 1) -> int | None:
    """The CPU threads per process the run being resumed trained with, when it recorded them
    and trains on a CPU again. ``pretrain --resume`` without ``--threads`` takes them, and so
    does ``pretrain_in_processes`` (``sslrobot run`` resumes through it), since another count
    rounds CPU sums otherwise: a resume on a machine with other cores, or one process resuming
    a ``torchrun --threads 1`` run, was not bit-exact. At most this machine's cores shared by
    ``num_processes``, said on stderr (a laptop resuming a 64-core run would be
    oversubscribed)."""
    from sslrobot.pretraining import artifacts
    from sslrobot.utils.device import resolve_device

    record = Path(config.out) / artifacts.PRETRAIN_CONFIG
    if not record.is_file() or resolve_device(config.device).type != "cpu":
        return None
    threads = artifacts.read_json(record, "pretraining config").get("cpu_threads")
    if not isinstance(threads, int) or threads < 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    available = max(1, cores // num_processes) if cores else None
    if available and threads > available:  # a run moved from a bigger machine
        print(
            f"sslrobot pretrain: the run in {config.out} trained with {threads} CPU threads per "
            f"process, this machine has {cores} cores for {num_processes}: resuming with "
            f"{available} (the curve continues, not bit for bit)",
            file=sys.stderr,
        )
        return available
    return threads
