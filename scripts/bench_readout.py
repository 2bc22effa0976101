"""How precise must a frozen representation be for 25-demonstration BC? A diagnostic.

On a finished run's task, trains the run's BC head (MLP 256-256, AdamW 1e-3, the preset's
steps and batch) on the same demonstrations with five inputs and evaluates each on the same
seeded episodes:

- ``state``: the whole privileged state (the run's state oracle);
- ``state-readout``: the whole state as a linear probe reads it out of the frozen features
  (fitted on the unlabeled stream; privileged labels for the probe only);
- ``features``: frozen encoder features + proprio, the run's own policy input;
- ``true``: proprio + the task objects' true positions (privileged: an upper bound for any
  encoder that finds the objects exactly);
- ``readout``: proprio + those positions read out of the frozen features by a linear probe
  fitted on the unlabeled stream (privileged labels for the probe only: what a representation
  with the probe's precision gives a policy that already knows where to look).

With ``--with-fingertip`` (Reach, Push) three more add the true fingertip position, as a
proprio that held the arm's forward kinematics would: ``true+tip``, ``readout+tip`` and
``features+tip`` (would such a proprio help a pixel policy, or only one given exact objects?).

The gap ``state`` -> ``state-readout`` is what the representation's precision costs a head
that knows where to look; ``state`` -> ``true`` is what the head loses without the state's
derived quantities (fingertip position, offsets); ``true`` -> ``readout`` is the precision
cost on the objects alone; ``readout`` -> ``features`` is what finding the objects in the
features from few demonstrations costs. Usage:

    python scripts/bench_readout.py --run runs/default5 --task Reach-v0
    python scripts/bench_readout.py --run runs/default5 --task Push-v0 --encoder none
    python scripts/bench_readout.py --run runs/default5 --task Reach-v0 --with-fingertip

Prints its settings, the probe's error on the demonstrations (metres; the first seed's encoder,
which for ``none`` is a different random encoder per seed), and success per seed and mean for
each input.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from sslrobot.data import open_dataset
from sslrobot.evaluation.probe import fit_ridge, select_alphas
from sslrobot.evaluation.rollouts import run_episodes
from sslrobot.pipeline.run import EVAL_SEED_BASE
from sslrobot.policy.demos import load_transitions
from sslrobot.policy.encoders import resolve_encoder
from sslrobot.policy.environment import StateInObservation, make_env
from sslrobot.policy.head import MLPHead

#: Per task, the state variables that say where the task's objects are.
OBJECT_VARIABLES = {
    "Reach-v0": ("target_x", "target_y"),
    "Push-v0": ("cube_x", "cube_y", "goal_x", "goal_y"),
    "Navigate-v0": ("goal_distance", "goal_cos_bearing", "goal_sin_bearing"),
    "Navigate-v1": ("goal_distance", "goal_cos_bearing", "goal_sin_bearing"),
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every BC diagnostic on a finished run shares (this script, bench_heads)."""
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Reach-v0", help="task directory in the run")
    parser.add_argument(
        "--encoder",
        default="fdm+future",
        help="an objective pretrained in the run, none, or an encoder directory (a variant's)",
    )
    parser.add_argument("--num-demos", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per seed")
    parser.add_argument(
        "--eval-seed",
        type=int,
        default=None,
        help="first evaluation seed (default: the run's, its seed + 300000)",
    )
    parser.add_argument("--threads", type=int, default=1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--probe-episodes", type=int, default=300, help="unlabeled episodes")
    parser.add_argument(
        "--with-fingertip", action="store_true", help="also the inputs + true fingertip x, y"
    )
    return parser.parse_args()


def encode(encoder: torch.nn.Module, pixels: np.ndarray, batch: int = 512) -> np.ndarray:
    """Frozen features (N, D), float64, of uint8 frames (N, H, W, 3)."""
    with torch.no_grad():
        parts = [
            encoder(torch.from_numpy(np.array(pixels[i : i + batch])))
            for i in range(0, len(pixels), batch)
        ]
    return torch.cat(parts).numpy().astype(np.float64)


def make_policy_input(
    mode: str,
    encoder: torch.nn.Module,
    readout: Callable[[np.ndarray], np.ndarray],
    columns: list[int],
    tip_columns: list[int],
) -> Callable[[dict], np.ndarray]:
    """``obs -> head input`` for one mode, in the column order the head was trained on."""
    base, _, tip = mode.partition("+")

    def policy_input(obs: dict) -> np.ndarray:
        state = np.asarray(obs["state"], dtype=np.float64)
        proprio = np.asarray(obs["proprio"], dtype=np.float64)
        if tip:
            proprio = np.r_[proprio, state[tip_columns]]
        if base == "state":
            return state
        features = encode(encoder, np.asarray(obs["pixels"])[None])
        if base == "state-readout":
            return readout(features)[0]
        if base == "true":
            return np.r_[proprio, state[columns]]
        if base == "features":
            return np.r_[features[0], proprio]
        return np.r_[proprio, readout(features)[0, columns]]

    return policy_input


def fit_readout(
    encoder: torch.nn.Module, dataset: Any, episodes: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Ridge probe features -> every state variable on ``episodes`` unlabeled episodes (alpha
    chosen per variable on held-out episodes, as ``sslrobot probe`` does)."""
    rng = np.random.default_rng(0)
    ids = rng.choice(list(dataset.episode_ids), min(episodes, len(dataset.episode_ids)), False)
    x, y, g = labelled_frames(encoder, dataset, ids)
    probe = fit_ridge(x, y, select_alphas(x, y, groups=g))
    return probe.predict


def labelled_frames(
    encoder: torch.nn.Module, dataset: Any, episode_ids: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame by frame, of some unlabeled episodes: frozen features (N, D), the privileged
    state (N, S) and the episode id (N,), for probes (privileged labels for diagnostics only)."""
    features, states, groups = [], [], []
    for episode_id in episode_ids:
        episode = dataset.load_episode(int(episode_id), include_state=True, in_memory=True)
        features.append(encode(encoder, np.asarray(episode["pixels"])))
        states.append(np.asarray(episode["state"], dtype=np.float64))
        groups.append(np.full(len(states[-1]), int(episode_id)))
    return np.concatenate(features), np.concatenate(states), np.concatenate(groups)


def fit_regressor(
    module: torch.nn.Module,
    inputs: list[torch.Tensor],
    targets: torch.Tensor,
    seed: int,
    steps: int,
    batch: int,
    input_noise: float | np.ndarray = 0.0,
    extra_loss: Callable[[torch.Generator], torch.Tensor] | None = None,
    mixup: float = 0.0,
) -> torch.nn.Module:
    """The run's BC optimisation (AdamW 1e-3, ``steps`` minibatches of ``batch`` rows drawn
    with ``seed``) of ``module(*inputs) -> targets`` by mean squared error; returns it in eval
    mode. ``input_noise``: standard deviation (one for all columns, or one per column) of
    Gaussian noise added to the last input of each batch, a regulariser for heads fitted on a
    few hundred frames. ``extra_loss(generator)``, if given, is added to every step's loss.
    ``mixup``: if > 0, each batch row is mixed with another of the batch, inputs and targets
    alike, by a weight drawn from Beta(mixup, mixup) (Zhang et al. 2018): where the map from
    inputs to actions is nearly linear, mixes of two demonstrations' frames stand for targets
    between theirs, which 25 demonstrations do not show."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.as_tensor(input_noise, dtype=torch.float32)
    weights = torch.distributions.Beta(mixup, mixup) if mixup > 0 else None
    if weights is not None:
        torch.manual_seed(seed)  # Beta draws from the global generator
    for _ in range(steps):
        index = torch.randint(0, len(targets), (min(batch, len(targets)),), generator=generator)
        rows, wanted = [x[index] for x in inputs], targets[index]
        if noise.any():
            rows[-1] = rows[-1] + noise * torch.randn(rows[-1].shape, generator=generator)
        if weights is not None:
            mix = weights.sample((len(index), 1))
            partner = torch.randperm(len(index), generator=generator)
            rows = [mix * x + (1 - mix) * x[partner] for x in rows]
            wanted = mix * wanted + (1 - mix) * wanted[partner]
        if hasattr(module, "loss"):  # a head that scores its own likelihood (MixtureHead)
            loss = module.loss(*rows, wanted)
        else:
            loss = F.mse_loss(module(*rows), wanted)
        if extra_loss is not None:
            loss = loss + extra_loss(generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()


class SkipHead(torch.nn.Module):
    """``tanh(W x + MLP(x))``: the run's MLP (before its tanh) beside a linear map of the
    inputs, so that a policy nearly linear in the inputs (Reach's expert steers the fingertip
    along the target offset, which the features hold linearly) need not be built from ReLUs
    out of a few hundred frames, while the MLP keeps the capacity of the run's head."""

    def __init__(self, input_dim: int, action_dim: int) -> None:
        super().__init__()
        self.mlp = MLPHead(input_dim, action_dim, (256, 256)).net[:-1]  # without the tanh
        self.linear = torch.nn.Linear(input_dim, action_dim)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(inputs) + self.mlp(inputs))


class MixtureHead(torch.nn.Module):
    """A Gaussian mixture over actions from the run's MLP trunk (256-256): ``components``
    weights, means (tanh, in the action box) and standard deviations (softplus, at least
    ``MIN_STD``), fitted by negative log-likelihood (``loss``), as robomimic's BC-GMM
    (Mandlekar et al. 2021). An MSE head averages actions that differ for states its inputs
    cannot tell apart (Push's expert pushes along the cube-goal line or walks around the cube,
    switching at an angle): the average is neither, and may be nearly still. In evaluation it
    acts on the mean of its most probable component (deterministic), or with ``sample`` of a
    component drawn by the weights (torch's global generator), as robomimic does, which also
    leaves a state where the closed loop would stand still. Session 43 measured neither helping:
    Push's oracle loses with it, and the pixel heads' failures move but still fail."""

    MIN_STD = 0.05

    def __init__(
        self, input_dim: int, action_dim: int, components: int = 5, sample: bool = False
    ) -> None:
        super().__init__()
        self.components, self.action_dim, self.sample = components, action_dim, sample
        self.trunk = MLPHead(input_dim, components * (1 + 2 * action_dim), (256, 256)).net[:-1]

    def _mixture(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.trunk(inputs)
        k, a = self.components, self.action_dim
        logits = out[:, :k]
        means = torch.tanh(out[:, k : k + k * a]).unflatten(1, (k, a))
        stds = F.softplus(out[:, k + k * a :]).unflatten(1, (k, a)) + self.MIN_STD
        return logits, means, stds

    def loss(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of ``actions`` (B, A)."""
        logits, means, stds = self._mixture(inputs)
        normal = torch.distributions.Normal(means, stds)
        per_component = normal.log_prob(actions[:, None]).sum(-1)  # (B, K)
        return -(torch.logsumexp(per_component + F.log_softmax(logits, -1), -1)).mean()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits, means, _ = self._mixture(inputs)
        if self.sample and not self.training:
            chosen = torch.multinomial(torch.softmax(logits, -1), 1)[:, 0]
        else:
            chosen = logits.argmax(-1)
        return means[torch.arange(len(means)), chosen]


#: Forms of the head ``train_head`` fits: the run's MLP 256-256, a linear map (then tanh),
#: both summed before the tanh (``SkipHead``), or a Gaussian mixture (``MixtureHead``) acting
#: on its most probable component or on one drawn by the weights.
HEAD_FORMS = ("mlp", "linear", "skip", "gmm", "gmm-sample")


def make_head(
    input_dim: int, action_dim: int, form: str = "mlp", dropout: float = 0.0
) -> torch.nn.Module:
    """The head of ``form``; ``dropout`` > 0 puts dropout after each hidden ReLU (active in
    training only: ``fit_regressor`` returns the head in eval mode)."""
    if form == "skip":
        head: torch.nn.Module = SkipHead(input_dim, action_dim)
    elif form in ("gmm", "gmm-sample"):
        head = MixtureHead(input_dim, action_dim, sample=form == "gmm-sample")
    else:
        head = MLPHead(input_dim, action_dim, {"mlp": (256, 256), "linear": ()}[form])
    if dropout > 0:
        layers = head.mlp if form == "skip" else head.trunk if form.startswith("gmm") else head.net
        for index in reversed(range(len(layers))):
            if isinstance(layers[index], torch.nn.ReLU):
                layers.insert(index + 1, torch.nn.Dropout(dropout))
    return head


def train_head(
    inputs: np.ndarray,
    actions: np.ndarray,
    seed: int,
    steps: int,
    batch: int,
    input_noise: float | np.ndarray = 0.0,
    extra_loss: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Generator], torch.Tensor]
    | None = None,
    form: str = "mlp",
    mixup: float = 0.0,
    dropout: float = 0.0,
) -> Callable[[np.ndarray], np.ndarray]:
    """The run's BC head (``form``: see ``HEAD_FORMS``) on standardised inputs; returns
    ``act(inputs) -> actions``. ``extra_loss(act, generator)``, if given, is added to every
    step's loss, where ``act`` maps unstandardised float32 input rows to the head's actions
    (with gradients). ``mixup``: see ``fit_regressor``; ``dropout``: see ``make_head``."""
    mean, scale = inputs.mean(0), inputs.std(0) + 1e-6
    x = torch.from_numpy(((inputs - mean) / scale).astype(np.float32))
    y = torch.from_numpy(actions)
    torch.manual_seed(seed)
    head = make_head(x.shape[1], y.shape[1], form, dropout)
    mean_t, scale_t = (torch.from_numpy(v.astype(np.float32)) for v in (mean, scale))
    extra = None
    if extra_loss is not None:
        extra = partial(extra_loss, lambda rows: head((rows - mean_t) / scale_t))
    fit_regressor(head, [x], y, seed, steps, batch, input_noise, extra, mixup)

    def act(row: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = torch.from_numpy(((row - mean) / scale).astype(np.float32))[None]
            return head(z)[0].numpy()

    return act


def open_run(args: argparse.Namespace, script: str) -> tuple[dict[str, Any], Any, str | None]:
    """Sets the thread count and prints the settings; returns the run's ``config.json``, the
    task's demonstrations and the encoder spec for ``resolve_encoder`` (``--encoder``: an
    objective pretrained in the run, ``none``, or an encoder directory such as a
    ``bench_variants`` variant's; None where a script has no ``--encoder``)."""
    torch.set_num_threads(args.threads)
    config = json.loads((args.run / "config.json").read_text())
    if args.eval_seed is None:  # the run's own evaluation episodes
        args.eval_seed = int(config["seed"]) + EVAL_SEED_BASE
    print(f"{script}:", json.dumps({k: str(v) for k, v in vars(args).items()}))
    check_seeds(args, config)
    demos = open_dataset(args.run / args.task / "data" / "demos" / "dataset")
    return config, demos, encoder_spec(args.run, args.task, args.encoder)


def encoder_spec(run: Path, task: str, encoder: str | None) -> str | None:
    """``--encoder`` as ``resolve_encoder`` takes it: ``none`` (or None), or an encoder made
    outside the run (a ``bench_variants`` variant's directory), as given; else the run's
    encoder pretrained with that objective."""
    if encoder in (None, "none") or Path(encoder).is_dir():
        return encoder
    return str(run / task / "pretrain" / encoder / "encoder")


def check_seeds(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """Refuse a training seed given twice (its episodes counted twice in the mean) and
    evaluation seeds among the run's unlabeled stream's or its online validation's (episodes
    the encoders pretrained on, or that chose a best checkpoint)."""
    from sslrobot.pipeline.presets import UNLABELED_SEED_BASE
    from sslrobot.policy.config import VALIDATION_SEED_BASE

    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds {args.seeds}: a seed given twice would count twice")
    evaluation = range(args.eval_seed, args.eval_seed + args.episodes)
    start = int(config["seed"]) + UNLABELED_SEED_BASE
    ranges = {
        "the unlabeled stream's (pretraining)": range(
            start, start + int(config["num_unlabeled_episodes"])
        ),
        "the online validation's": range(
            VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + int(config.get("bc_val_episodes", 0))
        ),
    }
    for name, seeds in ranges.items():
        if evaluation.start < seeds.stop and seeds.start < evaluation.stop:
            raise SystemExit(f"--eval-seed {args.eval_seed}: evaluation seeds reach {name} "
                             f"({seeds.start} to {seeds.stop - 1})")  # fmt: skip


def check_demos_and_seeds(args: argparse.Namespace, demos: Any) -> None:
    """Refuse more demonstrations than the run collected (a slice would quietly use fewer)
    and evaluation seeds among the demonstrations' (an evaluation on episodes it imitated)."""
    if len(demos.episode_ids) < args.num_demos:
        raise SystemExit(f"--num-demos {args.num_demos}: the run's demonstrations hold "
                         f"{len(demos.episode_ids)} episodes")  # fmt: skip
    base = int(demos.manifest["base_seed"])
    demo_seeds = {base + i for i in list(demos.episode_ids)[: args.num_demos]}
    shared = demo_seeds & set(range(args.eval_seed, args.eval_seed + args.episodes))
    if shared:
        raise SystemExit(f"--eval-seed {args.eval_seed}: evaluation seeds {sorted(shared)[:3]} "
                         "are demonstration seeds")  # fmt: skip


def demos_look(demos: Any) -> str:
    """The visual preset the demonstrations were collected in: the policies are evaluated in
    it, as the run evaluates its own."""
    return demos.manifest["env_kwargs"].get("visual_preset", "train")


def main() -> None:
    args = parse_args()
    config, demos, spec = open_run(args, "bench_readout")
    check_demos_and_seeds(args, demos)
    start = time.perf_counter()
    names = demos.manifest["state_names"]
    variables = OBJECT_VARIABLES[args.task]
    columns = [names.index(name) for name in variables]
    transitions = load_transitions(
        demos, list(demos.episode_ids)[: args.num_demos], pixels=True, state=True
    )
    env_id = f"sslrobot/{args.task}"
    steps, batch = config["bc_steps"], config["bc_batch_size"]
    modes = ["state", "state-readout", "true", "readout", "features"]
    tip_columns = (
        [names.index("fingertip_x"), names.index("fingertip_y")] if args.with_fingertip else []
    )
    if args.with_fingertip:
        modes += ["true+tip", "readout+tip", "features+tip"]
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    readout_error = None
    for seed in args.seeds:
        encoder = resolve_encoder(spec, config["image_size"], seed, config["encoder_arch"]).module
        encoder.eval()
        readout = fit_readout(
            encoder,
            open_dataset(args.run / args.task / "data" / "unlabeled" / "dataset"),
            args.probe_episodes,
        )
        features = encode(encoder, transitions.pixels)
        true = transitions.state[:, columns].astype(np.float64)
        read_state = readout(features)
        read = read_state[:, columns]
        if readout_error is None:
            readout_error = np.median(np.abs(read - true), axis=0)
        inputs = {
            "state": transitions.state.astype(np.float64),
            "state-readout": read_state,
            "true": np.c_[transitions.proprio, true],
            "readout": np.c_[transitions.proprio, read],
            "features": np.c_[features, transitions.proprio],
        }
        if args.with_fingertip:
            proprio_tip = np.c_[transitions.proprio, transitions.state[:, tip_columns]]
            inputs["true+tip"] = np.c_[proprio_tip, true]
            inputs["readout+tip"] = np.c_[proprio_tip, read]
            inputs["features+tip"] = np.c_[features, proprio_tip]

        env = StateInObservation(
            make_env(env_id, config["image_size"], "pixels", demos_look(demos))
        )
        try:
            seeds = [args.eval_seed + i for i in range(args.episodes)]
            for mode, x in inputs.items():
                head = train_head(x, transitions.actions, seed, steps, batch)
                policy_input = make_policy_input(mode, encoder, readout, columns, tip_columns)
                episodes, _ = run_episodes(
                    env, lambda obs, h=head, f=policy_input: h(f(obs)), seeds
                )
                results[mode].append(float(np.mean([e.success for e in episodes])))
        finally:
            env.close()
    print(
        f"linear readout of {list(variables)} from {args.encoder} features, median absolute "
        f"error on the demonstrations: {np.round(readout_error, 4).tolist()}"
    )
    for mode, values in results.items():
        print(f"success with {mode:13s}: {[round(v, 3) for v in values]} -> {np.mean(values):.3f}")
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
