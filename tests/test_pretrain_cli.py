"""``sslrobot pretrain`` end to end on a collected dataset directory (the fake pixel env)."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from test_data_fake_env import FAKE_ENV_ID, collect_fake

import sslrobot
from sslrobot.cli import main
from sslrobot.data import CollectConfig, WindowDataset, collect
from sslrobot.pretraining import PretrainConfig, artifacts, load_world_model

SIZE = 32


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pretrain_cli") / "data"
    config = CollectConfig(
        env_id=FAKE_ENV_ID,
        out=root,
        num_episodes=6,
        image_size=SIZE,
        env_kwargs={"image_size": SIZE},
    )
    return collect(config, progress=False)


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "pretrain", "--data", str(data), "--out", str(out), "--batch-size", "8",
        "--num-steps-ahead", "2", "--log-every", "1", "--checkpoint-every", "2",
        "--image-every", "2", "--no-tensorboard", "--no-progress", *extra,
    ]  # fmt: skip


def test_pretrain_command_writes_a_loadable_encoder(data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fdm_future"
    assert main(_args(data_dir, out, "--steps", "2", "--feature-dim", "24")) == 0
    assert str(out) in capsys.readouterr().out
    encoder, config = sslrobot.load_encoder(out)
    assert config.image_size == SIZE and config.feature_dim == 24
    frames = torch.zeros(2, SIZE, SIZE, 3, dtype=torch.uint8)
    assert encoder(frames).shape == (2, 24)
    assert (out / artifacts.PREDICTIONS / "step_00002.png").is_file()  # validation windows
    with (out / artifacts.METRICS).open() as file:
        assert [row["step"] for row in csv.DictReader(file)] == ["1", "2"]
    assert load_world_model(out).has_decoder
    # Resume to 3 steps; then a fresh run into the same directory is refused (exit code 2).
    assert main(_args(data_dir, out, "--steps", "3", "--feature-dim", "24", "--resume")) == 0
    assert main(_args(data_dir, out, "--steps", "3", "--feature-dim", "24")) == 2
    assert "not empty" in capsys.readouterr().err
    # A dataset's directory as --out: named, even with --resume, which wrote an encoder among
    # the episodes (the refusal above advises --resume).
    for extra in ((), ("--resume",)):
        assert main(_args(data_dir, data_dir, "--steps", "2", *extra)) == 2
        assert "is a dataset (`sslrobot collect --out`), not an encoder's directory" in (
            capsys.readouterr().err
        )
    assert not (data_dir / artifacts.ENCODER_WEIGHTS).exists()


def test_none_baseline_and_encoder_options(data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "none"
    assert main(_args(data_dir, out, "--objective", "none", "--steps", "0", "--threads", "1")) == 0
    assert sslrobot.load_encoder(out)[1].readout == "keypoints"  # the package default
    # Trained on nothing: no seeds or envs shared with a stream it never saw (its split is
    # recorded all the same, and evaluations of policies on it warned of overlap).
    assert json.loads((out / "pretrain_config.json").read_text())["train_episode_id_lists"]
    assert artifacts.pretraining_reset_seeds(out, FAKE_ENV_ID) == []
    assert artifacts.pretraining_env_ids(out) == []
    trained = tmp_path / "trained"
    assert main(_args(data_dir, trained, "--objective", "inverse", "--steps", "1")) == 0
    assert artifacts.pretraining_reset_seeds(trained, FAKE_ENV_ID)  # one step: it saw them
    out = tmp_path / "drqv2"
    assert (
        main(
            _args(
                data_dir, out, "--objective", "inverse", "--steps", "1", "--encoder-arch", "drqv2"
            )
        )
        == 0
    )
    assert sslrobot.load_encoder(out)[1].channels == (32, 32, 32, 32)
    bad = _args(data_dir, tmp_path / "bad", "--steps", "1", "--encoder-channels", "8,8,8,8")
    assert main(bad) == 2  # four layers need four strides
    kernels = ("--encoder-channels", "8,8", "--encoder-strides", "2,2", "--encoder-kernels", "3")
    assert main(_args(data_dir, tmp_path / "bad", "--steps", "1", *kernels)) == 2
    assert "--encoder-kernels must have one entry per layer (2)" in capsys.readouterr().err
    strides = ("--encoder-channels", "16,32", "--encoder-strides", "2")  # named as typed
    assert main(_args(data_dir, tmp_path / "bad", "--steps", "1", *strides)) == 2
    assert "--encoder-strides must have one entry per layer (2)" in capsys.readouterr().err
    for option in (("--decoder", "heatmaps"), ("--decoder-proprio",)):  # fdm decodes nothing
        assert main(_args(data_dir, tmp_path / "fdm", "--objective", "fdm", *option)) == 2
    # Settings of parts the objective does not build were recorded as used and changed nothing.
    for objective, option in (("fdm", ("--future-without-actions",)),
                              ("recon", ("--transition-without-norm",)),
                              ("inverse", ("--salience-weight", "3"))):  # fmt: skip
        unused = _args(data_dir, tmp_path / objective, "--objective", objective, *option)
        assert main(unused) == 2
        error = capsys.readouterr().err
        assert option[0] in error and f"objective {objective!r} has none" in error, error
        assert not (tmp_path / objective).exists()
    # Refused for a new run only: a config an earlier version saved so still loads (to resume,
    # probe or ship what it made).
    saved = PretrainConfig(out="o", data="d", objective="recon", transition_norm=False)
    assert PretrainConfig.from_dict(saved.to_dict()).transition_norm is False
    out = tmp_path / "free"
    assert main(_args(data_dir, out, "--steps", "1", "--future-without-actions")) == 0
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert saved["pretrain"]["future_actions"] is saved["world_model"]["future_actions"] is False
    out = tmp_path / "unnormed"
    assert main(_args(data_dir, out, "--steps", "1", "--transition-without-norm")) == 0
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert saved["pretrain"]["transition_norm"] is saved["world_model"]["transition_norm"] is False
    model = load_world_model(out)
    assert isinstance(model.transition.norm, torch.nn.Identity)
    for decoder, field in (("heatmaps", "heatmaps"), ("keypoint-skip", "keypoint_skip")):
        out = tmp_path / decoder
        options = ("--steps", "1", "--decoder", decoder)
        with pytest.warns(UserWarning, match="--transition-without-norm"):  # fdm+future
            assert main(_args(data_dir, out, *options, "--encoder-arch", "keypoints")) == 0
        saved = json.loads((out / "pretrain_config.json").read_text())
        assert saved["pretrain"]["decoder"][field] is True
        no_keypoints = (*options, "--encoder-arch", "cnn")
        assert main(_args(data_dir, tmp_path / f"bad-{decoder}", *no_keypoints)) == 2


def test_pretrain_on_mixed_streams_of_several_datasets(
    data_dir: Path, tmp_path: Path, capsys
) -> None:
    other = collect_fake(tmp_path / "other", num_episodes=4, image_size=SIZE, seed=77)
    out = tmp_path / "mixed"
    args = _args(data_dir, out, "--steps", "2")
    args[args.index("--data") + 1 : args.index("--data") + 2] = [str(data_dir), str(other)]
    assert main(args) == 0
    saved = json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())
    assert saved["pretrain"]["data"] == [str(data_dir), str(other)]  # both streams recorded
    windows = [len(WindowDataset(d, 2, split="train", val_fraction=0.1)) for d in (data_dir, other)]
    assert saved["num_train_windows"] == sum(windows)
    # Resuming with the same list continues; the run reads both datasets' windows.
    assert main([*args, "--steps", "3", "--resume"]) == 0
    one = ["pretrain", "--out", str(out), "--resume", "--steps", "4", "--data", str(data_dir)]
    capsys.readouterr()
    assert main(one) == 2  # was refused by a count of windows, naming neither directory
    assert "trained on 2 data directories" in capsys.readouterr().err
    # Listed against the alphabetical order the record keeps its keys in: still resumes
    # (it was refused), and the frames' proprio is mixed too (it was dropped: KeyError).
    reverse = tmp_path / "reverse"
    flipped = _args(data_dir, reverse, "--steps", "1", "--objective", "future",
                    "--decoder-proprio")  # fmt: skip
    first = flipped.index("--data") + 1
    flipped[first : first + 1] = sorted([str(data_dir), str(other)], reverse=True)
    assert main(flipped) == 0
    assert main([*flipped, "--steps", "2", "--resume"]) == 0


def test_resume_compares_the_split_actually_drawn_and_refuses_a_useless_option(
    data_dir: Path, tmp_path: Path
) -> None:
    """A run saved with no split seed drew its split with its seed: naming that seed is the
    same run (``sslrobot run`` now always names it). And decoder proprio with no frame
    decoded without context did nothing (or stopped DDP at its first step)."""
    from sslrobot.pretraining import pretrain

    out = tmp_path / "run"
    assert main(_args(data_dir, out, "--steps", "1", "--seed", "2")) == 0
    assert main(_args(data_dir, out, "--steps", "2", "--seed", "2", "--split-seed", "2",
                      "--resume")) == 0  # fmt: skip
    config = PretrainConfig(out=str(tmp_path / "p"), data=str(data_dir), objective="future",
                            decoder_proprio=True, context_dropout=0.0, steps=1, batch_size=4,
                            num_steps_ahead=2, tensorboard=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"context_dropout=0.0 of 4 windows .* leaves none"):
        pretrain(config, progress=False)


def _launch_config(data: Path, out: Path, batch_size: int) -> PretrainConfig:
    from sslrobot.models import DecoderConfig, EncoderConfig

    return PretrainConfig(
        out=str(out),
        data=str(data),
        steps=3,
        batch_size=batch_size,
        num_steps_ahead=2,
        decoded_steps=2,  # decode every k and no augmentation: no per-rank random choice,
        augment="none",  # so two ranks take the step of one process with their batches
        log_every=1,
        checkpoint_every=0,
        image_every=0,
        tensorboard=False,
        device="cpu",
        encoder=EncoderConfig(
            image_size=SIZE, channels=(8,), kernel_sizes=(4,), strides=(4,), paddings=(0,)
        ),
        decoder=DecoderConfig(channels=(8,), shuffle=4),
        transition_hidden_dim=16,
        head_hidden_dim=16,
        projection_dim=8,
    )


def test_resume_takes_the_saved_settings_and_refuses_options_that_change_them(
    data_dir: Path, tmp_path: Path, capsys
) -> None:
    """``--resume`` alone continues a run made with many options (it was refused unless every
    one was repeated); an option given that the run did not use is refused, even one that
    repeats its default."""
    out = tmp_path / "run"
    made = ("--objective", "future", "--feature-dim", "24", "--seed", "3", "--steps", "2")
    assert main(_args(data_dir, out, *made)) == 0
    capsys.readouterr()
    assert main(["pretrain", "--out", str(out), "--resume", "--steps", "3", "--no-progress"]) == 0
    saved = json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())
    assert saved["pretrain"]["objective"] == "future" and saved["pretrain"]["seed"] == 3
    assert saved["pretrain"]["steps"] == 3 and saved["pretrain"]["num_steps_ahead"] == 2
    assert sslrobot.load_encoder(out)[1].feature_dim == 24
    with (out / artifacts.METRICS).open() as file:
        assert [row["step"] for row in csv.DictReader(file)][-1] == "3"
    resume = ["pretrain", "--out", str(out), "--resume", "--steps", "4", "--no-progress"]
    assert main([*resume, "--objective", "fdm"]) == 2
    assert "objective: saved 'future', now 'fdm'" in capsys.readouterr().err
    assert main([*resume, "--num-steps-ahead", "3"]) == 2  # the default, but not this run's
    assert "--num-steps-ahead: saved 2, now 3" in capsys.readouterr().err  # the option typed
    assert main(["pretrain", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "holds no saved run" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(tmp_path / "new")]) == 2
    assert "--data is required" in capsys.readouterr().err


def test_resume_takes_the_runs_cpu_thread_count_and_warns_of_another(
    data_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """CPU sums round otherwise with another thread count: a resume in a process with
    another default count (another machine, one process resuming a ``torchrun --threads 1``
    run) went on without a word and not bit for bit."""
    before = torch.get_num_threads()
    out = tmp_path / "threads"
    try:
        assert main(_args(data_dir, out, "--steps", "1", "--threads", "2")) == 0
        assert json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())["cpu_threads"] == 2
        torch.set_num_threads(1)
        resume = ["pretrain", "--out", str(out), "--resume", "--no-progress"]
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            assert main([*resume, "--steps", "2"]) == 0
        assert torch.get_num_threads() == 2
        with pytest.warns(UserWarning, match=r"trained with 2 CPU thread\(s\) per process, "
                          r"this one has 1.*--threads 2"):  # fmt: skip
            assert main([*resume, "--steps", "3", "--threads", "1"]) == 0
        # A run from a machine with more cores than this one's is resumed with this one's.
        from types import SimpleNamespace

        from sslrobot.pretraining import launch

        record = out / artifacts.PRETRAIN_CONFIG
        record.write_text(json.dumps({**json.loads(record.read_text()), "cpu_threads": 64}))
        monkeypatch.setattr(launch.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        assert launch.saved_cpu_threads(SimpleNamespace(out=out, device="cpu")) == 2
        assert "trained with 64 CPU threads per process, this machine has 2 cores for 1" in (
            capsys.readouterr().err
        )
        assert launch.saved_cpu_threads(SimpleNamespace(out=out, device="cpu"), 2) == 1
        # `sslrobot run` resumes through pretrain_in_processes, which took this machine's
        # count instead of the recorded one.
        record.write_text(json.dumps({**json.loads(record.read_text()), "cpu_threads": 2}))
        torch.set_num_threads(1)
        import sslrobot.pretraining.trainer as trainer

        seen = []
        monkeypatch.setattr(trainer, "pretrain", lambda config, progress: seen.append(
            torch.get_num_threads()) or out)  # fmt: skip
        config = PretrainConfig.from_dict(json.loads(record.read_text())["pretrain"])
        launch.pretrain_in_processes(dataclasses.replace(config, resume=True), 1)
        assert seen == [2]
    finally:
        torch.set_num_threads(before)


def test_resume_repeating_one_encoder_option_keeps_the_rest_of_the_encoder(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """``--feature-dim`` repeated on a resume rebuilt the default architecture around it and
    was refused; a relative --data taken from the record is looked up where the run started."""
    out = tmp_path / "drq"
    made = ("--objective", "inverse", "--encoder-arch", "drqv2", "--feature-dim", "40")
    assert main(_args(data_dir, out, *made, "--steps", "1")) == 0
    resume = ["pretrain", "--out", str(out), "--resume", "--steps", "2", "--no-progress"]
    assert main([*resume, "--feature-dim", "40", "--frame-stack", "1"]) == 0
    assert main([*resume, "--encoder-channels", "32,32,32,32"]) == 0  # its own, alone
    assert sslrobot.load_encoder(out)[1].channels == (32, 32, 32, 32)
    assert main([*resume, "--steps", "3", "--feature-dim", "32"]) == 2
    assert "encoder: saved" in capsys.readouterr().err
    monkeypatch.chdir(data_dir.parent)
    relative = tmp_path / "relative"
    assert main(_args(Path(data_dir.name), relative, "--steps", "1")) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--out", str(relative), "--resume", "--steps", "2"]) == 2
    assert f"the run's data {data_dir.name!r}" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(relative), "--resume", "--steps", "2", "--no-progress",
                 "--data", str(data_dir)]) == 0  # fmt: skip


def test_resume_repeating_the_arch_of_a_run_at_another_image_size(
    data_dir: Path, tmp_path: Path, capsys
) -> None:
    """A run started as `sslrobot run` starts it records the data's image size (32 here);
    repeating its --encoder-arch on --resume rebuilt the encoder at 64 px and was refused
    as another encoder, with no option to say the size."""
    from sslrobot.models.encoder import encoder_config_for
    from sslrobot.pretraining import pretrain

    out = tmp_path / "at32"
    config = PretrainConfig(
        out=str(out), data=str(data_dir), steps=1, batch_size=8, num_steps_ahead=2,
        log_every=1, checkpoint_every=1, image_every=0, tensorboard=False, device="cpu",
        encoder=encoder_config_for("keypoints", SIZE),
    )  # fmt: skip
    pretrain(config, progress=False)
    resume = ["pretrain", "--out", str(out), "--resume", "--steps", "2", "--no-progress"]
    assert main([*resume, "--encoder-arch", "keypoints"]) == 0, capsys.readouterr().err
    assert sslrobot.load_encoder(out)[1].image_size == SIZE
    assert main([*resume, "--steps", "3", "--encoder-arch", "cnn"]) == 2  # another one still
    assert "encoder: saved" in capsys.readouterr().err


def test_pretrain_in_two_processes_matches_one_process_with_the_global_batch(
    data_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The run's ``pretrain_processes`` path: torchrun's launcher, the batch split over ranks.
    A resume that finds nothing to continue starts at step 0, and says so once, in the
    command line's words (each rank said it with its source line)."""
    from sslrobot.pretraining import pretrain
    from sslrobot.pretraining.launch import pretrain_in_processes

    with pytest.raises(ValueError, match="batch_size 7 cannot be split evenly over 2"):
        pretrain_in_processes(_launch_config(data_dir, tmp_path / "odd", 7), 2)
    fresh = dataclasses.replace(_launch_config(data_dir, tmp_path / "ddp", 8), resume=True)
    capfd.readouterr()
    launched = pretrain_in_processes(fresh, 2, 1, False)
    said = [line for line in capfd.readouterr().err.splitlines() if "no checkpoint" in line]
    assert len(said) == 1 and said[0].startswith("sslrobot pretrain: warning: --resume: no")
    record = json.loads((launched / artifacts.PRETRAIN_CONFIG).read_text())
    assert record["world_size"] == 2 and record["pretrain"]["batch_size"] == 4
    torch.set_num_threads(1)
    single = pretrain(_launch_config(data_dir, tmp_path / "one", 8), progress=False)
    two = load_tensors(launched / artifacts.ENCODER_WEIGHTS)
    one = load_tensors(single / artifacts.ENCODER_WEIGHTS)
    assert two.keys() == one.keys()
    # Equal up to float summation order, which Adam's normalised steps amplify to ~2e-5 in 3
    # steps; a rank training on the wrong windows moves weights by ~lr = 1e-3 per step.
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=2e-4, msg=name)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return safetensors.torch.load_file(str(path))


