"""Generate the ready-made clients from the app's OpenAPI document; ``--check`` only compares.

Writes, from ``create_app().openapi()`` (what the server answers on ``/openapi.json``):

* ``clients/openapi.json``: the document itself, the one input of both clients;
* ``clients/postman/nesydet.postman_collection.json``: a Postman collection (v2.1) with a
  folder per tag and a request per operation, plus the hand-written "Workflow 1" folder, whose
  test scripts live in ``clients/postman/workflow1/*.js``;
* ``clients/typescript/src/schema.d.ts``: the client's types, by ``npm run generate``
  (openapi-typescript, from the lock file's ``node_modules``; ``make node-deps`` installs it).

Nothing here is random: the same document gives byte for byte the same files, so the tests
can tell a stale client from a fresh one.

Usage::

    python scripts/make_clients.py            # regenerate everything
    python scripts/make_clients.py --check    # exit 1 and name what is stale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "clients"
OPENAPI = CLIENTS / "openapi.json"
POSTMAN = CLIENTS / "postman"
COLLECTION = POSTMAN / "nesydet.postman_collection.json"
WORKFLOW_SCRIPTS = POSTMAN / "workflow1"
TYPESCRIPT = CLIENTS / "typescript"

SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
# Fixed, so the collection keeps its identity in Postman across regenerations.
COLLECTION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/nesydet/clients/postman"))
WORKFLOW = "Workflow 1"
# The image the Workflow 1 upload sends, relative to newman's --working-dir.
WORKFLOW_IMAGE = "scene.png"
METHODS = ("get", "post", "put", "patch", "delete")
# Ids (``*_id``) in paths and bodies are collection variables, which Workflow 1 fills in.
ID_SUFFIX = "_id"

# Run before every request: credentials from the collection variables, when they are set.
AUTH_SCRIPT = """\
// Credentials from the collection's variables, only when set (a local server needs none).
const apiKey = pm.collectionVariables.get("apiKey");
const accessToken = pm.collectionVariables.get("accessToken");
if (apiKey) {
  pm.request.headers.upsert({ key: "X-API-Key", value: apiKey });
} else if (accessToken) {
  pm.request.headers.upsert({ key: "Authorization", value: `Bearer ${accessToken}` });
}
"""


def openapi_document() -> dict[str, Any]:
    """Return the app's OpenAPI document, as ``GET /openapi.json`` serves it."""
    from nesydet.api.app import create_app
    from nesydet.config import Settings

    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


def dump(document: Mapping[str, Any]) -> str:
    """Return ``document`` as the committed JSON text (two-space indent, final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _resolve(schema: Mapping[str, Any], document: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def example(schema: Mapping[str, Any], document: Mapping[str, Any], depth: int = 0) -> Any:
    """Return an example value of ``schema``: its own example or default, else one built."""
    schema = _resolve(schema, document)
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        choices = [c for c in schema.get(key, []) if _resolve(c, document).get("type") != "null"]
        if choices:
            return example(choices[0], document, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 6:
            return {}
        properties = schema.get("properties", {})
        return {name: example(sub, document, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("prefixItems") or [schema.get("items", {})]
        return [example(item, document, depth + 1) for item in items]
    return {"integer": 0, "number": 0, "boolean": False}.get(str(kind), "")


def _with_variables(value: Any) -> Any:
    """Return a body example whose ids are the collection's variables."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name in out:
        if name.endswith(ID_SUFFIX) and isinstance(out[name], str):
            out[name] = f"{{{{{name}}}}}"
    if "file_ids" in out:
        out["file_ids"] = ["{{file_id}}"]
    return out


