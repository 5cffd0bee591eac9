"""``nesydet webhook-worker``: a Celery worker on the ``webhooks`` queue that sends webhook
deliveries, apart from the inference workers (a slow receiver never holds up a job, and a
long job never holds up an event).

Its pool is threads: an attempt waits on the network, not on the CPU, and loads no model.
The threads share one I/O loop (the database) and one broker connection; beside them, a
loop on the I/O thread sends again the deliveries whose task was lost
(:func:`resend_stranded`).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from dataclasses import dataclass

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nesydet.broker import WEBHOOK_QUEUE, WEBHOOK_TASK, make_celery
from nesydet.config import Settings
from nesydet.db.session import create_engine, create_sessionmaker, is_unavailable
from nesydet.services.processing.io_loop import IoLoop
from nesydet.services.webhooks.delivery import Deliverer
from nesydet.services.webhooks.outbox import WebhookOutbox, resend_stranded

log = logging.getLogger(__name__)


@dataclass
class WebhookRuntime:
    io: IoLoop
    engine: AsyncEngine
    deliverer: Deliverer
    resending: Future[None]

    def close(self) -> None:
        """Stop resending and release the connections."""
        self.io.loop.call_soon_threadsafe(self.resending.cancel)
        self.io.run(self.engine.dispose())
        self.io.close()


_runtime: WebhookRuntime | None = None


def register_webhook_task(app: Celery) -> None:
    """Define the delivery task on ``app``: a delivery id and attempt number in."""

    @app.task(name=WEBHOOK_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def deliver_webhook(delivery_id: str, attempt: int) -> None:
        runtime = webhook_runtime()
        runtime.io.run(runtime.deliverer.attempt(delivery_id, attempt))


async def _resend_forever(
    sessionmaker: async_sessionmaker[AsyncSession], outbox: WebhookOutbox, interval_s: float
) -> None:
    while True:
        try:
            await resend_stranded(sessionmaker=sessionmaker, outbox=outbox)
        except Exception as exc:  # the next pass tries again
            if is_unavailable(exc):
                log.warning("webhook resend skipped: the database cannot be reached")
            else:
                log.exception("webhook resend failed")
        await asyncio.sleep(interval_s)


def start_webhook_runtime(settings: Settings, celery: Celery) -> WebhookRuntime:
    """Connect, and start resending lost deliveries; the tasks use what this returns."""
    global _runtime
    io = IoLoop("nesydet-webhooks-io")
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    outbox = WebhookOutbox(celery, settings)
    interval = min(30.0, settings.webhook_resend_after_s / 2)
    resending = io.start(_resend_forever(sessionmaker, outbox, interval))
    _runtime = WebhookRuntime(
        io=io,
        engine=engine,
        deliverer=Deliverer(sessionmaker=sessionmaker, outbox=outbox),
        resending=resending,
    )
    return _runtime


def webhook_runtime() -> WebhookRuntime:
    """Return this process's runtime; it exists once the webhook worker has started."""
    if _runtime is None:
        raise RuntimeError("the webhook runtime is not started in this process")
    return _runtime


def stop_webhook_runtime() -> None:
    """Tear down this process's runtime, if any."""
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None


def run_webhook_worker(settings: Settings, *, concurrency: int | None, loglevel: str | None) -> int:
    """Run a webhook worker until it is stopped; returns its exit status."""
    app = make_celery(settings)
    register_webhook_task(app)
    start_webhook_runtime(settings, app)
    argv = [
        "worker",
        f"--queues={WEBHOOK_QUEUE}",
        f"--concurrency={concurrency or settings.webhook_worker_concurrency}",
        "--pool=threads",
        f"--loglevel={(loglevel or settings.log_level).upper()}",
        "--without-gossip",
        "--without-mingle",
        "--hostname=webhooks@%h",
    ]
    try:
        app.worker_main(argv)
    finally:
        stop_webhook_runtime()
    return 0
