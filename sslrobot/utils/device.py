"""Choose a torch device from a user's string, never falling back silently from what was asked."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager

import torch


def check_device_name(name: object) -> str:
    """``name`` if it is a device this package takes (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``, ``mps``), whether or not this machine has it: configs check it when made, so
    that ``--device cuda:x`` is refused before a run makes its directory, not after.

    Raises:
        ValueError: naming the device and the ones taken.
    """
    kind, colon, index = name.partition(":") if isinstance(name, str) else ("", "", "")
    # "cpu:7", "cuda:", "cuda:x" are errors ("cuda:²" too: str.isdigit takes superscripts,
    # int() does not); "mps:0" is what torch calls the one MPS device.
    known = kind in ("auto", "cpu", "cuda", "mps") and not colon
    indexed = kind == "cuda" and index.isascii() and index.isdecimal()
    if not (known or indexed or name == "mps:0"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return name


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The device ``name`` asks for, checked to exist on this machine.

    One rule for every stage (pretraining, policies, probes), so that ``--device cuda`` on a
    machine without CUDA is an error everywhere instead of a quiet CPU run somewhere.

    Args:
        name: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        local_rank: This process's GPU under ``torchrun`` when ``name`` is ``"auto"``/``"cuda"``
            without an index; 0 outside a process group.

    Returns:
        ``cpu``, ``mps`` or ``cuda:N`` (always with an index).

    Raises:
        ValueError: the device is unknown or not available on this machine.
    """
    check_device_name(name)
    mps_available = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif mps_available:
            name = "mps"
        else:
            name = "cpu"
    kind, _, index_text = name.partition(":")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} requested but CUDA is not available "
                f"(torch {torch.__version__}); use device cpu or auto (--device in the CLI)"
            )
        index = int(index_text) if index_text else local_rank
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device cuda:{index} requested but only {torch.cuda.device_count()} GPUs exist"
            )
        return torch.device("cuda", index)
    if kind == "mps":
        if not mps_available:
            raise ValueError(
                f"device {name!r} requested but MPS is not available; use --device cpu"
            )
        return torch.device("mps")
    raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def as_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device: strings (``"auto"`` included) through ``resolve_device``.

    For loaders that take either form, so ``load_encoder(path, device="auto")`` works like
    ``--device auto`` does on the command line.
    """
    if isinstance(device, torch.device):
        # A CUDA or MPS one is checked as its name is: torch.device("cuda") on a machine
        # without CUDA failed deep in torch ("Torch not compiled with CUDA enabled"). Others
        # (cpu:0, meta, a backend of the caller's) are the caller's to choose.
        return resolve_device(str(device)) if device.type in ("cuda", "mps") else device
    return resolve_device(device)


def bfloat16_autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``enabled``, else a plain no-op context (torch
    before 2.5 refuses even a disabled autocast on MPS)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def full_precision(device: torch.device) -> AbstractContextManager:
    """Autocast off inside, where a caller runs under it: for the few sums that bfloat16 would
    round away (keypoints' softmax expectations, InfoNCE logits). A no-op elsewhere, so CPU
    results without autocast are bit-identical with or without it."""
    if _autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


@contextlib.contextmanager
def preserved_cudnn_flags() -> Iterator[None]:
    """Put cuDNN's ``deterministic`` and ``benchmark`` flags back as they were on exit.

    Stable-Baselines3 seeds a GPU learner with ``set_random_seed(seed, using_cuda=True)``,
    which sets them for the whole process (deterministic on, benchmark off); without this,
    the stages ``sslrobot run`` or a user's script runs after an RL policy would inherit what
    RL chose. Plain attributes, so this costs nothing without CUDA.
    """
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _autocast_enabled(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4 has one query per device type
        if device_type == "cuda":
            return torch.is_autocast_enabled()
        return device_type == "cpu" and torch.is_autocast_cpu_enabled()
    except RuntimeError:  # a device type without autocast (MPS before torch 2.5): none runs
        return False


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA from Ampere, compute capability 8,
    on): on older GPUs autocast emulates it and runs slower than float32, so mixed precision
    is not a default there. Asks ``device`` itself, not the current GPU."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
