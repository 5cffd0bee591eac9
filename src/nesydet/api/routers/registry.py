"""The model and rules registry: ``/api/v1/models`` and ``/api/v1/rules``.

Both collections have the same routes, made by `make_router`; models add the A/B routing.
Reading is open to every account; registering and changing is for admins.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.api.auth import AdminDep, ReaderDep
from nesydet.api.deps import DispatcherDep, SessionDep, SettingsDep, StorageDep
from nesydet.asset_names import NAME_PATTERN, VERSION_PATTERN, Kind
from nesydet.schemas.common import error_responses
from nesydet.schemas.registry import (
    AssetData,
    AssetList,
    AssetListResponse,
    AssetPatch,
    AssetResponse,
    VersionData,
    VersionPatch,
    VersionResponse,
)
from nesydet.schemas.registry_examples import (
    ASSET_EXAMPLES,
    ERRORS,
    LIST_EXAMPLES,
    UPLOAD_BODIES,
    VERSION_EXAMPLES,
)
from nesydet.services.registry import catalogue, manage
from nesydet.services.registry.upload import UploadContext, upload_version

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, examples=["nesydet-demo-obb"])]
VersionPath = Annotated[str, Path(pattern=VERSION_PATTERN, examples=["1"])]
Weights = Annotated[
    dict[str, Annotated[int, Body(ge=0, le=manage.MAX_WEIGHT)]],
    Body(
        examples=[{"1": 50, "2": 50}],
        description="weight by version (0 to 1000); {} removes the routing",
    ),
]


def _ok(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"application/json": {"example": example}}}}


def make_router(kind: Kind) -> APIRouter:
    """Return the routes of one collection (``/models`` or ``/rules``)."""
    router = APIRouter(prefix=f"/api/v1/{catalogue.collection(kind)}", tags=["registry"])
    _add_register(router, kind)
    _add_reads(router, kind)
    _add_changes(router, kind)
    return router


def _add_register(router: APIRouter, kind: Kind) -> None:
    errors = ERRORS[kind]

    @router.post(
        "",
        status_code=201,
        response_model=VersionResponse,
        summary=f"Register a {kind} version",
        description=UPLOAD_BODIES[kind]["description"],
        responses={
            201: {"content": {"application/json": {"example": VERSION_EXAMPLES[kind]}}},
            **error_responses(*errors["upload"]),
        },
        openapi_extra=UPLOAD_BODIES[kind]["body"],
        operation_id=f"register_{kind}",
    )
    async def register(
        request: Request,
        session: SessionDep,
        storage: StorageDep,
        settings: SettingsDep,
        dispatcher: DispatcherDep,
        principal: AdminDep,
    ) -> JSONResponse:
        row = await upload_version(
            session=session,
            context=UploadContext(settings, storage, dispatcher, principal.user_id),
            kind=kind,
            content_type=request.headers.get("content-type"),
            body=request.stream(),
        )
        asset = await catalogue.get_asset(session=session, kind=kind, name=row.name)
        body = VersionResponse(
            message=f"{kind.capitalize()} {row.name} version {row.version} registered",
            data=VersionData.model_validate(catalogue.version_data(row, asset, 0)),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=201)


def _add_reads(router: APIRouter, kind: Kind) -> None:
    noun = catalogue.collection(kind)

    @router.get(
        "",
        response_model=AssetListResponse,
        summary=f"Registered {noun}",
        responses=_ok(LIST_EXAMPLES[kind]),
        operation_id=f"list_{noun}",
    )
    async def list_assets(session: SessionDep, principal: ReaderDep) -> AssetListResponse:
        items = await catalogue.list_data(session=session, kind=kind)
        return AssetListResponse(data=AssetList.model_validate({"items": items}))

    @router.get(
        "/{name}",
        response_model=AssetResponse,
        summary=f"A registered {kind} and its versions",
        responses={**_ok(ASSET_EXAMPLES[kind]), **error_responses(ERRORS[kind]["404"])},
        operation_id=f"get_{kind}",
    )
    async def get_asset(name: NamePath, session: SessionDep, principal: ReaderDep) -> AssetResponse:
        return await _asset_response(session, kind, name)


def _add_changes(router: APIRouter, kind: Kind) -> None:
    errors = ERRORS[kind]

    @router.patch(
        "/{name}",
        response_model=AssetResponse,
        summary=f"Set a {kind}'s default version",
        responses={**_ok(ASSET_EXAMPLES[kind]), **error_responses(*errors["patch"])},
        operation_id=f"set_default_{kind}",
    )
    async def patch_asset(
        name: NamePath, body: AssetPatch, session: SessionDep, principal: AdminDep
    ) -> AssetResponse:
        await manage.set_default(
            session=session, kind=kind, name=name, version=body.default_version
        )
        return await _asset_response(session, kind, name, "Default version set")

    @router.patch(
        "/{name}/versions/{version}",
        response_model=AssetResponse,
        summary=f"Deprecate (or restore) a {kind} version",
        responses={**_ok(ASSET_EXAMPLES[kind]), **error_responses(*errors["deprecate"])},
        operation_id=f"deprecate_{kind}_version",
    )
    async def patch_version(
        name: NamePath,
        version: VersionPath,
        body: VersionPatch,
        session: SessionDep,
        principal: AdminDep,
    ) -> AssetResponse:
        await manage.set_deprecated(
            session=session, kind=kind, name=name, version=version, deprecated=body.deprecated
        )
        return await _asset_response(session, kind, name, "Version updated")

    @router.delete(
        "/{name}/versions/{version}",
        status_code=204,
        response_class=Response,
        summary=f"Delete a {kind} version",
        responses=error_responses(*errors["delete"]),
        operation_id=f"delete_{kind}_version",
    )
    async def delete_version(
        name: NamePath,
        version: VersionPath,
        session: SessionDep,
        storage: StorageDep,
        principal: AdminDep,
    ) -> Response:
        await manage.delete_version(
            session=session, storage=storage, kind=kind, name=name, version=version
        )
        return Response(status_code=204)


async def _asset_response(
    session: AsyncSession, kind: Kind, name: str, message: str | None = None
) -> AssetResponse:
    asset = await catalogue.get_asset(session=session, kind=kind, name=name)
    data = await catalogue.asset_data(session=session, asset=asset, with_versions=True)
    return AssetResponse(message=message, data=AssetData.model_validate(data))


models_router = make_router("model")
rules_router = make_router("rules")


@models_router.put(
    "/{name}/routing",
    response_model=AssetResponse,
    summary="Route jobs naming only the model to its versions, by weight",
    description=(
        "Jobs whose `config.model` is the name alone get a version with probability "
        "weight / sum of weights, decided by the job id: the same id always gets the same "
        "version. `{}` removes the routing (the default version again). The split shows in "
        "`versions[].jobs` here and in the metric `model_jobs_total{model,version}`."
    ),
    responses={**_ok(ASSET_EXAMPLES["model"]), **error_responses(*ERRORS["model"]["routing"])},
)
async def put_routing(
    name: NamePath, weights: Weights, session: SessionDep, principal: AdminDep
) -> AssetResponse:
    """Set the routing weights of a model's versions."""
    await manage.set_routing(session=session, name=name, weights=weights)
    return await _asset_response(session, "model", name, "Routing set")


router = APIRouter()
router.include_router(models_router)
router.include_router(rules_router)
