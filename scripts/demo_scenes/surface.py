"""What lies under every pixel of a synthetic scene: the ground truth of the context map.

The composers paint surfaces (roads, pads, roofs) into an 8-bit layer next to the image, with
no random draws, so adding the layer changes no rendered pixel. Only
``scripts/train_context_model.py`` reads it; the pipeline sees pixels alone.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

LAND: Final = 0  # soil, crops, grass, lawns, sports grounds, trees
WATER: Final = 1  # sea, rivers, lakes (also under bridges and piers)
ROAD: Final = 2  # asphalt: roads, streets, roundabouts, parking lots
RUNWAY: Final = 3  # airfield aprons
PAVED: Final = 4  # other hard standing: tank farms, depot yards, office plots
ROOF: Final = 5  # buildings and sheds
SURFACES: Final[tuple[str, ...]] = ("land", "water", "road", "runway", "paved", "roof")


def finish(layer: npt.NDArray[np.uint8], water: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """Returns the layer with water on top: bridges and piers stand over water."""
    out = layer.copy()
    out[water] = WATER
    return out
