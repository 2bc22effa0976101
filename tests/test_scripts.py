"""The benchmark scripts' own helpers, on toy inputs (the benchmarks themselves run at real
sizes and are not tests): what they compute must be what their docstrings and the findings
say, or every number they print is suspect."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def bench_heads():
    sys.path.insert(0, str(SCRIPTS))  # the scripts import each other as siblings
    try:
        import bench_heads

        yield bench_heads
    finally:
        sys.path.remove(str(SCRIPTS))


def test_chunk_targets_stay_within_each_episode(bench_heads) -> None:
    actions = np.arange(5, dtype=float)[:, None]  # episodes [0, 1, 2] and [3, 4]
    targets = bench_heads.chunk_targets(actions, np.array([3, 2]), chunk=3)
    expected = [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]]
    np.testing.assert_array_equal(targets, expected)


def test_temporal_ensemble_averages_every_running_chunk(bench_heads) -> None:
    """Step t acts on the weighted mean of each running chunk's action for step t, oldest
    weighted most; reset forgets the episode."""
    outputs = iter([np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.array([5.0, 6.0])])
    ensemble = bench_heads.TemporalEnsemble(lambda _row: next(outputs), chunk=2, decay=0.0)
    empty = np.zeros(0)
    assert ensemble(empty, empty, empty) == pytest.approx([1.0])
    assert ensemble(empty, empty, empty) == pytest.approx([(2.0 + 10.0) / 2])
    ensemble.reset()
    assert ensemble(empty, empty, empty) == pytest.approx([5.0])
    # ACT's weights exp(-decay * i), i = 0 for the oldest chunk: the oldest counts most.
    outputs = iter([np.array([1.0, 2.0]), np.array([10.0, 20.0])])
    ensemble = bench_heads.TemporalEnsemble(lambda _row: next(outputs), chunk=2, decay=1.0)
    ensemble(empty, empty, empty)
    weight = np.exp(-1.0)
    expected = (2.0 + weight * 10.0) / (1.0 + weight)
    assert ensemble(empty, empty, empty) == pytest.approx([expected])


def test_episode_context_is_the_first_frame_or_the_running_mean(bench_heads) -> None:
    features = np.array([[1.0], [3.0], [5.0], [10.0], [20.0]])
    lengths = np.array([3, 2])
    first = bench_heads.episode_context(features, lengths, "first")
    mean = bench_heads.episode_context(features, lengths, "mean")
    np.testing.assert_array_equal(first[:, 0], [1, 1, 1, 10, 10])
    np.testing.assert_allclose(mean[:, 0], [1, 2, 3, 10, 15])


def test_pca_whitener_decorrelates_and_floors_tiny_directions(bench_heads) -> None:
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(4000, 3)) @ np.array([[3.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0, 0, 1]])
    features = np.c_[mixed, np.full(4000, 7.0) + 1e-9 * rng.normal(size=4000)]  # ~constant
    whitened = bench_heads.pca_whitener(features, floor=1e-3)(features)
    np.testing.assert_allclose(np.cov(whitened[:, 1:], rowvar=False), np.eye(3), atol=1e-6)
    assert np.abs(whitened[:, 0]).max() < 1e-3  # the constant column is not blown up
    # dims keeps the directions of largest variance only: here the 3-to-1 mixed pair's first.
    top = bench_heads.pca_whitener(features, floor=1e-3, dims=1)(features)
    assert top.shape == (4000, 1) and abs(np.var(top) - 1.0) < 1e-2
    assert abs(np.corrcoef(top[:, 0], mixed[:, 0])[0, 1]) > 0.9


def test_draw_predictions_writes_real_copy_and_latent_rows(tmp_path: Path, monkeypatch) -> None:
    """Three rows of K + 1 frames per episode, from a tiny fdm+future model."""
    import imageio.v3 as iio
    from test_data_fake_env import FAKE_ENV_ID

    from sslrobot.cli import main
    from sslrobot.data import CollectConfig, collect

    size = 32
    data = collect(
        CollectConfig(
            env_id=FAKE_ENV_ID,
            out=tmp_path / "data",
            num_episodes=3,
            image_size=size,
            env_kwargs={"image_size": size},
        ),
        progress=False,
    )
    model = tmp_path / "model"
    assert main([
        "pretrain", "--data", str(data), "--out", str(model), "--steps", "1", "--batch-size", "4",
        "--num-steps-ahead", "2", "--image-every", "0", "--no-tensorboard", "--no-progress",
    ]) == 0  # fmt: skip
    out = tmp_path / "strip.png"
    argv = ["draw_predictions.py", "--model", str(model), "--data", str(data), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--episodes", "2", "--steps-ahead", "2"])
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import draw_predictions

    draw_predictions.main()
    image = iio.imread(out)
    frame = 3 * size + 2  # --scale 3, a 2-pixel gap
    assert image.shape == (3 * 2 * frame + 2, 3 * frame + 2, 3)


def test_slow_directions_find_what_stays_put_within_episodes(bench_heads) -> None:
    """A per-episode constant (a static target) mixed into fast-changing features is the
    slowest direction, recovered up to sign and scale."""
    rng = np.random.default_rng(1)
    lengths = np.full(200, 20)
    static = np.repeat(rng.normal(size=200), 20)  # constant within each episode
    fast = rng.normal(size=(4000, 2))
    features = np.c_[static + fast[:, 0], static - fast[:, 0] + 0.5 * fast[:, 1], fast[:, 1]]
    slowest = bench_heads.slow_directions(features, lengths, dims=1, floor=1e-6)(features)
    assert abs(np.corrcoef(slowest[:, 0], static)[0, 1]) > 0.99


def test_compare_runs_names_the_return_and_says_when_nothing_overlaps(tmp_path: Path) -> None:
    """A row whose successes matched but whose returns did not read "DIFFERS: success 0.0000 vs
    0.0000"; two runs with no result in common passed as "0 shared results compared"."""
    import json
    import subprocess

    def results(name: str, env_id: str, ret: float) -> Path:
        interval = {"mean": 0.0, "low": 0.0, "high": 0.0}
        row = {"env_id": env_id, "encoder": "none", "visual_preset": "train", "num_demos": 25,
               "success": interval, "return": {**interval, "mean": ret}}  # fmt: skip
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"aggregated": [row]}))
        return path

    def compare(a: Path, b: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, str(SCRIPTS / "compare_runs.py"), str(a), str(b)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    reach = "sslrobot/Reach-v0"
    differs = compare(results("a", reach, -1.0), results("b", reach, -2.0))
    assert differs.returncode == 1 and "return -1.0000 vs -2.0000" in differs.stdout
    # Equal means from other per-seed rates are other results.
    seeded = json.loads(results("s1", reach, -1.0).read_text())
    seeded["aggregated"][0]["success_per_seed"] = [0.0, 0.2]
    (tmp_path / "s1.json").write_text(json.dumps(seeded))
    seeded["aggregated"][0]["success_per_seed"] = [0.1, 0.1]
    (tmp_path / "s2.json").write_text(json.dumps(seeded))
    assert compare(tmp_path / "s1.json", tmp_path / "s2.json").returncode == 1
    disjoint = compare(results("a", reach, -1.0), results("c", "sslrobot/Push-v0", -1.0))
    assert disjoint.returncode == 2 and "nothing to compare" in disjoint.stdout
    # A run missing a task is not the same results, unless asked to compare what is shared.
    both = json.loads(results("a", reach, -1.0).read_text())
    push = json.loads(results("c", "sslrobot/Push-v0", -1.0).read_text())["aggregated"]
    both["aggregated"] += push
    (tmp_path / "both.json").write_text(json.dumps(both))
    missing = compare(tmp_path / "a.json", tmp_path / "both.json")
    assert missing.returncode == 1 and "ONLY IN" in missing.stdout and "Push-v0" in missing.stdout
    command = [sys.executable, str(SCRIPTS / "compare_runs.py"), str(tmp_path / "a.json"),
               str(tmp_path / "both.json"), "--shared-only"]  # fmt: skip
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0


def test_compare_runs_ignores_interval_methods_and_refuses_two_records_of_one_group(
    tmp_path: Path,
) -> None:
    """The interval method changed in sessions 17 and 25: a file written before holds other
    bounds for the same episodes, which compared as DIFFERS. And records were keyed without
    ``algo``, so an RL and a BC record of one group hid each other without a word."""
    import json
    import subprocess

    row = {"env_id": "sslrobot/Reach-v0", "encoder": "none", "visual_preset": "train",
           "num_demos": 25, "algo": "bc", "checkpoint": "final", "seeds": [0, 1],
           "success_per_seed": [1.0, 1.0], "success": {"mean": 1.0, "low": 1.0, "high": 1.0},
           "return": {"mean": -1.0, "low": -2.0, "high": 0.0}}  # fmt: skip
    wilson = {**row, "success": {"mean": 1.0, "low": 0.987, "high": 1.0}}
    paths = []
    for name, rows in (("old", [row]), ("new", [wilson]), ("both", [row, {**row, "algo": "rl"}])):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"aggregated": rows}))
        paths.append(str(path))

    def compare(*files: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(SCRIPTS / "compare_runs.py"), *files]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    assert compare(paths[0], paths[1]).returncode == 0
    longer = {**wilson, "success_per_seed": [1.0, 0.9]}
    (tmp_path / "seeds.json").write_text(json.dumps({"aggregated": [longer]}))
    differs = compare(paths[0], str(tmp_path / "seeds.json"))
    assert differs.returncode == 1 and "DIFFERS (success_per_seed)" in differs.stdout
    assert compare(paths[2], paths[2]).returncode == 0  # the RL record is a group of its own
    (tmp_path / "dup.json").write_text(json.dumps({"aggregated": [row, row]}))
    duplicate = compare(str(tmp_path / "dup.json"), paths[0])
    assert duplicate.returncode != 0 and "two aggregated records" in duplicate.stderr


