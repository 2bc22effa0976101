"""CLI: ``sslrobot train-policy`` and ``sslrobot evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sslrobot.commands.arguments import int_tuple
from sslrobot.utils.architectures import (
    DEFAULT_ENCODER_ARCH,
    ENCODER_ARCHS,
    POLICY_CONTEXTS,
    RL_CRITIC_INPUTS,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-policy`` and ``evaluate``."""
    train = subparsers.add_parser(
        "train-policy",
        help="train a BC or RL policy on a frozen encoder (or a baseline)",
        description="Behaviour cloning on expert demonstrations or online RL (Stable-Baselines3) "
        "on the features of a frozen encoder. --encoder is a `pretrain --out` directory, "
        "pretrained:ENV_ID (the default preset's fdm+future encoder shipped for that task, e.g. "
        "pretrained:sslrobot/Push-v0), none (frozen random init), scratch (trained end to end "
        "with random shifts, BC only) or state (privileged-state oracle).",
    )
    train.add_argument("--env", required=True, help="env id, e.g. sslrobot/Push-v0")
    train.add_argument(
        "--encoder", required=True, help="DIR | pretrained:ENV_ID | none | scratch | state"
    )
    train.add_argument(
        "--encoder-arch",
        default=DEFAULT_ENCODER_ARCH,
        choices=ENCODER_ARCHS,
        help=f"architecture of the none/scratch encoders (default {DEFAULT_ENCODER_ARCH}, "
        "as pretrain's; match your pretrained encoder's)",
    )
    train.add_argument(
        "--algo",
        required=True,
        choices=("bc", "rl"),
        help="bc: behaviour cloning on --demos; rl: online Stable-Baselines3 in the env",
    )
    train.add_argument("--demos", type=Path, default=None, help="expert dataset dir (BC)")
    train.add_argument("--num-demos", type=int, default=None, help="first N demos (default: all)")
    train.add_argument(
        "--demo-offset",
        type=int,
        default=0,
        help="skip the first K demos: train on K..K+N-1, another draw of N (default: 0)",
    )
    train.add_argument(
        "--num-val-demos",
        type=int,
        default=0,
        help="last V demos held out for validation loss (default: 0)",
    )
    train.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    train.add_argument("--out", type=Path, required=True, help="policy directory")
    train.add_argument(
        "--overwrite", action="store_true", help="replace a policy already trained in --out"
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out from its last checkpoint (same options)",
    )
    budget = train.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps",
        type=int,
        default=None,
        help="BC gradient steps (default: 2000) / RL env steps (default: 50000)",
    )
    budget.add_argument("--epochs", type=int, default=None, help="BC passes over the demos")
    train.add_argument("--batch-size", type=int, default=256, help="(default: 256)")
    train.add_argument("--lr", type=float, default=None, help="default: BC 1e-3, SAC/PPO 3e-4")
    train.add_argument(
        "--weight-decay", type=float, default=0.0, help="AdamW decay of the BC head (default: 0)"
    )
    train.add_argument(
        "--hidden-dims",
        type=int_tuple,
        default=(256, 256),
        help="MLP head widths (default: 256,256)",
    )
    train.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="default: a pretrained encoder's, else the demonstrations', else 64",
    )
    train.add_argument(
        "--val-episodes",
        type=int,
        default=0,
        help="online validation episodes per check; the best check is kept as the 'best' "
        "checkpoint (BC and RL; default: 0, no validation)",
    )
    train.add_argument(
        "--num-val-checks", type=int, default=5, help="validation checks (default: 5)"
    )
    train.add_argument(
        "--augment-copies",
        type=int,
        default=0,
        help="BC on a frozen encoder: also fit the head on K shifted and recoloured copies of "
        "each demonstration frame (default: 0, off)",
    )
    train.add_argument(
        "--augment-pad",
        type=int,
        default=4,
        help="random-shift pixels: scratch's every step, --augment-copies' copies (default: 4)",
    )
    train.add_argument(
        "--augment-color",
        type=float,
        default=0.15,
        help="colour jitter strength of --augment-copies' copies (default: 0.15)",
    )
    train.add_argument(
        "--context",
        default="none",
        choices=POLICY_CONTEXTS,
        help="BC on a frozen encoder or the state: 'first' also gives the head the features of "
        "the episode's first frame, kept through each episode (default: none)",
    )
    train.add_argument("--cache-dir", type=Path, default=None, help="on-disk feature cache")
    train.add_argument(
        "--rl-algorithm", default="sac", choices=("sac", "ppo"), help="RL learner (default: sac)"
    )
    train.add_argument("--num-envs", type=int, default=1, help="envs for RL (default: 1)")
    train.add_argument(
        "--rl-demo-share",
        type=float,
        default=0.0,
        help="SAC with --demos: share of every batch drawn from the demonstrations' "
        "transitions (RLPD's symmetric sampling: 0.5; default 0: they only set the statistics)",
    )
    train.add_argument(
        "--rl-critic-input",
        default="policy",
        choices=RL_CRITIC_INPUTS,
        help="what SAC's critics read: the actor's inputs (default), or the privileged state "
        "(asymmetric actor-critic; the actor, which alone acts, reads the features either way)",
    )
    train.add_argument(
        "--device",
        default="auto",
        help="auto (the default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    # Config fields the options set under other names, named as the options in errors.
    train.set_defaults(func=_train_policy, field_options={"env_id": "--env"})

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate a policy on seeded episodes; write a result JSON (and videos)",
        description="Episode i uses seed SEED+i. The JSON holds success_rate, success_ci95, "
        "mean_return, return_ci95 and the per-episode results, with labels.",
    )
    evaluate.add_argument("--policy", type=Path, required=True, help="train-policy --out dir")
    evaluate.add_argument("--env", default=None, help="env id (default: the policy's)")
    evaluate.add_argument("--episodes", type=int, default=50, help="episodes (default: 50)")
    evaluate.add_argument(
        "--seed", type=int, default=0, help="seed of the first episode (default: 0)"
    )
    evaluate.add_argument(
        "--visual-preset",
        default=None,
        help="train | heldout | none (default: the look the policy trained in, its "
        "demonstrations')",
    )
    evaluate.add_argument(
        "--checkpoint",
        default="final",
        choices=("final", "best"),
        help="final weights, or the best validated ones (online, else by the held-out "
        "demonstrations' loss; default: final)",
    )
    evaluate.add_argument("--out", type=Path, required=True, help="result JSON file")
    evaluate.add_argument(
        "--videos", type=int, default=0, help="videos of the first K episodes (default: 0)"
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--device",
        default="cpu",
        help="cpu (the default), auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps",
    )
    evaluate.set_defaults(
        func=_evaluate,
        field_options={
            "env_id": "--env",
            "num_episodes": "--episodes",
            "out_json": "--out",
            "num_videos": "--videos",
        },
    )