def _parameter_value(parameter: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    name = parameter["name"]
    if name.endswith(ID_SUFFIX) and parameter["in"] == "path":
        return f"{{{{{name}}}}}"
    if parameter["in"] == "header" and name.lower() == "idempotency-key":
        return "{{$guid}}"
    value = example(parameter.get("schema", {}), document)
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _body(operation: Mapping[str, Any], document: Mapping[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        media = content["application/json"]
        value = media.get("example", example(media.get("schema", {}), document))
        return {
            "mode": "raw",
            "raw": json.dumps(_with_variables(value), indent=2),
            "options": {"raw": {"language": "json"}},
        }
    for mime, mode in (("multipart/form-data", "formdata"), ("application/x-www-form-urlencoded",
                                                              "urlencoded")):  # fmt: skip
        if mime not in content:
            continue
        schema = _resolve(content[mime].get("schema", {}), document)
        required = set(schema.get("required", []))
        fields = []
        for name, sub in schema.get("properties", {}).items():
            sub = _resolve(sub, document)
            binary = sub.get("format") == "binary" or sub.get("items", {}).get("format") == "binary"
            field: dict[str, Any] = {"key": name, "description": sub.get("description", "")}
            if binary:
                field.update(type="file", src=[])
            else:
                value = example(sub, document)
                field.update(type="text", value="" if value is None else str(value))
            if name not in required:
                field["disabled"] = True
            fields.append(field)
        return {"mode": mode, mode: fields}
    return None


def request_item(
    document: Mapping[str, Any], method: str, path: str, name: str | None = None
) -> dict[str, Any]:
    """Return the Postman item of the operation ``method path`` of ``document``."""
    operation = document["paths"][path][method]
    parameters = operation.get("parameters", [])
    segments = [f":{s[1:-1]}" if s.startswith("{") else s for s in path.strip("/").split("/")]
    query = [
        {
            "key": p["name"],
            "value": _parameter_value(p, document),
            "description": p.get("description", ""),
            **({} if p.get("required") else {"disabled": True}),
        }
        for p in parameters
        if p["in"] == "query"
    ]
    enabled = [q for q in query if not q.get("disabled")]
    raw = "{{baseUrl}}/" + "/".join(segments)
    if enabled:
        raw += "?" + "&".join(f"{q['key']}={q['value']}" for q in enabled)
    url: dict[str, Any] = {"raw": raw, "host": ["{{baseUrl}}"], "path": segments}
    if query:
        url["query"] = query
    variables = [
        {"key": p["name"], "value": _parameter_value(p, document),
         "description": p.get("description", "")}
        for p in parameters
        if p["in"] == "path"
    ]  # fmt: skip
    if variables:
        url["variable"] = variables
    headers = [
        {"key": p["name"], "value": _parameter_value(p, document),
         "description": p.get("description", ""), "disabled": not p.get("required", False)}
        for p in parameters
        if p["in"] == "header"
    ]  # fmt: skip
    request: dict[str, Any] = {"method": method.upper(), "header": headers, "url": url}
    body = _body(operation, document)
    if body is not None:
        request["body"] = body
    request["description"] = operation.get("description") or operation.get("summary", "")
    return {"name": name or operation.get("summary", f"{method.upper()} {path}"),
            "request": request, "response": []}  # fmt: skip


def _script(name: str, kind: str) -> dict[str, Any]:
    source = (WORKFLOW_SCRIPTS / name).read_text()
    return {"listen": kind, "script": {"type": "text/javascript", "exec": source.splitlines()}}


def workflow_folder(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return the "Workflow 1" folder: upload, predict, poll until completed, results.

    Each request is the generated one for its operation, with its test script (and the poll's
    pre-request script) read from ``clients/postman/workflow1``.
    """
    upload = request_item(document, "post", "/api/v1/inference/upload", "1. Upload an image")
    upload["request"]["body"] = {
        "mode": "formdata",
        "formdata": [{"key": "files", "type": "file", "src": WORKFLOW_IMAGE}],
    }
    predict = request_item(document, "post", "/api/v1/inference/predict", "2. Start a job")
    body = {
        "upload_id": "{{upload_id}}",
        "file_ids": ["{{file_id}}"],
        "config": {"confidence_threshold": 0.25, "sahi": {"enabled": True}},
    }
    predict["request"]["body"]["raw"] = json.dumps(body, indent=2)
    status = request_item(document, "get", "/api/v1/jobs/{job_id}/status", "3. Poll its status")
    results = request_item(document, "get", "/api/v1/jobs/{job_id}/results", "4. Fetch results")
    for q in results["request"]["url"]["query"]:
        q["disabled"] = q["key"] != "format"
    results["request"]["url"]["raw"] += "?format=json"
    visual = request_item(
        document, "get", "/api/v1/jobs/{job_id}/visualization", "5. Annotated image links"
    )
    for q in visual["request"]["url"].get("query", []):
        q["disabled"] = True
    steps = [
        (upload, "upload.test.js", None),
        (predict, "predict.test.js", None),
        (status, "status.test.js", "status.pre.js"),
        (results, "results.test.js", None),
        (visual, "visualization.test.js", None),
    ]
    items = []
    for item, test, pre in steps:
        events = [_script(pre, "prerequest")] if pre else []
        item["event"] = [*events, _script(test, "test")]
        items.append(item)
    return {
        "name": WORKFLOW,
        "description": (
            "The spec's Workflow 1 with its checks: upload `scene.png` (from newman's "
            "--working-dir, or pick a file in Postman), start a job over it, poll its status "
            "until it is completed, then fetch its detections and annotated image links. "
            "Each step keeps the ids it gets in the collection's variables."
        ),
        "item": items,
    }


def collection(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return the Postman collection of ``document``: Workflow 1, then a folder per tag."""
    folders: dict[str, dict[str, Any]] = {
        tag["name"]: {"name": tag["name"], "description": tag.get("description", ""), "item": []}
        for tag in document.get("tags", [])
    }
    for path, methods in document["paths"].items():
        for method in METHODS:
            if method not in methods:
                continue
            tag = (methods[method].get("tags") or ["other"])[0]
            folder = folders.setdefault(tag, {"name": tag, "description": "", "item": []})
            folder["item"].append(request_item(document, method, path))
    info = document["info"]
    ids = {
        p["name"]: None
        for methods in document["paths"].values()
        for operation in methods.values()
        for p in operation.get("parameters", [])
        if p["in"] == "path" and p["name"].endswith(ID_SUFFIX)
    }
    variables = [
        {"key": "baseUrl", "value": "http://localhost:8000", "type": "string"},
        {"key": "apiKey", "value": "", "type": "string"},
        {"key": "accessToken", "value": "", "type": "string"},
        *({"key": name, "value": "", "type": "string"} for name in ids),
    ]
    return {
        "info": {
            "_postman_id": COLLECTION_ID,
            "name": info["title"],
            "description": (
                f"Generated by scripts/make_clients.py from the OpenAPI document of "
                f"{info['title']} {info['version']} (clients/openapi.json); do not edit by hand. "
                "Set `baseUrl`, and `apiKey` (or `accessToken`) when the server requires "
                "credentials."
            ),
            "schema": SCHEMA_URL,
        },
        "item": [workflow_folder(document), *(f for f in folders.values() if f["item"])],
        "event": [
            {
                "listen": "prerequest",
                "script": {"type": "text/javascript", "exec": AUTH_SCRIPT.splitlines()},
            }
        ],
        "variable": variables,
    }


def outputs(document: Mapping[str, Any]) -> dict[Path, str]:
    """Return the text of every file generated in Python, by path."""
    return {OPENAPI: dump(document), COLLECTION: dump(collection(document))}


def stale(document: Mapping[str, Any]) -> list[Path]:
    """Return the generated files whose committed text differs from what ``document`` gives."""
    return [
        path
        for path, text in outputs(document).items()
        if not path.exists() or path.read_text() != text
    ]


def _npm(script: str) -> subprocess.CompletedProcess[str]:
    npm = shutil.which("npm")
    if npm is None or not (TYPESCRIPT / "node_modules").is_dir():
        sys.exit(f"npm and {TYPESCRIPT / 'node_modules'} are needed: run `make node-deps`")
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [npm, "run", "--silent", script], cwd=TYPESCRIPT, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


def main() -> int:
    """Write (or with ``--check`` compare) the generated clients; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether they are stale")
    args = parser.parse_args()
    document = openapi_document()
    if args.check:
        found = [str(p.relative_to(ROOT)) for p in stale(document)]
        if not found:  # the types are generated from the committed document
            result = _npm("check")
            if result.returncode != 0:
                found.append(f"clients/typescript/src/schema.d.ts ({result.stderr.strip()})")
        if found:
            print("stale, run python scripts/make_clients.py:", *found, sep="\n  ")
            return 1
        print("the clients are up to date with the app's OpenAPI document")
        return 0
    for path, text in outputs(document).items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    result = _npm("generate")
    if result.returncode != 0:
        print(result.stdout, result.stderr, file=sys.stderr)
        return result.returncode
    print("wrote clients/typescript/src/schema.d.ts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
