"""The background deliverer. Subscribed to a runtime's task events, it never slows or
breaks whoever publishes: an event is put on a queue (constant time) and everything else
happens on its own threads.

    event -> fan out: one ``Notification`` per channel of the task's target that wants
             the event, the message rendered once and stored
          -> attempt (a small thread pool): claim (pending -> sending, compare-and-set, so
             two servers never send one notification twice), send with a deadline,
             record the attempt (outcome, HTTP status, answer excerpt or error, duration)
          -> delivered | retried after a back-off that doubles | failed after
             ``notify_max_attempts`` (or at once, when retrying cannot help)

The scheduler thread starts on demand and stops when idle. Notifications still pending
when a server stopped are resumed by :meth:`Notifier.resume` (``shipyard serve`` calls
it at start-up).
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from shipyard.integrations.channels import Kind, Transport, kinds
from shipyard.integrations.channels.email import Mailer
from shipyard.integrations.messages import Message
from shipyard.integrations.outbound import Outbound, SendFailed
from shipyard.models import Channel, Notification, NotificationAttempt
from shipyard.models.types import utcnow

if TYPE_CHECKING:
    from shipyard.config import Settings
    from shipyard.services.context import Runtime
    from shipyard.services.events import TaskEvent

log = logging.getLogger(__name__)
QUEUE_LIMIT = 10_000


def transport_for(settings: Settings) -> Transport:
    mail = None
    if settings.smtp_host:
        mail = Mailer(host=settings.smtp_host, port=settings.smtp_port,
                      security=settings.smtp_security, sender=settings.smtp_from,
                      timeout=settings.notify_timeout, username=settings.smtp_username,
                      password=settings.smtp_password, ca_file=settings.notify_ca_file)
    return Transport(http=Outbound(timeout=settings.notify_timeout,
                                   allow_private=settings.allow_private_webhook_urls,
                                   ca_file=settings.notify_ca_file), mail=mail)


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next try, after ``attempts`` failed ones."""
    return float(min(settings.notify_backoff_max,
                     settings.notify_backoff * 2 ** max(attempts - 1, 0)))


def notifier_of(runtime: Runtime) -> Notifier | None:
    return next((x for x in runtime.listeners if isinstance(x, Notifier)), None)


