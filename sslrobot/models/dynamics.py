"""Action-conditioned latent dynamics: roll z_t forward with a_t, a_{t+1}, ..."""

from __future__ import annotations

import torch
from torch import nn


class TransitionModel(nn.Module):
    """Residual MLP transition ``z' = LayerNorm(z + f([z, a]))``, or ``z + f([z, a])``.

    With an encoder whose features are LayerNorm'd (``linear``/``cnn`` readouts), the norm
    keeps rolled-out latents at their scale, as SPR (Schwarzer et al. 2021) normalises its
    transition output, and the residual starts near "nothing moves". Keypoint features are not
    normalised (they are coordinates), so there the norm maps z to LN(z), not z: "nothing
    moves" is out of reach at initialisation and every coordinate of a rolled latent is
    re-centred and re-scaled by all the others (a static target's keypoint wobbles with the
    arm's); ``layer_norm=False`` keeps rolled latents in the encoder's own coordinates.

    Args:
        latent_dim: D, the encoder's feature size.
        action_dim: A.
        hidden_dim: width of the residual MLP.
        layer_norm: normalise each output (True, the default and what every published
            encoder used) or return the residual sum as it is.
    """

    def __init__(
        self, latent_dim: int, action_dim: int, hidden_dim: int = 256, layer_norm: bool = True
    ) -> None:
        super().__init__()
        if latent_dim < 1 or action_dim < 1 or hidden_dim < 1:
            raise ValueError(
                f"latent_dim, action_dim and hidden_dim must be >= 1, got {latent_dim}, "
                f"{action_dim}, {hidden_dim}"
            )
        self.latent_dim = latent_dim
        self.action_dim = action_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim + action_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, latent_dim),
        )
        self.norm = nn.LayerNorm(latent_dim) if layer_norm else nn.Identity()

    def forward(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One step: latent (B, D), action (B, A) -> next latent (B, D)."""
        return self.norm(latent + self.net(torch.cat([latent, action], dim=-1)))

    def rollout(self, latent: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predict latents for k = 1..K.

        Args:
            latent: z_t, (B, D).
            actions: a_t..a_{t+K-1}, (B, K, A).

        Returns:
            Predicted z_{t+1}..z_{t+K}, (B, K, D).
        """
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"actions must be (B, K, {self.action_dim}), got {tuple(actions.shape)}"
            )
        latents = []
        for k in range(actions.shape[1]):
            latent = self(latent, actions[:, k])
            latents.append(latent)
        return torch.stack(latents, dim=1)
