"""The Celery application (torch-free: the API imports it to send tasks by name).

Long stage tasks: late acknowledgement, prefetch 1, a message re-queued when its worker dies;
one queue per device kind (``gpu``, ``cpu``). Results live in Redis through the data layer, not
in a Celery result backend.
"""

from __future__ import annotations

from celery import Celery

from tscnc.queues import Queue
from worker.settings import WorkerSettings

TASK_PRETRAIN = "tscnc.pretrain"
TASK_COMPLETE = "tscnc.complete"


def make_celery(settings: WorkerSettings | None = None) -> Celery:
    s = settings or WorkerSettings()
    app = Celery("tscnc", broker=s.redis_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=Queue.cpu.value,
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": s.visibility_timeout,
                                  "unacked_restore_interval": s.unacked_restore_interval,
                                  "unacked_restore_throttle": 1},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


app = make_celery()
