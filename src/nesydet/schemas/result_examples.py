"""Example bodies of the results and visualization endpoints, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

_DETECTION = {
    "class_id": 0,
    "class_name": "plane",
    "confidence": 0.95,
    "bbox": {"format": "xyxy", "x_min": 100, "y_min": 150, "x_max": 300, "y_max": 250},
    "bbox_normalized": {
        "format": "yolo",
        "center_x": 0.104,
        "center_y": 0.185,
        "width": 0.104,
        "height": 0.093,
    },
    "polygon": [[104.1, 150.0], [300.0, 171.3], [295.9, 250.0], [100.0, 228.7]],
    "polygon_normalized": [[0.0542, 0.1389], [0.1563, 0.1586], [0.1541, 0.2315], [0.0521, 0.2118]],
    "angle": 0.108,
    "reasoning": {
        "original_confidence": 0.91,
        "adjusted_confidence": 0.95,
        "action": "keep",
        "rules_fired": ["plane_near_plane"],
        "original_class": None,
    },
}

RESULTS_EXAMPLES: dict[str, Any] = {
    "json": {
        "summary": "format=json",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "format": "json",
                "results": [
                    {
                        "file_id": "img_x1y2z3a4b5c6",
                        "filename": "image1.jpg",
                        "dimensions": [1920, 1080],
                        "detections": [_DETECTION],
                        "detection_count": 1,
                    }
                ],
            },
        },
    },
    "yolo": {
        "summary": "format=yolo",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "format": "yolo",
                "files": [
                    {
                        "file_id": "img_x1y2z3a4b5c6",
                        "filename": "image1.jpg",
                        "label_content": "0 0.104167 0.185185 0.104167 0.092593 0.950000\n",
                        "download_url": "/api/v1/jobs/job_abc123xyz789/results/"
                        "img_x1y2z3a4b5c6/labels.txt",
                    }
                ],
            },
        },
    },
    "yolo_obb": {
        "summary": "format=yolo_obb",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "format": "yolo_obb",
                "files": [
                    {
                        "file_id": "img_x1y2z3a4b5c6",
                        "filename": "image1.jpg",
                        "label_content": "0 0.054219 0.138889 0.156250 0.158611 0.154115 "
                        "0.231481 0.052083 0.211759 0.950000\n",
                        "download_url": "/api/v1/jobs/job_abc123xyz789/results/"
                        "img_x1y2z3a4b5c6/labels.txt?format=yolo_obb",
                    }
                ],
            },
        },
    },
    "coco": {
        "summary": "format=coco",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "format": "coco",
                "coco": {
                    "info": {"description": "nesydet detections", "version": "1.0"},
                    "licenses": [],
                    "images": [
                        {
                            "id": 1,
                            "file_name": "image1.jpg",
                            "width": 1920,
                            "height": 1080,
                            "file_id": "img_x1y2z3a4b5c6",
                        }
                    ],
                    "annotations": [
                        {
                            "id": 1,
                            "image_id": 1,
                            "category_id": 0,
                            "bbox": [100, 150, 200, 100],
                            "area": 20000,
                            "score": 0.95,
                            "iscrowd": 0,
                        }
                    ],
                    "categories": [{"id": 0, "name": "plane", "supercategory": "object"}],
                },
            },
        },
    },
    "voc": {
        "summary": "format=voc",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "format": "voc",
                "files": [
                    {
                        "file_id": "img_x1y2z3a4b5c6",
                        "filename": "image1.jpg",
                        "voc_xml": "<annotation>…</annotation>",
                    }
                ],
            },
        },
    },
}

VISUALIZATION_EXAMPLES: dict[str, Any] = {
    "url": {
        "summary": "format=url",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "format": "url",
                "visualizations": [
                    {
                        "file_id": "img_x1y2z3a4b5c6",
                        "filename": "image1.jpg",
                        "original_url": "/api/v1/files/img_x1y2z3a4b5c6/original",
                        "annotated_url": "/api/v1/files/img_x1y2z3a4b5c6/annotated"
                        "?job_id=job_abc123xyz789",
                        "thumbnail_url": "/api/v1/files/img_x1y2z3a4b5c6/thumbnail"
                        "?job_id=job_abc123xyz789",
                        "detection_count": 15,
                    }
                ],
            },
        },
    },
    "base64": {
        "summary": "format=base64, one file",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "file_id": "img_x1y2z3a4b5c6",
                "filename": "image1.jpg",
                "format": "base64",
                "original_image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...",
                "annotated_image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...",
                "thumbnail_image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...",
                "detection_count": 15,
            },
        },
    },
}