def test_compare_runs_names_config_fields_the_runs_set_differently(tmp_path: Path) -> None:
    """Two runs of one preset made before and after its bc_augment_copies default moved
    differ in results for a reason their configs record: it is named, and a run that predates
    the field counts as its default (0) rather than being skipped."""
    import json
    import subprocess

    from sslrobot.pipeline.presets import make_run_config

    row = {"env_id": "sslrobot/Reach-v0", "encoder": "none", "visual_preset": "train",
           "num_demos": 25, "success": {"mean": 0.1, "low": 0.0, "high": 0.2},
           "return": {"mean": -1.0, "low": -2.0, "high": 0.0}}  # fmt: skip
    newer = json.loads(json.dumps(make_run_config("default").to_dict()))
    older = {key: value for key, value in newer.items() if key != "bc_augment_copies"}
    paths = []
    for name, config in (("older", older), ("newer", newer)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"aggregated": [row], "header": {"config": config}}))
        paths.append(str(path))
    command = [sys.executable, str(SCRIPTS / "compare_runs.py"), *paths]
    out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    assert "config differs (results may differ for it): bc_augment_copies: 0 vs 8" in out
    assert out.count("config differs") == 1


def test_previous_features_stay_within_each_episode(bench_heads) -> None:
    features = np.arange(5.0)[:, None]  # episodes [0, 1, 2] and [3, 4]
    previous = bench_heads.previous_features(features, np.array([3, 2]))
    assert previous[:, 0].tolist() == [0.0, 0.0, 1.0, 3.0, 3.0]


