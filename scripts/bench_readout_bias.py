"""Is a frozen encoder's error about a static object noise from frame to frame, or a bias per
episode? A diagnostic.

Fits the run's linear probe (ridge, alpha per variable on held-out episodes, as ``sslrobot
probe``) from frozen features to the privileged state on 300 unlabeled episodes, reads the
task's object variables out of 200 other episodes, and splits each variable's error into

- the per-episode bias (its mean over the episode): a static object's position is the same in
  every frame of an episode, so this is the part a policy cannot average away over time, and
- the within-episode deviation: frame-to-frame noise, which temporal ensembling of actions
  (``scripts/bench_heads.py --heads chunk``) or of features could average out.

It then asks what the per-episode bias follows (R^2 of least squares on 200 episodes): a smooth
(cubic) function of where the object is (a readout nonlinearity); the episode's visual
variation (surface colour, light, camera jitter, distractors: 17 columns on Reach, drawn again
by resetting the environment with the episode's seed); and the arm's starting joint angles.

Usage (session 12; raw output in docs/results/benchmarks/bench_readout_bias.txt):

    python scripts/bench_readout_bias.py --run runs/default8 --task Reach-v0
    python scripts/bench_readout_bias.py --run runs/default8 --task Reach-v0 --encoder none

(Reach's target is static; on Push only the goal is, the cube moves once pushed.)

Prints its settings, then one line per variable (errors in cm).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_readout import labelled_frames

from sslrobot.data import open_dataset
from sslrobot.evaluation.probe import fit_ridge, select_alphas
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import make_env

OBJECT_PREFIXES = ("target", "cube", "goal", "fingertip_to")
#: The object that stays put in an episode, whose position the bias is regressed on.
STATIC_OBJECT = {"Reach-v0": "target", "Push-v0": "goal"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Reach-v0", help="Reach-v0 or Push-v0")
    parser.add_argument("--encoder", default="fdm+future", help="an objective of the run, or none")
    parser.add_argument("--fit-episodes", type=int, default=300)
    parser.add_argument("--test-episodes", type=int, default=200)
    return parser.parse_args()


def visual_factors(env, seed: int) -> np.ndarray:
    """The look one episode's reset draws: palette one-hot, light, camera offset, distractors."""
    env.reset(seed=seed)
    base = env.unwrapped
    variation, model = base.variation, base.physics.model
    surface = model.geom_rgba[variation._surface_ids[0], :3]
    palette = [np.allclose(surface, colour) for colour in variation.preset.surface_palette]
    light = model.light_diffuse[0, 0] / max(variation._authored_light[0, 0], 1e-9)
    camera_id = variation._camera_id
    camera = model.cam_pos[camera_id] - variation._authored_camera_pos[camera_id]
    shown = [model.geom_pos[g, 2] > -5.0 for g in variation._distractor_ids]
    where = [
        model.geom_pos[g, :2] * s for g, s in zip(variation._distractor_ids, shown, strict=True)
    ]
    return np.r_[palette, light, camera, shown, np.concatenate(where)].astype(np.float64)


def explained(bias: np.ndarray, *columns: np.ndarray) -> str:
    """R^2 of a least-squares fit of ``bias`` on the columns (with an intercept), in sample,
    and adjusted for the columns' count in brackets: fitted and scored on the same episodes,
    p columns of pure noise already give about p / (n - 1) (17 look columns on 200 episodes:
    0.09), which the adjusted value takes back out."""
    design = np.c_[np.ones(len(bias)), *columns]
    coef, *_ = np.linalg.lstsq(design, bias, rcond=None)
    r2 = float(1.0 - ((bias - design @ coef) ** 2).mean() / bias.var())
    n, p = design.shape[0], design.shape[1] - 1
    adjusted = 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1)
    return f"{r2:.2f} (adj. {adjusted:.2f})"


def rms_cm(values: np.ndarray) -> float:
    return 100.0 * float(np.sqrt((values**2).mean()))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    print("bench_readout_bias:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    config = json.loads((args.run / "config.json").read_text())
    spec = (
        args.encoder
        if args.encoder == "none"
        else str(args.run / args.task / "pretrain" / args.encoder / "encoder")
    )
    module = resolve_encoder(spec, config["image_size"], 0, config["encoder_arch"]).module.eval()
    data = open_dataset(args.run / args.task / "data" / "unlabeled" / "dataset")
    names = list(data.manifest["state_names"])
    ids = list(data.episode_ids)
    np.random.default_rng(0).shuffle(ids)
    fit_ids = ids[: args.fit_episodes]
    test_ids = ids[args.fit_episodes : args.fit_episodes + args.test_episodes]
    x, y, groups = labelled_frames(module, data, fit_ids)
    probe = fit_ridge(x, y, select_alphas(x, y, groups=groups))
    x, y, groups = labelled_frames(module, data, test_ids)
    predicted = probe.predict(x)

    episodes = np.unique(groups)
    first = np.array([np.flatnonzero(groups == e)[0] for e in episodes])
    variables = [n for n in names if n.startswith(OBJECT_PREFIXES)]
    static = [f"{STATIC_OBJECT[args.task]}_{axis}" for axis in ("x", "y")]
    object_xy = y[first][:, [names.index(n) for n in static]]
    cubic = np.c_[object_xy, object_xy**2, object_xy[:, :1] * object_xy[:, 1:], object_xy**3]
    env = make_env(f"sslrobot/{args.task}", config["image_size"], "pixels")
    try:
        looks = np.stack([visual_factors(env, int(data.meta(int(e))["seed"])) for e in episodes])
    finally:
        env.close()
    arm_start = y[first][:, :3]
    print(
        f"{len(test_ids)} test episodes; bias R^2 from the object's position (cubic, "
        f"{cubic.shape[1]} columns), + the look ({looks.shape[1]}), + the arm's start (3)"
    )
    for name in variables:
        error = predicted[:, names.index(name)] - y[:, names.index(name)]
        bias = np.array([error[groups == e].mean() for e in episodes])
        frame_bias = bias[np.searchsorted(episodes, groups)]  # each frame's episode mean
        within = error - frame_bias
        median = 100.0 * float(np.median(np.abs(error)))
        # Over frames the two parts are orthogonal: rms^2 = bias^2 + within^2.
        print(
            f"{name:22s} error rms {rms_cm(error):5.2f} (median |e| {median:4.2f}): per-episode"
            f" bias {rms_cm(frame_bias):5.2f} (+) within-episode {rms_cm(within):5.2f}, in"
            " quadrature | bias R^2:"
            f" position {explained(bias, cubic)}, + look {explained(bias, cubic, looks)},"
            f" + arm start {explained(bias, cubic, looks, arm_start)};"
            f" look alone {explained(bias, looks)}"
        )


if __name__ == "__main__":
    main()
