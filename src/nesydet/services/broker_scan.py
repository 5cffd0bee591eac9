"""What the broker holds: how many task messages wait in the ``inference`` queue (for
``queue_length``), and which jobs have a message (queued, or held by a worker).

A Redis restart without persistence, a FLUSHALL or a failover loses the broker's messages
while the database still says the jobs are queued. The sweeper asks this module, and resends
the tasks of queued jobs that have no message. Only Redis brokers can lose messages this way;
for others the answer is "unknown" (None) and nothing is resent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import redis

from nesydet.broker import QUEUE

_JOB_ID = re.compile(rb"job_[0-9a-f]{12}")
# kombu's Redis transport: one list per queue and priority step, and the messages delivered
# to workers but not yet acknowledged (ours are acknowledged late: held ones stay here).
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)
_UNACKED = "unacked"
_BATCH = 500


def _queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS]


def _job_ids(message: bytes | str) -> set[str]:
    raw = message if isinstance(message, bytes) else message.encode()
    return {m.decode() for m in _JOB_ID.findall(raw)}


def jobs_in_broker(broker_url: str, *, timeout_s: float = 3.0) -> set[str] | None:
    """Return the ids of jobs with a task message in the broker, or None when it cannot tell
    (not Redis). Raises redis errors when Redis cannot be reached (the caller retries later).
    """
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(
        broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        found: set[str] = set()
        for key in _queue_keys(QUEUE):
            length = int(client.llen(key))
            for start in range(0, length, _BATCH):
                for message in client.lrange(key, start, start + _BATCH - 1):
                    found |= _job_ids(message)
        for _tag, held in client.hscan_iter(_UNACKED, count=_BATCH):
            found |= _job_ids(held)
        return found
    finally:
        client.close()


def queue_length(broker_url: str, broker_dir: Path, *, timeout_s: float = 0.5) -> int | None:
    """Return the number of task messages waiting in the ``inference`` queue, or None when the
    broker cannot say (another transport) or cannot be reached within ``timeout_s``.

    Messages a worker has taken (and holds until its job ends) are not counted: they no longer
    wait.
    """
    if broker_url.startswith("filesystem://"):
        # kombu's filesystem transport: one file per message, named <time>_<uuid>.<queue>.msg.
        suffix = f".{QUEUE}.msg"
        try:
            with os.scandir(broker_dir / "queue") as entries:
                return sum(1 for entry in entries if entry.name.endswith(suffix))
        except OSError:
            return None
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(
        broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        pipe = client.pipeline(transaction=False)
        for key in _queue_keys(QUEUE):
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())
    except redis.RedisError:
        return None
    finally:
        client.close()