def test_delta_policy_sees_the_change_since_its_last_call_and_forgets_it_on_reset(
    bench_heads,
) -> None:
    seen = []
    policy = bench_heads.DeltaPolicy(lambda row: seen.append(row.tolist()) or np.zeros(1))
    for value in (1.0, 3.0):
        policy(np.array([value]), None, np.array([9.0]))
    policy.reset()
    policy(np.array([5.0]), None, np.array([9.0]))
    assert seen == [[1.0, 0.0, 9.0], [3.0, 2.0, 9.0], [5.0, 0.0, 9.0]]


def test_an_ensemble_acts_on_the_mean_of_heads_fitted_with_their_own_seeds(bench_heads) -> None:
    seeds = []

    def fit(_demos, seed, _args, _config):
        seeds.append(seed)
        return lambda _f, _m, _p: np.array([float(seed)])

    act = bench_heads.ensemble(fit, 3)(None, 2, None, None)
    assert seeds == [2, 1002, 2002] and act(None, None, None).tolist() == [1002.0]


def test_dart_demonstrations_label_each_visited_state_with_the_clean_expert(
    bench_heads, tmp_path: Path
) -> None:
    """Without noise, DART's transitions are those `collect --policy expert` writes; with it
    the robot leaves that path, and every label is still the expert's clean action (the
    first state is the same reset, so its label is too)."""
    from sslrobot.data import CollectConfig, collect, open_dataset
    from sslrobot.policy.demos import load_transitions
    from sslrobot.policy.environment import StateInObservation, make_env

    size, base_seed = 24, 50
    dataset = open_dataset(
        collect(
            CollectConfig(
                env_id="sslrobot/Reach-v0",
                out=tmp_path / "demos",
                policy="expert",
                num_episodes=2,
                seed=base_seed,
                image_size=size,
                visual_preset="train",
            ),
            progress=False,
        )
    )
    stored = load_transitions(dataset, [0, 1], pixels=True, state=True)
    env = StateInObservation(make_env("sslrobot/Reach-v0", size, "pixels"))
    try:
        clean = bench_heads.dart_transitions(env, [0, 1], base_seed, 0.0, 0.5)
        noisy = bench_heads.dart_transitions(env, [0, 1], base_seed, 0.8, 0.5)
    finally:
        env.close()
    for name in ("pixels", "proprio", "state", "actions", "episode_lengths"):
        np.testing.assert_array_equal(getattr(clean, name), getattr(stored, name), err_msg=name)
    assert not np.array_equal(noisy.proprio[:5], clean.proprio[:5])  # it left the path
    np.testing.assert_array_equal(noisy.actions[0], clean.actions[0])  # same first state
    assert np.all(np.abs(noisy.actions) <= 1.0)
    assert len(noisy.actions) == len(noisy.pixels) == int(noisy.episode_lengths.sum())


