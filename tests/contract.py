"""The contract check: every JSON response a test receives from the app, validated against the
app's own OpenAPI document (what ``/openapi.json`` serves and the clients are generated from).

:func:`install` wraps ``httpx.ASGITransport`` so that each response is checked before the test
sees it: its status must be documented for the route (or covered by the route's ``default``),
a JSON body must match the documented ``application/json`` schema for that status, and an
error envelope must carry a code the errors page lists. A mismatch raises
:class:`ContractViolation` from the request, failing the test.

Cheap enough to stay on for the whole suite: the document is built once per set of routes
(not per app: every ``create_app`` has the same ones) and each schema compiled once (Rust
``jsonschema-rs``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI

from nesydet.error_catalogue import error_catalogue

_NO_SCHEMA = object()
# Switched off by `suspended`, for the rare test that must send what no document describes.
_ENABLED = [True]


class ContractViolation(AssertionError):
    """A response that the OpenAPI document does not describe."""


def _fingerprint(app: FastAPI) -> tuple[Any, ...]:
    # Included routers are module-level objects, the same in every app; a route added to one
    # app alone (a test's) has its own endpoint.
    return tuple(
        (
            type(r).__name__,
            getattr(r, "path", None),
            id(getattr(r, "original_router", None)),
            id(getattr(r, "endpoint", None)),
        )
        for r in app.router.routes
    )


@dataclass
class Contract:
    """One OpenAPI document and the validators compiled from it so far."""

    doc: dict[str, Any]
    validators: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    templates: list[tuple[int, re.Pattern[str], str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for template in self.doc["paths"]:
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self.templates.append((template.count("{"), re.compile(pattern), template))
        self.templates.sort(key=lambda t: t[0])  # literal segments win over parameters

    def template(self, method: str, path: str) -> str | None:
        """Return the documented path template a request went to, if any."""
        for _, pattern, template in self.templates:
            if pattern.fullmatch(path) and method.lower() in self.doc["paths"][template]:
                return template
        return None

    def validator(self, template: str, method: str, status: str) -> Any:
        """Return the validator of a documented JSON response, None when the response is
        documented without a JSON body, or ``_NO_SCHEMA`` when it is not documented."""
        key = (template, method, status)
        if key not in self.validators:
            self.validators[key] = self._compile(template, method, status)
        return self.validators[key]

    def _compile(self, template: str, method: str, status: str) -> Any:
        responses = self.doc["paths"].get(template, {}).get(method.lower(), {}).get("responses")
        if responses is None:
            return _NO_SCHEMA
        entry = responses.get(status)
        if entry is None and int(status) >= 400:
            entry = responses.get("default")
        if entry is None:
            return _NO_SCHEMA
        media = entry.get("content", {}).get("application/json")
        if media is None or "schema" not in media:
            return None
        return self.compile(media["schema"])

    def compile(self, schema: dict[str, Any]) -> Any:
        # The component refs (#/components/schemas/X) resolve against this root.
        return jsonschema_rs.validator_for({**schema, "components": self.doc["components"]})

    @property
    def error_validator(self) -> Any:
        key = ("", "", "error")
        if key not in self.validators:
            self.validators[key] = self.compile({"$ref": "#/components/schemas/ErrorResponse"})
        return self.validators[key]


_contracts: dict[tuple[Any, ...], Contract] = {}


def contract_of(app: FastAPI) -> Contract:
    """Return the contract of an app, built once per set of routes."""
    key = _fingerprint(app)
    if key not in _contracts:
        _contracts[key] = Contract(app.openapi())
    return _contracts[key]


@cache
def _known_codes() -> frozenset[str]:
    return frozenset(error_catalogue())


def _errors(validator: Any, body: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.instance_path)) or '(body)'}: {e.message[:300]}"
        for e in validator.iter_errors(body)
    ][:5]


def check(app: FastAPI, request: httpx.Request, status: int, content_type: str, raw: bytes) -> None:
    """Raise ContractViolation when a response is not what the app's OpenAPI document says."""
    method, path = request.method, request.url.path
    contract = contract_of(app)
    template = contract.template(method, path)
    is_json = content_type.split(";")[0].strip() == "application/json"
    body = json.loads(raw) if is_json and raw else None
    where = f"{method} {path} -> {status}"
    problems: list[str] = []
    if template is not None:
        validator = contract.validator(template, method, str(status))
        if validator is _NO_SCHEMA:
            problems.append(f"status {status} is not documented for {method} {template}")
        elif is_json and raw and validator is None and status < 400:
            problems.append(f"a JSON body, but {status} of {template} documents none")
        elif validator is not None and body is not None:
            problems += _errors(validator, body)
    if status >= 400 and body is not None:
        problems += _errors(contract.error_validator, body)
        code = body.get("error_code") if isinstance(body, dict) else None
        if code is not None and code not in _known_codes():
            problems.append(f"error_code {code} is not on the errors page (nesydet.errors)")
    if problems:
        raise ContractViolation(f"{where}: " + "; ".join(dict.fromkeys(problems)))


@contextmanager
def install() -> Iterator[None]:
    """Check every response that an ``httpx.ASGITransport`` returns while inside."""
    original = httpx.ASGITransport.handle_async_request

    async def handle(self: httpx.ASGITransport, request: httpx.Request) -> httpx.Response:
        response = await original(self, request)
        app = self.app
        if not isinstance(app, FastAPI) or not _ENABLED[0]:
            return response
        raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        copy = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),
            extensions=response.extensions,
        )
        # Decoded as the client will (a compressed body), without touching the copy.
        decoded = httpx.Response(response.status_code, headers=response.headers, content=raw)
        content_type = response.headers.get("content-type", "")
        check(app, request, response.status_code, content_type, decoded.content)
        return copy

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.ASGITransport, "handle_async_request", handle)
        yield


@contextmanager
def suspended() -> Iterator[None]:
    """Skip the check inside (a test that sends what the document deliberately leaves out)."""
    before = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = before
