"""Results and visualization response models (spec, Endpoints 4 and 5).

Optional keys that a detection or document only has sometimes (an oriented box's ``polygon``,
a COCO annotation's ``segmentation``) are left out when absent, never sent as null: the routes
serialize with ``exclude_unset``, and these fields default to "unset".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from nesydet.schemas.registry import AssetRef

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Point = Annotated[list[float], Field(min_length=2, max_length=2)]
UnitPoint = Annotated[list[Unit], Field(min_length=2, max_length=2)]


class BoxXyxy(BaseModel):
    """An axis-aligned box in pixels (the envelope of an oriented box)."""

    format: Literal["xyxy"] = "xyxy"
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class BoxYolo(BaseModel):
    """The same box normalised to the image, YOLO's centre form; clipped to [0, 1]."""

    format: Literal["yolo"] = "yolo"
    center_x: Unit
    center_y: Unit
    width: Unit
    height: Unit


class ReasoningTraceOut(BaseModel):
    """What the rules did to a detection; null when reasoning was off."""

    original_confidence: float
    adjusted_confidence: float
    action: Literal["keep", "drop", "relabel"]
    rules_fired: list[str]
    original_class: str | None = Field(description="the class before a relabel, else null")
    facts: list[str] | SkipJsonSchema[None] = Field(
        default=None,
        description="the scene facts the rules read, when a rule fired (absent otherwise)",
    )


class DetectionOut(BaseModel):
    """One detected object."""

    class_id: int = Field(ge=0)
    class_name: str
    confidence: Unit
    bbox: BoxXyxy
    bbox_normalized: BoxYolo
    polygon: list[Point] | SkipJsonSchema[None] = Field(
        default=None, description="oriented-box models: the 4 corners in pixels"
    )
    polygon_normalized: list[UnitPoint] | SkipJsonSchema[None] = Field(
        default=None, description="oriented-box models: the 4 corners normalised, in [0, 1]"
    )
    angle: float | SkipJsonSchema[None] = Field(
        default=None, description="oriented-box models: rotation in radians"
    )
    reasoning: ReasoningTraceOut | None


class FileDetections(BaseModel):
    """One image's detections (``format=json``)."""

    file_id: str
    filename: str
    dimensions: Annotated[list[int], Field(min_length=2, max_length=2)] = Field(
        description="[width, height] in pixels"
    )
    detections: list[DetectionOut]
    detection_count: int = Field(ge=0)


class _JobResults(BaseModel):
    job_id: str
    model: AssetRef | None = Field(
        default=None, description="the model the job ran (null for jobs older than the registry)"
    )
    rules: AssetRef | None = Field(
        default=None, description="the rules it ran; null without reasoning"
    )


class JsonResults(_JobResults):
    format: Literal["json"]
    results: list[FileDetections]


class YoloFile(BaseModel):
    """One image's YOLO label text: ``class cx cy w h conf`` lines (``yolo``, the upright box
    of an oriented one) or ``class x1 y1 x2 y2 x3 y3 x4 y4 conf`` (``yolo_obb``); every
    coordinate normalised and within [0, 1]."""

    file_id: str
    filename: str
    label_content: str
    download_url: str = Field(description="the same text as a file")


class YoloResults(_JobResults):
    format: Literal["yolo", "yolo_obb"]
    files: list[YoloFile]


class VocFile(BaseModel):
    """One image's Pascal VOC annotation XML (oriented boxes add a ``robndbox``)."""

    file_id: str
    filename: str
    voc_xml: str


class VocResults(_JobResults):
    format: Literal["voc"]
    files: list[VocFile]


class CocoImageOut(BaseModel):
    id: int
    file_name: str
    width: int
    height: int
    file_id: str


class CocoAnnotation(BaseModel):
    id: int
    image_id: int
    category_id: int
    bbox: Annotated[list[float], Field(min_length=4, max_length=4)] = Field(
        description="[x, y, width, height] in pixels"
    )
    area: float
    score: float
    iscrowd: int
    segmentation: list[list[float]] | SkipJsonSchema[None] = Field(
        default=None, description="oriented boxes: the polygon, x1 y1 ... x4 y4"
    )
    obb: Annotated[list[float], Field(min_length=5, max_length=5)] | SkipJsonSchema[None] = Field(
        default=None, description="oriented boxes: [cx, cy, w, h, angle in radians]"
    )


class CocoCategory(BaseModel):
    id: int
    name: str
    supercategory: str


class CocoInfo(BaseModel):
    description: str
    version: str


class CocoDocument(BaseModel):
    """A COCO dataset document; ``annotations`` also loads as a results list."""

    info: CocoInfo
    licenses: list[dict[str, Any]]
    images: list[CocoImageOut]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]


class CocoResults(_JobResults):
    format: Literal["coco"]
    coco: CocoDocument


ResultsData = Annotated[
    JsonResults | YoloResults | CocoResults | VocResults, Field(discriminator="format")
]


class ResultsResponse(BaseModel):
    """``data`` holds ``results`` (json), ``files`` (yolo, yolo_obb, voc) or ``coco`` (coco)."""

    status: Literal["success"] = "success"
    data: ResultsData


class VisualizationLinks(BaseModel):
    """Where one image's pictures are; a link is null when there is no such picture (no
    annotated image when the job ran with ``visualization.enabled=false``)."""

    file_id: str
    filename: str
    original_url: str = Field(
        description="the upload; for a TIFF, its PNG rendering (`?as=png`), which an <img> shows"
    )
    annotated_url: str | None
    thumbnail_url: str | None
    detection_count: int = Field(ge=0)


class VisualizationList(BaseModel):
    job_id: str
    format: Literal["url"]
    visualizations: list[VisualizationLinks]


class VisualizationInline(BaseModel):
    """One image's pictures as data URIs, each JPEG or PNG (a TIFF original comes as PNG)."""

    job_id: str
    file_id: str
    filename: str
    format: Literal["base64"]
    original_image: str = Field(pattern=r"^data:image/(jpeg|png);base64,")
    annotated_image: str | None = Field(pattern=r"^data:image/(jpeg|png);base64,")
    thumbnail_image: str | None = Field(pattern=r"^data:image/(jpeg|png);base64,")
    detection_count: int = Field(ge=0)


VisualizationData = Annotated[
    VisualizationList | VisualizationInline, Field(discriminator="format")
]


class VisualizationResponse(BaseModel):
    """``data`` holds ``visualizations`` (url) or one file's images inline (base64)."""

    status: Literal["success"] = "success"
    data: VisualizationData
