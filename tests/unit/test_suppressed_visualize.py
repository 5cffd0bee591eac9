"""Dropped detections drawn dashed with the rule that dropped them (`--show-suppressed`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from nesydet.pipeline.types import Detection, ReasoningTrace
from nesydet.pipeline.visualize import annotate_suppressed, suppression_label


def dropped(rules: list[str], polygon: bool = True) -> Detection:
    trace = ReasoningTrace(0.9, 0.1, "drop", rules)
    poly = [(40.0, 40.0), (160.0, 40.0), (160.0, 100.0), (40.0, 100.0)] if polygon else None
    return Detection(1, "ship", 0.1, (40.0, 40.0, 160.0, 100.0), None, poly, trace)


def test_label_names_the_rule_that_dropped_it() -> None:
    assert suppression_label(dropped(["vessel_on_water", "vessel_on_dry_land"])) == (
        "ship: vessel_on_dry_land"
    )
    # a plain threshold drop names the penalty that caused it
    assert suppression_label(dropped(["vessel_on_dry_land", "below_threshold"])) == (
        "ship: vessel_on_dry_land"
    )
    assert suppression_label(dropped(["below_threshold"])) == "ship: below_threshold"
    assert suppression_label(dropped([])) == "ship"


def test_outline_is_dashed() -> None:
    for polygon in (True, False):
        img = Image.new("RGB", (200, 200), (0, 90, 0))
        annotate_suppressed(img, [dropped(["aircraft_on_water"], polygon)])
        top = np.asarray(img)[40, 45:155]  # along the top edge
        changed = (top != (0, 90, 0)).any(axis=1)
        assert 0.2 < changed.mean() < 0.9  # dashes and gaps, not a solid line
        assert (np.asarray(img)[103:125, 40:160] != (0, 90, 0)).any()  # the label under the box


def test_job_config_show_suppressed_draws_dropped_ones_on_the_annotated_image() -> None:
    from nesydet.pipeline.config import PipelineConfig, VisualizationConfig
    from nesydet.pipeline.pipeline import _draw

    base = Image.new("RGB", (200, 200), (0, 90, 0))
    arr = np.asarray(base)
    gone = [dropped(["vessel_on_dry_land"])]
    images = {}
    for show in (False, True):
        cfg = PipelineConfig(visualization=VisualizationConfig(show_suppressed=show))
        annotated, _ = _draw(base.copy(), arr, [], gone, cfg, lambda _stage: None)
        assert annotated is not None
        images[show] = np.asarray(annotated)
    assert (images[False] == arr).all()  # nothing kept, nothing shown
    assert (images[True] != arr).any()  # the dropped one, dashed and labelled
    off = PipelineConfig(visualization=VisualizationConfig(enabled=False, show_suppressed=True))
    assert _draw(base.copy(), arr, [], gone, off, lambda _stage: None)[0] is None
