"""The model and rules registry: versions, assets, routing, and what a job ran."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nesydet.schemas.common import Timestamp

SHA_EXAMPLE = "9f2c4e0d5b7a8c1e3f6a9b2d4c7e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e"


class AssetRef(BaseModel):
    """The model or rules a job ran: enough to run it again on the same file."""

    name: str = Field(examples=["nesydet-demo-obb"])
    version: str | None = Field(
        examples=["1"], description="the registered version; null for a file not registered"
    )
    sha256: str = Field(examples=[SHA_EXAMPLE], description="of the file's bytes")


class ModelExport(BaseModel):
    """The ONNX export of a ``.pt`` version (made in the background, queue ``exports``)."""

    status: Literal["pending", "ready", "failed"]
    sha256: str | None = None
    size_bytes: int | None = None
    error: str | None = None


class VersionData(BaseModel):
    """One version of a registered model or rules set."""

    name: str = Field(examples=["nesydet-demo-obb"])
    version: str = Field(examples=["1"])
    sha256: str = Field(examples=[SHA_EXAMPLE])
    format: str = Field(examples=["pt"], description="pt or onnx (models), pl (rules)")
    size_bytes: int
    created_at: Timestamp
    default: bool = Field(description="jobs naming only the name get this version")
    deprecated: bool = Field(description="kept for reproduction; not routed, not the default")
    task: str | None = Field(default=None, examples=["obb"], description="models: detect or obb")
    classes: list[str] | None = Field(default=None, description="models: class names by id")
    input_size: int | None = Field(default=None, description="models: training input size")
    facts_used: list[str] | None = Field(
        default=None, description="rules: the fact predicates the file reads"
    )
    export: ModelExport | None = Field(default=None, description="models in .pt: the export")
    jobs: int | None = Field(default=None, description="models: jobs that ran this version")


class AssetSummary(BaseModel):
    name: str = Field(examples=["nesydet-demo-obb"])
    default_version: str | None = Field(examples=["1"])
    latest_version: str | None = Field(examples=["2"])
    version_count: int
    routing: dict[str, int] | None = Field(
        default=None, description="models: weights by version for jobs naming only the name"
    )
    created_at: Timestamp
    updated_at: Timestamp


class AssetData(AssetSummary):
    versions: list[VersionData]


class AssetList(BaseModel):
    items: list[AssetSummary]


class AssetListResponse(BaseModel):
    status: Literal["success"] = "success"
    data: AssetList


class AssetResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str | None = None
    data: AssetData


class VersionResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str | None = None
    data: VersionData


class AssetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_version: str = Field(
        min_length=1, max_length=32, description="the version jobs naming only the name get"
    )


class VersionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deprecated: bool = Field(description="true: no new routing or default; jobs may still name it")
