"""The errors page that every error's ``documentation_url`` points at, served offline.

Generated from the error classes in :mod:`nesydet.errors` on each start, so it lists exactly
the codes the service can answer with.
"""

from __future__ import annotations

import html
from functools import cache

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from nesydet.error_catalogue import JOB_FAILURES, error_catalogue
from nesydet.schemas.common import ERRORS_PAGE, documentation_url
from nesydet.schemas.error_codes import (
    ErrorCatalogue,
    ErrorCatalogueResponse,
    ErrorCode,
    JobFailureCode,
)

router = APIRouter(tags=["system"])

# Statuses at which the same request may well succeed later.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@cache
def catalogue() -> ErrorCatalogue:
    """Return every error code, request errors first (by status), then job failures."""
    errors = [
        ErrorCode(
            code=code,
            status=status,
            meaning=meaning,
            retry=status in _RETRY_STATUSES,
            documentation_url=documentation_url(code),
        )
        for code, (status, meaning) in sorted(
            error_catalogue().items(), key=lambda kv: (kv[1][0], kv[0])
        )
    ]
    failures = [
        JobFailureCode(
            code=code, meaning=meaning, retried=retried, documentation_url=documentation_url(code)
        )
        for code, (meaning, retried) in JOB_FAILURES.items()
    ]
    return ErrorCatalogue(errors=errors, job_failures=failures)


def _row(cells: list[str], anchor: str) -> str:
    tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
    return f'<tr id="{html.escape(anchor)}"><td><code>{html.escape(anchor)}</code></td>{tds}</tr>'


@cache
def render_html() -> str:
    """Return the errors page as one self-contained HTML document."""
    cat = catalogue()
    errors = "\n".join(
        _row([str(e.status), e.meaning, "yes" if e.retry else "no"], e.code) for e in cat.errors
    )
    failures = "\n".join(
        _row([f.meaning, "yes" if f.retried else "no"], f.code) for f in cat.job_failures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nesydet error codes</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:.3em .5em;
text-align:left;vertical-align:top}}tr:target{{background:#ffc}}</style></head><body>
<h1>Error codes</h1>
<p>Every failing request gets the same envelope: <code>status</code>, <code>message</code>,
<code>error_code</code>, <code>details</code>, <code>timestamp</code>, <code>request_id</code>,
<code>errors[]</code> (each failing item, with its own <code>error_code</code>) and the nested
<code>error</code> object (<code>code</code>, <code>field</code> for validation errors,
<code>documentation_url</code> pointing here). Switch on <code>error.code</code>.
The same list as JSON: <a href="{ERRORS_PAGE}.json">{ERRORS_PAGE}.json</a>.</p>
<h2>Request errors</h2>
<table><tr><th>code</th><th>status</th><th>meaning</th><th>retry</th></tr>
{errors}
</table>
<h2>Job failures</h2>
<p>The <code>error.code</code> of a job whose status is <code>failed</code> (the status request
itself answers 200).</p>
<table><tr><th>code</th><th>meaning</th><th>retried by the worker</th></tr>
{failures}
</table></body></html>
"""


@router.get(
    ERRORS_PAGE,
    response_class=HTMLResponse,
    summary="The error codes, as a page",
    description="Every error code with its HTTP status and meaning; each row's id is its code "
    "(`/docs/errors#JOB_NOT_FOUND`), which is what every error's `error.documentation_url` "
    "names.",
    responses={200: {"content": {"text/html": {"example": "<!doctype html>…"}}}},
)
async def errors_page() -> HTMLResponse:
    """Return the errors page."""
    return HTMLResponse(render_html(), headers={"Cache-Control": "public, max-age=3600"})


_JSON_EXAMPLE = {
    "status": "success",
    "data": {
        "errors": [
            {
                "code": "JOB_NOT_FOUND",
                "status": 404,
                "meaning": "Job not found",
                "retry": False,
                "documentation_url": "/docs/errors#JOB_NOT_FOUND",
            }
        ],
        "job_failures": [
            {
                "code": "MODEL_LOAD_ERROR",
                "meaning": "The model file is missing, unreadable or not a valid model",
                "retried": False,
                "documentation_url": "/docs/errors#MODEL_LOAD_ERROR",
            }
        ],
    },
}


@router.get(
    f"{ERRORS_PAGE}.json",
    response_model=ErrorCatalogueResponse,
    summary="The error codes, as JSON",
    responses={200: {"content": {"application/json": {"example": _JSON_EXAMPLE}}}},
)
async def errors_json() -> ErrorCatalogueResponse:
    """Return every error code with its HTTP status and meaning."""
    return ErrorCatalogueResponse(data=catalogue())
