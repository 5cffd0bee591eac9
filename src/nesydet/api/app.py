"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from nesydet import API_VERSION, __version__
from nesydet.api.auth import AuthMiddleware, ClientAddressMiddleware, HstsMiddleware
from nesydet.api.errors import install_error_handlers
from nesydet.api.middleware import RequestContextMiddleware
from nesydet.api.openapi import install_openapi
from nesydet.api.ratelimit import install_rate_limits
from nesydet.api.routers import (
    auth,
    batch,
    comparisons,
    downloads,
    error_codes,
    files,
    jobs,
    monitoring,
    reasoning,
    registry,
    results,
    system,
    uploads,
    users,
    webhooks,
    ws,
)
from nesydet.api.tracing import SpanIdsMiddleware, telemetry_config
from nesydet.broker import make_celery
from nesydet.config import Settings, get_settings
from nesydet.db.session import create_engine, create_sessionmaker
from nesydet.observability import tracing
from nesydet.services.auth import Authenticator
from nesydet.services.dispatch import Dispatcher
from nesydet.services.health import Readiness
from nesydet.services.image_checker import ImageChecker
from nesydet.services.registry.bundled import start_registering
from nesydet.services.status_cache import make_status_cache
from nesydet.services.sweeper import Sweeper
from nesydet.storage import create_storage

log = logging.getLogger(__name__)

DESCRIPTION = """
Neuro-symbolic object detection for aerial images.

Upload images, start an inference job (YOLO + SAHI slicing + NMS + Prolog reasoning), poll its
status, then fetch detections (JSON, YOLO, COCO, VOC) and annotated images.

Every error has one shape: `status`, `message`, `error_code`, `details`, `timestamp`,
`request_id`, and `errors[]` when items fail one by one. Every response carries `X-Request-ID`
and `X-API-Version`.
"""


def new_checker(settings: Settings) -> ImageChecker:
    """Return an image checker pool configured from the settings."""
    return ImageChecker(
        workers=settings.image_check_workers,
        memory_limit_bytes=settings.image_check_memory_limit_bytes,
        timeout_s=settings.image_check_timeout_s,
        min_dim=settings.min_image_dimension,
        max_dim=settings.max_image_dimension,
    )


def _lifespan(
    settings: Settings, checker: ImageChecker | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Return the lifespan that opens the app's resources on start and closes them at exit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.storage = create_storage(settings)
        app.state.checker = checker or new_checker(settings)
        settings.staging_dir.mkdir(parents=True, exist_ok=True)
        await app.state.checker.start()
        app.state.celery = make_celery(settings)
        app.state.dispatcher = Dispatcher(app.state.celery, settings)
        app.state.status_cache = make_status_cache(settings.redis_url, settings.status_cache_ttl_s)
        app.state.authenticator = Authenticator(settings, app.state.sessionmaker)
        app.state.readiness = Readiness(
            engine=engine, storage=app.state.storage, celery=app.state.celery
        )
        sweeper = Sweeper(
            sessionmaker=app.state.sessionmaker,
            settings=settings,
            dispatcher=app.state.dispatcher,
            cache=app.state.status_cache,
            storage=app.state.storage,
        )
        sweeper.start()
        registering = start_registering(
            sessionmaker=app.state.sessionmaker,
            storage=app.state.storage,
            settings=settings,
            dispatcher=app.state.dispatcher,
        )
        try:
            yield
        finally:
            if registering is not None:
                registering.cancel()
            await sweeper.stop()
            await app.state.status_cache.close()
            app.state.celery.close()
            if checker is None:  # the app made its own checker: it closes it
                app.state.checker.close()
            await engine.dispose()
            tracing.stop_tracing()  # started by create_app; sends the spans still queued

    return lifespan


# What a browser client (the desktop app's renderer) may send and read across origins.
CORS_REQUEST_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-ID",
    "Last-Event-ID",
    "If-None-Match",
]
CORS_RESPONSE_HEADERS = [
    "X-Request-ID",
    "X-API-Version",
    "ETag",
    "Retry-After",
    "Idempotent-Replayed",
    "Content-Disposition",
]


async def _client_gone(request: Request, exc: Exception) -> Response:
    log.info("client disconnected during the request")
    return Response(status_code=400)


def create_app(settings: Settings | None = None, *, checker: ImageChecker | None = None) -> FastAPI:
    """Return the application; resources are opened in its lifespan.

    Args:
        settings: the settings; read from the environment when not given.
        checker: an image checker pool to share (tests); the app makes and owns one otherwise.
    """
    settings = settings or get_settings()
    provider = tracing.start_tracing(settings.otel_endpoint, service=tracing.API_SERVICE)
    app = FastAPIOffline(
        title="nesydet",
        telemetry=telemetry_config(provider),
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(settings, checker),
        openapi_tags=[
            {"name": "uploads", "description": "Upload images and read uploads back"},
            {"name": "jobs", "description": "Start inference jobs, follow them, fetch results"},
            {"name": "files", "description": "Original, annotated and thumbnail images"},
            {"name": "webhooks", "description": "Job events POSTed to your URL, signed"},
            {"name": "comparisons", "description": "Two completed jobs compared image by image"},
            {"name": "auth", "description": "Log in, who am I, API keys"},
            {"name": "users", "description": "Accounts (admins only)"},
            {"name": "system", "description": "Health, readiness and metrics"},
        ],
    )
    # Trailing-slash redirects are answered by the 404 handler, with a relative Location.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.api_version = API_VERSION
    install_error_handlers(app)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    for module in (
        uploads,
        batch,
        jobs,
        results,
        reasoning,
        downloads,
        files,
        auth,
        users,
        system,
        monitoring,
        webhooks,
        comparisons,
        registry,
        ws,
    ):
        app.include_router(module.router)
    app.include_router(error_codes.router)
    install_openapi(app)
    _install_middleware(app, settings)
    return app


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Add the middleware, innermost first: each one added wraps those before it.

    A request meets them in this order: request id and metrics, CORS (a preflight is answered
    here), the client's address from trusted proxies, HSTS, credentials, rate limits, and
    (tracing on) the ids the request is about, put on its span.
    """
    if settings.otel_endpoint:
        app.add_middleware(SpanIdsMiddleware)
    install_rate_limits(app, settings)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(HstsMiddleware)
    app.add_middleware(ClientAddressMiddleware, trusted=settings.trusted_proxies)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
            max_age=600,
        )
    # Added last, so it is the outermost: even CORS and rate-limit answers get an id.
    app.add_middleware(RequestContextMiddleware)
