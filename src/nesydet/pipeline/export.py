"""Exporters: API JSON, YOLO label text (axis-aligned or OBB), COCO results, Pascal VOC XML.

All coordinates come from `Detection` objects in image pixels; normalised forms divide by
the image width/height. YOLO text prints 6 decimals and `parse_yolo` reads it back exactly.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nesydet.pipeline.types import Detection

YOLO_DECIMALS = 6


def to_json_detections(
    dets: Sequence[Detection], image_w: int, image_h: int
) -> list[dict[str, Any]]:
    """Returns the API's detection objects (see `Detection.to_dict`)."""
    return [d.to_dict(image_w, image_h) for d in dets]


def _fmt(v: float) -> str:
    return f"{v:.{YOLO_DECIMALS}f}"


def _unit(v: float) -> float:
    """Returns ``v`` clipped to [0, 1]: a box may reach a hair past the image edge."""
    return min(max(v, 0.0), 1.0)


def yolo_box(bbox: Sequence[float], image_w: int, image_h: int) -> tuple[float, ...]:
    """Returns the normalised ``(cx, cy, w, h)`` of an xyxy pixel box, clipped to the image."""
    x0, x1 = (min(max(v, 0.0), image_w) for v in (bbox[0], bbox[2]))
    y0, y1 = (min(max(v, 0.0), image_h) for v in (bbox[1], bbox[3]))
    return (
        (x0 + x1) / 2 / image_w,
        (y0 + y1) / 2 / image_h,
        (x1 - x0) / image_w,
        (y1 - y0) / image_h,
    )


def yolo_polygon(
    polygon: Sequence[tuple[float, float]], image_w: int, image_h: int
) -> list[tuple[float, float]]:
    """Returns the corners of a pixel polygon, normalised and clipped to [0, 1]."""
    return [(_unit(x / image_w), _unit(y / image_h)) for x, y in polygon]


def to_yolo(
    dets: Sequence[Detection], image_w: int, image_h: int, *, obb: bool | None = None
) -> str:
    """Returns YOLO label text, one detection per line, normalised, confidence last.

    Every coordinate is within [0, 1]: boxes and corners past the image edge are clipped.

    Args:
        dets: Detections in pixels.
        image_w: Image width in pixels.
        image_h: Image height in pixels.
        obb: True for ``class x1 y1 x2 y2 x3 y3 x4 y4 conf`` lines (the API's ``yolo_obb``),
            False for ``class cx cy w h conf`` (the spec's ``yolo``: the upright box of an
            oriented one); None picks OBB when every detection has a polygon.
    """
    use_obb = obb if obb is not None else bool(dets) and all(d.polygon is not None for d in dets)
    lines = []
    for d in dets:
        coords: Sequence[float]
        if use_obb:
            poly = d.polygon
            if poly is None:
                x0, y0, x1, y1 = d.bbox
                poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            coords = [v for corner in yolo_polygon(poly, image_w, image_h) for v in corner]
        else:
            coords = yolo_box(d.bbox, image_w, image_h)
        lines.append(" ".join([str(d.class_id), *map(_fmt, coords), _fmt(d.confidence)]))
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True, slots=True)
class YoloLabel:
    """One parsed YOLO label line (normalised coordinates).

    Attributes:
        class_id: Class index.
        coords: 4 values (cx, cy, w, h) or 8 values (x1, y1, ..., x4, y4).
        confidence: Trailing confidence, or None for ground-truth lines without one.
    """

    class_id: int
    coords: tuple[float, ...]
    confidence: float | None = None

    @property
    def is_obb(self) -> bool:
        """Returns whether the line is the 8-coordinate oriented form."""
        return len(self.coords) == 8

    def polygon(self, image_w: float = 1.0, image_h: float = 1.0) -> list[tuple[float, float]]:
        """Returns the 4 corners, scaled by the image size (normalised when not given)."""
        if self.is_obb:
            c = self.coords
            return [(c[k] * image_w, c[k + 1] * image_h) for k in range(0, 8, 2)]
        cx, cy, w, h = self.coords
        x0, y0, x1, y1 = (
            (cx - w / 2) * image_w,
            (cy - h / 2) * image_h,
            (cx + w / 2) * image_w,
            (cy + h / 2) * image_h,
        )
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def parse_yolo(text: str) -> list[YoloLabel]:
    """Returns the labels of YOLO label text (axis-aligned or OBB, with or without confidence).

    Raises:
        ValueError: On a line that is neither 5/6 nor 9/10 fields or has bad numbers.
    """
    out: list[YoloLabel] = []
    for n, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) not in (5, 6, 9, 10):
            raise ValueError(f"line {n}: expected 5, 6, 9 or 10 fields, got {len(parts)}")
        try:
            cls = int(parts[0])
            values = [float(p) for p in parts[1:]]
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from None
        if not all(math.isfinite(v) for v in values) or cls < 0:
            raise ValueError(f"line {n}: invalid values")
        ncoord = 4 if len(parts) in (5, 6) else 8
        conf = values[ncoord] if len(values) > ncoord else None
        out.append(YoloLabel(cls, tuple(values[:ncoord]), conf))
    return out


