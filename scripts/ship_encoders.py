"""Copy a default-preset run's ``fdm+future`` encoders into the wheel, with their provenance.

For each task of the run, ``RUN/<task>/pretrain/fdm+future/encoder``'s weights and configs go to
``assets/encoders/<task>/`` beside a ``provenance.json``: where the encoder was pretrained (a
run can reuse another run's finished stage), the run that measured it with its command,
machine and package versions and what it measured (the linear probe and the
25-demonstration success of its BC policies, beside the random encoder's and the state
oracle's), the commit of the repository that copied it, the weights' SHA-256, the hashes of
the scene files the task loads and the encoder's features of four reset frames
(``tests/test_pretrained.py`` checks those two against the envs as they are now).

    python scripts/ship_encoders.py --run runs/default19 --task Reach-v0 Push-v0
    python scripts/ship_encoders.py --run runs/navsal23 --task Navigate-v1

``--check RUN`` ships nothing: it says, per task, whether RUN's encoder is byte for byte the
shipped one (what a rerun of the preset at the current commit must give); exits 1 if not.

``--reproduce RUN`` runs the downstream loop on the shipped encoder with the command line
(``collect``, ``train-policy --encoder pretrained:ENV_ID``, ``evaluate``), with the demonstration
seeds, BC settings and evaluation seed of RUN's ``fdm+future`` policy of seed 0, in ``--work``,
and compares every evaluation episode with RUN's; exits 1 if any differs.

    python scripts/ship_encoders.py --reproduce runs/default19 --task Reach-v0 Push-v0
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sslrobot.data.collect_config import SSLROBOT_NAMESPACE
from sslrobot.load import load_encoder
from sslrobot.pretrained import (
    PROVENANCE,
    REFERENCE_SEEDS,
    file_sha256,
    reset_frame_features,
    scene_hashes,
    shipped_encoders_root,
)
from sslrobot.pretraining.artifacts import ENCODER_CONFIG, ENCODER_WEIGHTS, PRETRAIN_CONFIG
from sslrobot.utils.io import atomic_copy, atomic_write_json

OBJECTIVE = "fdm+future"
REPOSITORY = Path(__file__).resolve().parents[1]
COPIED = (ENCODER_WEIGHTS, ENCODER_CONFIG, PRETRAIN_CONFIG)


def finished_encoder_dir(run: Path, task: str) -> Path:
    """``run``'s ``fdm+future`` encoder directory for ``task``, checked to hold its weights."""
    path = run / task / "pretrain" / OBJECTIVE / "encoder"
    if not (path / ENCODER_WEIGHTS).is_file():
        raise SystemExit(f"{path} holds no {ENCODER_WEIGHTS}: not a finished {OBJECTIVE} stage")
    return path


def measured_in_run(run: Path, task: str) -> dict:
    """What the run measured with the encoder: probe R² and 25-demonstration BC success
    (final checkpoints, training look), with the random encoder's (``none``) and the state
    oracle's beside it, and the run's command, machine and package versions."""
    results = json.loads((run / "results.json").read_text())
    success = {}
    for record in results["aggregated"]:
        if (
            record["task"] == task
            and record["num_demos"] == 25
            and record.get("checkpoint", "final") == "final"
            and record.get("visual_preset", "train") == "train"
            and record["encoder"] in (OBJECTIVE, "state", "none")
        ):
            success[record["encoder"]] = {
                key: record["success"][key] for key in ("mean", "low", "high")
            } | {"num_episodes": record["num_episodes"], "num_seeds": record["num_seeds"]}
    probe = json.loads((run / task / "probe" / OBJECTIVE / "probe.json").read_text())
    header = results["header"]
    return {
        "run": str(run),
        **{key: header[key] for key in ("command", "written", "machine", "package_versions")},
        "bc_success_25_demos": success,
        "probe_r2_mean": probe["probe/r2_mean"],
    }