def test_train_head_extra_loss_sees_the_head_on_raw_inputs(tmp_path: Path) -> None:
    """``extra_loss``'s ``act`` is the trained head on unstandardised rows (the returned
    ``act`` on the same row gives the same action), and the term is optimised: asked to
    give 0 on every row, the head's actions shrink."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import torch
        from bench_readout import train_head
    finally:
        sys.path.remove(str(SCRIPTS))
    rng = np.random.default_rng(0)
    inputs = rng.normal(5.0, 3.0, size=(256, 4))
    actions = np.tanh(inputs[:, :2] - 5.0).astype(np.float32)
    seen = []

    def pull_to_zero(act, generator):
        seen.append(act)
        return 10.0 * act(torch.from_numpy(inputs.astype(np.float32))).pow(2).mean()

    free = train_head(inputs, actions, 0, 200, 64)
    pulled = train_head(inputs, actions, 0, 200, 64, extra_loss=pull_to_zero)
    row = inputs[3]
    with torch.no_grad():
        inside = seen[-1](torch.from_numpy(row.astype(np.float32))[None])[0].numpy()
    np.testing.assert_allclose(inside, pulled(row), rtol=1e-5, atol=1e-6)
    size = lambda act: np.mean([np.abs(act(r)).sum() for r in inputs])  # noqa: E731
    assert size(pulled) < 0.5 * size(free)


def test_agreement_summary_splits_successes_failures_and_steps(bench_heads) -> None:
    records = [
        (True, [1.0] * 12),
        (False, [0.9, 0.9, 0.9] + [0.5] * 7 + [-1.0, -0.5]),
        (False, [0.7, 0.7]),  # ended early: counts in the first span only
    ]
    summary = bench_heads.agreement_summary(records)
    assert "successes 1: 1.00 / 1.00 / 1.00" in summary
    assert "failures 2: 0.80 / 0.50 / -0.75" in summary


def test_distance_summary_bins_steps_by_distance_to_the_object(bench_heads) -> None:
    records = [
        (True, [1.0, 1.0, 0.5], [0.30, 0.10, 0.03]),
        (False, [0.9, 0.7, -1.0, -0.5], [0.20, 0.10, 0.05, 0.06]),
        (False, [0.8], [0.40]),  # never came near: counts in the far bin only
    ]
    summary = bench_heads.distance_summary(records)
    assert (
        "successes: 1.00 (1) / 1.00 (1) / 0.50 (1), first below 0.5 at - (median of 0)" in summary
    )
    # the failures' first steps below 0.5: at 5 cm (the first), and never (the second)
    assert (
        "failures: 0.85 (2) / 0.70 (1) / -0.75 (1), first below 0.5 at 5.0 cm (median of 1)"
        in summary
    )


def test_head_forms_fit_what_they_can_express(bench_heads) -> None:
    """The linear form fits the tanh of a linear map; what no such map can make (|x|,
    symmetric) only the forms with an MLP fit."""
    from bench_readout import train_head

    rng = np.random.default_rng(0)
    inputs = rng.uniform(-1, 1, (128, 2)).astype(np.float32)
    linear = np.tanh(0.5 * inputs[:, :1] - 0.3 * inputs[:, 1:]).astype(np.float32)
    folded = (np.abs(inputs[:, :1]) - 0.5).astype(np.float32)

    def error(target: np.ndarray, form: str) -> float:
        act = train_head(inputs, target, seed=0, steps=1500, batch=64, form=form)
        predicted = np.stack([act(row) for row in inputs])
        assert predicted.shape == target.shape and np.all(np.abs(predicted) <= 1)
        return float(np.mean((predicted - target) ** 2))

    assert error(linear, "linear") < 1e-3
    # Mixup: a mix of two rows of a nearly linear map is another row of it, so the fit holds.
    mixed = train_head(inputs, linear, seed=0, steps=1500, batch=64, form="linear", mixup=0.4)
    assert (
        np.mean([(mixed(row) - target) ** 2 for row, target in zip(inputs, linear, strict=True)])
        < 5e-3
    )
    folded_errors = {form: error(folded, form) for form in ("mlp", "linear", "skip")}
    assert folded_errors["linear"] > 0.02 > 5e-3 > max(folded_errors["mlp"], folded_errors["skip"])


def test_mixture_head_commits_to_one_of_two_actions_where_mse_averages_them(bench_heads) -> None:
    """Two actions for the same inputs (+0.8 or -0.8 by a coin the inputs do not show): the
    MSE head acts near their mean, the mixture head on one of them, whichever it draws or
    finds most probable."""
    import torch
    from bench_readout import train_head

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(512, 3)).astype(np.float32)
    actions = np.where(rng.random((512, 1)) < 0.5, 0.8, -0.8).astype(np.float32) * np.ones(2)

    def mean_size(form: str) -> float:
        torch.manual_seed(1)  # gmm-sample draws its components from the global generator
        act = train_head(inputs, actions.astype(np.float32), 0, 600, 128, form=form)
        return float(np.mean([np.abs(act(row)) for row in inputs[:64]]))

    assert mean_size("mlp") < 0.4
    assert mean_size("gmm") > 0.6 and mean_size("gmm-sample") > 0.6


def test_speed_summary_compares_the_heads_action_size_with_the_experts(bench_heads) -> None:
    records = [
        (True, [(1.0, 1.0)] * 12),
        (False, [(1.0, 1.0)] * 10 + [(0.5, 0.9)] * 40 + [(0.0, 0.6)] * 20),
    ]
    summary = bench_heads.speed_summary(records)
    assert "successes: 1.00/1.00 (1) ; 1.00/1.00 (1) ; nan/nan (0)" in summary
    assert "failures: 1.00/1.00 (1) ; 0.50/0.90 (1) ; 0.00/0.60 (1)" in summary


def test_test_time_shifts_move_the_frame_by_the_pad_with_replicated_edges(bench_heads) -> None:
    frame = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    shifted = bench_heads.test_time_shifts(frame, 8, pad=2)
    assert shifted.shape == (9, 5, 6, 3) and np.array_equal(shifted[0], frame)
    # The first shift (dx=+2): column j shows column j + 2, the last columns the edge's.
    assert np.array_equal(shifted[1][:, :4], frame[:, 2:])
    assert np.array_equal(shifted[1][:, 4], frame[:, 5]) and np.array_equal(
        shifted[1][:, 5], frame[:, 5]
    )
    assert len(bench_heads.test_time_shifts(frame, 4, pad=2)) == 5


def test_dropout_sits_after_each_hidden_relu_and_only_trains(bench_heads) -> None:
    import torch
    from bench_readout import make_head

    for form, layers in (("mlp", "net"), ("skip", "mlp"), ("gmm", "trunk")):
        head = make_head(4, 2, form, dropout=0.5)
        kinds = [type(layer).__name__ for layer in getattr(head, layers)]
        assert kinds[:6] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout"]
        head.eval()
        rows = torch.ones(3, 4)
        assert torch.equal(head(rows), head(rows))  # no dropout out of training
    assert not any(isinstance(m, torch.nn.Dropout) for m in make_head(4, 2, "mlp").modules())


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.py")), ids=lambda path: path.name)
def test_every_script_imports_and_answers_help(path: Path, monkeypatch, capsys) -> None:
    """Most scripts are run only at real sizes, by hand: a renamed import or a broken
    argument parser would otherwise first show there. Loads each and asks for ``--help``."""
    import importlib.util

    monkeypatch.syspath_prepend(str(SCRIPTS))  # the scripts import each other as siblings
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    entry = getattr(module, "parse_args", None) or module.main
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_ship_encoders_writes_provenance_and_check_tells_other_bytes(tmp_path: Path) -> None:
    """Ships a run's encoder (here one made of the shipped Reach files), then ``--check``
    says the run's bytes are the shipped ones, and not once the run's weights change."""
    import json
    import shutil
    import subprocess

    from sslrobot.pretrained import shipped_encoder_dir

    run = tmp_path / "run"
    encoder = run / "Reach-v0" / "pretrain" / "fdm+future" / "encoder"
    shutil.copytree(shipped_encoder_dir("pretrained:sslrobot/Reach-v0"), encoder)
    probe = run / "Reach-v0" / "probe" / "fdm+future" / "probe.json"
    probe.parent.mkdir(parents=True)
    probe.write_text(json.dumps({"probe/r2_mean": 0.5}))
    interval = {"mean": 0.4, "low": 0.3, "high": 0.5}
    rows = [
        {"task": "Reach-v0", "num_demos": 25, "encoder": name, "success": interval,
         "num_episodes": 300, "num_seeds": 3}
        for name in ("fdm+future", "none", "state", "scratch")
    ]  # fmt: skip
    header = {"command": "sslrobot run", "written": "now", "machine": {}, "package_versions": {}}
    (run / "results.json").write_text(json.dumps({"aggregated": rows, "header": header}))
    script = [sys.executable, str(SCRIPTS / "ship_encoders.py"), "--task", "Reach-v0"]
    out = ["--out", str(tmp_path / "shipped")]
    shipped = subprocess.run([*script, "--run", str(run), *out], capture_output=True, text=True)
    assert shipped.returncode == 0, shipped.stderr
    provenance = json.loads((tmp_path / "shipped" / "Reach-v0" / "provenance.json").read_text())
    assert set(provenance["measured"]["bc_success_25_demos"]) == {"fdm+future", "none", "state"}
    assert len(provenance["reference_features"]["features"]) == 4
    same = subprocess.run([*script, "--check", str(run), *out], capture_output=True, text=True)
    assert same.returncode == 0 and "identical" in same.stdout
    weights = encoder / "encoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    other = subprocess.run([*script, "--check", str(run), *out], capture_output=True, text=True)
    assert other.returncode == 1 and "DIFFERENT" in other.stdout


def test_render_choices_draw_the_envs_own_frame_and_change_one_thing_each(monkeypatch) -> None:
    """The benchmark's shipped variant must render what the env renders (same look, camera
    and state), and each other variant differ from it in its one setting only."""
    import gymnasium as gym
    import mujoco

    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_render_choices as bench

    env = gym.make("sslrobot/Reach-v0", image_size=32)
    try:
        states = bench.recorded_states(env, 3, seed=0)
        assert len(states) == 3 and not np.array_equal(states[0], states[-1])
        variants = bench.make_variants(env, 32)
        shipped = variants[0]
        camera = env.unwrapped._camera_id
        own = env.unwrapped._render_pixels()  # the env's frame of its current state
        for variant in variants:  # replaying the last recorded state, mocap target included
            mujoco.mj_setState(variant.model, variant.data, states[-1],
                               mujoco.mjtState.mjSTATE_INTEGRATION)  # fmt: skip
            mujoco.mj_forward(variant.model, variant.data)
        np.testing.assert_array_equal(shipped.renderer.render(shipped.data, camera), own)
        assert not np.array_equal(variants[2].renderer.render(variants[2].data, camera), own)
        quality = [(v.model.vis.quality.shadowsize, v.model.vis.quality.offsamples,
                    v.model.vis.quality.numslices) for v in variants]  # fmt: skip
        assert len(set(quality)) == len(variants)  # each variant changed its own setting
        for variant in variants:
            variant.renderer.close()
    finally:
        env.close()


def test_knn_weights_neighbours_by_a_softmax_of_minus_their_distances(bench_heads) -> None:
    """VINN's weights (Pari et al. 2021); squared distances made k = 5 nearly 1-NN."""
    import argparse

    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    demos = bench_heads.DemoInputs(
        features=features, maps=np.zeros((4, 1, 1, 1)), proprio=np.zeros((4, 0)),
        actions=np.array([[0.0], [1.0], [2.0], [3.0]]), episode_lengths=np.array([4]),
    )  # fmt: skip
    act = bench_heads.fit_knn(demos, 0, argparse.Namespace(k=2), {})
    scale = features.std() + 1e-6  # the head standardises its inputs
    near, far = 0.25 / scale, 0.75 / scale  # frames 0 and 1, from 0.25
    weights = np.exp([0.0, -(far - near)])
    expected = weights @ np.array([0.0, 1.0]) / weights.sum()
    assert act(np.array([0.25]), None, np.zeros(0)) == pytest.approx([expected])


