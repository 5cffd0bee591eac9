"""Ids in paths and queries, validated at the edge against their format.

A malformed id in a path answers like an unknown one (404 with the resource's code: see
``api.errors``); in a query it is a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from nesydet.ids import FILE, JOB, KEY, UPLOAD, USER, id_pattern

JobIdPath = Annotated[str, Path(pattern=id_pattern(JOB), examples=["job_abc123def456"])]
UploadIdPath = Annotated[str, Path(pattern=id_pattern(UPLOAD), examples=["upl_a1b2c3d4e5f6"])]
FileIdPath = Annotated[str, Path(pattern=id_pattern(FILE), examples=["img_3f9a0c1d2e4b"])]
UserIdPath = Annotated[str, Path(pattern=id_pattern(USER), examples=["usr_0a1b2c3d4e5f"])]
KeyIdPath = Annotated[str, Path(pattern=id_pattern(KEY), examples=["key_0a1b2c3d4e5f"])]
JobIdQuery = Annotated[
    str | None,
    Query(pattern=id_pattern(JOB), description="the job whose result to serve"),
]
FileIdQuery = Annotated[str | None, Query(pattern=id_pattern(FILE), description="only this file")]
