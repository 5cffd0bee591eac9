"""What a new job runs: the model and rules its config names, checked and resolved.

Files of the models and rules directories (``model_path``, ``rules_file``) are checked at
once (a batch refuses a bad config before expanding its archive); registered versions
(``model``, ``symbolic_reasoning.rules``) are resolved when the job is made, by its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.config import Settings
from nesydet.db.models import Job
from nesydet.errors import InvalidConfig
from nesydet.pipeline import MODEL_SUFFIXES, RULES_SUFFIXES
from nesydet.schemas.jobs import JobConfig
from nesydet.services.assets import available, resolve_inside
from nesydet.services.registry.resolve import Resolved, file_ref, registered


def check_assets(config: JobConfig, settings: Settings) -> str | None:
    """Return the model file name the job will use (None for a registered model); raise
    InvalidConfig for unusable files, or for a registered and a file name given together."""
    errors: list[dict[str, Any]] = []
    model_file = None
    if config.model is not None:
        if "model_path" in config.model_fields_set and config.model_path is not None:
            errors.append(_both("config.model", "model_path"))
    else:
        model = config.model_path or settings.default_model
        model_file = resolve_inside(settings.models_dir, model, MODEL_SUFFIXES)
        if model_file is None:
            errors.append(_missing("config.model_path", "model", model, settings.models_dir))
    rules = config.symbolic_reasoning
    if rules.rules is not None:
        if "rules_file" in rules.model_fields_set:
            errors.append(_both("config.symbolic_reasoning.rules", "rules_file"))
    elif (
        rules.enabled
        and resolve_inside(settings.rules_dir, rules.rules_file, RULES_SUFFIXES) is None
    ):
        errors.append(
            _missing(
                "config.symbolic_reasoning.rules_file",
                "rules",
                rules.rules_file,
                settings.rules_dir,
            )
        )
    if errors:
        raise InvalidConfig(
            "Invalid configuration",
            errors=errors,
            details="; ".join(f"{e['field']}: {e['error']}" for e in errors),
        )
    # Stored relative to the models directory, the way the workers resolve it.
    return model_file.relative_to(settings.models_dir.resolve()).as_posix() if model_file else None


def _both(field: str, other: str) -> dict[str, Any]:
    return {
        "field": field,
        "error_code": "CONFLICT",
        "error": f"give either {field.rsplit('.', 1)[-1]} (registered) or {other} (a file)",
    }


def _missing(field: str, what: str, name: str, root: Path) -> dict[str, Any]:
    suffixes = MODEL_SUFFIXES if what == "model" else RULES_SUFFIXES
    choices = ", ".join(available(root, suffixes)) or "none"
    return {
        "field": field,
        "error_code": f"{what.upper()}_NOT_FOUND",
        "error": f"Not a {what} file in the {what} directory: {name} (available: {choices})",
    }


@dataclass(frozen=True, slots=True)
class JobAssets:
    """What a new job runs: its model and (with reasoning) rules, resolved."""

    model: Resolved
    rules: Resolved | None


async def resolve_assets(
    *,
    session: AsyncSession,
    config: JobConfig,
    settings: Settings,
    job_id: str,
    model_file: str | None,
) -> JobAssets:
    """Return the job's model and rules: registered versions (routing by job id) or files."""
    if config.model is not None:
        model = await registered(
            session=session, kind="model", spelled=config.model, field="config.model", job_id=job_id
        )
    else:
        name = model_file or settings.default_model
        model = await file_ref(
            session=session, kind="model", path=settings.models_dir / name, name=name
        )
    reasoning = config.symbolic_reasoning
    rules = None
    if reasoning.enabled and reasoning.rules is not None:
        field = "config.symbolic_reasoning.rules"
        rules = await registered(
            session=session, kind="rules", spelled=reasoning.rules, field=field, job_id=job_id
        )
    elif reasoning.enabled:
        found = resolve_inside(settings.rules_dir, reasoning.rules_file, RULES_SUFFIXES)
        if found is None:  # checked by check_assets; gone since
            raise InvalidConfig(details=f"rules file {reasoning.rules_file} is gone")
        rules = await file_ref(session=session, kind="rules", path=found, name=reasoning.rules_file)
    return JobAssets(model, rules)


def recorded_config(config: JobConfig, model_file: str | None, assets: JobAssets) -> dict[str, Any]:
    """Return the config a job keeps: the request's, with what it resolved to."""
    out = config.model_dump(mode="json")
    out["model_path"] = model_file
    if config.model is not None:
        out["model"] = assets.model.spelled
    if config.symbolic_reasoning.rules is not None and assets.rules is not None:
        out["symbolic_reasoning"]["rules"] = assets.rules.spelled
    return out


def response_config(config: JobConfig, job: Job) -> JobConfig:
    """Return the config a predict answer shows: as sent, with the model and rules resolved."""
    rules = config.symbolic_reasoning.model_copy(
        update={"rules": job.config.get("symbolic_reasoning", {}).get("rules")}
    )
    return config.model_copy(
        update={
            "model_path": job.config.get("model_path"),
            "model": job.config.get("model"),
            "symbolic_reasoning": rules,
        }
    )