def test_bench_heads_refuses_options_its_heads_would_ignore(bench_heads) -> None:
    import argparse
    from types import SimpleNamespace

    demos = SimpleNamespace(episode_ids=list(range(25)), manifest={"base_seed": 200_000})

    def options(**changes) -> argparse.Namespace:
        values = {"head_form": "mlp", "mixup": 0.0, "dropout": 0.0, "heads": ["augment"],
                  "num_demos": 25, "eval_seed": 300_000, "episodes": 100}  # fmt: skip
        return argparse.Namespace(**{**values, **changes})

    bench_heads.check_options(options(head_form="linear"), demos)  # augment honours it
    with pytest.raises(SystemExit, match=r"\['knn'\] would ignore them"):
        bench_heads.check_options(options(heads=["augment", "knn"], mixup=0.4), demos)
    with pytest.raises(SystemExit, match=r"\['knn'\] would ignore them"):
        bench_heads.check_options(options(heads=["knn"], dropout=0.1), demos)
    with pytest.raises(SystemExit, match="averaged actions"):
        bench_heads.check_options(options(head_form="gmm", mixup=0.4), demos)
    with pytest.raises(SystemExit, match="hold 25 episodes"):
        bench_heads.check_options(options(num_demos=100), demos)
    with pytest.raises(SystemExit, match="are demonstration seeds"):
        bench_heads.check_options(options(eval_seed=200_010), demos)


