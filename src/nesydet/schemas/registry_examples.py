"""OpenAPI examples of the registry routes: bodies, answers and errors, per kind."""

from __future__ import annotations

from typing import Any

from nesydet.schemas.common import multipart_body
from nesydet.schemas.registry import SHA_EXAMPLE

_WHEN = "2026-11-30T10:00:00.000Z"
_VERSION: dict[str, dict[str, Any]] = {
    "model": {
        "name": "nesydet-demo-obb",
        "version": "2",
        "sha256": SHA_EXAMPLE,
        "format": "pt",
        "size_bytes": 6_291_456,
        "created_at": _WHEN,
        "default": False,
        "deprecated": False,
        "task": "obb",
        "classes": ["plane", "ship", "storage_tank"],
        "input_size": 640,
        "facts_used": None,
        "export": {"status": "pending", "sha256": None, "size_bytes": None, "error": None},
        "jobs": 0,
    },
    "rules": {
        "name": "dota",
        "version": "2",
        "sha256": SHA_EXAMPLE,
        "format": "pl",
        "size_bytes": 18_204,
        "created_at": _WHEN,
        "default": False,
        "deprecated": False,
        "task": None,
        "classes": None,
        "input_size": None,
        "facts_used": ["det", "near", "on"],
        "export": None,
        "jobs": None,
    },
}
VERSION_EXAMPLES = {
    kind: {
        "status": "success",
        "message": f"{kind.capitalize()} {v['name']} version 2 registered",
        "data": v,
    }
    for kind, v in _VERSION.items()
}


def _asset(kind: str) -> dict[str, Any]:
    first = {**_VERSION[kind], "version": "1", "default": True}
    return {
        "name": _VERSION[kind]["name"],
        "default_version": "1",
        "latest_version": "2",
        "version_count": 2,
        "routing": {"1": 90, "2": 10} if kind == "model" else None,
        "created_at": _WHEN,
        "updated_at": _WHEN,
    } | {"versions": [first, _VERSION[kind]]}


ASSET_EXAMPLES = {
    kind: {"status": "success", "message": None, "data": _asset(kind)} for kind in _VERSION
}
LIST_EXAMPLES = {
    kind: {
        "status": "success",
        "data": {"items": [{k: v for k, v in _asset(kind).items() if k != "versions"}]},
    }
    for kind in _VERSION
}

_FILE_DOC = {
    "model": "a YOLO detect or OBB model: a .pt (ultralytics) or an .onnx export",
    "rules": "a Prolog rules file (.pl) defining decide/3, as rules/dota.pl",
}
UPLOAD_BODIES: dict[str, dict[str, Any]] = {
    kind: {
        "description": (
            f"Multipart: `file` ({_FILE_DOC[kind]}), `name` and optionally `version` (the next "
            "number when left out). The file is inspected in a separate process with memory "
            "and time limits ("
            + (
                "loaded, its task, classes and input size read, one prediction made"
                if kind == "model"
                else "loaded clause by clause in the sandbox, as a worker loads it"
            )
            + "), stored by its sha256, and added as a version; the first version is the "
            "default."
            + (
                " A .pt gets an ONNX export made in the background (queue `exports`)."
                if kind == "model"
                else ""
            )
        ),
        "body": multipart_body(
            {
                "file": {"type": "string", "format": "binary"},
                "name": {"type": "string", "example": _VERSION[kind]["name"]},
                "version": {"type": "string", "example": "2"},
            },
            ["file", "name"],
        ),
    }
    for kind in _VERSION
}

_403 = (403, "ACCESS_DENIED", "Access denied", "registering and changing needs an admin")


def _errors(kind: str) -> dict[str, Any]:
    code = kind.upper()
    not_found = (404, f"{code}_NOT_FOUND", f"No {kind} named 'roads'", None)
    invalid = (
        (400, "INVALID_MODEL", "The file is not a usable model file", "cannot load model: bad.pt")
        if kind == "model"
        else (
            400,
            "INVALID_RULES",
            "The file is not a usable rules file",
            "cannot load rules file: line 12: syntax error: operator expected",
        )
    )
    in_use = (
        409,
        f"{code}_IN_USE",
        f"A queued or running job uses {kind} 'roads' version '2'",
        "jobs job_abc123xyz789: wait for them or cancel them",
    )
    return {
        "upload": [
            invalid,
            (400, "NO_FILES", "No file in the multipart field 'file'", None),
            (409, "VERSION_EXISTS", f"{kind.capitalize()} 'roads' has a version '2' already", None),
            (413, "REQUEST_TOO_LARGE", "The file is too large", None),
            _403,
        ],
        "404": not_found,
        "patch": [not_found, (400, "INVALID_ROUTING", "Version '1' is deprecated", None), _403],
        "deprecate": [not_found, in_use, _403],
        "delete": [not_found, in_use, _403],
        "routing": [
            not_found,
            (400, "INVALID_ROUTING", "Invalid routing", "weights.7: no such version"),
            _403,
        ],
    }


ERRORS = {kind: _errors(kind) for kind in _VERSION}
