"""The API routes the load test calls, by their route templates: Locust names each request
after its template (one line per endpoint, not per job id), as the service's metrics do."""

from __future__ import annotations

UPLOAD = "/api/v1/inference/upload"
PREDICT = "/api/v1/inference/predict"
UPLOAD_READ = "/api/v1/uploads/{upload_id}"
JOB_STATUS = "/api/v1/jobs/{job_id}/status"
JOB_RESULTS = "/api/v1/jobs/{job_id}/results"
JOB_VISUALIZATION = "/api/v1/jobs/{job_id}/visualization"
FILE_IMAGE = "/api/v1/files/{file_id}/{kind}"
JOBS = "/api/v1/jobs"
HEALTHZ = "/healthz"
TOKEN = "/api/v1/auth/token"

ALL = (
    UPLOAD,
    PREDICT,
    UPLOAD_READ,
    JOB_STATUS,
    JOB_RESULTS,
    JOB_VISUALIZATION,
    FILE_IMAGE,
    JOBS,
    HEALTHZ,
    TOKEN,
)