def test_heldout_factor_presets_take_one_factor_from_heldout(monkeypatch) -> None:
    """``heldout-FACTOR`` is ``train`` with that factor's fields from ``heldout`` and nothing
    else; a ``--policies`` entry that matches no directory is refused by name."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_heldout_factors as bench

    from sslrobot.envs.core.variation import PRESETS

    monkeypatch.setattr(bench, "PRESETS", dict(PRESETS))
    names = bench.register_heldout_factor_presets(["surfaces", "distractors"])
    assert names == ["heldout-surfaces", "heldout-distractors"]
    train, heldout = PRESETS["train"], PRESETS["heldout"]
    surfaces = bench.PRESETS["heldout-surfaces"]
    assert surfaces.surface_palette == heldout.surface_palette
    assert (surfaces.light_scale, surfaces.camera_jitter) == (
        train.light_scale,
        train.camera_jitter,
    )
    assert surfaces.num_distractors == train.num_distractors
    distractors = bench.PRESETS["heldout-distractors"]
    assert distractors.num_distractors == heldout.num_distractors
    assert distractors.distractor_palette == heldout.distractor_palette
    assert distractors.surface_palette == train.surface_palette
    with pytest.raises(SystemExit, match="no directory matches"):
        bench.policy_groups(["a=/no/such/dir*"])
    with pytest.raises(SystemExit, match="NAME=GLOB"):
        bench.policy_groups(["just-a-glob*"])


def test_learning_benchmarks_refuse_doubled_seeds_and_evaluation_on_used_episodes(
    bench_heads,
) -> None:
    """A seed given twice counted twice in the mean, and an --eval-seed in the unlabeled
    stream's or the online validation's range was taken without a word."""
    import argparse

    import bench_readout
    import bench_variants

    config = {"seed": 0, "num_unlabeled_episodes": 200, "bc_val_episodes": 10,
              "bc_steps": 1000, "bc_batch_size": 128, "bc_augment_copies": 8,
              "bc_augment_color": 0.6}  # fmt: skip

    def check(seeds: list[int], eval_seed: int) -> None:
        args = argparse.Namespace(seeds=seeds, eval_seed=eval_seed, episodes=100)
        bench_readout.check_seeds(args, config)

    check([0, 1, 2], 300_000)
    for seeds, eval_seed, message in (([0, 0, 1], 300_000, "given twice"),
                                      ([0], 100_150, "the unlabeled stream's"),
                                      ([0], 999_950, "the online validation's")):  # fmt: skip
        with pytest.raises(SystemExit, match=message):
            check(seeds, eval_seed)
    # bench_variants says where its heads and pretraining are not the run's.
    args = argparse.Namespace(bc_args="", pretrain_args="", run_horizon=5)
    said = " ".join(bench_variants.unlike_the_run(args, config, 1000, 128))
    assert "--augment-copies 8 --augment-color 0.6" in said and "horizon 3; the run's: 5" in said
    args = argparse.Namespace(bc_args="--augment-copies 8", pretrain_args="", run_horizon=3)
    assert bench_variants.unlike_the_run(args, config, 1000, 128) == []


def test_intraclass_correlation_of_start_states_spans_nothing_shared_to_all_shared() -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        from check_shared_start_states import intraclass_correlation
    finally:
        sys.path.remove(str(SCRIPTS))
    starts = np.arange(200) % 5 == 0
    assert intraclass_correlation(np.stack([starts] * 3).astype(float)) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    independent = (rng.random((3, 2000)) < 0.3).astype(float)
    assert abs(intraclass_correlation(independent)) < 0.05
    # Seeds at 80% that fail only on hard start states (40% of them, half the time): the start
    # states' rates (1 or 0.5) vary by 0.06 of the outcomes' 0.16, an ICC of 0.375.
    hard = rng.random(4000) < 0.4
    outcomes = np.stack([~(hard & (rng.random(4000) < 0.5)) for _ in range(3)]).astype(float)
    assert intraclass_correlation(outcomes) == pytest.approx(0.375, abs=0.04)


def test_best_keypoint_sets_find_the_keypoint_that_follows_the_object() -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        from check_keypoint_tracking import best_keypoint_sets
    finally:
        sys.path.remove(str(SCRIPTS))
    rng = np.random.default_rng(0)
    truth = rng.uniform(-0.2, 0.2, size=(200, 2))
    points = rng.uniform(-1, 1, size=(200, 5, 2))
    points[:, 3] = 3.0 * truth + 0.1  # keypoint 3 follows the object (an affine image of it)
    fit = np.arange(200) < 100
    (alone, first), (pair, both) = best_keypoint_sets(points, truth, fit, (1, 2))
    assert first == [3] and alone < 1e-9
    assert both[0] == 3 and len(both) == 2 and pair < 1e-9
    blurred = points.copy()
    blurred[:, 3] += rng.normal(0, 0.3, size=(200, 2))  # no keypoint follows it now
    ((error, _),) = best_keypoint_sets(blurred, truth, fit, (1,))
    assert error > 0.02


def test_readout_errors_are_binned_by_the_fingertips_distance_to_the_steered_object(
    capsys,
) -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        from check_readout_near_target import ObjectErrors
    finally:
        sys.path.remove(str(SCRIPTS))
    names = ["fingertip_x", "fingertip_y", "cube_x", "cube_y", "goal_x", "goal_y"]
    errors = ObjectErrors(names, "Push-v0")
    states = np.zeros((3, 6))
    states[:, 2] = [0.03, 0.08, 0.5]  # the cube 3, 8 and 50 cm from the fingertip
    states[:, 4] = 0.3
    read = states.copy()
    read[:, 3] = [0.01, 0.02, 0.04]  # the cube read 1, 2 and 4 cm off; the goal exactly
    distance, object_errors = errors.measure(states, read)
    np.testing.assert_allclose(distance, [0.03, 0.08, 0.5])
    np.testing.assert_allclose(object_errors["cube"], [0.01, 0.02, 0.04])
    np.testing.assert_allclose(object_errors["goal"], 0.0)
    errors.print_table("toy", distance, object_errors, steps=np.array([0, 40, 120]))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("   0.0- 4.5 cm:     1 frames; cube median 1.00")
    assert lines[2].startswith("   7.0-10.0 cm:     1 frames; cube median 2.00")
    assert lines[3].startswith("  25.0- inf cm:     1 frames; cube median 4.00")
    assert "steps  30- 59:     1 frames; cube median 2.00" in lines[5]


def test_select_by_validation_picks_each_policys_variant_on_validation_alone(
    tmp_path: Path,
) -> None:
    """Per policy, the variant with the higher mean validation success over its checks is
    picked (ties: the first named), and the picked row scores that variant's evaluation
    success for the seed, whatever the other variant's evaluation says."""
    import json
    import subprocess

    def run(name: str, rates: dict[str, list[float]], checks: dict[str, list[list[str]]]) -> Path:
        root = tmp_path / name
        rows = [{"env_id": "sslrobot/Reach-v0", "encoder": encoder, "num_demos": 25,
                 "seeds": [0, 1], "success_per_seed": values, "visual_preset": "train"}
                for encoder, values in rates.items()]  # fmt: skip
        root.mkdir()
        (root / "results.json").write_text(json.dumps({"aggregated": rows}))
        for encoder, per_seed in checks.items():
            for seed, values in enumerate(per_seed):
                log = root / f"Reach-v0/policy/{encoder}/demos25/seed{seed}/policy/logs"
                log.mkdir(parents=True)
                lines = ["step,bc/train_loss,eval/val_success"]
                lines += [f"{i},0.1,{v}" for i, v in enumerate(values)]
                (log / "bc.csv").write_text("\n".join(lines) + "\n")
        return root

    plain = run("plain", {"fdm": [0.2, 0.6], "state": [0.8, 0.8], "none": [0.1, 0.1]},
                {"fdm": [["0.5", "0.5"], ["0.4", "0.6"]], "state": [["0.9"], ["0.9"]],
                 "none": [["0.1"], ["0.2"]]})  # fmt: skip
    first = run("first", {"fdm": [0.9, 0.0], "state": [0.6, 0.6], "none": [0.3, 0.3]},
                {"fdm": [["0.6", "0.6"], ["0.5", "0.5"]], "state": [["0.9"], ["0.8"]],
                 "none": [["0.3"], ["0.2"]]})  # fmt: skip
    command = [sys.executable, str(SCRIPTS / "select_by_validation.py"),
               "--run", f"plain={plain}", "--run", f"first={first}"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    # fdm: seed 0 picks first (0.6 > 0.5) and scores 90; seed 1 ties at 0.5 and keeps plain's 60.
    assert "picked: success  75.0% (first / plain)" in out
    assert "picked: success  80.0% (plain / plain)" in out  # state: 0.9 ties, 0.9 > 0.8
    assert "picked: success  20.0% (first / plain)" in out  # none: 0.3 > 0.1, 0.2 ties
    assert "fdm: 94% of state, +55.0 over none" in out  # picked: 75 / 80, 75 - 20
    bad = subprocess.run([*command[:2], "--run", f"plain={plain}"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert bad.returncode == 2 and "at least two variants" in bad.stderr


def test_across_tasks_names_encoders_by_where_their_records_lie(tmp_path: Path) -> None:
    """A run's ``eval``/``eval_rl`` directories and ``bench_rl.py``'s ``ENCODER/seedN`` both
    name the encoder; other files called result.json are skipped."""
    import json

    sys.path.insert(0, str(SCRIPTS))
    try:
        import across_tasks
    finally:
        sys.path.remove(str(SCRIPTS))
    record = {"encoder": "/abs/encoder", "env_id": "sslrobot/Reach-v0", "episodes": [{}]}
    places = {
        "run/Reach-v0/eval/fdm+future/demos25/seed0/train/result.json": "fdm+future",
        "run/Reach-v0/eval_rl/none/demos25/seed1/train/result.json": "none",
        "bench/Reach-v0/state/seed2/result.json": "state",
        "other/result.json": "/abs/encoder",
    }
    for place in places:
        (tmp_path / place).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / place).write_text(json.dumps(record))
    (tmp_path / "other" / "x").mkdir()
    (tmp_path / "other" / "x" / "result.json").write_text(json.dumps({"loss": 1.0}))
    records = across_tasks.read_records([tmp_path])
    assert sorted(r["encoder"] for r in records) == sorted(places.values())


def test_rl_readout_inputs_hold_what_each_mode_names(monkeypatch) -> None:
    """bench_rl_readout's inputs: the state, proprio + the objects (true or read out), the
    read-out state, or (whitened) features + proprio; a mix-up would misattribute a gap."""
    import torch

    pytest.importorskip("stable_baselines3")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_rl_readout

    def encoder(pixels: torch.Tensor) -> torch.Tensor:  # two "features" per frame
        flat = pixels.float().flatten(1)
        return torch.stack([flat.mean(1), flat.max(1).values], dim=1)

    weights = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])  # features -> a 3-wide "state"
    rng = np.random.default_rng(0)
    batch = {
        "pixels": rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8),
        "proprio": rng.normal(size=(4, 2)),
        "state": rng.normal(size=(4, 3)),
    }
    features = bench_rl_readout.encode(encoder, batch["pixels"])
    read = features @ weights
    expected = {
        "state": batch["state"],
        "true": np.c_[batch["proprio"], batch["state"][:, [2, 0]]],
        "readout": np.c_[batch["proprio"], read[:, [2, 0]]],
        "state-readout": read,
        "features": np.c_[features, batch["proprio"]],
        "whitened": np.c_[2.0 * features - 1.0, batch["proprio"]],
    }
    assert set(expected) | {"map"} == set(bench_rl_readout.MODES)
    for mode, values in expected.items():
        make_input = bench_rl_readout.input_maker(
            mode, encoder, lambda f: f @ weights, [2, 0], whiten=lambda f: 2.0 * f - 1.0
        )
        made = make_input(batch)
        assert made.dtype == np.float32
        np.testing.assert_allclose(made, values.astype(np.float32), rtol=1e-6, err_msg=mode)
    noisy = bench_rl_readout.input_maker(
        "true", encoder, None, [2, 0], noise=(0.5, np.random.default_rng(1))
    )
    drawn = [noisy(batch)[:, 2:] - batch["state"][:, [2, 0]] for _ in range(200)]
    assert abs(np.std(drawn) - 0.5) < 0.03  # fresh noise at every call, of the asked size
    errors: list[np.ndarray] = []
    bench_rl_readout.input_maker("readout", encoder, lambda f: f @ weights, [2, 0], errors=errors)(
        batch
    )
    np.testing.assert_allclose(errors[0], read[:, [2, 0]] - batch["state"][:, [2, 0]])
    with_tip = bench_rl_readout.input_maker("features", encoder, None, [2, 0], tip_columns=[1])
    np.testing.assert_allclose(
        with_tip(batch), np.c_[features, batch["proprio"], batch["state"][:, 1]], rtol=1e-6
    )


