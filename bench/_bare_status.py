"""The baseline of ``bench.pollers``: a bare FastAPI endpoint returning a fixed JSON body."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Response

app = FastAPI()
_BODY = Path(os.environ["BARE_PAYLOAD"]).read_bytes()


@app.get("/status")
async def status() -> Response:
    """Return the job status body captured from the service."""
    return Response(_BODY, media_type="application/json")
