"""Domain errors: each carries the spec's ``error_code`` and its HTTP status.

One handler (``nesydet.api.errors``) renders every one of them in the spec's error envelope, so
services raise these and routers never build HTTP exceptions for business cases.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """A failure a client can act on: an HTTP status, a machine-readable code and a message."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"
    default_message: ClassVar[str] = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.errors = errors
        self.headers = headers
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may narrow its class's code
        super().__init__(self.message)


class ValidationFailed(AppError):
    status_code = 400
    code = "VALIDATION_ERROR"
    default_message = "Request validation failed"


class InvalidRequest(AppError):
    status_code = 400
    code = "INVALID_REQUEST"
    default_message = "Invalid request"


class NoFiles(AppError):
    status_code = 400
    code = "NO_FILES"
    default_message = "No files in the multipart field 'files'"


class TooManyFiles(AppError):
    status_code = 400
    code = "TOO_MANY_FILES"
    default_message = "Too many files in one upload"


class UploadRejected(AppError):
    """One or more files of an upload failed validation; ``errors`` lists each one."""

    status_code = 400
    code = "VALIDATION_ERROR"
    default_message = "Upload rejected"


class RequestTooLarge(AppError):
    status_code = 413
    code = "REQUEST_TOO_LARGE"
    default_message = "Request body too large"


class NotFound(AppError):
    status_code = 404
    code = "NOT_FOUND"
    default_message = "Resource not found"


class UploadNotFound(NotFound):
    code = "UPLOAD_NOT_FOUND"
    default_message = "Upload not found"


class FileNotFound(NotFound):
    code = "FILE_NOT_FOUND"
    default_message = "File not found"


class StorageError(AppError):
    status_code = 500
    code = "STORAGE_ERROR"
    default_message = "File save or read failed"


class InvalidConfig(AppError):
    status_code = 400
    code = "INVALID_CONFIG"
    default_message = "Invalid configuration"


class InvalidFileIds(AppError):
    status_code = 400
    code = "INVALID_FILE_IDS"
    default_message = "file_ids must name files of the upload"


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"
    default_message = "Job not found"


class ResultsNotReady(NotFound):
    code = "RESULTS_NOT_READY"
    default_message = "Results not available"


class JobNotCancellable(AppError):
    status_code = 409
    code = "JOB_NOT_CANCELLABLE"
    default_message = "The job has already finished"


class IdempotencyKeyReused(AppError):
    status_code = 409
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This Idempotency-Key was used with a different request"


class AuthenticationRequired(AppError):
    status_code = 401
    code = "AUTHENTICATION_REQUIRED"
    default_message = "Authentication required"

    def __init__(self, message: str | None = None, *, details: str | None = None) -> None:
        super().__init__(
            message,
            details=details
            or "send Authorization: Bearer <access token or API key>, or X-API-Key: <API key>",
            headers={"WWW-Authenticate": "Bearer"},
        )


class InvalidCredentials(AppError):
    status_code = 401
    code = "INVALID_CREDENTIALS"
    default_message = "Invalid credentials"

    def __init__(self, message: str | None = None, *, details: str | None = None) -> None:
        super().__init__(
            message, details=details, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )


class AccessDenied(AppError):
    status_code = 403
    code = "ACCESS_DENIED"
    default_message = "Access denied"


class UserNotFound(NotFound):
    code = "USER_NOT_FOUND"
    default_message = "User not found"


class KeyNotFound(NotFound):
    code = "KEY_NOT_FOUND"
    default_message = "API key not found"


class UserExists(AppError):
    status_code = 409
    code = "USER_EXISTS"
    default_message = "A user with this name exists"


class UserHasData(AppError):
    status_code = 409
    code = "USER_HAS_DATA"
    default_message = "The user still owns uploads or jobs"


class UploadInUse(AppError):
    status_code = 409
    code = "UPLOAD_IN_USE"
    default_message = "A queued or running job uses this upload"


class JobRunning(AppError):
    status_code = 409
    code = "JOB_RUNNING"
    default_message = "The job is queued or running: cancel it first"
