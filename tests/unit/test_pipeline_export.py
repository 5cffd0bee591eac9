"""Exporters: JSON shape, YOLO round trip, COCO via pycocotools, Pascal VOC XML."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from nesydet.pipeline import export
from nesydet.pipeline.types import Detection, ReasoningTrace
from tests.pipeline_fixtures import det

W, H = 1920, 1080


def sample_dets(obb: bool) -> list[Detection]:
    trace = ReasoningTrace(0.61, 0.71, "keep", ["ship_near_harbor"], None)
    if obb:
        return [
            det("plane", 0.953214, (0, 0, 0, 0), class_id=0, obb=(200.25, 200.5, 120.0, 90.0, 0.3)),
            det(
                "ship",
                0.7123456,
                (0, 0, 0, 0),
                class_id=1,
                obb=(1500.0, 900.0, 80.0, 20.0, 2.5),
                trace=trace,
            ),
        ]
    return [
        det("plane", 0.95, (100, 150, 300, 250), class_id=0),
        det("ship", 0.7123456, (1000.5, 500.25, 1100.75, 560.0), class_id=1, trace=trace),
    ]


def test_json_matches_spec_shape() -> None:
    d = det("plane", 0.95, (100, 150, 300, 250), class_id=0)
    out = export.to_json_detections([d], W, H)[0]
    assert out["class_id"] == 0
    assert out["class_name"] == "plane"
    assert out["confidence"] == 0.95
    assert out["bbox"] == {"format": "xyxy", "x_min": 100, "y_min": 150, "x_max": 300, "y_max": 250}
    assert out["bbox_normalized"] == {
        "format": "yolo",
        "center_x": round(200 / W, 6),
        "center_y": round(200 / H, 6),
        "width": round(200 / W, 6),
        "height": round(100 / H, 6),
    }
    assert out["reasoning"] is None
    assert "polygon" not in out
    assert "angle" not in out
    json.dumps(out)


def test_json_obb_extras_and_trace() -> None:
    out = export.to_json_detections(sample_dets(obb=True), W, H)
    assert len(out[0]["polygon"]) == 4
    assert len(out[0]["polygon_normalized"]) == 4
    assert out[0]["angle"] == pytest.approx(0.3)
    assert out[1]["reasoning"] == {
        "original_confidence": 0.61,
        "adjusted_confidence": 0.71,
        "action": "keep",
        "rules_fired": ["ship_near_harbor"],
        "original_class": None,
    }


@pytest.mark.parametrize("obb", [False, True])
def test_yolo_round_trip_exact(obb: bool) -> None:
    dets = sample_dets(obb)
    text = export.to_yolo(dets, W, H)
    lines = text.splitlines()
    assert len(lines) == 2
    assert len(lines[0].split()) == (10 if obb else 6)
    labels = export.parse_yolo(text)
    for lab, d in zip(labels, dets, strict=True):
        assert lab.class_id == d.class_id
        assert lab.confidence == round(d.confidence, 6)
        if obb:
            assert d.polygon is not None
            want = [round(v, 6) for x, y in d.polygon for v in (x / W, y / H)]
        else:
            x0, y0, x1, y1 = d.bbox
            want = [
                round(v, 6)
                for v in ((x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H)
            ]
        assert list(lab.coords) == want
    # text -> labels -> text is the identity
    again = "".join(
        " ".join([str(lab.class_id), *(f"{v:.6f}" for v in (*lab.coords, lab.confidence or 0.0))])
        + "\n"
        for lab in labels
    )
    assert again == text


def test_yolo_example_line_from_spec() -> None:
    lab = export.parse_yolo("0 0.104 0.185 0.104 0.093 0.95\n")[0]
    assert lab.class_id == 0
    assert lab.coords == (0.104, 0.185, 0.104, 0.093)
    assert lab.confidence == 0.95
    assert not lab.is_obb
    poly = lab.polygon(1000, 1000)
    assert poly[0] == pytest.approx((52.0, 138.5))


def test_yolo_forced_forms_and_ground_truth_lines() -> None:
    dets = sample_dets(obb=True)
    assert len(export.to_yolo(dets, W, H, obb=False).split("\n")[0].split()) == 6
    gt = export.parse_yolo("3 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n\n")
    assert gt[0].is_obb
    assert gt[0].confidence is None
    assert export.to_yolo([], W, H) == ""


@pytest.mark.parametrize(
    "bad", ["0 0.1 0.2", "x 0.1 0.2 0.3 0.4", "0 0.1 0.2 0.3 nan", "-1 0.1 0.2 0.3 0.4"]
)
def test_yolo_parse_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        export.parse_yolo(bad)


def test_coco_loads_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [
        export.CocoImage("a.jpg", W, H, sample_dets(obb=False)),
        export.CocoImage("b.png", W, H, sample_dets(obb=True)),
    ]
    names = ["plane", "ship", "storage_tank"]
    data = export.to_coco(images, names)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    gt = COCO(str(path))
    assert len(gt.getImgIds()) == 2
    assert len(gt.getAnnIds()) == 4
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == names
    ann = gt.loadAnns(gt.getAnnIds(imgIds=[2]))[0]
    assert len(ann["segmentation"][0]) == 8
    assert ann["area"] == pytest.approx(120 * 90, rel=1e-4)
    assert ann["bbox"][2] > 0
    assert ann["score"] == pytest.approx(0.953214)
    # the same annotations are a valid results list: evaluating against themselves is perfect
    dt = gt.loadRes(data["annotations"])
    ev = COCOeval(gt, dt, "bbox")
    ev.params.catIds = [0, 1]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[1] == pytest.approx(1.0)  # AP at IoU 0.5


def test_coco_category_names_default_from_detections() -> None:
    data = export.to_coco([export.CocoImage("a.jpg", W, H, sample_dets(obb=False), id=7)])
    assert data["categories"] == [
        {"id": 0, "name": "plane", "supercategory": "object"},
        {"id": 1, "name": "ship", "supercategory": "object"},
    ]
    assert {a["image_id"] for a in data["annotations"]} == {7}


def test_voc_xml_parses() -> None:
    dets = [*sample_dets(obb=True), det("car & <truck>", 0.5, (1, 2, 30, 40), class_id=5)]
    xml = export.to_voc("scene 1.jpg", W, H, dets)
    root = ET.fromstring(xml)  # noqa: S314 - our own output
    assert root.findtext("filename") == "scene 1.jpg"
    assert root.findtext("size/width") == str(W)
    assert root.findtext("size/height") == str(H)
    objs = root.findall("object")
    assert [o.findtext("name") for o in objs] == ["plane", "ship", "car & <truck>"]
    rob = objs[0].find("robndbox")
    assert rob is not None
    assert float(rob.findtext("cx") or 0) == pytest.approx(200.25)
    assert float(rob.findtext("angle") or 0) == pytest.approx(0.3)
    assert objs[2].find("robndbox") is None
    bnd = objs[2].find("bndbox")
    assert bnd is not None
    assert [int(bnd.findtext(k) or -1) for k in ("xmin", "ymin", "xmax", "ymax")] == [1, 2, 30, 40]
    assert math.isclose(float(objs[1].findtext("confidence") or 0), 0.712346)


def test_polygon_area_in_coco_matches_shoelace() -> None:
    d = det("ship", 0.5, (0, 0, 0, 0), obb=(50, 50, 40, 10, 1.0))
    area = export.to_coco([export.CocoImage("x", 100, 100, [d])])["annotations"][0]["area"]
    assert area == pytest.approx(400, rel=1e-4)
    assert np.isfinite(area)


def test_yolo_and_json_clip_boxes_past_the_edge_to_the_unit_square() -> None:
    # An oriented box in the top-left corner whose corners reach past the image.
    d = det("plane", 0.9, (0, 0, 0, 0), class_id=0, obb=(5.0, 5.0, 20.0, 8.0, 0.4))
    assert d.polygon is not None
    assert min(v for corner in d.polygon for v in corner) < 0
    upright = export.parse_yolo(export.to_yolo([d], W, H, obb=False))[0]
    oriented = export.parse_yolo(export.to_yolo([d], W, H, obb=True))[0]
    assert len(upright.coords) == 4
    assert len(oriented.coords) == 8
    for values in (upright.coords, oriented.coords):
        assert all(0.0 <= v <= 1.0 for v in values)
    assert min(oriented.coords) == 0.0
    cx, _, w, _ = upright.coords
    assert cx - w / 2 == pytest.approx(0.0, abs=1e-6)  # the box starts at the edge
    out = export.to_json_detections([d], W, H)[0]
    assert all(0.0 <= v <= 1.0 for v in out["bbox_normalized"].values() if isinstance(v, float))
    assert all(0.0 <= v <= 1.0 for p in out["polygon_normalized"] for v in p)
    assert out["bbox"]["x_min"] < 0  # pixels stay as the model gave them


@pytest.mark.parametrize(("fmt", "fields"), [("yolo", 6), ("yolo_obb", 10)])
def test_predict_writes_yolo_in_the_form_asked_for(tmp_path: Path, fmt: str, fields: int) -> None:
    from PIL import Image

    from nesydet.pipeline import cli
    from nesydet.pipeline.types import PipelineResult

    assert fmt in cli.FORMATS
    result = PipelineResult(
        detections=sample_dets(obb=True),
        dropped=[],
        timings={},
        image_size=(W, H),
        model_name="fake",
        thumbnail=Image.new("RGB", (8, 8)),
    )
    cli._write(tmp_path, "scene", tmp_path / "scene.png", result, fmt, [])
    lines = (tmp_path / "scene.txt").read_text().splitlines()
    assert [len(line.split()) for line in lines] == [fields, fields]
