"""``sslrobot pretrain``: self-supervised pretraining of a visual encoder on a dataset directory."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from sslrobot.commands.arguments import int_tuple
from sslrobot.utils.architectures import DECODER_NAMES, DEFAULT_ENCODER_ARCH, ENCODER_ARCHS

if TYPE_CHECKING:
    from sslrobot.models.encoder import EncoderConfig
    from sslrobot.pretraining.config import PretrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand."""
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a visual encoder (fdm, future, fdm+future, recon, inverse, contrastive)",
        description=(
            "Learn an encoder from unlabeled windows o_t..o_{t+K}, a_t..a_{t+K-1}: forward "
            "dynamics in latent space (fdm), future-frame prediction (future), both, or a "
            "baseline (recon, inverse, contrastive, none). Writes encoder.safetensors + "
            "encoder_config.json (for sslrobot.load_encoder), model.safetensors, "
            "pretrain_config.json, checkpoints/, metrics.csv, loss_curve.png, predictions/. "
            "Several processes: torchrun --standalone --nproc_per_node N -m sslrobot pretrain "
            "--threads 1 ... (--batch-size is per process; on a CPU, N single-thread processes "
            "train faster than one process with N threads)"
        ),
    )
    parser.add_argument(
        "--data",
        nargs="+",
        help="a `sslrobot collect --out` directory; several: pretrain on their mixed windows "
        "(required, except with --resume)",
    )
    parser.add_argument("--out", required=True, help="output directory (new, or --resume)")
    parser.add_argument(
        "--objective",
        default="fdm+future",
        help="fdm, future, fdm+future, recon, inverse, contrastive, transport (keypoint "
        "encoders) or none; weights as "
        "'fdm:1+future:2'; for keypoint encoders, '+spread:W' adds a term that concentrates "
        "each keypoint's softmax, '+equivariant:W' one that makes keypoints move with the "
        "image and '+slow:W' one that keeps a quarter of them still within a window; "
        "'+look:W' (with --look-target-data) one that keeps the features still across the "
        "two looks of a frame (default: fdm+future)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=5000,
        help="optimiser steps (default: 5000; --objective none needs --steps 0)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="windows per step per process (default: 256)"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    parser.add_argument(
        "--num-steps-ahead", type=int, default=3, help="prediction horizon K (default: 3)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, batches and augmentation (0)"
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the train/validation split of episodes (default: --seed); give several "
        "seeds of one comparison the same, so that they hold out the same episodes",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--amp",
        choices=("auto", "on", "off"),
        default="auto",
        help="bfloat16 autocast (auto: on for GPUs with native bfloat16)",
    )
    parser.add_argument("--checkpoint-every", type=int, default=1000, help="steps (0: end only)")
    parser.add_argument(
        "--log-every", type=int, default=50, help="steps per metrics row (0 or 1: every step)"
    )
    parser.add_argument("--image-every", type=int, default=1000, help="steps per strip (0: off)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with the settings it saved; options given as well "
        "must agree with them, except --steps (train longer), --data (a moved copy of the same "
        "episodes) and logging, device and workers",
    )
    parser.add_argument(
        "--encoder-arch",
        choices=ENCODER_ARCHS,
        default=DEFAULT_ENCODER_ARCH,
        help="keypoints (the default: the CPU-sized stem with a spatial-softmax readout, "
        "features are the (x, y) of learned keypoints), cnn (the same stem, linear readout), "
        "resnet (IMPALA, for GPUs), drqv2",
    )
    parser.add_argument(
        "--encoder-channels",
        type=int_tuple,
        default=None,
        help="channels per layer, e.g. 16,32,64 (cnn: also set strides/kernels)",
    )
    parser.add_argument(
        "--encoder-strides", type=int_tuple, default=None, help="stride per layer, e.g. 2,2,2"
    )
    parser.add_argument(
        "--encoder-kernels", type=int_tuple, default=None, help="kernel size per layer, e.g. 3,3,3"
    )
    parser.add_argument(
        "--feature-dim",
        type=int,
        default=None,
        help="encoder output size (default: the architecture's; keypoints: 2 per keypoint)",
    )
    parser.add_argument(
        "--frame-stack", type=int, default=1, help="frames per observation (default: 1)"
    )
    parser.add_argument(
        "--decoder",
        choices=DECODER_NAMES,
        default="dense",
        help="frame decoder of future/recon: dense (a fully connected first layer), heatmaps "
        "(keypoint encoders: each keypoint drawn as a Gaussian blob, as in Jakab et al. 2018) "
        "or keypoint-skip (keypoint encoders: dense, plus each keypoint's offset from every "
        "output cell near it, so small objects can be drawn precisely)",
    )
    parser.add_argument(
        "--decoder-proprio",
        action="store_true",
        help="draw the frames decoded without the copy path from the latent plus that frame's "
        "proprioception, so the latent is pressed for what the robot's sensors do not give",
    )
    parser.add_argument(
        "--decoder-appearance",
        action="store_true",
        help="draw those frames also from the context frame's colour statistics (each "
        "channel's mean and spread), so the latent need not encode the look (colours, light)",
    )
    parser.add_argument(
        "--future-without-actions",
        action="store_true",
        help="future: predict frames from the latent alone (what the stream's policy does "
        "next) instead of from the actions taken",
    )
    parser.add_argument(
        "--transport-pairs",
        choices=("episode", "batch"),
        default="episode",
        help="transport: draw o_t+K from o_t of the same window (episode), or each window's "
        "o_t from another window's (batch: keypoints also find what differs between episodes, "
        "such as a static target; needs a fixed camera and --look-target-data in the authored "
        "look, or data without visual variation)",
    )
    parser.add_argument(
        "--transport-keypoints",
        type=int,
        default=0,
        metavar="N",
        help="transport: draw with the first N keypoints only (0: all), so that each must "
        "follow something across the workspace",
    )
    parser.add_argument(
        "--transition-without-norm",
        action="store_true",
        help="no LayerNorm on the latent transition's output (keeps keypoint features as "
        "coordinates when rolled forward)",
    )
    parser.add_argument(
        "--augment",
        choices=("shift", "none"),
        default="shift",
        help="random shift of each window (DrQ; default) or none",
    )
    parser.add_argument(
        "--color-jitter",
        type=float,
        default=0.0,
        help="random brightness and colour gains per window, strength in [0, 1) (0: off)",
    )
    parser.add_argument(
        "--target-color-jitter",
        type=float,
        default=0.0,
        help="fdm: a colour draw of their own on its target frames, as SPR augments its "
        "target views, so the latent predicts what colours do not move (0: off)",
    )
    parser.add_argument(
        "--look-target-data",
        default=None,
        help="a look twin of --data (the same collection with another --visual-preset, "
        "usually none): the frames decoded and encoded as targets come from it, so they show "
        "the state without the episode's look (default: the window's own frames)",
    )
    parser.add_argument(
        "--salience-weight",
        type=float,
        default=None,
        help="extra pixel-loss weight of pixels unlike the frame's dominant colour "
        "(default: the library's)",
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: one per core); on a machine shared with other "
        "work use 1, or export OMP_WAIT_POLICY=PASSIVE",
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="CSV only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    # The encoder's field of another name than its option ("kernel_sizes must have one
    # entry per layer" named no option the user typed).
    encoder_options = {
        "kernel_sizes": "--encoder-kernels",
        "strides": "--encoder-strides",
        "channels": "--encoder-channels",
    }
    parser.set_defaults(func=_pretrain, field_options=encoder_options)