@dataclass(frozen=True, slots=True)
class CocoImage:
    """One image and its detections, for `to_coco`."""

    file_name: str
    width: int
    height: int
    detections: Sequence[Detection]
    id: int | None = None


def to_coco(
    images: Sequence[CocoImage], class_names: Mapping[int, str] | Sequence[str] | None = None
) -> dict[str, Any]:
    """Returns a COCO dataset dict (images, annotations, categories) holding the detections.

    Loadable by pycocotools ``COCO()``; its ``annotations`` list also works as a results list
    for ``COCO.loadRes``. Category ids are the model's class ids (0-based, like the API);
    annotations carry ``score``, and oriented boxes a polygon ``segmentation`` plus ``obb``
    ([cx, cy, w, h, angle_rad]).

    Args:
        images: Images with their detections.
        class_names: The model's class names by id; when None, the names found in the
            detections are used.
    """
    if class_names is None:
        names: dict[int, str] = {}
        for img in images:
            for d in img.detections:
                names.setdefault(d.class_id, d.class_name)
    elif isinstance(class_names, Mapping):
        names = dict(class_names)
    else:
        names = dict(enumerate(class_names))
    coco_images, annotations = [], []
    ann_id = 1
    for n, img in enumerate(images, 1):
        image_id = img.id if img.id is not None else n
        coco_images.append(
            {"id": image_id, "file_name": img.file_name, "width": img.width, "height": img.height}
        )
        for d in img.detections:
            x0, y0, x1, y1 = d.bbox
            ann: dict[str, Any] = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": d.class_id,
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "area": round((x1 - x0) * (y1 - y0), 2),
                "score": round(d.confidence, 6),
                "iscrowd": 0,
            }
            if d.polygon is not None:
                ann["segmentation"] = [[round(v, 2) for x, y in d.polygon for v in (x, y)]]
                ann["area"] = round(_shoelace(d.polygon), 2)
            if d.obb is not None:
                ann["obb"] = [round(v, 6) for v in d.obb]
            annotations.append(ann)
            ann_id += 1
    categories = [{"id": k, "name": v, "supercategory": "object"} for k, v in sorted(names.items())]
    return {
        "info": {"description": "nesydet detections", "version": "1.0"},
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }


def _shoelace(poly: Sequence[tuple[float, float]]) -> float:
    s = 0.0
    for k, (x, y) in enumerate(poly):
        x2, y2 = poly[(k + 1) % len(poly)]
        s += x * y2 - x2 * y
    return abs(s) / 2


def to_voc(filename: str, image_w: int, image_h: int, dets: Sequence[Detection]) -> str:
    """Returns Pascal VOC annotation XML; oriented boxes add a roLabelImg ``robndbox``.

    ``bndbox`` holds integer pixel coordinates (rounded), ``robndbox`` the oriented box
    (cx, cy, w, h, angle in radians) with 2-6 decimals, ``confidence`` the score.
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(image_w)
    ET.SubElement(size, "height").text = str(image_h)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for d in dets:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "type").text = "robndbox" if d.obb is not None else "bndbox"
        ET.SubElement(obj, "name").text = d.class_name
        ET.SubElement(obj, "pose").text = "Unspecified"
        x0, y0, x1, y1 = d.bbox
        cut = x0 <= 0 or y0 <= 0 or x1 >= image_w or y1 >= image_h
        ET.SubElement(obj, "truncated").text = "1" if cut else "0"
        ET.SubElement(obj, "difficult").text = "0"
        ET.SubElement(obj, "confidence").text = f"{d.confidence:.6f}"
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x0), ("ymin", y0), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bnd, tag).text = str(round(v))
        if d.obb is not None:
            rob = ET.SubElement(obj, "robndbox")
            cx, cy, w, h, a = d.obb
            for tag, v, nd in (
                ("cx", cx, 2),
                ("cy", cy, 2),
                ("w", w, 2),
                ("h", h, 2),
                ("angle", a, 6),
            ):
                ET.SubElement(rob, tag).text = f"{v:.{nd}f}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
