"""The registry end to end on real processes: the API registers the bundled model and rules
at its first start (inspected in a capped child process), a real worker makes the model's
ONNX export from the queue ``exports``, and a job naming ``name@version`` runs on a worker that
fetched the file from storage by its sha256, recording what it ran."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.prom import REPO, start_api_server, wait_until
from tests.integration.test_e2e import (
    FAST,
    NO_SAHI,
    Deployment,
    metric_samples,
    upload,
    wait_status,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DEMO = REPO / "models" / "nesydet-demo-obb.pt"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def registered(client: httpx.Client, collection: str, name: str) -> dict[str, Any] | None:
    response = client.get(f"/api/v1/{collection}/{name}")
    return response.json()["data"] if response.status_code == 200 else None


def export_status(client: httpx.Client) -> str | None:
    model = registered(client, "models", "nesydet-demo-obb")
    return model["versions"][0]["export"]["status"] if model else None


def test_a_registered_model_runs_on_a_worker_that_fetched_it(tmp_path: Path) -> None:
    root = tmp_path / "deploy"
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(DEMO, models / DEMO.name)
    env = {**FAST, "NESYDET_MODELS_DIR": str(models), "NESYDET_REGISTER_BUNDLED": "true"}
    api = start_api_server(root, **env)
    deployment = Deployment("registry", api, root, f"sqlite+aiosqlite:///{root / 'db.sqlite'}")
    try:
        worker = deployment.start_worker(NESYDET_WORKER_METRICS_PORT="0")
        with httpx.Client(base_url=deployment.url, timeout=60) as client:
            wait_until(
                lambda: export_status(client) in ("ready", "failed"),
                timeout=600,
                what="the bundled model registered and exported",
                process=worker,
            )
            model = registered(client, "models", "nesydet-demo-obb")
            assert model is not None
            [version] = model["versions"]
            assert (version["version"], version["sha256"]) == ("1", sha256(DEMO))
            assert (version["task"], version["default"]) == ("obb", True)
            assert version["export"]["status"] == "ready", version["export"]
            rules = registered(client, "rules", "dota")
            assert rules is not None
            assert rules["versions"][0]["sha256"] == sha256(REPO / "rules" / "dota.pl")
            storage = root / "storage" / "registry"
            assert (storage / "model" / f"{sha256(DEMO)}.pt").is_file()
            assert (storage / "model" / "onnx" / f"{sha256(DEMO)}.onnx").is_file()

            up = upload(client, [21])
            config = {"model": "nesydet-demo-obb@1",
                      "symbolic_reasoning": {"rules": "dota@1"}, **NO_SAHI}  # fmt: skip
            made = client.post(
                "/api/v1/inference/predict", json={"upload_id": up["upload_id"], "config": config}
            )
            assert made.status_code == 202, made.text
            job_id = made.json()["data"]["job_id"]
            done = wait_status(client, job_id, {"completed"}, timeout=300, workers=[worker])
            assert done["data"]["model"] == {
                "name": "nesydet-demo-obb", "version": "1", "sha256": sha256(DEMO),
            }  # fmt: skip
            assert done["data"]["rules"]["version"] == "1"
            results = client.get(f"/api/v1/jobs/{job_id}/results?format=coco").json()["data"]
            assert results["model"] == done["data"]["model"]
            # The worker ran the file it fetched from storage, not the models directory's.
            fetched = root / "var" / "assets" / "model" / f"{sha256(DEMO)}-obb.pt"
            assert fetched.read_bytes() == DEMO.read_bytes()
            shown = registered(client, "models", "nesydet-demo-obb")
            assert shown is not None
            assert shown["versions"][0]["jobs"] == 1
            asked = metric_samples(client.get("/metrics").text)
            assert asked[("model_jobs_total", (("model", "nesydet-demo-obb"), ("version", "1")))]
    finally:
        deployment.stop()
