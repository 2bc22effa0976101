"""``sslrobot probe``: linear probes and prediction quality of a pretrained encoder."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``probe`` subcommand."""
    parser = subparsers.add_parser(
        "probe",
        help="score a frozen encoder: linear probes to the state, prediction PSNR/SSIM",
        description=(
            "Fit ridge probes from frozen features to the privileged state on training "
            "episodes and report held-out R^2; for world models also PSNR/SSIM of predicted "
            "frames against the copy-last-frame baseline and k-step latent error."
        ),
    )
    parser.add_argument(
        "--encoder",
        required=True,
        help="a `sslrobot pretrain --out` directory, one holding only "
        "encoder_config.json and encoder.safetensors (then the probe alone), or "
        "pretrained:ENV_ID (a shipped encoder; the probe alone)",
    )
    parser.add_argument("--data", required=True, help="a `sslrobot collect --out` directory")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="held-out episode share of the probe, less any episode the encoder trained on "
        "(0.1 with the pretraining's --split-seed as --seed: its own held-out episodes, as "
        "`sslrobot run` probes; predictions are always scored on those)",
    )
    parser.add_argument("--seed", type=int, default=0, help="split and subsampling seed")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--max-frames", type=int, default=20_000, help="cap on probe frames per split (0: all)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="frames per forward pass")
    parser.add_argument(
        "--alpha", type=float, default=None, help="fixed ridge penalty (default: chosen)"
    )
    parser.add_argument(
        "--horizon", type=int, default=5, help="prediction steps K to score (0: skip)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_probe)


def _format(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _probe(args: argparse.Namespace) -> int:
    from sslrobot.evaluation.probe import ProbeConfig, run_probe

    config = ProbeConfig(
        encoder=args.encoder,
        data=args.data,
        out=args.out,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        max_frames=args.max_frames or None,
        batch_size=args.batch_size,
        alpha=args.alpha,
        horizon=args.horizon,
    )
    results = run_probe(config, progress=not args.no_progress)
    width = max(len(name) for name in [*results["probe/r2"], "mean (all frames)"])
    averaged = set(results.get("probe/mean_over") or results["probe/r2"])
    in_view = results.get("probe/r2_in_view") or {}
    marked = len(averaged) < len(results["probe/r2"])  # else every variable is in the mean
    notes = (["* in the mean"] if marked else []) + (
        ["scored in view where one is given"] if in_view else []
    )
    print(
        f"{'state variable':<{width}}  held-out R^2" + (f"  ({', '.join(notes)})" if notes else "")
    )
    for name, value in results["probe/r2"].items():
        marker = " *" if marked and name in averaged else ""
        seen = f"  in view {_format(in_view[name], 3)}" if name in in_view else ""
        print(f"{name:<{width}}  {_format(value, 3)}{marker}{seen}")
    print(f"{'mean':<{width}}  {_format(results['probe/r2_mean'], 3)}")
    if in_view:
        all_frames = results.get("probe/r2_mean_all_frames")
        print(f"{'mean (all frames)':<{width}}  {_format(all_frames, 3)}")
    if marked:
        print(f"{'mean (all)':<{width}}  {_format(results.get('probe/r2_mean_all'), 3)}")
    excluded = results.get("probe/num_val_excluded") or 0
    print(
        f"scored on {results.get('probe/num_val_episodes')} held-out episodes"
        + (f" ({excluded} more left out: the encoder pretrained on them)" if excluded else "")
    )
    for k in range(1, (results.get("pred/horizon") or 0) + 1):
        line = f"k={k}:"
        if f"pred/psnr_k{k}" in results:
            line += (
                f" PSNR {_format(results[f'pred/psnr_k{k}'], 2)} dB"
                f" (copy-last {_format(results[f'pred/psnr_copy_last_k{k}'], 2)}),"
                f" SSIM {_format(results[f'pred/ssim_k{k}'], 3)}"
                f" (copy-last {_format(results[f'pred/ssim_copy_last_k{k}'], 3)})"
            )
        if f"fdm/latent_cos_k{k}" in results:
            line += (  # predicted latent against the encoder's of the real frame
                f" latent cos (predicted vs encoded) {_format(results[f'fdm/latent_cos_k{k}'], 3)}"
            )
        print(line)
    if args.out:
        print(f"results written to {args.out}")
    return 0
