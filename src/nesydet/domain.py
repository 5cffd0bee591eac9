"""Domain vocabulary shared by every layer: job states and which of them are final."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job in one of these states never changes again.
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
# States a job can be cancelled from.
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})


class Role(StrEnum):
    """What an account may do: admins everything; users their own uploads and jobs; viewers
    read everything and change nothing (dashboards, auditors)."""

    ADMIN = "admin"
    USER = "user"
    VIEWER = "viewer"
