"""Synthetic aerial scene renderer used to train and evaluate the nesydet demo model.

Everything here is deterministic for a given seed and draws with Pillow and numpy only.
"""

from demo_scenes.classes import CLASS_IDS, CLASS_NAMES
from demo_scenes.scene import Scene, SceneObject, generate_scene

__all__ = ["CLASS_IDS", "CLASS_NAMES", "Scene", "SceneObject", "generate_scene"]
