"""Celery: the app, the inference task, and the worker process set-up."""
