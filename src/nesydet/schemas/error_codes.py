"""The errors page: every error code the service answers with, its status and meaning."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorCode(BaseModel):
    code: str = Field(json_schema_extra={"example": "JOB_NOT_FOUND"})
    status: int = Field(description="the HTTP status a request gets with this code")
    meaning: str
    retry: bool = Field(description="whether the same request may succeed later, unchanged")
    documentation_url: str = Field(json_schema_extra={"example": "/docs/errors#JOB_NOT_FOUND"})


class JobFailureCode(BaseModel):
    code: str = Field(json_schema_extra={"example": "MODEL_LOAD_ERROR"})
    meaning: str
    retried: bool = Field(description="whether the worker tries the job again before failing")
    documentation_url: str


class ErrorCatalogue(BaseModel):
    """``errors``: the ``error_code`` of failing requests; ``job_failures``: the
    ``error.code`` of a failed job in its status."""

    errors: list[ErrorCode]
    job_failures: list[JobFailureCode]


class ErrorCatalogueResponse(BaseModel):
    status: Literal["success"] = "success"
    data: ErrorCatalogue
