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


class InvalidArchive(AppError):
    """A batch's archive is not a ZIP archive that can be read."""

    status_code = 400
    code = "INVALID_ARCHIVE"
    default_message = "The archive is not a readable ZIP archive"


class ArchiveTooLarge(AppError):
    """A batch's archive, or what its entries expand to, is over the limits."""

    status_code = 413
    code = "ARCHIVE_TOO_LARGE"
    default_message = "The archive is too large"


class SuspectedZipBomb(AppError):
    """A batch's archive expands far more than images do, or its entries overlap."""

    status_code = 400
    code = "SUSPECTED_ZIP_BOMB"
    default_message = "The archive looks like a zip bomb"


class WebhookNotFound(NotFound):
    code = "WEBHOOK_NOT_FOUND"
    default_message = "Webhook not found"


class DeliveryNotFound(NotFound):
    code = "DELIVERY_NOT_FOUND"
    default_message = "Webhook delivery not found"


class WebhookUrlRefused(AppError):
    """A webhook URL that resolves to an address the service must not call (SSRF guard)."""

    status_code = 400
    code = "WEBHOOK_URL_REFUSED"
    default_message = "The webhook URL is not allowed"


class WebhookLimitReached(AppError):
    status_code = 409
    code = "WEBHOOK_LIMIT_REACHED"
    default_message = "Too many webhooks: delete one first"


class DeliveryInProgress(AppError):
    status_code = 409
    code = "DELIVERY_IN_PROGRESS"
    default_message = "The delivery is being attempted now"


class ComparisonNotFound(NotFound):
    code = "COMPARISON_NOT_FOUND"
    default_message = "Comparison not found"


class JobNotCompleted(AppError):
    """A job named for a comparison has not completed (or failed, or was cancelled)."""

    status_code = 409
    code = "JOB_NOT_COMPLETED"
    default_message = "The job has not completed"


# Answers that are not a business case: HTTP-level failures, rendered by the API's handlers
# with these codes (a route that does not exist, a method it lacks, a dependency that is down).


class MethodNotAllowed(AppError):
    status_code = 405
    code = "METHOD_NOT_ALLOWED"
    default_message = "Method not allowed"


class NotAcceptable(AppError):
    status_code = 406
    code = "NOT_ACCEPTABLE"
    default_message = "Not acceptable"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "Unsupported media type"


class Unauthorized(AppError):
    """A 401 that is not about credentials the client sent (those are INVALID_CREDENTIALS)."""

    status_code = 401
    code = "UNAUTHORIZED"
    default_message = "Invalid credentials"


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"
    default_message = "Access denied"


class RateLimitExceeded(AppError):
    """Too many requests from this client or account; ``Retry-After`` says when to retry."""

    status_code = 429
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "Too many requests, try again later"


class InternalError(AppError):
    """An unexpected failure of the service: retry later; the request id finds it in logs."""

    status_code = 500
    code = "INTERNAL_ERROR"
    default_message = "Server error, please retry"


class ServiceUnavailable(AppError):
    """A dependency (the database) cannot be reached; ``Retry-After`` says when to retry."""

    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    default_message = "Service unavailable"


class NotReady(AppError):
    """``/readyz``: a part the service needs (database, storage, broker) is not ready."""

    status_code = 503
    code = "NOT_READY"
    default_message = "Not ready"


class HttpError(AppError):
    """Any other HTTP-level failure, with the status it came with."""

    status_code = 400
    code = "HTTP_ERROR"
    default_message = "Request failed"


# A rejected upload takes the code of its files' problem when they all share one.


class InvalidFormat(UploadRejected):
    """A file is not a JPEG, PNG or TIFF image (by its bytes, not its name), or is empty."""

    code = "INVALID_FORMAT"
    default_message = "Unsupported file format. Allowed: JPEG, PNG, TIFF"


class FileTooLarge(UploadRejected):
    """A file is over the size limit (50 MB by default)."""

    code = "FILE_TOO_LARGE"
    default_message = "File too large"


class InvalidDimensions(UploadRejected):
    """An image is smaller than 64x64 or larger than 8192x8192 pixels."""

    code = "INVALID_DIMENSIONS"
    default_message = "Image dimensions out of range"


class CorruptedFile(UploadRejected):
    """An image's header is valid but its pixels do not decode."""

    code = "CORRUPTED_FILE"
    default_message = "Image could not be decoded"


class UnsafePath(UploadRejected):
    """A batch archive's entry has an absolute path, ``..`` or a drive letter."""

    code = "UNSAFE_PATH"
    default_message = "Unsafe path in the archive"


class LinkNotAllowed(UploadRejected):
    """A batch archive's entry is a symbolic or hard link."""

    code = "LINK_NOT_ALLOWED"
    default_message = "Links are not allowed in the archive"


class DuplicateFile(UploadRejected):
    """Two entries of a batch archive have the same path."""

    code = "DUPLICATE_FILE"
    default_message = "Duplicate path in the archive"


class UnsupportedEntry(UploadRejected):
    """A batch archive's entry uses a compression or feature that cannot be read."""

    code = "UNSUPPORTED_ENTRY"
    default_message = "Unsupported entry"
