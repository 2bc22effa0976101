"""Names of the encoder and frame-decoder architectures, the package's default encoder, and
what a policy head reads beside the current frame.

Torch-free, so the command line and the presets can offer and check them before torch loads;
``models.encoder`` maps each name to its ``EncoderConfig`` (tests/test_models.py checks that
every name here builds one).
"""

from __future__ import annotations

#: ``cnn`` (the CPU-sized trunk, linear readout), ``resnet`` (the IMPALA trunk, for GPUs),
#: ``drqv2`` (the DrQ-v2 trunk), ``keypoints`` (the ``cnn`` stem with a spatial-softmax readout).
ENCODER_ARCHS = ("cnn", "resnet", "drqv2", "keypoints")

#: What ``sslrobot pretrain``, ``train-policy`` and every preset build unless told otherwise.
#: ``keypoints``: pretrained by ``fdm+future`` it beat the linear readout (``cnn``) in
#: 25-demonstration success on Reach and Push (27.3% vs 21.0%, 11.7% vs 7.7%) and in the linear
#: probe on all three tasks (0.735 / 0.667 / 0.802 vs 0.622 / 0.588 / 0.775;
#: docs/results/findings.md), at nearly the same training speed (2,083 vs 2,222 samples/s in
#: two processes, README).
DEFAULT_ENCODER_ARCH = "keypoints"

#: Frame decoders of ``future`` / ``recon`` (``pretrain --decoder``; ``DecoderConfig.named``):
#: ``dense`` (the default), ``heatmaps`` and ``keypoint-skip`` (keypoint encoders).
DECODER_NAMES = ("dense", "heatmaps", "keypoint-skip")

#: What a BC head reads beside the current frame's features (``PolicyConfig.context``):
#: nothing, or the features of its episode's ``first`` frame.
POLICY_CONTEXTS = ("none", "first")
#: What ``sslrobot run`` gives its BC heads: one of those, or ``auto``, each policy trained
#: with both and the one with the higher success on validation episodes kept.
RUN_CONTEXTS = (*POLICY_CONTEXTS, "auto")
#: What SAC's critics read (``PolicyConfig.rl_critic_input``): the actor's inputs, or the
#: privileged state (``sslrobot.policy.rl_critic``).
RL_CRITIC_INPUTS = ("policy", "state")
