"""The Celery app: one task, `crm_engine.sync_unit(connection, stream)`, on a Redis broker.

Tasks are acknowledged late (after the unit ran) and rejected back to the queue when the
worker process running them is lost; each worker takes one task at a time per thread
(prefetch 1), so a killed worker holds back no more than it was running. The broker hands a
task that was taken but never acknowledged to another worker after the visibility timeout.
Beat sends the same task on each connection's cron schedule.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from engine.distributed.settings import Settings
from engine.distributed.units import Runtime, Unit, UnitBusy, run_summary
from engine.errors import InputError
from engine.project import Project

log = logging.getLogger("crm_engine.distributed")
SYNC_UNIT = "crm_engine.sync_unit"
QUEUE = "crm-engine"
# A delivery of a unit that runs elsewhere looks again this late (within the visibility
# timeout, else the broker would hand the waiting copy out again meanwhile).
BUSY_RETRY_SECONDS = 30.0

_runtime: Runtime | None = None  # set in each worker process by `serve`


class UnitFailed(RuntimeError):
    """The unit ran and its run failed (its row in sync_runs says why)."""


def make_app(settings: Settings) -> Celery:
    app = Celery("crm_engine", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # sync_runs is the record of what ran
        task_default_queue=QUEUE,
        task_serializer="json", accept_content=["json"],
        timezone="UTC", enable_utc=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Look for abandoned tasks often enough to meet a short visibility timeout.
            "unacked_restore_interval": max(1, min(10, int(settings.visibility_timeout / 4))),
            "unacked_restore_throttle": 1,
            # The sweep holds a mutex in Redis; a worker killed while holding it would stop
            # every sweep for kombu's default 300s.
            "unacked_mutex_expire": max(1, min(300, int(settings.visibility_timeout / 2))),
        },
    )

    @app.task(bind=True, name=SYNC_UNIT, max_retries=None)
    def sync_unit(self: Task, connection: str, stream: str,
                  full_refresh: bool = False) -> dict[str, Any] | None:
        if _runtime is None:
            raise RuntimeError("this process is not a crm-engine worker (`crm-engine worker`)")
        unit = Unit(connection, stream)
        try:
            run = _runtime.run(unit, self.request.id, full_refresh=full_refresh)
        except UnitBusy as busy:
            wait = min(BUSY_RETRY_SECONDS, settings.visibility_timeout / 2)
            log.info("%s; trying again in %.0fs", busy, wait)
            raise self.retry(countdown=wait) from None
        if run is None:
            return None
        summary = run_summary(run)
        if run.status != "succeeded":
            raise UnitFailed(f"{connection}/{stream}: {run.status}: {run.error}")
        return summary

    return app


def serve(runtime: Runtime, *, concurrency: int, loglevel: str = "INFO") -> None:
    """Run a worker in this process: `concurrency` threads, each syncing one unit at a time."""
    global _runtime
    _runtime = runtime
    app = make_app(runtime.settings)
    app.worker_main(["worker", f"--concurrency={concurrency}", "--pool=threads",
                     f"--loglevel={loglevel}", f"--queues={QUEUE}", "--without-gossip",
                     "--without-mingle"])


class BrokerUnreachable(RuntimeError):
    """The Redis broker did not answer (after kombu's own retries)."""


def enqueue(settings: Settings, units: list[Unit], *, full_refresh: bool = False) -> list[str]:
    """One task per unit on the broker; returns the task ids."""
    app = make_app(settings)
    try:
        with app.producer_or_acquire() as producer:
            return [app.send_task(SYNC_UNIT, args=[u.connection, u.stream, full_refresh],
                                  producer=producer).id for u in units]
    except OperationalError as exc:
        raise BrokerUnreachable(f"cannot reach the Redis broker at "
                                f"{maybe_sanitize_url(settings.redis_url)}: {exc}") from None


def cron(expression: str, where: str) -> crontab:
    """A five-field cron expression as Celery's crontab (UTC)."""
    fields = expression.split()
    if len(fields) != 5:
        raise InputError(where, f"beat takes five-field cron expressions, got {expression!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    except ValueError as exc:
        raise InputError(where, f"Celery cannot read cron expression {expression!r}: "
                                f"{exc}") from None


def beat_schedule(project: Project, units: list[Unit]) -> dict[str, dict[str, Any]]:
    """One beat entry per unit of each scheduled connection."""
    schedule = {}
    for unit in units:
        conn = project.connections[unit.connection]
        if conn.schedule:
            schedule[f"{unit.connection}/{unit.stream}"] = {
                "task": SYNC_UNIT, "args": [unit.connection, unit.stream],
                "schedule": cron(conn.schedule,
                                 f"{project.file}: connections.{conn.name}.schedule")}
    return schedule


def run_beat(settings: Settings, schedule: dict[str, dict[str, Any]], schedule_file: str,
             loglevel: str = "INFO") -> None:
    """Run Celery beat in this process: it sends each entry's task when its time comes (run
    exactly one beat per deployment)."""
    app = make_app(settings)
    app.conf.beat_schedule = schedule
    app.start(["beat", f"--schedule={schedule_file}", f"--loglevel={loglevel}"])
