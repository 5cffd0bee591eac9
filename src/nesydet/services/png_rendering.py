"""PNG renderings of uploaded originals, for clients that cannot show TIFF (a browser's
``<img>``): made once, on first request, and stored next to the original."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import anyio

from nesydet.errors import StorageError
from nesydet.pipeline.errors import ImageLoadError
from nesydet.pipeline.image_io import load_image
from nesydet.storage import Storage, StorageFailure

# Browsers show these as they are; anything else (TIFF) is rendered to PNG for them.
BROWSER_TYPES = frozenset({"image/jpeg", "image/png"})


def png_key(storage_key: str) -> str:
    """Return the key of the PNG rendering of the original stored under ``storage_key``.

    Under the upload's prefix, so deleting the upload deletes it too.
    """
    return storage_key.rsplit(".", 1)[0] + ".render.png"


def _render(storage: Storage, source: str, target: str) -> None:
    path = storage.local_path(source)
    if path is not None:
        image = load_image(path)
    else:
        with tempfile.NamedTemporaryFile(suffix=Path(source).suffix) as tmp:
            for chunk in storage.iter_chunks(source):
                tmp.write(chunk)
            tmp.flush()
            image = load_image(Path(tmp.name))
    buf = io.BytesIO()
    # The pixels the detector saw: 8-bit RGB (16-bit scaled, alpha dropped), as boxes refer to.
    image.save(buf, format="PNG", compress_level=3)
    storage.put_bytes(target, buf.getvalue())


async def rendered_png(storage: Storage, storage_key: str) -> str:
    """Return the key of an original's PNG rendering, made now if it is not stored yet.

    Raises:
        StorageError: the original cannot be read or decoded, or the rendering not stored.
    """
    key = png_key(storage_key)
    try:
        if await anyio.to_thread.run_sync(storage.stat, key) is None:
            await anyio.to_thread.run_sync(_render, storage, storage_key, key)
    except (StorageFailure, ImageLoadError) as exc:
        raise StorageError("Could not render the image as PNG", details=str(exc)) from exc
    return key
