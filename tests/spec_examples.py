"""The design spec's example bodies, and a check that a real response has their shape.

A response matches an example when every key of the example is present with a value of the
same JSON type, recursively (list items against the example's first item). Extra keys are
allowed: the API extends the spec, it never drops what the spec shows.
"""

from __future__ import annotations

from typing import Any

UPLOAD_200 = {
    "status": "success",
    "message": "2 images uploaded successfully",
    "data": {
        "upload_id": "upl_a1b2c3d4e5f6",
        "uploaded_files": [
            {
                "filename": "image1.jpg",
                "file_id": "img_x1y2z3",
                "size_bytes": 2048576,
                "format": "JPEG",
                "dimensions": [1920, 1080],
            }
        ],
    },
}
UPLOAD_400 = {
    "status": "error",
    "message": "Invalid file format",
    "errors": [
        {"filename": "document.pdf", "error": "Unsupported file format. Allowed: JPEG, PNG, TIFF"}
    ],
}
PREDICT_202 = {
    "status": "accepted",
    "message": "Inference job created",
    "data": {
        "job_id": "job_abc123xyz789",
        "status": "queued",
        "created_at": "2026-02-02T18:54:57.324Z",
        "estimated_completion": "2026-02-02T18:56:30.000Z",
        "file_count": 2,
        "status_url": "/api/v1/jobs/job_abc123xyz789/status",
    },
}
PREDICT_400 = {
    "status": "error",
    "message": "Invalid configuration",
    "errors": [{"field": "config.confidence_threshold", "error": "Must be between 0.0 and 1.0"}],
}
STATUS_QUEUED = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "status": "queued",
        "created_at": "2026-02-02T18:54:57.324Z",
        "updated_at": "2026-02-02T18:54:57.324Z",
        "progress": {"total_images": 2, "processed_images": 0, "percentage": 0},
    },
}
STATUS_PROCESSING = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "status": "processing",
        "created_at": "2026-02-02T18:54:57.324Z",
        "updated_at": "2026-02-02T18:55:30.124Z",
        "started_at": "2026-02-02T18:55:00.000Z",
        "progress": {
            "total_images": 2,
            "processed_images": 1,
            "percentage": 50,
            "current_stage": "Running SAHI inference",
            "estimated_completion": "2026-02-02T18:56:30.000Z",
        },
    },
}
STATUS_COMPLETED = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "status": "completed",
        "created_at": "2026-02-02T18:54:57.324Z",
        "updated_at": "2026-02-02T18:56:15.500Z",
        "started_at": "2026-02-02T18:55:00.000Z",
        "completed_at": "2026-02-02T18:56:15.500Z",
        "progress": {"total_images": 2, "processed_images": 2, "percentage": 100},
        "summary": {
            "total_detections": 47,
            "average_confidence": 0.82,
            "processing_time_seconds": 75.5,
        },
        "results_url": "/api/v1/jobs/job_abc123xyz789/results",
        "visualization_url": "/api/v1/jobs/job_abc123xyz789/visualization",
    },
}
STATUS_FAILED = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "status": "failed",
        "created_at": "2026-02-02T18:54:57.324Z",
        "updated_at": "2026-02-02T18:55:45.200Z",
        "started_at": "2026-02-02T18:55:00.000Z",
        "failed_at": "2026-02-02T18:55:45.200Z",
        "error": {
            "code": "MODEL_LOAD_ERROR",
            "message": "Failed to load YOLO model",
            "details": "Model file not found: /path/to/best.pt",
        },
    },
}
JOB_404 = {"status": "error", "message": "Job not found", "error_code": "JOB_NOT_FOUND"}
RESULTS_JSON = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "format": "json",
        "results": [
            {
                "file_id": "img_x1y2z3",
                "filename": "image1.jpg",
                "detections": [
                    {
                        "class_id": 0,
                        "class_name": "plane",
                        "confidence": 0.95,
                        "bbox": {
                            "format": "xyxy",
                            "x_min": 100.0,
                            "y_min": 150.0,
                            "x_max": 300.0,
                            "y_max": 250.0,
                        },
                        "bbox_normalized": {
                            "format": "yolo",
                            "center_x": 0.104,
                            "center_y": 0.185,
                            "width": 0.104,
                            "height": 0.093,
                        },
                    }
                ],
                "detection_count": 1,
            }
        ],
    },
}
RESULTS_YOLO = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "format": "yolo",
        "files": [
            {
                "file_id": "img_x1y2z3",
                "filename": "image1.jpg",
                "label_content": "0 0.104 0.185 0.104 0.093 0.95\n1 0.523 0.678 0.089 0.123 0.87\n",
                "download_url": "/api/v1/jobs/job_abc123xyz789/results/img_x1y2z3/labels.txt",
            }
        ],
    },
}
RESULTS_404 = {
    "status": "error",
    "message": "Results not available",
    "error_code": "RESULTS_NOT_READY",
    "details": "Job is still processing or failed",
}
VISUALIZATION_URL = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "visualizations": [
            {
                "file_id": "img_x1y2z3",
                "filename": "image1.jpg",
                "original_url": "/api/v1/files/img_x1y2z3/original",
                "annotated_url": "/api/v1/files/img_x1y2z3/annotated",
                "thumbnail_url": "/api/v1/files/img_x1y2z3/thumbnail",
                "detection_count": 15,
            }
        ],
    },
}
VISUALIZATION_BASE64 = {
    "status": "success",
    "data": {
        "file_id": "img_x1y2z3",
        "filename": "image1.jpg",
        "format": "base64",
        "original_image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...",
        "annotated_image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...",
        "detection_count": 15,
    },
}
ERROR_ENVELOPE = {
    "status": "error",
    "message": "Human-readable error message",
    "error_code": "MACHINE_READABLE_CODE",
    "details": "Additional context",
    "timestamp": "2026-02-02T18:54:57.324Z",
    "request_id": "req_abc123",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def shape_errors(actual: Any, example: Any, path: str = "$") -> list[str]:
    """Return where ``actual`` lacks a key of ``example`` or has another JSON type there."""
    if isinstance(example, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {_kind(actual)}"]
        out = []
        for key, value in example.items():
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            else:
                out.extend(shape_errors(actual[key], value, f"{path}.{key}"))
        return out
    if isinstance(example, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {_kind(actual)}"]
        if example and actual:
            return shape_errors(actual[0], example[0], f"{path}[0]")
        return []
    if example is None or actual is None:
        return []  # a null is allowed where a value may be absent (e.g. no detections)
    if _kind(actual) != _kind(example):
        return [f"{path}: expected {_kind(example)}, got {_kind(actual)} ({actual!r})"]
    return []


def assert_shape(actual: Any, example: Any) -> None:
    """Fail with every difference between a response and the spec's example."""
    errors = shape_errors(actual, example)
    assert not errors, "response differs from the spec's example:\n" + "\n".join(errors)
