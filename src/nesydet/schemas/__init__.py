"""Pydantic request and response models of the public API (separate from the ORM)."""