def test_rl_readout_map_input_is_the_trunk_map_and_its_trunk_reads_only_the_map(
    monkeypatch,
) -> None:
    """``map``: the frozen trunk's map, flattened, then proprio; ``MapTrunk`` passes proprio
    through untouched and feeds only the map's columns to its trainable layer."""
    import torch
    from gymnasium import spaces

    from sslrobot.models.encoder import Encoder, encoder_config_for, normalize_pixels

    pytest.importorskip("stable_baselines3")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_rl_readout

    torch.manual_seed(0)
    encoder = Encoder(encoder_config_for("keypoints", 64)).eval()
    rng = np.random.default_rng(0)
    batch = {
        "pixels": rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8),
        "proprio": rng.normal(size=(3, 4)),
        "state": rng.normal(size=(3, 5)),
    }
    made = bench_rl_readout.input_maker("map", encoder, None, [0])(batch)
    with torch.no_grad():
        frames = encoder.channels_first(torch.from_numpy(batch["pixels"]))
        maps = encoder.trunk(normalize_pixels(frames)).numpy()
    assert maps.shape == (3, 32, 8, 8)
    np.testing.assert_allclose(made, np.c_[maps.reshape(3, -1), batch["proprio"]], rtol=1e-6)

    space = spaces.Box(-10, 10, shape=(made.shape[1],), dtype=np.float32)
    trunk = bench_rl_readout.MapTrunk(space, map_size=32 * 8 * 8, width=6)
    assert trunk.features_dim == 6 + 4
    inputs = torch.from_numpy(made)
    out = trunk(inputs)
    np.testing.assert_allclose(out[:, 6:].detach().numpy(), made[:, -4:])
    changed = inputs.clone()
    changed[:, -4:] += 1.0  # proprio moves; the trunk's part must not
    torch.testing.assert_close(trunk(changed)[:, :6], out[:, :6])