class Notifier:
    """A task-event listener that delivers notifications in the background."""

    def __init__(self, runtime: Runtime, *, workers: int = 4, idle_exit: float = 5.0,
                 transport: Transport | None = None) -> None:
        self.runtime = runtime
        self.workers = workers
        self.idle_exit = idle_exit
        self.transport = transport
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_LIMIT)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._queued = 0     # put, not yet handled by the scheduler
        self._scheduled = 0  # waiting for their time
        self._in_flight = 0  # being attempted
        self._closed = False

    # -- what others call ------------------------------------------------------------------

    def __call__(self, event: TaskEvent) -> None:
        self._put(("event", event))

    def deliver(self, notification_id: int, delay: float = 0.0) -> None:
        self._put(("deliver", notification_id, delay))

    def resume(self) -> None:
        """Pick up notifications left pending (or stuck sending) by a stopped server."""
        self._put(("resume",))

    def idle(self) -> bool:
        """Nothing queued, waiting for a retry, or being sent."""
        with self._lock:
            return self._queued == 0 and self._scheduled == 0 and self._in_flight == 0

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop; what is still pending stays pending in the database (see resume)."""
        with self._lock:
            self._closed = True
            thread, pool = self._thread, self._pool
        self._inbox.put(("stop",))
        if thread is not None:
            thread.join(timeout)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + timeout
            while self._in_flight and time.monotonic() < deadline:
                time.sleep(0.02)

    # -- the scheduler thread --------------------------------------------------------------

    def _put(self, item: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._inbox.put_nowait(item)
            except queue.Full:
                log.error("notification queue full; dropped %s", item[:2])
                return
            self._queued += 1
            if self._closed or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="shipyard-notifier",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        due: list[tuple[float, int]] = []
        while True:
            wait = self.idle_exit if not due else max(0.0, due[0][0] - time.monotonic())
            try:
                item: tuple[Any, ...] | None = self._inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is not None and item[0] == "stop":
                return
            if item is not None:
                ready = self._handle(item)
                for entry in ready:
                    heapq.heappush(due, entry)
                with self._lock:
                    self._scheduled += len(ready)
                    self._queued -= 1
            while due and due[0][0] <= time.monotonic():
                _, notification_id = heapq.heappop(due)
                self._start_attempt(notification_id)
            if item is None and not due:
                with self._lock:
                    if self._inbox.empty() and self._in_flight == 0:
                        self._thread = None
                        return

    def _handle(self, item: tuple[Any, ...]) -> list[tuple[float, int]]:
        now = time.monotonic()
        try:
            if item[0] == "event":
                from shipyard.integrations.fanout import fan_out

                return [(now, i) for i in fan_out(self.runtime, item[1])]
            if item[0] == "deliver":
                return [(now + item[2], item[1])]
            if item[0] == "resume":
                return [(now + delay, i) for i, delay in self._pending()]
        except Exception:  # the deliverer must survive a database hiccup
            log.exception("notifier could not handle %s", item[:2])
        return []

    def _start_attempt(self, notification_id: int) -> None:
        with self._lock:
            self._scheduled -= 1
            self._in_flight += 1
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers,
                                                thread_name_prefix="shipyard-notify")
            pool = self._pool
        try:
            pool.submit(self._attempt, notification_id)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._in_flight -= 1

    def _pending(self) -> list[tuple[int, float]]:
        settings = self.runtime.settings
        stuck = utcnow() - timedelta(seconds=2 * settings.notify_timeout + 60)
        with self.runtime.sessions() as db, db.begin():
            db.execute(update(Notification)
                       .where(Notification.status == "sending",
                              Notification.updated_at < stuck)
                       .values(status="pending", updated_at=utcnow()))
            rows = db.execute(select(Notification.id, Notification.next_attempt_at)
                              .where(Notification.status == "pending")).all()
        now = utcnow()
        return [(i, max(0.0, (at - now).total_seconds()) if at else 0.0) for i, at in rows]

    # -- one attempt, on a pool thread -------------------------------------------------------

    def _attempt(self, notification_id: int) -> None:
        try:
            retry_in = attempt(self.runtime, notification_id, self.transport)
            if retry_in is not None:
                self.deliver(notification_id, retry_in)
        except Exception:
            log.exception("delivering notification %s crashed", notification_id)
        finally:
            with self._lock:
                self._in_flight -= 1


def _claim(runtime: Runtime, notification_id: int) -> tuple[Notification, Channel | None] | None:
    with runtime.sessions() as db, db.begin():
        won = db.execute(update(Notification)
                         .where(Notification.id == notification_id,
                                Notification.status == "pending")
                         .values(status="sending", attempts=Notification.attempts + 1,
                                 updated_at=utcnow())).rowcount  # type: ignore[attr-defined]
        if won != 1:
            return None
        notification = db.get_one(Notification, notification_id)
        channel = (db.get(Channel, notification.channel_id)
                   if notification.channel_id is not None else None)
        db.expunge_all()
    return notification, channel


def attempt(runtime: Runtime, notification_id: int,
            transport: Transport | None = None) -> float | None:
    """Try to deliver one notification once and record the attempt; the seconds until the
    next try, or None when it is delivered, failed for good, or not ours to send."""
    from shipyard.services.notifications import destination

    settings = runtime.settings
    claimed = _claim(runtime, notification_id)
    if claimed is None:
        return None
    notification, channel = claimed
    number = notification.attempts
    started_at, started = utcnow(), time.monotonic()
    ok, permanent, status, answer, error = False, False, None, "", ""
    try:
        if channel is None:
            raise SendFailed("the channel was deleted", permanent=True)
        if not channel.enabled:
            raise SendFailed("the channel is turned off", permanent=True)
        kind: Kind = kinds()[channel.kind]
        delivered = kind.send(Message.from_dict(notification.message),
                              destination(runtime.vault, channel),
                              transport or transport_for(settings), str(notification.id))
        ok, status, answer = True, delivered.http_status, delivered.response
    except SendFailed as exc:
        permanent, status, answer, error = exc.permanent, exc.http_status, exc.response, \
            exc.message
    except Exception as exc:  # a bug in a channel: recorded, retried like any failure
        log.exception("channel %s failed unexpectedly", notification.channel_name)
        error = f"internal error: {type(exc).__name__}: {exc}"
    duration = int((time.monotonic() - started) * 1000)
    retry_in = None
    if not ok and not permanent and number < settings.notify_max_attempts:
        retry_in = backoff(settings, number)
    values: dict[str, Any] = {"updated_at": utcnow()}
    if ok:
        values.update(status="delivered", delivered_at=utcnow(), last_error=None,
                      next_attempt_at=None)
    elif retry_in is not None:
        values.update(status="pending", last_error=error,
                      next_attempt_at=utcnow() + timedelta(seconds=retry_in))
    else:
        values.update(status="failed", last_error=error, next_attempt_at=None)
    with runtime.sessions() as db, db.begin():
        db.add(NotificationAttempt(notification_id=notification_id, number=number, ok=ok,
                                   http_status=status, response=(answer or "")[:1000],
                                   error=error[:1000], duration_ms=duration,
                                   started_at=started_at))
        db.execute(update(Notification).where(Notification.id == notification_id,
                                              Notification.status == "sending")
                   .values(**values))
    if not ok:
        log.warning("notification %s to %s, attempt %s: %s%s", notification_id,
                    notification.channel_name, number, error,
                    f"; retrying in {retry_in:g}s" if retry_in is not None else "")
    return retry_in

