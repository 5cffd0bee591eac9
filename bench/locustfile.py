"""The spec's load test: users of the desktop app against the API, in Locust.

Each user works as a client of the spec does: it uploads a small aerial scene, starts a job
on it, polls the job's status every 2 to 5 s until it ends, then fetches the detections, the
visualization links and a thumbnail, and starts again. Between times it lists its jobs,
looks at an earlier upload or result, or checks ``/healthz``. Requests are named by route
template (``/api/v1/jobs/{job_id}/status``), one line per endpoint.

``bench.load`` starts the service and runs this file; against a service already running:

    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8000 \\
        --headless --users 20 --spawn-rate 5 --run-time 60s

Credentials: none by default (``NESYDET_AUTH_MODE=none``). With ``NESYDET_LOAD_API_KEY`` set,
every user sends that key; with ``NESYDET_LOAD_USERNAME`` and ``NESYDET_LOAD_PASSWORD``, every
user logs in (``POST /api/v1/auth/token``) when it starts and again when its token expires.
"""

from __future__ import annotations

import io
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from bench import _routes as routes  # noqa: E402

SCENE_SIZE = 512  # one model pass, no slicing: a job the single worker keeps up with
TIMEOUT_S = 60.0
ENDED = {"completed", "failed", "cancelled"}


def scene_png(seed: int) -> bytes:
    """Returns a demo aerial scene as PNG bytes."""
    from demo_scenes import generate_scene  # type: ignore[import-not-found]  # scripts/

    buffer = io.BytesIO()
    generate_scene(SCENE_SIZE, SCENE_SIZE, seed).image.save(buffer, format="PNG")
    return buffer.getvalue()


# A few scenes made once per Locust process, not per user or per request.
SCENES = [scene_png(2000 + i) for i in range(4)]


@dataclass
class Job:
    """A job this user started, and the upload and file it runs on."""

    job_id: str
    upload_id: str
    file_id: str


class AppUser(HttpUser):
    """One person at the desktop app."""

    wait_time = between(2, 5)  # the spec's clients poll every 2 to 5 s

    def on_start(self) -> None:
        self.running: Job | None = None
        self.finished: list[Job] = []
        key = os.environ.get("NESYDET_LOAD_API_KEY")
        if key:
            self.client.headers["X-API-Key"] = key
        elif os.environ.get("NESYDET_LOAD_USERNAME"):
            self.log_in()

    def log_in(self) -> None:
        """Gets an access token for the configured account and sends it from now on."""
        response = self.client.post(
            routes.TOKEN,
            data={
                "username": os.environ["NESYDET_LOAD_USERNAME"],
                "password": os.environ.get("NESYDET_LOAD_PASSWORD", ""),
            },
            name=routes.TOKEN,
            timeout=TIMEOUT_S,
        )
        if response.status_code == 200:
            token = response.json()["access_token"]
            self.client.headers["Authorization"] = f"Bearer {token}"

    def _get(self, template: str, *, params: dict[str, Any] | None = None, **ids: str) -> Any:
        """Returns the response to GET ``template`` filled with ``ids``, named by template."""
        response = self.client.get(
            template.format(**ids), params=params, name=template, timeout=TIMEOUT_S
        )
        if response.status_code == 401 and os.environ.get("NESYDET_LOAD_USERNAME"):
            self.log_in()  # the token expired during a long run
        return response

    @task(8)
    def work(self) -> None:
        """Starts a job when none is running, else polls the running one."""
        if self.running is None:
            self.start_job()
        else:
            self.poll()

    def start_job(self) -> None:
        """Uploads one scene and starts a job over it."""
        scene = random.choice(SCENES)
        response = self.client.post(
            routes.UPLOAD,
            files=[("files", ("scene.png", scene, "image/png"))],
            name=routes.UPLOAD,
            timeout=TIMEOUT_S,
        )
        if response.status_code != 200:
            return
        data = response.json()["data"]
        upload_id, file_id = data["upload_id"], data["uploaded_files"][0]["file_id"]
        response = self.client.post(
            routes.PREDICT,
            json={"upload_id": upload_id, "config": {"confidence_threshold": 0.3}},
            name=routes.PREDICT,
            timeout=TIMEOUT_S,
        )
        if response.status_code == 202:
            self.running = Job(response.json()["data"]["job_id"], upload_id, file_id)

    def poll(self) -> None:
        """Reads the running job's status; fetches what it made once it has completed."""
        assert self.running is not None
        job = self.running
        response = self._get(routes.JOB_STATUS, job_id=job.job_id)
        if response.status_code != 200:
            return
        status = response.json()["data"]["status"]
        if status not in ENDED:
            return
        self.running = None
        if status == "completed":
            self.finished.append(job)
            self.fetch(job)

    def fetch(self, job: Job) -> None:
        """Fetches a completed job's detections, visualization links and one thumbnail."""
        self._get(routes.JOB_RESULTS, params={"format": "json"}, job_id=job.job_id)
        self._get(routes.JOB_VISUALIZATION, params={"format": "url"}, job_id=job.job_id)
        self._get(
            routes.FILE_IMAGE, params={"job_id": job.job_id}, file_id=job.file_id, kind="thumbnail"
        )

    @task(2)
    def list_jobs(self) -> None:
        """Lists the newest jobs, as the app's job list does."""
        self._get(routes.JOBS, params={"limit": 20})

    @task(1)
    def look_back(self) -> None:
        """Opens an earlier upload or result again, when there is one."""
        if not self.finished:
            return
        job = random.choice(self.finished)
        if random.random() < 0.5:
            self._get(routes.UPLOAD_READ, upload_id=job.upload_id)
        else:
            self._get(routes.JOB_RESULTS, params={"format": "coco"}, job_id=job.job_id)

    @task(1)
    def health(self) -> None:
        """Checks that the service is up, as the app does on start and now and then."""
        self._get(routes.HEALTHZ)