def test_rl_readout_critic_state_keeps_the_state_out_of_the_actor(monkeypatch) -> None:
    """``--critic-state``: the actor acts on its columns alone (the state's, NaN at evaluation,
    change nothing) and the critics on the state's alone; a leak would make the asymmetric
    rows a state oracle in disguise."""
    import torch
    from gymnasium import spaces

    pytest.importorskip("stable_baselines3")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_rl_readout

    torch.manual_seed(0)
    observation_space = spaces.Box(-10, 10, shape=(7,), dtype=np.float32)
    action_space = spaces.Box(-1, 1, shape=(2,), dtype=np.float32)
    policy = bench_rl_readout.AsymmetricSACPolicy(
        observation_space, action_space, lambda _: 1e-3, net_arch=[8], actor_width=4
    )
    inputs = torch.randn(5, 7)
    hidden = inputs.clone()
    hidden[:, 4:] = float("nan")
    acted = policy.actor(inputs, deterministic=True)
    torch.testing.assert_close(policy.actor(hidden, deterministic=True), acted)
    actions = torch.zeros(5, 2)
    other_actor_columns = inputs.clone()
    other_actor_columns[:, :4] += 1.0
    for critic in (policy.critic, policy.critic_target):
        values = torch.cat(critic(inputs, actions), dim=1)
        torch.testing.assert_close(torch.cat(critic(other_actor_columns, actions), dim=1), values)
        assert not torch.isfinite(torch.cat(critic(hidden, actions), dim=1)).any()

    batch = {"state": np.ones((3, 2)), "proprio": np.zeros((3, 1))}
    made = bench_rl_readout.with_state(lambda b: b["proprio"].astype(np.float32), hide=True)(batch)
    assert made.shape == (3, 3) and np.isnan(made[:, 1:]).all() and (made[:, 0] == 0).all()


def test_rl_readout_records_reach_across_tasks_under_their_own_names(monkeypatch, tmp_path) -> None:
    """Each input's runs are written as evaluation records that ``across_tasks.py`` reads
    under a name of their own: features by their encoder, the state as ``state``, other
    inputs and protocols apart (a ``none`` run with the critic on the state must not be
    counted as the plain ``none`` baseline)."""
    import argparse

    pytest.importorskip("stable_baselines3")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import across_tasks
    import bench_rl_readout

    label = bench_rl_readout.across_tasks_label
    assert label("fdm+future", "features") == "fdm+future"
    assert label("none", "features+critic-state") == "none+critic-state"
    assert label("none", "state") == "state"
    assert label("fdm+future", "readout+tip") == "fdm+future:readout+tip"
    args = argparse.Namespace(
        out=tmp_path, encoder="fdm+future", eval_seed=500, task="Push-v0", num_demos=25
    )
    record = {"seed": 2, "steps": 100, "success": [True, False], "return": [1.0, -2.0]}
    path = bench_rl_readout.write_across_tasks_record(
        args, "train", "features+critic-state", {**record, "encoder": "none"}
    )
    assert path == tmp_path / "across_tasks" / "none+critic-state" / "seed2" / "result.json"
    (read,) = across_tasks.read_records([tmp_path])
    assert read["encoder"] == "none+critic-state" and read["env_id"] == "sslrobot/Push-v0"
    assert [e["seed"] for e in read["episodes"]] == [500, 501]
    assert [e["success"] for e in read["episodes"]] == [True, False]
    assert (read["algo"], read["num_demos"], read["visual_preset"]) == ("rl-sac", 25, "train")
