"""A job's files in storage: reading an input image, writing one image's results."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from nesydet.db.models import UploadedFile
from nesydet.pipeline import ImageLoadError, PipelineResult, export, load_image
from nesydet.services.processing.failures import file_failure, storage_failure
from nesydet.storage import Storage, StorageFailure

ANNOTATED_QUALITY = 90
THUMBNAIL_QUALITY = 85


@dataclass(frozen=True, slots=True)
class ArtefactKeys:
    """Where one image's results were stored."""

    labels_key: str
    thumbnail_key: str
    annotated_key: str | None

    def as_columns(self) -> dict[str, str | None]:
        """Return the keys as ``job_files`` column values."""
        return {
            "labels_key": self.labels_key,
            "thumbnail_key": self.thumbnail_key,
            "annotated_key": self.annotated_key,
        }


def results_prefix(job_id: str) -> str:
    """Return the storage prefix under which all of a job's results lie."""
    return f"results/{job_id}"


def result_key(job_id: str, file_id: str, name: str) -> str:
    """Return the storage key of one artefact of a job's file."""
    return f"{results_prefix(job_id)}/{file_id}/{name}"


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Return the image as JPEG bytes."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def store_artefacts(
    storage: Storage, job_id: str, file_id: str, result: PipelineResult
) -> ArtefactKeys:
    """Write an image's YOLO labels, thumbnail and annotated image; return their keys.

    Raises:
        JobFailure: STORAGE_ERROR (retried) when the storage refuses a write.
    """
    width, height = result.image_size
    keys = ArtefactKeys(
        labels_key=result_key(job_id, file_id, "labels.txt"),
        thumbnail_key=result_key(job_id, file_id, "thumbnail.jpg"),
        annotated_key=(
            result_key(job_id, file_id, "annotated.jpg") if result.annotated is not None else None
        ),
    )
    try:
        labels = export.to_yolo(result.detections, width, height)
        storage.put_bytes(keys.labels_key, labels.encode())
        storage.put_bytes(keys.thumbnail_key, encode_jpeg(result.thumbnail, THUMBNAIL_QUALITY))
        if result.annotated is not None and keys.annotated_key is not None:
            storage.put_bytes(keys.annotated_key, encode_jpeg(result.annotated, ANNOTATED_QUALITY))
    except StorageFailure as exc:
        raise storage_failure("Could not save results", exc) from exc
    return keys


def read_image(storage: Storage, upload: UploadedFile) -> Image.Image:
    """Return an uploaded image, loaded from storage (through a temporary file off-disk).

    Raises:
        JobFailure: FILE_ERROR when the file is missing or does not decode (not retried),
            STORAGE_ERROR when the storage cannot be read (retried).
    """
    try:
        path = storage.local_path(upload.storage_key)
        if path is not None:
            if not path.is_file():
                raise file_failure(upload.filename, upload.id, "the stored file is missing")
            return load_image(path)
        with tempfile.NamedTemporaryFile(suffix=Path(upload.storage_key).suffix) as tmp:
            for chunk in storage.iter_chunks(upload.storage_key):
                tmp.write(chunk)
            tmp.flush()
            image = load_image(Path(tmp.name))
            image.load()
            return image
    except ImageLoadError as exc:
        raise file_failure(upload.filename, upload.id, exc.details or exc.message) from exc
    except StorageFailure as exc:
        raise storage_failure("Could not read an image from storage", exc) from exc
