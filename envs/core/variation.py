"""Visual variation presets: colours, lighting, camera jitter and distractors.

``train`` varies the look of the scene per episode within ranges; ``heldout`` draws from
colour palettes, light levels and distractor counts never used by ``train``, and jitters the
camera up to 2.5 times as far (a range that contains ``train``'s 1 cm: 0.4^3 = 6.4% of
held-out episodes draw a pose within ``train``'s range on all three axes), to measure the
generalization gap; ``none`` keeps the scene as authored.

Distractors are shown in the scene's order (the first ``n`` of ``distractor_geoms``): on the
arm tasks ``train``'s zero or one is always the box, and ``heldout``'s two add the cylinder,
a shape ``train`` never shows (the flat third is shown by neither), so the arm tasks' held-out
look also brings an unseen shape. On Navigate both are boxes, drawn anywhere in their strip by
the north wall, which overlaps the north landmark's footprint: a distractor partly merges with
it in about 5% of ``train`` episodes and 21% of ``heldout`` ones (an ad hoc count over
1,000 resets of each, session 26).
Changing either would change every published stream, so it is documented, not fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sslrobot.envs.core.physics import Physics
from sslrobot.envs.core.task import SceneSpec


@dataclass(frozen=True)
class VisualPreset:
    """Ranges that one preset samples from each episode.

    Attributes:
        surface_palette: candidate RGB colours for surfaces (floor, table, walls).
        light_scale: (low, high) multiplier of the authored light intensity.
        camera_jitter: max displacement of the camera position per axis, in metres.
        num_distractors: (low, high) inclusive number of distractor objects shown.
        distractor_palette: candidate RGB colours for distractors.
    """

    surface_palette: tuple[tuple[float, float, float], ...] = ()
    light_scale: tuple[float, float] = (1.0, 1.0)
    camera_jitter: float = 0.0
    num_distractors: tuple[int, int] = (0, 0)
    distractor_palette: tuple[tuple[float, float, float], ...] = ((0.5, 0.5, 0.5),)


# Palettes are disjoint so that held-out colours are never seen in training.
_TRAIN_SURFACES = (
    (0.55, 0.55, 0.58),
    (0.62, 0.57, 0.50),
    (0.48, 0.55, 0.52),
    (0.58, 0.52, 0.58),
)
_HELDOUT_SURFACES = ((0.30, 0.36, 0.50), (0.66, 0.48, 0.32), (0.36, 0.30, 0.26))
_TRAIN_DISTRACTORS = ((0.9, 0.9, 0.9), (0.2, 0.2, 0.2), (0.6, 0.4, 0.9))
_HELDOUT_DISTRACTORS = ((1.0, 0.6, 0.8), (0.3, 0.8, 0.8))

PRESETS: dict[str, VisualPreset] = {
    "none": VisualPreset(),
    "train": VisualPreset(
        surface_palette=_TRAIN_SURFACES,
        light_scale=(0.85, 1.15),
        camera_jitter=0.01,
        num_distractors=(0, 1),
        distractor_palette=_TRAIN_DISTRACTORS,
    ),
    "heldout": VisualPreset(
        surface_palette=_HELDOUT_SURFACES,
        light_scale=(0.6, 0.75),
        camera_jitter=0.025,
        num_distractors=(2, 2),
        distractor_palette=_HELDOUT_DISTRACTORS,
    ),
}

_PARKED_Z = -10.0  # distractors not shown sit far below the floor, out of every camera's view


class SceneVariation:
    """Applies a preset to a model at each reset, restoring the authored values first."""

    def __init__(self, physics: Physics, scene: SceneSpec, preset_name: str) -> None:
        if preset_name not in PRESETS:
            raise ValueError(
                f"unknown visual_preset {preset_name!r}; choose one of {sorted(PRESETS)}"
            )
        self.preset_name = preset_name
        self.preset = PRESETS[preset_name]
        self._scene = scene
        model = physics.model
        self._surface_ids = [physics.geom_id(name) for name in scene.surface_geoms]
        self._distractor_ids = [physics.geom_id(name) for name in scene.distractor_geoms]
        self._camera_id = physics.camera_id(scene.camera)
        self._authored_rgba = model.geom_rgba.copy()
        self._authored_geom_pos = model.geom_pos.copy()
        self._authored_light = model.light_diffuse.copy()
        self._authored_camera_pos = model.cam_pos.copy()
        # Distractors: non-colliding, shown only by presets.
        for geom_id in self._distractor_ids:
            model.geom_contype[geom_id] = 0
            model.geom_conaffinity[geom_id] = 0

    def apply(self, physics: Physics, rng: np.random.Generator) -> None:
        """Sample this episode's look. Draws from ``rng`` even for ``none`` so that the task's
        random stream is the same whatever the preset."""
        model, preset = physics.model, self.preset
        model.geom_rgba[:] = self._authored_rgba
        model.geom_pos[:] = self._authored_geom_pos
        model.light_diffuse[:] = self._authored_light
        model.cam_pos[:] = self._authored_camera_pos
        draws = rng.random(8 + 4 * max(1, len(self._distractor_ids)))
        if preset.surface_palette:
            for geom_id in self._surface_ids:
                colour = preset.surface_palette[int(draws[0] * len(preset.surface_palette))]
                model.geom_rgba[geom_id, :3] = colour
        low, high = preset.light_scale
        model.light_diffuse[:] = self._authored_light * (low + (high - low) * draws[1])
        jitter = preset.camera_jitter * (2.0 * draws[2:5] - 1.0)
        model.cam_pos[self._camera_id] = self._authored_camera_pos[self._camera_id] + jitter
        low_n, high_n = preset.num_distractors
        num_shown = min(len(self._distractor_ids), low_n + int(draws[5] * (high_n - low_n + 1)))
        (x_lo, y_lo), (x_hi, y_hi) = self._scene.distractor_region
        for index, geom_id in enumerate(self._distractor_ids):
            if index < num_shown:
                u, v, c = draws[8 + 4 * index : 11 + 4 * index]
                model.geom_pos[geom_id] = (
                    x_lo + (x_hi - x_lo) * u,
                    y_lo + (y_hi - y_lo) * v,
                    self._scene.distractor_height,
                )
                colour = preset.distractor_palette[int(c * len(preset.distractor_palette))]
                model.geom_rgba[geom_id] = (*colour, 1.0)
            else:
                model.geom_pos[geom_id, 2] = _PARKED_Z
        mujoco.mj_forward(model, physics.data)
