"""The bulk download's archive: its layout, and its members generated one after another.

Everything here is blocking and runs on worker threads, a block of the archive at a time.
Detections are read a batch of files at a time through ``fetch`` (which runs the query on the
event loop); images are read from storage in chunks; the ZIP is written by zipstream-ng as its
members are produced. So memory holds one batch of detections, one chunk of an image and one
small record per file (for the manifest and the ZIP's central directory), whatever the size
of the archive.

Layout, under one folder named after the job::

    {job_id}/labels/{name}.json|.txt|.xml   include=labels: one file per image (format json,
                                            yolo, yolo_obb or voc; coco's are coco.json)
    {job_id}/annotated/{name}.jpg           include=annotated (images with detections drawn)
    {job_id}/thumbnails/{name}.jpg          include=thumbnails
    {job_id}/originals/{name}{.ext}         include=originals, the bytes as uploaded
    {job_id}/results.json                   format=json: the results endpoint's data
    {job_id}/coco.json                      format=coco: one COCO document
    {job_id}/classes.txt                    format=yolo|yolo_obb: class names, line n is id n
    {job_id}/manifest.json                  always: the job and, per image, its members

``name`` is the image's file name (its relative path in a batch archive) without extension;
when two images of the job would get the same name (ignoring case), each of them gets
``_{file_id}`` appended.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from nesydet.db.repositories.downloads import FileRow
from nesydet.pipeline import export
from nesydet.pipeline.types import Detection
from nesydet.services.image_inspect import FORMATS
from nesydet.services.multipart import sanitize_filename
from nesydet.storage import Storage

DownloadFormat = Literal["json", "yolo", "yolo_obb", "coco", "voc"]
INCLUDES = ("labels", "annotated", "originals", "thumbnails")
LABEL_SUFFIX = {"json": ".json", "yolo": ".txt", "yolo_obb": ".txt", "voc": ".xml"}
# Detections read in one query: a batch of files holds about this many at most.
BATCH_DETECTIONS = 2000
BATCH_FILES = 200

# Reads the detections of some files of the job: file id -> detections in index order.
Fetch = Callable[[Sequence[str]], Mapping[str, list[Detection]]]


@dataclass(frozen=True, slots=True)
class Item:
    """One image of the job and its name in the archive."""

    row: FileRow
    name: str  # path without extension, unique in the job
    ext: str  # the original's extension, with its dot

    @property
    def original(self) -> str:
        """Return the original's path under ``originals/`` (COCO's and VOC's file name)."""
        return self.name + self.ext


@dataclass(frozen=True, slots=True)
class Plan:
    """What one download holds: the job, the format, the parts included, the images."""

    job_id: str
    fmt: DownloadFormat
    include: frozenset[str]
    header: dict[str, Any]  # the manifest's job fields
    classes: dict[int, str]
    items: list[Item] = field(default_factory=list)

    @property
    def root(self) -> str:
        """Return the folder every member lies in."""
        return self.job_id


def _split(filename: str, row: FileRow) -> tuple[str, str]:
    """Return a file name's path without extension, and the extension (the format's if none)."""
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    clean = [sanitize_filename(p, fallback=row.file_id) for p in parts] or [row.file_id]
    last = clean[-1]
    stem, dot, ext = last.rpartition(".")
    if dot and stem and 0 < len(ext) <= 5 and ext.isalnum():
        clean[-1] = stem
        return "/".join(clean), "." + ext
    return "/".join(clean), "." + FORMATS.get(row.format, ("bin", ""))[0]


def items(rows: Sequence[FileRow]) -> list[Item]:
    """Return the job's images with unique names: a shared name gets ``_{file_id}`` added."""
    split = [_split(row.filename, row) for row in rows]
    counts: dict[str, int] = {}
    for name, _ in split:
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    return [
        Item(row, name if counts[name.casefold()] == 1 else f"{name}_{row.file_id}", ext)
        for row, (name, ext) in zip(rows, split, strict=True)
    ]


def batches(plan_items: Sequence[Item]) -> Iterator[list[Item]]:
    """Yield the images in order, in runs whose detections one query can read."""
    run: list[Item] = []
    count = 0
    for item in plan_items:
        if run and (count + item.row.detection_count > BATCH_DETECTIONS or len(run) >= BATCH_FILES):
            yield run
            run, count = [], 0
        run.append(item)
        count += item.row.detection_count
    if run:
        yield run


def _with_detections(plan: Plan, fetch: Fetch) -> Iterator[tuple[Item, list[Detection]]]:
    for run in batches(plan.items):
        found = fetch([item.row.file_id for item in run])
        for item in run:
            yield item, found.get(item.row.file_id, [])


def _json_result(item: Item, dets: Sequence[Detection]) -> dict[str, Any]:
    """Return one image's entry of the results endpoint's ``format=json``."""
    row = item.row
    return {
        "file_id": row.file_id,
        "filename": row.filename,
        "dimensions": [row.width, row.height],
        "detections": export.to_json_detections(dets, row.width, row.height),
        "detection_count": len(dets),
    }


def _labels(plan: Plan, item: Item, dets: Sequence[Detection]) -> bytes:
    row = item.row
    if plan.fmt in ("yolo", "yolo_obb"):
        # yolo is the spec's upright `class cx cy w h conf`; yolo_obb the 8-point form.
        return export.to_yolo(dets, row.width, row.height, obb=plan.fmt == "yolo_obb").encode()
    if plan.fmt == "voc":
        return export.to_voc(item.original, row.width, row.height, dets).encode()
    return json.dumps(_json_result(item, dets), indent=1).encode()


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _results_json(plan: Plan, fetch: Fetch) -> Iterator[bytes]:
    # As the results endpoint's data: what the job ran, then the images' results.
    ran = (
        b',"model":'
        + _dump(plan.header.get("model"))
        + b',"rules":'
        + _dump(plan.header.get("rules"))
    )
    yield b'{"job_id":' + _dump(plan.job_id) + ran + b',"format":"json","results":['
    for n, (item, dets) in enumerate(_with_detections(plan, fetch)):
        yield (b"," if n else b"") + _dump(_json_result(item, dets))
    yield b"]}"