def test_a_failing_rank_names_its_error(tmp_path: Path) -> None:
    from sslrobot.pretraining.launch import pretrain_in_processes

    config = _launch_config(tmp_path / "no_dataset", tmp_path / "out", 8)
    # A missing dataset is the user's to fix: an OSError, one line at the command line.
    with pytest.raises(OSError, match=r"rank \d: FileNotFoundError: .*no_dataset"):
        pretrain_in_processes(config, 2, 1, False)


def test_probe_scores_a_frame_stacked_world_model(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "stacked"
    assert main(_args(data_dir, out, "--steps", "1", "--frame-stack", "2")) == 0
    results = tmp_path / "probe.json"
    probe = ["probe", "--encoder", str(out), "--data", str(data_dir), "--out", str(results)]
    assert main([*probe, "--horizon", "2", "--device", "cpu"]) == 0
    scores = json.loads(results.read_text())
    assert scores["pred/horizon"] == 2 and scores["pred/psnr_k2"] > 0
    assert scores["probe/r2_mean"] is not None


def test_encoder_channels_keep_the_architectures_paddings() -> None:
    """Only --encoder-kernels sets "same" paddings; channel widths alone keep the layout (they
    used to rebuild the paddings as k // 2, a 9x9 keypoint map instead of 8x8)."""
    from sslrobot.cli import build_parser
    from sslrobot.commands.pretrain import _encoder_config
    from sslrobot.models.encoder import encoder_config_for

    def config(*extra: str):
        return _encoder_config(
            build_parser().parse_args(["pretrain", "--data", "d", "--out", "o", *extra])
        )

    keypoints = encoder_config_for("keypoints")
    assert config("--encoder-channels", "8,16,16").paddings == keypoints.paddings
    drqv2 = config("--encoder-arch", "drqv2", "--encoder-channels", "16,16,16,16")
    assert drqv2.paddings == encoder_config_for("drqv2").paddings
    finer = config(
        "--encoder-channels", "16,32,32", "--encoder-kernels", "4,3,3", "--encoder-strides", "4,1,1"
    )
    assert finer.paddings == (2, 1, 1)  # the 17x17 map of the findings


def test_predictions_are_scored_on_episodes_the_world_model_never_trained_on(
    data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """The probe's split (0.2 by its own seed) overlapped the pretraining's training
    episodes; predictions now use the model's own held-out ones, whatever the probe's split."""
    from sslrobot.data.dataset import open_dataset, split_episode_ids
    from sslrobot.evaluation import prediction

    out = tmp_path / "model"
    assert main(_args(data_dir, out, "--steps", "1", "--seed", "3")) == 0
    scored = []

    def spy(model, windows, **kwargs):
        scored.extend(windows.windows.episode_ids)
        return {}

    monkeypatch.setattr(prediction, "prediction_quality", spy)
    prediction.prediction_from_dirs(out, data_dir, horizon=2, device="cpu")
    saved = PretrainConfig.from_dict(
        json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())["pretrain"]
    )
    trained, held_out = split_episode_ids(
        open_dataset(data_dir).episode_ids, saved.val_fraction, saved.seed
    )
    assert scored and set(scored) <= set(held_out) and not set(scored) & set(trained)


def test_a_random_init_ignores_the_batch_and_horizon_it_never_trains_on(
    data_dir: Path, tmp_path: Path
) -> None:
    """What lets ``sslrobot run`` keep them out of a random init's cache key."""
    weights = []
    for batch, horizon in (("8", "2"), ("4", "3")):
        out = tmp_path / f"none_{batch}_{horizon}"
        args = _args(data_dir, out, "--objective", "none", "--steps", "0")
        args[args.index("--batch-size") + 1] = batch
        args[args.index("--num-steps-ahead") + 1] = horizon
        assert main(args) == 0
        weights.append(sslrobot.load_encoder(out)[0].state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_batch_beyond_the_data_is_one_line_not_an_oom(data_dir: Path, tmp_path: Path, capsys):
    """The reported ``--batch-size 100000``: refused with both numbers before any training."""
    args = _args(data_dir, tmp_path / "big", "--steps", "2")
    args[args.index("--batch-size") + 1] = "100000"
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        rf"sslrobot pretrain: error: --batch-size 100000: a step takes 100000 windows, but the "
        rf"training split of {re.escape(str(data_dir))} holds only \d+; pass a smaller "
        r"--batch-size \(at most \d+; `sslrobot run`: --set pretrain_batch_size, the total over "
        r"processes, at most \d+\) or collect more episodes",
        err,
    ), err


def test_split_seed_sets_the_held_out_episodes_apart_from_the_seed(
    data_dir: Path, tmp_path: Path
) -> None:
    """Pretrainings compared over seeds share ``--split-seed``, so a probe can score them all on
    episodes none trained on."""
    from sslrobot.data.dataset import open_dataset, split_episode_ids

    ids = open_dataset(data_dir).episode_ids
    seed, split_seed = next(
        (a, b)
        for a in range(50)
        for b in range(50)
        if split_episode_ids(ids, 0.1, a)[1] != split_episode_ids(ids, 0.1, b)[1]
    )
    out = tmp_path / "model"
    args = ("--steps", "1", "--seed", str(seed), "--split-seed", str(split_seed))
    assert main(_args(data_dir, out, *args)) == 0
    saved = json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())
    assert saved["pretrain"]["split_seed"] == split_seed
    trained = next(iter(saved["train_episode_ids"].values()))
    assert trained == split_episode_ids(ids, 0.1, split_seed)[0]
    assert trained != split_episode_ids(ids, 0.1, seed)[0]