def _train_policy(args: argparse.Namespace) -> int:
    from sslrobot.policy import PolicyConfig, train_policy

    config = PolicyConfig(
        env_id=args.env,
        encoder=args.encoder,
        encoder_arch=args.encoder_arch,
        algo=args.algo,
        out=args.out,
        seed=args.seed,
        demos=args.demos,
        num_demos=args.num_demos,
        demo_offset=args.demo_offset,
        num_val_demos=args.num_val_demos,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        hidden_dims=args.hidden_dims,
        image_size=args.image_size,
        val_episodes=args.val_episodes,
        num_val_checks=args.num_val_checks,
        augment_pad=args.augment_pad,
        augment_copies=args.augment_copies,
        augment_color=args.augment_color,
        context=args.context,
        cache_dir=args.cache_dir,
        rl_algorithm=args.rl_algorithm,
        num_envs=args.num_envs,
        rl_demo_share=args.rl_demo_share,
        rl_critic_input=args.rl_critic_input,
        device=args.device,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    out = train_policy(config)
    print(f"policy: {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from sslrobot.evaluation.evaluate import evaluate

    result = evaluate(
        args.policy,
        env_id=args.env,
        num_episodes=args.episodes,
        seed=args.seed,
        visual_preset=args.visual_preset,
        out_json=args.out,
        num_videos=args.videos,
        checkpoint=args.checkpoint,
        device=args.device,
        progress=not args.no_progress,
    )
    low, high = result["success_ci95"]
    summary = {"success_rate": result["success_rate"], "success_ci95": [low, high]}
    print(f"{json.dumps(summary)}\nresult: {args.out}")
    for video in result["videos"]:
        print(f"video: {args.out.parent / video}")
    return 0