def repository_state() -> dict[str, object]:
    """The commit of the repository this script lives in, and whether its tree had changes
    (outside the shipped encoders' directory, which shipping itself changes)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(
            git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!assets/encoders")
        ),
    }


def with_training_data(pretrained: dict) -> dict:
    """``pretrain_config.json``'s content with the identity of each dataset it trained on
    (what lets a probe recognise the training episodes in a copy or a recollection of the data,
    ``sslrobot.evaluation.prediction.trained_episodes``), for encoders pretrained before the
    record existed. One pretrained before the training episodes were recorded (session 16) gets
    them too, drawn again with its split settings and checked against its window count. Reads
    the data where the pretraining found it (run from the repository root)."""
    from sslrobot.data import open_dataset
    from sslrobot.data.manifest import dataset_identity
    from sslrobot.data.windows import open_windows
    from sslrobot.pretraining import PretrainConfig
    from sslrobot.pretraining.trainer import train_episode_ids

    if pretrained.get("train_dataset_identities") is not None:
        return pretrained
    config = PretrainConfig.from_dict(pretrained["pretrain"])
    if pretrained.get("train_episode_id_lists") is None:
        windows = open_windows(
            config.data,
            arrays=("pixels", "action"),
            num_steps=config.window_steps,
            split="train",
            val_fraction=config.val_fraction,
            seed=config.episode_split_seed,
            verify_checksums=True,
        )
        if len(windows) != pretrained["num_train_windows"]:
            raise SystemExit(
                f"{config.data}'s training split gives {len(windows)} windows, the pretraining "
                f"recorded {pretrained['num_train_windows']}: not the data it trained on"
            )
        recorded = train_episode_ids(windows)
        pretrained = {
            **pretrained,
            "train_episode_ids": recorded,
            "train_episode_id_lists": list(recorded.values()),
        }
    paths = [Path(path) for path in pretrained["train_episode_ids"]]  # in --data order
    if len(paths) != 1:  # the dict's keys are sorted: only one path keeps --data order
        raise SystemExit(f"{len(paths)} data directories: give their identities by hand")
    identities = [dataset_identity(open_dataset(path).manifest) for path in paths]
    return {**pretrained, "train_dataset_identities": identities}


def record_training_data(root: Path, task: str) -> None:
    """Add ``with_training_data``'s record to a shipped encoder's ``pretrain_config.json``."""
    path = root / task / PRETRAIN_CONFIG
    pretrained = json.loads(path.read_text())
    updated = with_training_data(pretrained)
    if updated != pretrained:
        atomic_write_json(path, updated)
    print(f"{task}: {path} records its data's identity")


def ship(run: Path, task: str, root: Path) -> None:
    source = finished_encoder_dir(run, task)
    config = json.loads((source / ENCODER_CONFIG).read_text())
    pretrained = json.loads((source / PRETRAIN_CONFIG).read_text())
    env_id = SSLROBOT_NAMESPACE + task
    encoder, _ = load_encoder(source)
    target = root / task
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        atomic_copy(source / name, target / name)
    atomic_write_json(target / PRETRAIN_CONFIG, with_training_data(pretrained))
    provenance = {
        "env_id": env_id,
        "objective": OBJECTIVE,
        "pretrained_in": pretrained["pretrain"]["out"],  # a run may reuse another's stage
        "pretrained_with": {
            key: pretrained.get(key) for key in ("sslrobot_version", "torch_version", "world_size")
        },
        "copied_by": repository_state(),
        "weights_sha256": file_sha256(target / ENCODER_WEIGHTS),
        "scene_sha256": scene_hashes(env_id),
        "reference_features": {
            "image_size": config["image_size"],
            "reset_seeds": list(REFERENCE_SEEDS),
            "features": reset_frame_features(encoder, env_id, config["image_size"]),
        },
        "measured": measured_in_run(run, task),
    }
    atomic_write_json(target / PROVENANCE, provenance)
    print(f"{env_id}: shipped {source} -> {target} (sha256 {provenance['weights_sha256'][:16]})")


def check(run: Path, tasks: list[str], root: Path) -> bool:
    same = True
    for task in tasks:
        shipped = json.loads((root / task / PROVENANCE).read_text())["weights_sha256"]
        produced = file_sha256(finished_encoder_dir(run, task) / ENCODER_WEIGHTS)
        verdict = "identical" if produced == shipped else "DIFFERENT"
        print(f"{task}: {run}'s encoder {produced[:16]} vs shipped {shipped[:16]}: {verdict}")
        same &= produced == shipped
    return same


def reproduce(run: Path, task: str, work: Path) -> bool:
    """The shipped encoder's seed-0 policy made with the CLI, against RUN's, episode by episode."""
    env_id = SSLROBOT_NAMESPACE + task
    policy = run / task / "policy" / OBJECTIVE / "demos25" / "seed0" / "policy"
    trained = json.loads((policy / "policy_config.json").read_text())
    settings = trained["train_config"]
    manifest = json.loads((Path(settings["demos"]) / "manifest.json").read_text())
    evaluated = run / task / "eval" / OBJECTIVE / "demos25" / "seed0" / "train" / "result.json"
    theirs = json.loads(evaluated.read_text())
    demos, out = work / f"demos_{task}", work / f"bc_{task}"
    shutil.rmtree(demos, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    commands = [
        ["collect", "--env", env_id, "--policy", "expert", "--seed", str(manifest["base_seed"]),
         "--episodes", str(settings["num_demos"]), "--out", str(demos), "--no-progress"],
        ["train-policy", "--env", env_id, "--encoder", f"pretrained:{env_id}", "--algo", "bc",
         "--demos", str(demos), "--num-demos", str(settings["num_demos"]),
         "--steps", str(settings["steps"]), "--batch-size", str(settings["batch_size"]),
         "--augment-copies", str(settings["augment_copies"]),
         "--augment-color", str(settings.get("augment_color", 0.15)),
         "--val-episodes", str(settings["val_episodes"]), "--seed", str(settings["seed"]),
         "--device", "cpu", "--out", str(out), "--no-progress"],
        ["evaluate", "--env", env_id, "--policy", str(out), "--seed", str(theirs["eval_seed"]),
         "--episodes", str(theirs["num_episodes"]), "--out", str(out / "eval.json"),
         "--no-progress"],
    ]  # fmt: skip
    for command in commands:
        print("$ sslrobot " + " ".join(command), flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sslrobot", *command], check=True)
        print(f"  ({time.perf_counter() - started:.1f} s wall)", flush=True)
    mine = json.loads((out / "eval.json").read_text())
    same = [(e["success"], e["return"]) for e in mine["episodes"]] == [
        (e["success"], e["return"]) for e in theirs["episodes"]
    ]
    print(
        f"{task}: shipped encoder {mine['success_rate']:.2f} success, return "
        f"{mine['mean_return']:.4f}; {run}'s seed 0 {theirs['success_rate']:.2f}, "
        f"{theirs['mean_return']:.4f}; every episode's outcome and return "
        + ("identical" if same else "NOT identical"),
        flush=True,
    )
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="an `sslrobot run --preset default` directory")
    parser.add_argument("--check", type=Path, help="compare this run's encoders, ship nothing")
    parser.add_argument(
        "--reproduce", type=Path, help="remake this run's seed-0 policy on the shipped encoder"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("runs/shipped_check"), help="--reproduce's directory"
    )
    parser.add_argument(
        "--record-data",
        action="store_true",
        help="only add the identity of the data they trained on to the shipped encoders' configs",
    )
    parser.add_argument("--task", nargs="+", required=True, help="task dirs, e.g. Reach-v0")
    parser.add_argument("--out", type=Path, default=None, help="default: the package's assets")
    args = parser.parse_args()
    root = args.out or shipped_encoders_root()
    modes = (args.run, args.check, args.reproduce, args.record_data or None)
    if sum(arg is not None for arg in modes) != 1:
        parser.error("give exactly one of --run (ship), --check, --reproduce and --record-data")
    if args.record_data:
        for task in args.task:
            record_training_data(root, task)
        return
    if args.check is not None:
        sys.exit(0 if check(args.check, args.task, root) else 1)
    if args.reproduce is not None:
        results = [reproduce(args.reproduce, task, args.work) for task in args.task]
        sys.exit(0 if all(results) else 1)
    for task in args.task:
        ship(args.run, task, root)


if __name__ == "__main__":
    main()
