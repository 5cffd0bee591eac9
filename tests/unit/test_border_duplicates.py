"""bench.quality's count of duplicates at slice borders, against a hand-built scene."""

from __future__ import annotations

import numpy as np
from bench.quality import border_duplicates

from nesydet.pipeline.evaluate import ImageBoxes

W, H = 1152, 640
WINDOWS = [(0, 0, 640, 640), (512, 0, 1152, 640)]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0 / W, y0 / H], [x1 / W, y0 / H], [x1 / W, y1 / H], [x0 / W, y1 / H]]


def test_cut_and_uncut_doubles_are_told_apart() -> None:
    # Object 0 crosses the right edge of the first slice (x = 640); object 1 lies whole
    # inside it, far from any inner edge; object 2 is found once.
    gt = ImageBoxes(
        np.array([_rect(630, 100, 650, 115), _rect(100, 300, 120, 315), _rect(300, 50, 320, 60)]),
        np.array([10, 10, 10]),
    )
    pred = ImageBoxes(
        np.array(
            [
                _rect(630, 100, 640, 115),  # the cut object's part seen by slice 0
                _rect(631, 100, 650, 115),  # the whole cut object seen by slice 1
                _rect(100, 300, 119, 315),  # the uncut object twice, both from slice 0
                _rect(102, 301, 120, 314),
                _rect(300, 50, 320, 60),
                _rect(300, 400, 320, 410),  # a false detection covers nothing
            ]
        ),
        np.array([10, 10, 10, 10, 10, 10]),
        np.full(6, 0.9),
    )
    sources = np.array([0, 1, 0, 0, 0, 0])
    cut, found, twice, one_slice, uncut, uncut_twice, cut_there = border_duplicates(
        pred, gt, WINDOWS, W, H, sources
    )
    assert (cut, found, twice, one_slice, cut_there) == (1, 1, 1, 0, 0)  # made by slicing
    assert (uncut, uncut_twice) == (2, 1)
    # Both boxes on the cut object from slice 0, whose right edge (x = 640) cuts it: one
    # slice, and a double the border made.
    counts = border_duplicates(pred, gt, WINDOWS, W, H, np.zeros(6, dtype=np.int64))
    assert (counts[3], counts[6]) == (1, 1)
    # Both from slice 1, which sees the object whole: the model's own double box.
    counts = border_duplicates(pred, gt, WINDOWS, W, H, np.array([1, 1, 0, 0, 0, 0]))
    assert (counts[3], counts[6]) == (1, 0)


def test_other_classes_do_not_cover() -> None:
    gt = ImageBoxes(np.array([_rect(630, 100, 650, 115)]), np.array([10]))
    pred = ImageBoxes(
        np.array([_rect(630, 100, 650, 115), _rect(630, 100, 650, 115)]),
        np.array([10, 9]),
        np.full(2, 0.9),
    )
    assert border_duplicates(pred, gt, WINDOWS, W, H) == (1, 1, 0, 0, 0, 0, 0)