def test_prediction_scoring_leaves_out_trained_episodes_after_the_dataset_grew(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A grown dataset holds out more episodes, and its split can move episodes the model
    trained on into ``val``; pretraining records the episodes it trained on (by resolved
    directory, so another working directory finds them), scoring skips them, and a resume on
    the grown dataset is refused."""
    from sslrobot.data.dataset import split_episode_ids
    from sslrobot.evaluation import prediction

    before, after = list(range(6)), list(range(30))
    # A split seed under which growing from 6 to 30 episodes moves a trained one into val.
    seed = next(
        s
        for s in range(100)
        if set(split_episode_ids(before, 0.1, s)[0]) & set(split_episode_ids(after, 0.1, s)[1])
    )
    monkeypatch.chdir(tmp_path)  # relative paths, as the pipeline writes them
    data = Path("data")
    settings = {"env_id": FAKE_ENV_ID, "out": data, "image_size": SIZE,
                "env_kwargs": {"image_size": SIZE}}  # fmt: skip
    collect(CollectConfig(num_episodes=6, **settings), progress=False)
    out = Path("model")
    assert main(_args(data, out, "--steps", "1", "--seed", str(seed))) == 0
    trained = split_episode_ids(before, 0.1, seed)[0]
    saved = json.loads((out / artifacts.PRETRAIN_CONFIG).read_text())
    assert saved["train_episode_ids"] == {str(data.resolve()): trained}
    collect(CollectConfig(num_episodes=30, resume=True, **settings), progress=False)
    moved = set(trained) & set(split_episode_ids(after, 0.1, seed)[1])
    capsys.readouterr()
    assert main(_args(data, out, "--steps", "2", "--seed", str(seed), "--resume")) == 2
    assert "trained on other episodes than the data given" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "model")  # elsewhere: the record is by resolved path
    model, data = tmp_path / "model", tmp_path / "data"
    assert prediction.trained_episodes(model, data) == trained
    # A copy elsewhere (or a recollection with the same settings) is the same data: its
    # identity finds the training episodes where the path does not.
    import shutil
    import warnings

    copy = shutil.copytree(data, tmp_path / "copy")
    assert prediction.trained_episodes(model, copy) == trained
    stored_otherwise = shutil.copytree(data, tmp_path / "format1")  # how it is stored: same
    manifest = json.loads((stored_otherwise / "manifest.json").read_text())
    manifest["format_version"] = 1
    (stored_otherwise / "manifest.json").write_text(json.dumps(manifest))
    assert prediction.trained_episodes(model, stored_otherwise) == trained
    other = tmp_path / "other"
    collect(CollectConfig(num_episodes=6, seed=1, **{**settings, "out": other}), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prediction.trained_episodes(model, other) == []  # another seed: other episodes
    older = {k: v for k, v in saved.items() if k != "train_dataset_identities"}
    (model / artifacts.PRETRAIN_CONFIG).write_text(json.dumps(older))
    with pytest.warns(UserWarning, match="by path only"):  # before the identities: can't tell
        assert prediction.trained_episodes(model, copy) == []
    (model / artifacts.PRETRAIN_CONFIG).write_text(json.dumps(saved))
    scored: list[int] = []

    def spy(model, windows, **kwargs):
        scored.extend(windows.windows.episode_ids)
        return {}

    monkeypatch.setattr(prediction, "prediction_quality", spy)
    prediction.prediction_from_dirs(model, data, horizon=2, device="cpu")
    assert scored and not set(scored) & set(trained)
    # Without the record (a model from before it) the moved episodes would be scored.
    for key in ("train_episode_ids", "train_episode_id_lists", "train_dataset_identities"):
        del saved[key]
    (model / artifacts.PRETRAIN_CONFIG).write_text(json.dumps(saved))
    scored.clear()
    prediction.prediction_from_dirs(model, data, horizon=2, device="cpu")
    assert moved <= set(scored)
    # A damaged held-out episode is refused by name (it was skipped with a warning, or scored
    # with its flipped bytes, since memory maps check nothing).
    from archive_damage import flip_member_byte

    from sslrobot.data.storage import episode_path

    flip_member_byte(episode_path(data, min(scored)), "pixels.npy", position=-7)
    with pytest.raises(ValueError, match=rf"episode {min(scored)} of .* is corrupt.*CRC"):
        prediction.prediction_from_dirs(model, data, horizon=2, device="cpu")


def test_an_encoder_trained_elsewhere_records_its_episodes_for_the_probe(tmp_path: Path) -> None:
    """An encoder saved on its own (e.g. ``bench_probe_ceiling.py --save``'s, trained on
    labels) lists its training episodes with ``save_trained_episodes``: the probe leaves them
    out of its scoring, at the data's path and in a copy, as it does a pretraining's."""
    import shutil
    import warnings

    from sslrobot.evaluation import prediction, probe
    from sslrobot.models import Encoder, EncoderConfig

    data = tmp_path / "data"
    settings = {"env_id": FAKE_ENV_ID, "image_size": SIZE, "env_kwargs": {"image_size": SIZE}}
    collect(CollectConfig(num_episodes=12, out=data, **settings), progress=False)
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    config = EncoderConfig(image_size=SIZE)
    artifacts.save_json(encoder / artifacts.ENCODER_CONFIG, config.to_dict())
    artifacts.save_safetensors(encoder / artifacts.ENCODER_WEIGHTS, Encoder(config).state_dict())
    assert prediction.trained_episodes(encoder, data) == []  # nothing recorded: nothing known
    assert artifacts.pretraining_env_ids(encoder) == []
    trained = [1, 2, 3, 5, 8]
    # A mistyped directory is not made, an episode the data lacks not recorded.
    with pytest.raises(FileNotFoundError, match=r"encoder directory .*encodr does not exist"):
        artifacts.save_trained_episodes(tmp_path / "encodr", {data: trained})
    with pytest.raises(ValueError, match=r"holds no episodes \[12, 40\]"):
        artifacts.save_trained_episodes(encoder, {data: [*trained, 12, 40]})
    assert not (tmp_path / "encodr").exists()
    assert not (encoder / artifacts.TRAINED_EPISODES).exists()
    artifacts.save_trained_episodes(str(encoder), {str(data): trained})  # str paths too
    copy = shutil.copytree(data, tmp_path / "copy")
    other = tmp_path / "other"  # another seed: other episodes under the same ids
    collect(CollectConfig(num_episodes=12, out=other, seed=1, **settings), progress=False)
    assert prediction.trained_episodes(encoder, data) == trained
    assert prediction.trained_episodes(encoder, copy) == trained
    assert prediction.trained_episodes(encoder, other) == []
    # ... and a policy on it is warned of evaluation seeds it trained on, as a pretraining's.
    assert artifacts.pretraining_env_ids(encoder) == [FAKE_ENV_ID]
    assert artifacts.pretraining_reset_seeds(encoder, FAKE_ENV_ID)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the record is there: no "nothing says" warning
        metrics = probe.probe_representation(
            str(encoder), copy, val_fraction=0.5, device="cpu", progress=False
        )
    assert metrics["probe/num_val_excluded"] >= 1
    from sslrobot.data import open_dataset

    _, val_ids, _ = probe.split_unseen(open_dataset(copy), 0.5, 0, trained)
    assert metrics["probe/num_val_episodes"] == len(val_ids)
    assert not set(val_ids) & set(trained)


def test_pretraining_skips_an_episode_whose_bytes_were_flipped(data_dir, tmp_path) -> None:
    """Training reads pixels memory-mapped, past the archive's CRC: the CRC is checked once
    at the start, so a bit flip is named and its episode left out, not trained on unseen."""
    import shutil

    from archive_damage import flip_member_byte

    from sslrobot.data.storage import episode_path

    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    flip_member_byte(episode_path(copy, 1), "pixels.npy", position=-7)
    with pytest.warns(UserWarning, match=r"episode 1 of .* is corrupt.*CRC"):
        assert main(_args(copy, tmp_path / "out", "--steps", "1", "--image-every", "0")) == 0


def test_resume_refuses_a_recollection_of_other_episodes(tmp_path: Path, capsys) -> None:
    """The ids and the window count were all a resume compared: data recollected with another
    seed (or task, or look) and the same counts continued the run on other episodes."""
    settings = {"env_id": FAKE_ENV_ID, "num_episodes": 6, "image_size": SIZE,
                "env_kwargs": {"image_size": SIZE}}  # fmt: skip
    first = collect(CollectConfig(out=tmp_path / "a", **settings), progress=False)
    other = collect(CollectConfig(out=tmp_path / "b", seed=1, **settings), progress=False)
    out = tmp_path / "model"
    assert main(_args(first, out, "--steps", "2")) == 0
    capsys.readouterr()
    assert main(_args(other, out, "--steps", "4", "--resume")) == 2
    err = capsys.readouterr().err
    assert "trained on other data than" in err and "base_seed differ" in err
    copy = __import__("shutil").copytree(first, tmp_path / "moved")  # a copy is the same data
    assert main(_args(copy, out, "--steps", "4", "--resume")) == 0


def test_a_run_stage_folder_given_for_an_encoder_or_dataset_points_one_level_down(
    tmp_path: Path,
) -> None:
    """`sslrobot run` keeps a stage's encoder in `encoder/` and its data in `dataset/`: given
    the stage folder, the errors asked whether the run had finished, which it had."""
    from sslrobot.data.manifest import MANIFEST_NAME, read_manifest

    stage = tmp_path / "pretrain" / "fdm+future"
    (stage / "encoder").mkdir(parents=True)
    (stage / "encoder" / artifacts.ENCODER_CONFIG).write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"the encoder of a run's stage is in .*/encoder"):
        sslrobot.load_encoder(stage)
    data = tmp_path / "data" / "unlabeled"
    (data / "dataset").mkdir(parents=True)
    (data / "dataset" / MANIFEST_NAME).write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"the dataset of a run's stage is .*/dataset"):
        read_manifest(data)


def test_a_run_resumed_from_python_takes_its_saved_settings(data_dir: Path, tmp_path: Path) -> None:
    """From Python a resume had to repeat every setting of the run (the defaults it fell back
    on were refused, or named the data for a batch size it never used)."""
    from sslrobot.pretraining import pretrain

    first = _launch_config(data_dir, tmp_path / "run", 8)
    pretrain(dataclasses.replace(first, checkpoint_every=3), progress=False)
    resumed = PretrainConfig.resumed(tmp_path / "run", steps=5)
    assert resumed.resume and resumed.steps == 5 and resumed.out == str(tmp_path / "run")
    assert dataclasses.replace(resumed, steps=3, resume=False, checkpoint_every=0) == first
    from sslrobot.pretraining.launch import pretrain_in_processes

    threads = torch.get_num_threads()
    with pytest.warns(UserWarning, match=r"trained with \d+ CPU thread"):  # another count
        pretrain_in_processes(resumed, 1, threads_per_process=threads + 1, progress=False)
    assert torch.get_num_threads() == threads  # the caller's count, given back
    record = json.loads((tmp_path / "run" / artifacts.PRETRAIN_CONFIG).read_text())
    assert record["pretrain"]["steps"] == 5
    with pytest.raises(FileNotFoundError, match=r"nothing is not a directory"):
        PretrainConfig.resumed(tmp_path / "nothing")