def _encoder_config(
    args: argparse.Namespace,
    resumed: EncoderConfig | None = None,
    given: frozenset[str] = frozenset(),
) -> EncoderConfig:
    """The encoder the options describe: ``--encoder-arch``'s, changed by the others; on
    ``--resume`` without ``--encoder-arch``, the resumed run's (``resumed``) changed by the
    options given (``given``), so that repeating one of them does not rebuild the rest."""
    import dataclasses

    from sslrobot.models.encoder import encoder_config_for

    from_run = resumed is not None and "encoder_arch" not in given
    # The run's own image size (the data's, as `sslrobot run` records it): repeating its
    # --encoder-arch on --resume rebuilt it at 64 px and was refused as another encoder.
    size = {} if resumed is None else {"image_size": resumed.image_size}
    base = resumed if from_run else encoder_config_for(args.encoder_arch, **size)
    changes: dict = {}
    if not from_run or "frame_stack" in given:
        changes["frame_stack"] = args.frame_stack
    if args.feature_dim is not None:
        changes["feature_dim"] = args.feature_dim
    if args.encoder_channels is not None:
        depth = len(args.encoder_channels)
        changes["channels"] = args.encoder_channels
        changes["strides"] = args.encoder_strides or base.strides[:depth]
        changes["kernel_sizes"] = args.encoder_kernels or base.kernel_sizes[:depth]
        # "Same" padding for kernels given here; the architecture's own with its kernels
        # (rebuilding it as k // 2 changed the keypoint map from 8x8 to 9x9 unasked).
        changes["paddings"] = (
            tuple(k // 2 for k in args.encoder_kernels)
            if args.encoder_kernels
            else base.paddings[:depth]
        )
        if args.encoder_strides is None and depth > len(base.strides):
            raise ValueError(
                f"--encoder-channels has {depth} layers; pass --encoder-strides and "
                "--encoder-kernels with one value per layer"
            )
    elif args.encoder_strides is not None or args.encoder_kernels is not None:
        raise ValueError("--encoder-strides/--encoder-kernels need --encoder-channels")
    return dataclasses.replace(base, **changes)


def _pretrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sslrobot.models.decoder import DecoderConfig
    from sslrobot.pretraining import artifacts
    from sslrobot.pretraining.config import PretrainConfig
    from sslrobot.pretraining.objectives import USES_DECODER, parse_objective
    from sslrobot.pretraining.trainer import NonFiniteLossError, pretrain

    decodes = USES_DECODER & set(parse_objective(args.objective))
    shaping = [
        flag
        for flag, given in (
            ("--decoder-proprio", args.decoder_proprio),
            ("--decoder-appearance", args.decoder_appearance),
            (f"--decoder {args.decoder}", args.decoder != "dense"),
        )
        if given
    ]
    if not decodes and shaping:
        flag = shaping[0]
        raise ValueError(
            f"{flag} shapes the frame decoder, but objective {args.objective!r} decodes no "
            "frames ('future' and 'recon' do)"
        )
    if args.data is None and not args.resume:
        raise ValueError("--data is required: a `sslrobot collect --out` directory")
    # Resuming a saved run, the encoder options given change the saved encoder, not the
    # default architecture's (built here, --encoder-channels alone was refused for drqv2).
    resumes_saved = args.resume and (Path(args.out) / artifacts.PRETRAIN_CONFIG).is_file()
    encoder = {} if resumes_saved else {"encoder": _encoder_config(args)}
    config = PretrainConfig(
        out=args.out,
        data=args.data,
        objective=args.objective,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        num_steps_ahead=args.num_steps_ahead,
        seed=args.seed,
        split_seed=args.split_seed,
        device=args.device,
        amp=args.amp,  # auto / on / off, as PretrainConfig takes them
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        image_every=args.image_every,
        resume=args.resume,
        **encoder,
        decoder=DecoderConfig.named(args.decoder),
        decoder_proprio=args.decoder_proprio,
        decoder_appearance=args.decoder_appearance,
        future_actions=not args.future_without_actions,
        transition_norm=not args.transition_without_norm,
        transport_pairs=args.transport_pairs,
        transport_keypoints=args.transport_keypoints,
        augment=args.augment,
        color_jitter=args.color_jitter,
        target_color_jitter=args.target_color_jitter,
        look_target_data=args.look_target_data,
        num_workers=args.num_workers,
        tensorboard=not args.no_tensorboard,
        **({} if args.salience_weight is None else {"salience_weight": args.salience_weight}),
    )
    if args.resume:
        config = _with_saved_settings(config, args)
        if args.threads is None:
            from sslrobot.pretraining.launch import saved_cpu_threads

            args.threads = saved_cpu_threads(config)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        out = pretrain(config, progress=not args.no_progress)
    except NonFiniteLossError as error:
        print(f"sslrobot pretrain: {error}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 speaks
        print(f"encoder written to {out} (load with sslrobot.load_encoder({str(out)!r}))")
    return 0


#: Options that shape the encoder (``PretrainConfig.encoder``).
_ENCODER_OPTIONS = frozenset(
    {"encoder_arch", "encoder_channels", "encoder_strides", "encoder_kernels", "feature_dim",
     "frame_stack"}
)  # fmt: skip
#: Other options that set a ``PretrainConfig`` field of another name (the rest share theirs;
#: options that set no field, such as ``--threads``, are not settings of the run).
_FIELD_OF_OPTION = {
    "future_without_actions": "future_actions",
    "transition_without_norm": "transition_norm",
    "no_tensorboard": "tensorboard",
}


def _with_saved_settings(config: PretrainConfig, args: argparse.Namespace) -> PretrainConfig:
    """``--resume``: the settings saved in ``--out``, except those this command line gives
    (the trainer then refuses any of those that would change what the run computes). Without
    a saved run, ``config`` as it is: the trainer starts over and says so.

    Why: a resume that had to repeat every option of a long command (the objective, the
    encoder's shape, the decoder...) was refused, or worse, for a forgotten one."""
    import dataclasses
    from pathlib import Path

    from sslrobot.pretraining import artifacts
    from sslrobot.pretraining.config import PretrainConfig

    out = Path(config.out)
    record = out / artifacts.PRETRAIN_CONFIG
    if not record.is_file():
        if config.data is None:
            raise ValueError(
                f"--resume: {out} holds no saved run ({artifacts.PRETRAIN_CONFIG}) to take "
                "--data from; give --data"
            )
        return config
    saved = artifacts.read_config_section(out, "pretrain", PretrainConfig.from_dict)
    given = getattr(args, "given_options", frozenset())
    fields = {_FIELD_OF_OPTION.get(option, option) for option in given - _ENCODER_OPTIONS}
    names = {field.name for field in dataclasses.fields(PretrainConfig)}
    changes = {name: getattr(config, name) for name in fields & names - {"out", "resume"}}
    if given & _ENCODER_OPTIONS:
        changes["encoder"] = _encoder_config(args, saved.encoder, given)
    roots = [saved.data] if isinstance(saved.data, str) else list(saved.data or ())
    if "data" in changes:
        given_roots = [config.data] if isinstance(config.data, str) else list(config.data or ())
        if len(given_roots) != len(roots):  # a moved copy is fine, another mix is not
            raise ValueError(
                f"--resume: the run in {out} trained on {len(roots)} data directories "
                f"{roots}, --data gives {len(given_roots)}; give them all, in that order "
                "(or leave --data out)"
            )
    else:
        for root in roots:
            if not Path(root).is_dir():
                raise ValueError(
                    f"--resume: the run's data {root!r} (recorded in {record}, as given when it "
                    "started) is not a directory from here; give --data"
                )
    return dataclasses.replace(saved, **changes, out=config.out, resume=True)
