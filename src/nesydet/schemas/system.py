"""Health and readiness responses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

HEALTH_EXAMPLE: dict[str, Any] = {"status": "ok", "version": "0.1.0", "api_version": "1.0"}
READY_EXAMPLE: dict[str, Any] = {
    "status": "ok",
    "checks": {
        "database": {"ok": True, "latency_ms": 0.8},
        "storage": {"ok": True, "latency_ms": 0.3},
        "broker": {"ok": True, "latency_ms": 0.5},
    },
}


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": HEALTH_EXAMPLE})

    status: Literal["ok"] = "ok"
    version: str
    api_version: str


class CheckResult(BaseModel):
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


class ReadinessResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": READY_EXAMPLE})

    status: Literal["ok"] = "ok"
    checks: dict[str, CheckResult]
