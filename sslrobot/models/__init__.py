"""Neural network parts: encoder, frame decoder, latent dynamics, MLP heads."""

from sslrobot.models.decoder import Decoder, DecoderConfig
from sslrobot.models.dynamics import TransitionModel
from sslrobot.models.encoder import Encoder, EncoderConfig
from sslrobot.models.heads import make_mlp

__all__ = ["Decoder", "DecoderConfig", "Encoder", "EncoderConfig", "TransitionModel", "make_mlp"]
