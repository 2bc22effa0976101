"""``train_policy``: one entry point for behaviour cloning and RL on any encoder."""

from __future__ import annotations

from pathlib import Path

from sslrobot.policy.config import PolicyConfig


def train_policy(config: PolicyConfig) -> Path:
    """Train the policy ``config`` describes and write it to ``config.out``.

    The directory then holds ``policy_config.json`` and the weights; ``load_policy`` reads it.

    Returns:
        The policy directory.

    Raises:
        ValueError: an unknown env id, or an ``out`` that must not be cleared (an encoder's
            directory; a trained policy without ``overwrite``), before any work.
    """
    from sslrobot.policy.checkpoint import check_policy_out
    from sslrobot.policy.environment import check_env_id
    from sslrobot.utils.artifacts import POLICY, refuse_other_artifact, refuse_path_under_file
    from sslrobot.utils.io import output_lock

    check_env_id(config.env_id)  # before the demonstrations, which would blame their own env
    if config.cache_dir is not None:  # else "Not a directory" once encoding has started
        refuse_path_under_file(config.cache_dir, "cache_dir")
        if config.cache_dir.exists() and not config.cache_dir.is_dir():
            raise ValueError(f"cache_dir {config.cache_dir} is a file, not a directory")
    refuse_other_artifact(Path(config.out), POLICY)  # a file or a dataset: before the lock
    with output_lock(config.out, "train-policy"):
        # Judged under the lock: a job that finished between a check made before it and
        # this one's lock had its policy deleted as if --overwrite had been given.
        check_policy_out(Path(config.out), config.overwrite, config.resume)
        if config.algo == "bc":
            from sslrobot.policy.bc import train_bc

            return train_bc(config)
        from sslrobot.policy.rl import train_rl
        from sslrobot.utils.device import preserved_cudnn_flags

        with preserved_cudnn_flags():  # SB3's seeding sets them process-wide on a GPU
            return train_rl(config)
