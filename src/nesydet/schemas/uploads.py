"""Upload request and response models (spec, Endpoint 1)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from nesydet.schemas.common import Timestamp


class UploadedFileOut(BaseModel):
    """One stored image."""

    filename: str = Field(description="the client's file name, sanitised; metadata only")
    file_id: str = Field(examples=["img_3f9a0c1d2e4b"])
    size_bytes: int
    format: str = Field(description="JPEG, PNG or TIFF, from the file's magic bytes")
    dimensions: tuple[int, int] = Field(description="[width, height] in pixels")
    content_type: str
    mode: str = Field(description="Pillow mode, e.g. RGB, L, I;16, CMYK, RGBA")
    page_count: int = Field(description="pages in a multi-page TIFF; 1 otherwise")
    sha256: str


class UploadData(BaseModel):
    upload_id: str = Field(examples=["upl_a1b2c3d4e5f6"])
    created_at: Timestamp
    file_count: int
    total_bytes: int
    uploaded_files: list[UploadedFileOut]


class UploadResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str
    data: UploadData


UPLOAD_EXAMPLE = {
    "status": "success",
    "message": "2 images uploaded successfully",
    "data": {
        "upload_id": "upl_a1b2c3d4e5f6",
        "created_at": "2026-02-02T18:54:56.102Z",
        "file_count": 2,
        "total_bytes": 5194304,
        "uploaded_files": [
            {
                "filename": "image1.jpg",
                "file_id": "img_3f9a0c1d2e4b",
                "size_bytes": 2048576,
                "format": "JPEG",
                "dimensions": [1920, 1080],
                "content_type": "image/jpeg",
                "mode": "RGB",
                "page_count": 1,
                "sha256": "9f2c…",
            },
            {
                "filename": "image2.png",
                "file_id": "img_a2b3c4d5e6f7",
                "size_bytes": 3145728,
                "format": "PNG",
                "dimensions": [2048, 1536],
                "content_type": "image/png",
                "mode": "RGB",
                "page_count": 1,
                "sha256": "41d0…",
            },
        ],
    },
}