def _coco_json(plan: Plan, fetch: Fetch) -> Iterator[bytes]:
    """Yield one COCO document, written image by image (``export.to_coco`` per image)."""
    head = export.to_coco([], plan.classes)
    yield b'{"info":' + _dump(head["info"]) + b',"licenses":[],"categories":'
    yield _dump(head["categories"]) + b',"images":['
    for n, item in enumerate(plan.items):
        image = {"id": n + 1, "file_name": item.original, "width": item.row.width}
        image.update(height=item.row.height, file_id=item.row.file_id)
        yield (b"," if n else b"") + _dump(image)
    yield b'],"annotations":['
    next_id = 1
    for n, (item, dets) in enumerate(_with_detections(plan, fetch)):
        one = export.CocoImage(item.original, item.row.width, item.row.height, dets, id=n + 1)
        for ann in export.to_coco([one], plan.classes)["annotations"]:
            ann["id"] = next_id
            yield (b"," if next_id > 1 else b"") + _dump(ann)
            next_id += 1
    yield b"]}"


def _classes_txt(plan: Plan) -> bytes:
    top = max(plan.classes, default=-1)
    return "".join(f"{plan.classes.get(k, f'class_{k}')}\n" for k in range(top + 1)).encode()


def _stored(storage: Storage, key: str | None) -> tuple[Iterable[bytes], int] | None:
    """Return a stored object's chunks and size, or None when there is none."""
    if key is None:
        return None
    found = storage.stat(key)
    if found is None:
        return None
    return storage.iter_chunks(key), found.size


class _Archive:
    """A ZipStream and the manifest's per-image records, filled as members are written."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.zip = ZipStream(compress_type=ZIP_STORED)
        self.records: list[dict[str, Any]] = []

    def add(
        self, path: str, data: bytes | Iterable[bytes], *, size: int | None = None, deflate: bool
    ) -> Iterator[bytes]:
        """Write one member (``path`` under the job's folder) and yield its bytes."""
        method = ZIP_DEFLATED if deflate else ZIP_STORED
        self.zip.add(data, f"{self.plan.root}/{path}", size=size, compress_type=method)
        chunks: Iterator[bytes] = self.zip.all_files()
        return chunks

    def image_members(self, storage: Storage, item: Item) -> Iterator[bytes]:
        """Yield the annotated image, thumbnail and original of one image, as included."""
        record = self.records[-1]
        row = item.row
        wanted = (
            ("annotated", "annotated", row.annotated_key, ".jpg"),
            ("thumbnails", "thumbnail", row.thumbnail_key, ".jpg"),
            ("originals", "original", row.storage_key, item.ext),
        )
        for folder, label, key, ext in wanted:
            if folder not in self.plan.include:
                continue
            stored = _stored(storage, key)
            record[label] = None if stored is None else f"{folder}/{item.name}{ext}"
            if stored is not None:
                yield from self.add(record[label], stored[0], size=stored[1], deflate=False)


def generate(plan: Plan, *, fetch: Fetch, storage: Storage) -> Generator[bytes, None, None]:
    """Yield the whole ZIP archive of a download, member after member.

    Raises:
        StorageFailure: a stored image could not be read (the archive is then cut short).
    """
    archive = _Archive(plan)
    per_image_labels = "labels" in plan.include and plan.fmt != "coco"
    pairs: Iterable[tuple[Item, list[Detection] | None]] = (
        _with_detections(plan, fetch) if per_image_labels else ((item, None) for item in plan.items)
    )
    for item, dets in pairs:
        archive.records.append(
            {"file_id": item.row.file_id, "filename": item.row.filename, "name": item.name}
        )
        archive.records[-1]["dimensions"] = [item.row.width, item.row.height]
        archive.records[-1]["detection_count"] = item.row.detection_count
        if dets is not None:
            path = f"labels/{item.name}{LABEL_SUFFIX[plan.fmt]}"
            archive.records[-1]["labels"] = path
            yield from archive.add(path, _labels(plan, item, dets), deflate=True)
        yield from archive.image_members(storage, item)
    if plan.fmt == "json":
        yield from archive.add("results.json", _results_json(plan, fetch), deflate=True)
    elif plan.fmt == "coco":
        yield from archive.add("coco.json", _coco_json(plan, fetch), deflate=True)
    elif plan.fmt in ("yolo", "yolo_obb"):
        yield from archive.add("classes.txt", _classes_txt(plan), deflate=True)
    yield from archive.add("manifest.json", _manifest(plan, archive.records), deflate=True)
    yield from archive.zip.footer()


def _manifest(plan: Plan, records: list[dict[str, Any]]) -> Iterator[bytes]:
    documents = {
        "json": "results.json",
        "coco": "coco.json",
        "yolo": "classes.txt",
        "yolo_obb": "classes.txt",
    }
    header = {
        **plan.header,
        "format": plan.fmt,
        "include": sorted(plan.include),
        "document": documents.get(plan.fmt),
        "file_count": len(records),
    }
    yield _dump(header)[:-1] + b',"files":['
    for n, record in enumerate(records):
        yield (b",\n" if n else b"\n") + _dump(record)
    yield b"\n]}\n"
