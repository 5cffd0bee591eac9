"""Write the JSON schema of each custom resource in CRD manifests, for offline validation.

The Kubernetes schemas that ``kubernetes-validate`` bundles cover built-in kinds only; KEDA's
``ScaledObject`` and ``TriggerAuthentication`` are checked against the ``openAPIV3Schema`` of
KEDA's own CustomResourceDefinitions, kept here as small JSON files. To update them to another
KEDA release, take its CRD manifests (``config/crd/bases/keda.sh_*.yaml`` in the kedacore/keda
repository at the release tag, or the release's ``keda-X.Y.Z-crds.yaml``) and run::

    python deploy/k8s/schemas/vendor_crd_schemas.py --source "kedacore/keda vX.Y.Z" \\
        --out deploy/k8s/schemas/keda CRD.yaml [CRD.yaml ...]

Each served version of each CRD becomes ``<kind>-<group's first label>-<version>.json`` (the
naming of ``kubernetes-validate``), e.g. ``scaledobject-keda-v1alpha1.json``. Descriptions are
dropped to keep the files small; every other keyword is kept as the CRD states it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml


def strip_descriptions(node: Any) -> Any:
    """Return ``node`` without ``description`` keywords (a property named so is kept)."""
    if isinstance(node, dict):
        return {
            key: strip_descriptions(value)
            for key, value in node.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    return node


def crd_schemas(crd: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Return the JSON schema of every served version of ``crd``, keyed by file name."""
    spec = crd["spec"]
    kind = spec["names"]["kind"]
    group = spec["group"]
    found: dict[str, dict[str, Any]] = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
        schema["$comment"] = f"{kind}.{group}/{version['name']}: openAPIV3Schema from {source}"
        found[f"{kind.lower()}-{group.split('.')[0]}-{version['name']}.json"] = schema
    return found


def main(argv: list[str] | None = None) -> int:
    """Write the schemas of the CRDs named on the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crds", nargs="+", type=Path, help="CustomResourceDefinition manifests")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON schemas")
    parser.add_argument("--source", required=True, help='where they come from: "repo tag"')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.crds:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            for name, schema in crd_schemas(document, args.source).items():
                text = json.dumps(schema, indent=1, sort_keys=True) + "\n"
                (args.out / name).write_text(text)
                print(f"{args.out / name}: {len(text)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
