"""DOTA v1.0 class names in the dataset's own order, with underscores instead of spaces."""

from typing import Final

# Same order as DOTA v1.0 (and ultralytics' DOTAv1.yaml) so ids line up with public models.
CLASS_NAMES: Final[tuple[str, ...]] = (
    "plane",
    "ship",
    "storage_tank",
    "baseball_diamond",
    "tennis_court",
    "basketball_court",
    "ground_track_field",
    "harbor",
    "bridge",
    "large_vehicle",
    "small_vehicle",
    "helicopter",
    "roundabout",
    "soccer_ball_field",
    "swimming_pool",
)
CLASS_IDS: Final[dict[str, int]] = {name: i for i, name in enumerate(CLASS_NAMES)}
