"""Export a dataset directory to Minari, the Farama standard for offline datasets (extra: minari).

Builds Minari ``EpisodeBuffer``s directly and calls ``create_dataset_from_buffers``: Minari's
``DataCollector`` would re-run the env and pulls in jax. Frames stay lossless unless asked
(Minari JPEG-encodes image spaces by default).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sslrobot.data.dataset import open_dataset
from sslrobot.data.manifest import check_fields
from sslrobot.data.verify import verify_dataset

#: Bytes of frames held in memory at once while exporting (at least one episode): a fixed
#: count of 64 episodes held 3 GB of Navigate's 256 px frames, 13 GB at 512 px.
_CHUNK_BYTES = 256 * 2**20


def _chunks(dataset: Any, frame_bytes: int) -> list[list[int]]:
    """The dataset's episode ids in order, cut into runs of at most ``_CHUNK_BYTES`` of frames
    (each episode's ``length`` + 1 frames), one episode at least per run."""
    chunks: list[list[int]] = [[]]
    held = 0
    for episode_id in dataset.episode_ids:
        size = (int(dataset.meta(episode_id)["length"]) + 1) * frame_bytes
        if chunks[-1] and held + size > _CHUNK_BYTES:
            chunks.append([])
            held = 0
        chunks[-1].append(episode_id)
        held += size
    return chunks


def _check_export_fields(manifest: dict[str, Any], path: Path) -> None:
    """Raises ValueError naming ``path``, the field and its value, for the manifest fields an
    export reads beyond every reader's (a hand-edited manifest failed as a bare KeyError)."""
    action_dim = manifest["action_dim"]
    bounds = ("a list of action_dim numbers", lambda v: isinstance(v, list) and len(v) ==
              action_dim and all(isinstance(x, (int, float)) for x in v))  # fmt: skip
    fields: dict[str, tuple[str, Any]] = {
        "action_low": bounds,
        "action_high": bounds,
        "policy": (
            "an object with a string 'name'",
            lambda v: isinstance(v, dict) and isinstance(v.get("name"), str),
        ),
        "base_seed": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        "env_kwargs": ("an object", lambda v: isinstance(v, dict)),
    }
    check_fields(manifest, path, fields, "a Minari export records it")


#: Minari storage format -> the module it needs (Minari installs neither by default).
_BACKENDS = {"hdf5": "h5py", "arrow": "pyarrow", "parquet": "pyarrow"}
#: Minari's storage formats (``--data-format``).
DATA_FORMATS: tuple[str, ...] = tuple(_BACKENDS)
#: A Minari dataset id as ``minari.dataset.minari_dataset.DATASET_ID_RE`` parses it, with the
#: version required: Minari's parser accepts an id without ``-vN`` and then fails inside with
#: a TypeError, and creating a dataset needs the version anyway.
_DATASET_ID = re.compile(r"(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+")


def check_dataset_id(dataset_id: str) -> None:
    """Refuse a Minari id that Minari cannot create a dataset under.

    Raises:
        ValueError: naming the id and the form it needs.
    """
    if not isinstance(dataset_id, str) or not _DATASET_ID.fullmatch(dataset_id):
        raise ValueError(
            f"Minari dataset id {dataset_id!r} is malformed: Minari needs the form "
            "(namespace/)name-vN, e.g. sslrobot/push/random-v0: the version suffix -vN, "
            "letters, digits, '_' and '-', and a namespace (optional; '/' between its parts) "
            "of 2 characters or more"
        )


def _import_minari(data_format: str) -> Any:
    try:
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError as error:
        raise ImportError(
            "Minari export needs the optional extra: pip install 'sslrobot[minari]' "
            f"(import failed: {error})"
        ) from error
    if data_format not in _BACKENDS:
        raise ValueError(f"data_format must be one of {list(_BACKENDS)}, got {data_format!r}")
    if importlib.util.find_spec(_BACKENDS[data_format]) is None:
        raise ImportError(
            f"Minari's {data_format!r} storage needs {_BACKENDS[data_format]}: "
            f"pip install 'minari[{data_format}]'"
        )
    return minari, EpisodeBuffer


def minari_spaces(manifest: dict[str, Any]) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    """Observation and action spaces of the exported data, from the manifest."""
    height, width, channels = manifest["frame_shape"]
    observation_space = gym.spaces.Dict(
        {
            "pixels": gym.spaces.Box(0, 255, (height, width, channels), np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (int(manifest["proprio_dim"]),), np.float32),
        }
    )
    low = np.asarray(manifest["action_low"], np.float32)
    high = np.asarray(manifest["action_high"], np.float32)
    return observation_space, gym.spaces.Box(low, high, dtype=np.float32)


def _collection_env_spec(manifest: dict[str, Any]) -> gym.envs.registration.EnvSpec | None:
    """The spec the dataset was collected with (the registered one, with the collection's
    kwargs and time limit), so that ``MinariDataset.recover_environment()`` makes that env;
    None, with a warning, when its id is not registered here (the export goes on without)."""
    import dataclasses

    import sslrobot.envs  # noqa: F401 - registers the sslrobot ids
    from sslrobot.data.collect_config import find_env_spec

    try:
        spec = find_env_spec(str(manifest["env_id"]))
        limit = manifest.get("max_episode_steps") or spec.max_episode_steps
        kwargs = {**spec.kwargs, **(manifest.get("env_kwargs") or {})}
        spec = dataclasses.replace(spec, kwargs=kwargs, max_episode_steps=limit)
        spec.to_json()  # what Minari stores: an env registered with a class cannot be, nor
    except (ValueError, TypeError) as error:  # one with arguments JSON cannot hold
        warnings.warn(
            f"the export records no env spec ({error}): recover_environment() will not work",
            stacklevel=3,
        )
        return None
    return spec


def export_minari(
    root: Path | str,
    dataset_id: str,
    jpeg: bool = False,
    include_state: bool = False,
    data_format: str | None = None,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
) -> Path:
    """Write the episodes of ``root`` as the Minari dataset ``dataset_id``.

    Minari episode k is the k-th episode of ``root`` in id order; its ``seed`` is the episode
    seed. Observations are ``{"pixels", "proprio"}``; with ``include_state`` the evaluation-only
    state goes into ``infos["state"]`` (L+1, S). The dataset lands where Minari keeps datasets
    (``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``).

    Args:
        root: Dataset directory.
        dataset_id: Minari id, ``(namespace/)(env_name/)name-vN``.
        jpeg: JPEG-encode frames (lossy, smaller); default keeps them exact.
        include_state: Export the privileged state in ``infos``.
        data_format: Minari storage backend (``hdf5``, ``arrow``, ``parquet``); ``hdf5`` (Minari's
            default) when None.
        author, author_email, code_permalink: Minari's provenance fields, recorded when given
            (Minari's warning for each one left out is not repeated: the command's help names
            them).

    Returns:
        The Minari dataset directory.

    Raises:
        ImportError: minari (or its storage backend) is not installed.
        ValueError: a malformed id, an unknown data format, the dataset is empty, or the id
            exists in Minari.
    """
    data_format = data_format or "hdf5"  # Minari's own default
    minari, episode_buffer = _import_minari(data_format)
    check_dataset_id(dataset_id)
    from minari.storage import get_dataset_path

    dataset = open_dataset(root)
    manifest = dataset.manifest
    if not dataset.episode_ids:
        raise ValueError(f"{dataset.root} has no episodes to export")
    # Episodes are read through memory maps, which check nothing: a bit flip would be
    # exported as data. One checksum pass first (an export is rare and reads it all anyway).
    corrupt = verify_dataset(dataset.root).corrupt
    if corrupt:
        first = next(iter(corrupt.values()))[0]
        raise ValueError(
            f"{dataset.root}: {len(corrupt)} corrupt episode(s) ({first}); `sslrobot data "
            "verify` names their files: move them out of episodes/ and run `sslrobot collect "
            "--resume` to collect them again before exporting"
        )
    _check_export_fields(manifest, dataset.root / "manifest.json")
    observation_space, action_space = minari_spaces(manifest)
    if jpeg and min(manifest["frame_shape"][:2]) < _MINARI_JPEG_MIN_SIDE:
        warnings.warn(
            f"--jpeg does nothing for {dataset.root}'s {manifest['frame_shape'][0]} px frames: "
            f"Minari JPEG-encodes only images of at least {_MINARI_JPEG_MIN_SIDE} px a side, so "
            "they are stored exactly",
            stacklevel=2,
        )
    destination = Path(get_dataset_path(dataset_id))
    if destination.exists():
        raise ValueError(
            f"a Minari dataset with id {dataset_id!r} already exists at {destination}; "
            "choose another --name or delete it"
        )

    def buffer(episode_id: int) -> Any:
        arrays = dataset.load_episode(episode_id, include_state=include_state)
        return episode_buffer(
            seed=int(dataset.meta(episode_id)["seed"]),
            observations={
                "pixels": np.array(arrays["pixels"]),
                "proprio": np.array(arrays["proprio"]),
            },
            actions=np.array(arrays["action"]),
            rewards=np.array(arrays["reward"]),
            terminations=np.array(arrays["terminated"]),
            truncations=np.array(arrays["truncated"]),
            infos={"state": np.array(arrays["state"])} if include_state else None,
        )

    chunks = _chunks(dataset, int(np.prod(manifest["frame_shape"])))
    description = (
        f"Exported from sslrobot dataset {dataset.root.name}: env {manifest['env_id']} "
        f"kwargs {manifest['env_kwargs']}, policy {manifest['policy']}, base seed "
        f"{manifest['base_seed']}. Minari episode k is the k-th sslrobot episode in id order; "
        "its seed is the sslrobot episode seed (base seed + episode id)."
    )
    # Minari writes chunk by chunk into its dataset directory, so a killed export would leave a
    # dataset that loads with fewer episodes. It writes into a staging root beside Minari's
    # (same filesystem) instead, and the finished dataset is renamed into place at the end.
    datasets_root = Path(get_dataset_path()).resolve()  # Minari doubles a relative path
    datasets_root.mkdir(parents=True, exist_ok=True)
    beside = datasets_root.parent
    # Beside the root keeps the staged copy out of Minari's listings; inside it only when the
    # root is a mount of its own, where a rename from beside it would fail after the export.
    same_device = beside.stat().st_dev == datasets_root.stat().st_dev
    folder = beside if same_device else datasets_root
    removed = remove_stale_staging(folder)
    if removed:
        warnings.warn(
            f"removed {len(removed)} staging copies left by exports that were killed on this "
            f"host: {', '.join(str(path) for path in removed)}",
            stacklevel=2,
        )
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(), dir=folder))
    try:
        env_spec = _collection_env_spec(manifest)
        with _datasets_path(staging), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`(code_permalink|author|author_email)` is set to None"
            )
            if env_spec is None:  # said once, by _collection_env_spec, with the reason
                warnings.filterwarnings("ignore", message=r"`eval_env` is set to None")
                warnings.filterwarnings("ignore", message=r"env_spec is None")
            exported = minari.create_dataset_from_buffers(
                dataset_id,
                [buffer(i) for i in chunks[0]],
                observation_space=observation_space,
                action_space=action_space,
                env=env_spec,
                eval_env=env_spec,  # sslrobot evaluates in the env it collected in
                algorithm_name=f"sslrobot-{manifest['policy']['name']}",
                author=author,
                author_email=author_email,
                code_permalink=code_permalink,
                description=description,
                data_format=data_format,
                jpeg_encoding=jpeg,
            )
            for chunk in chunks[1:]:
                exported.update_dataset_from_buffer([buffer(i) for i in chunk])
            staged = Path(get_dataset_path(dataset_id))
        destination.parent.mkdir(parents=True, exist_ok=True)
        _copy_namespace_metadata(staged.parent, staging, datasets_root)
        os.rename(staged, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


_STAGING = ".sslrobot-export-"
#: A staging folder's name: the exporting process and its host, then mkdtemp's random part.
_STAGING_NAME = re.compile(rf"{re.escape(_STAGING)}(\d+)@(.*)-[a-z0-9_]+")


def _staging_prefix() -> str:
    """Names the exporting process, so that a later export can tell a killed one's copy
    (its process gone) from a running one's."""
    return f"{_STAGING}{os.getpid()}@{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging copies in ``folder`` of exports killed before their cleanup (kill -9,
    out of memory): each is a whole dataset's size, and nothing else would ever remove them.
    Only those of this host whose process is gone; another host's, sharing the folder over a
    network filesystem, cannot be judged from here. Returns the removed paths."""
    removed = []
    for path in sorted(folder.glob(f"{_STAGING}*")):
        match = _STAGING_NAME.fullmatch(path.name)
        if match is None or match.group(2) != socket.gethostname():
            continue
        if not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


#: Minari's ``is_image_space`` needs both sides at least this long to JPEG-encode a space.
_MINARI_JPEG_MIN_SIDE = 32


def _copy_namespace_metadata(level: Path, staging: Path, datasets_root: Path) -> None:
    """Minari writes ``namespace_metadata.json`` at every level of a namespaced id
    (``a/b/name-v0``: ``a/`` and ``a/b/``); copy each from the staging tree to the same level
    under ``datasets_root`` where it is not there yet (an existing namespace keeps its own)."""
    while level != staging and staging in level.parents:
        metadata = level / "namespace_metadata.json"
        target = datasets_root / level.relative_to(staging) / metadata.name
        if metadata.is_file() and not target.exists():
            shutil.copy2(metadata, target)
        level = level.parent


@contextlib.contextmanager
def _datasets_path(root: Path) -> Iterator[None]:
    """Point Minari's ``MINARI_DATASETS_PATH`` at ``root`` for the duration (Minari reads it
    at each call; not thread-safe, as any change of the environment)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
