"""Claim, send, record: the attempt path run by the deliver tasks (and by a detect task for the first
attempts it wrote, already claimed: ``send_claimed``), and the sweeper.

Contract: a delivery is claimed by a conditional UPDATE (state SENDING + a claim token) before any
network call, so two workers never send it at once; the network call happens outside any
transaction; the outcome is recorded in one transaction (attempt row, delivery row, endpoint streak,
fallback rows, state report). A worker that dies mid-send leaves the row SENDING with an old
``claimed_at``: after the lease the sweeper claims it again and it is sent with the same webhook-id
(at-least-once; receivers dedupe on webhook-id). Retries are rows with a future ``next_attempt_at``
found by the sweeper, never Celery countdowns.

Two clocks, on purpose: ``next_attempt_at`` is business time (``clock.now()``, which tests step),
while ``claimed_at`` and the lease are judged by the database's clock alone, the one clock every
worker and sweeper shares, so a host clock step or skew can neither make a live claim look expired
(sent twice) nor a dead one look fresh (stuck for hours). A recording transaction that PostgreSQL
aborts to break a deadlock is retried: the message already went out, and giving up would leave the
rows SENDING until the lease ends and then send them again.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from queue import SimpleQueue

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Now

from apps.core import clock, ratelimit

from . import breaker, fastpath, messages, stragglers
from .crypto import CryptoError
from .models import DUE_STATES, Channel, Delivery, DeliveryState, NotificationChannel, WebhookEndpoint
from .secrets import active_secrets, channel_secrets
from .signing import sign
from .transports import AttemptResult, OutboundMessage, TransportError, WebhookTransport, get_transport

logger = logging.getLogger("apps.delivery")

# A batch's network calls overlap; the database work stays on the task's thread. Room beyond a
# batch's 16 or so concurrent sends: stragglers (stragglers.py, at most 8 per silent destination)
# keep their thread until their deadline and must not leave the next batches' sends queueing.
SEND_THREADS = 24
# First attempts are rung on commit; the sweeper is only the backstop for a lost doorbell. Claiming them
# sooner would race the queued doorbells under backlog (the rows would wait behind them, claimed).
FIRST_ATTEMPT_GRACE = timedelta(seconds=30)


def lease() -> timedelta:
    """How long a claim holds before the sweeper may take the row back (worker presumed dead)."""
    return timedelta(seconds=getattr(settings, "DELIVERY_CLAIM_LEASE_SECONDS", 60))


def lease_expired_q() -> Q:
    """SENDING rows whose claim is older than the lease by the database's clock (``claimed_at`` is
    always the database's time; see the module docstring)."""
    return Q(state=DeliveryState.SENDING, claimed_at__lt=Now() - lease())


def due_q(now: datetime) -> Q:
    """Rows a worker may claim now: due ones (by business time ``now``), and SENDING ones whose
    lease expired."""
    return Q(state__in=DUE_STATES, next_attempt_at__lte=now) | lease_expired_q()


def claim(ids: Iterable[int], claim_token: str | None = None) -> list[Delivery]:
    """Claim ``ids`` (or renew the sweeper's claim ``claim_token`` on them); return the rows held,
    with their endpoint loaded.

    One conditional UPDATE (``fastpath.claim_rows``: the rows as this claim left them), then the
    batch's endpoints in one query (a batch has few of them; the tenants only a failure needs are
    loaded when it is recorded: ``recording``). Rows someone else holds, already finished or not yet
    due are silently left out.
    """
    ids = list(ids)
    if not ids:
        return []
    rows = fastpath.claim_rows(ids, claim_token, clock.now())
    if not rows:
        return []
    endpoint_ids = {d.endpoint_id for d in rows if d.endpoint_id}
    endpoints = WebhookEndpoint.objects.in_bulk(endpoint_ids) if endpoint_ids else {}
    endpoint_field = Delivery._meta.get_field("endpoint")
    for d in rows:
        # As select_related would: an endpoint deleted meanwhile is None, its id kept on the row.
        endpoint_field.set_cached_value(d, endpoints.get(d.endpoint_id) if d.endpoint_id else None)
    return rows


def sweep(*, limit: int = 500, chunk: int = 50) -> dict[str, int]:
    """Claim due and stuck rows in one batch UPDATE and enqueue them in chunks (``deliver.batch``).

    Returns counts. A broker failure leaves the rows SENDING; the next sweep after the lease takes
    them back, so nothing is lost.
    """
    from .tasks import deliver_batch

    now = clock.now()
    due = list(due_rows(now, limit))
    # Downgraded endpoints: their rows are parked (not in due_rows); they get probes, not every row.
    downgraded = breaker.downgraded_endpoints()
    stuck = list(Delivery.objects.filter(lease_expired_q()).values_list("pk", flat=True)[:limit])
    ids: list[int] = []
    token = uuid.uuid4().hex
    with transaction.atomic():
        # The probes' room counts the sends in flight: one sweeper at a time reads it and claims, or
        # two sweepers (scale-out) would both see room for one and send a dead endpoint two.
        probes = breaker.probes(downgraded, now) if downgraded and fastpath.probe_turn() else []
        if due or stuck or probes:
            Delivery.objects.filter(Q(pk__in=due + stuck) & due_q(now) | Q(pk__in=probes) & breaker.parked_q()).update(
                state=DeliveryState.SENDING, claim_token=token, claimed_at=Now())
            ids = list(Delivery.objects.filter(claim_token=token, state=DeliveryState.SENDING)
                       .values_list("pk", flat=True))
    for i in range(0, len(ids), chunk):  # rung once the claim is committed, where a worker can see it
        deliver_batch.delay(ids[i:i + chunk], claim_token=token)
    # After the claim: a restored endpoint's next chunk is made due once this sweep took the last one.
    _breaker_upkeep(downgraded, now)
    if stuck:
        logger.warning("reclaimed deliveries whose sender vanished", extra={"count": len(stuck)})
    return {"claimed": len(ids), "stuck": len(stuck)}


def due_rows(now: datetime, limit: int):
    """The ids of the rows due now, oldest first, from delivery_due (``next_attempt_at <= now``).
    Rows behind a breaker are parked (no next_attempt_at) and never in range; the endpoint test
    leaves out the few not parked yet (``breaker.hold`` parks them at this sweep)."""
    return (Delivery.objects.filter(Q(attempts=0, next_attempt_at__lte=now - FIRST_ATTEMPT_GRACE)
                                    | Q(attempts__gt=0, next_attempt_at__lte=now), state__in=DUE_STATES)
            .filter(Q(endpoint__isnull=True) | Q(endpoint__downgraded_at__isnull=True) | Q(endpoint__enabled=False))
            .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


# Seconds of a sweep that the breakers' upkeep may spend past its first chunk per endpoint
# (expiring a backlog whose rows expire together).
UPKEEP_BUDGET_SECONDS = 1.0
_upkeep_clock = time.monotonic  # what the budget is measured with (a test steps it)


def _breaker_upkeep(downgraded: list[int], now: datetime) -> None:
    """The breakers' care: ``breaker.hold`` for each downgraded endpoint it has work for, then
    ``breaker.drain`` (rows parked behind endpoints no longer downgraded). A failure of one (a row
    that cannot be rendered, a lock timeout) is logged: it must stop neither the others nor the
    sweep that every other endpoint's deliveries depend on."""
    try:
        needing = breaker.needing_hold(downgraded, now)
    except Exception:
        logger.exception("reading which downgraded endpoints need upkeep failed; retried at the next sweep")
        needing = []
    # A full chunk of expired rows may leave more: many expire together when a backlog was renewed
    # at once (retry_deliveries). After one chunk each, the endpoints that had a full one get more,
    # in turn, within the budget: not a chunk per sweep, which left the last rows of 100,000 parked
    # ~400 s past their expiry (the watchdog reports that as an upkeep that fails).
    more = [endpoint_id for endpoint_id in needing if _hold(endpoint_id, now)]
    budget_ends = _upkeep_clock() + UPKEEP_BUDGET_SECONDS
    while more and _upkeep_clock() < budget_ends:
        endpoint_id = more.pop(0)
        if _hold(endpoint_id, now):
            more.append(endpoint_id)
    try:
        breaker.drain(now)
    except Exception:
        logger.exception("releasing rows parked behind restored endpoints failed; retried at the next sweep")


def _hold(endpoint_id: int, now: datetime) -> bool:
    """``breaker.hold`` for one endpoint, in its own transaction (one bad row holds up its own
    endpoint only); True when it failed a full chunk of expired rows, so more may be left."""
    try:
        return breaker.hold([endpoint_id], now)["expired"] >= breaker.CHUNK
    except Exception:
        logger.exception("a downgraded endpoint's upkeep failed; retried at the next sweep",
                         extra={"endpoint_id": endpoint_id})
        return False


@dataclass
class Outcome:
    delivery: Delivery
    started_at: datetime
    result: AttemptResult | None = None
    error: TransportError | None = None
    unsent: bool = False  # not started: it could have outlasted its claim (``_submit``); released
    # The webhook URL it went to: the endpoint's URL may change while a send is out, and what the
    # old receiver answered is not the new one's record (``recording._replay_endpoints``).
    url: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def latency_ms(self) -> int:
        value = self.result.latency_ms if self.result else self.error.latency_ms
        return max(0, value or 0)

    @property
    def status_code(self) -> int | None:
        return self.result.status_code if self.result else self.error.status_code


def build_message(delivery: Delivery, now: datetime) -> OutboundMessage:
    """The outbound message for one attempt; webhook signatures are made fresh (timestamp per attempt).

    Raises ``TransportError`` (permanent) when the endpoint is gone or disabled, and a transient one
    when its secret cannot be decrypted (a key configuration problem the operator can fix).
    """
    if delivery.channel != Channel.WEBHOOK:
        fields = messages.decode(delivery.body)
        headers = {"X-PowerX-Alert-ID": str(delivery.alert_id)} if delivery.alert_id else {}
        return OutboundMessage(msg_id=delivery.msg_id, recipients=tuple(delivery.recipients),
                               subject=fields.get("subject", ""), text=fields.get("text", ""),
                               html=fields.get("html", ""), headers=headers)
    endpoint = delivery.endpoint
    if endpoint is None:
        raise TransportError("the webhook endpoint was deleted", permanent=True, latency_ms=0)
    if not endpoint.enabled:
        raise TransportError(f"the webhook endpoint is disabled ({endpoint.disabled_reason or 'by the tenant'})",
                             permanent=True, latency_ms=0)
    try:
        # Shared endpoint instances (_share_endpoints) decrypt once per batch.
        secrets = getattr(endpoint, "_batch_secrets", None)
        if secrets is None:
            secrets = endpoint._batch_secrets = active_secrets(endpoint, now)
    except CryptoError as exc:
        raise TransportError(str(exc), latency_ms=0) from exc
    body = bytes(delivery.body)
    headers = sign(body=body, msg_id=delivery.msg_id, timestamp=int(time.time()), secrets=secrets)
    headers["X-PowerX-Alert-ID"] = str(delivery.alert_id or "")
    return OutboundMessage(msg_id=delivery.msg_id, url=endpoint.url, body=body, headers=headers)


def send_to_channel(delivery: Delivery) -> AttemptResult:
    """One attempt to a tenant's configured channel: its frozen ChannelRequest, the channel's config
    and decrypted secrets (once per batch: rows of one channel share the instance)."""
    from .transports import channels as channel_kinds

    channel = delivery.notification_channel
    if channel is None:
        raise TransportError("the channel was deleted", permanent=True, latency_ms=0)
    if not channel.enabled:
        raise TransportError(f"the channel {channel.name} is disabled", permanent=True, latency_ms=0)
    try:
        config = getattr(channel, "_batch_config", None)
        if config is None:
            config = channel._batch_config = {**(channel.config or {}), **channel_secrets(channel)}
    except CryptoError as exc:
        raise TransportError(str(exc), latency_ms=0) from exc
    request = channel_kinds.ChannelRequest.decode(bytes(delivery.body))
    return channel_kinds.send(channel.kind, request, config, timeout=settings.CHANNEL_TIMEOUT_SECONDS, keep_alive=True)


def send(delivery: Delivery) -> Outcome:
    """One attempt over the delivery's channel; never raises (the error is in the outcome)."""
    started = clock.now()
    url = ""
    try:
        if delivery.notification_channel_id:
            return Outcome(delivery, started, result=send_to_channel(delivery))
        message = build_message(delivery, started)
        url = message.url if delivery.channel == Channel.WEBHOOK else ""
        transport = _WEBHOOK if delivery.channel == Channel.WEBHOOK else get_transport(delivery.channel)
        return Outcome(delivery, started, result=transport.send(message), url=url)
    except TransportError as exc:
        return Outcome(delivery, started, error=exc, url=url)
    except Exception as exc:  # noqa: BLE001 - a bug must cost one attempt, not the whole batch
        logger.exception("unexpected error sending a delivery", extra={"delivery_id": delivery.pk})
        return Outcome(delivery, started, error=TransportError(f"internal error: {exc}"[:300], latency_ms=0))


# Settings are read at send time (config=None); connections to the checked address are kept per
# sending thread, so a batch to one endpoint reuses them instead of connecting once per delivery.
_WEBHOOK = WebhookTransport(keep_alive=True)
_pool: tuple[int, SendThreads] | None = None


class SendThreads:
    """Up to ``size`` threads running queued calls: a ThreadPoolExecutor without its Future and work
    item per call (the caller's own future carries the result). In a storm ``submit`` was ~6 % of
    the worker's GIL-held samples (py-spy), part of it the garbage collector its allocations set off.
    Threads never exit (the idle count below relies on it); they are daemons: a worker's warm
    shutdown drains what matters (``stragglers``) before it exits. With no thread to be had, a call
    runs on the caller's thread, as the executor's users did when it refused."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._calls: SimpleQueue = SimpleQueue()
        self._idle = threading.Semaphore(0)  # one permit per call a thread finished: it waits for more
        self._lock = threading.Lock()
        self._threads = 0

    def run(self, fn, *args) -> None:
        self._calls.put((fn, args))
        if self._idle.acquire(blocking=False):  # a thread is waiting for work: it takes this call
            return
        with self._lock:
            if self._threads >= self._size:
                return  # all busy: the first to finish takes it
            self._threads += 1
            number = self._threads
        try:
            threading.Thread(target=self._serve, name=f"deliver-send-{number}", daemon=True).start()
        except RuntimeError:  # can't start new thread (a process limit, interpreter shutdown)
            with self._lock:
                self._threads -= 1
                alone = self._threads == 0
            if alone:  # nobody would ever take it
                self._run_one(self._calls.get())

    def _serve(self) -> None:
        while True:
            self._run_one(self._calls.get())
            self._idle.release()

    @staticmethod
    def _run_one(call: tuple) -> None:
        fn, args = call
        try:
            fn(*args)
        except BaseException:  # noqa: BLE001 - a bug costs that call, not the thread
            logger.exception("send thread call failed")


def _executor() -> SendThreads:
    """This process's send threads (made after a prefork fork, never inherited: threads do not
    survive fork). They live as long as the process, and with them their kept connections."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), SendThreads(SEND_THREADS))
    return _pool[1]


def process(ids: Iterable[int], claim_token: str | None = None, *, straggler_wait: float | None = None) -> int:
    """Claim, send (concurrently when several), record together. Returns how many attempts were made.

    ``straggler_wait`` (the deliver tasks pass DELIVERY_STRAGGLER_SECONDS): record the sends that
    finished within it and leave the rest to this process's straggler thread (``stragglers``), and
    put back the rows of destinations already holding DELIVERY_STRAGGLERS_PER_DESTINATION of them.
    None (direct calls, tests): wait for every send and record them all before returning.
    """
    return send_claimed(claim(ids, claim_token), straggler_wait=straggler_wait)


def send_claimed(rows: list[Delivery], *, straggler_wait: float | None = None) -> int:
    """``process`` for rows this process already holds (claimed, endpoint loaded): the detect task's
    first attempts (``outbox.first_attempts_here``), and ``process`` after its claim."""
    if not rows:
        return 0
    _share_endpoints(rows)
    rows = _within_rate_limits(rows)
    if straggler_wait is not None:
        rows = _without_clogged_destinations(rows)
    if not rows:
        return 0
    if len(rows) == 1 and straggler_wait is None:
        _record([send(rows[0])])
        return 1
    started = time.monotonic()
    futures = _submit(rows)
    if straggler_wait is None:
        wait([f for f, _ in futures])
    else:
        # Sends to a destination that already has a straggler running, or had a slow one end just
        # now, are not waited for at all: a silent receiver costs each process one wait, not one
        # per batch it appears in nor one per timeout.
        suspects = _stragglers().suspects(slow_after=stragglers.SLOW_FACTOR * straggler_wait)
        _wait_for_batch([f for f, d in futures if destination(d) not in suspects], straggler_wait, started)
    done = {f for f, _ in futures if f.done()}
    late = {f for f, _ in futures} - done
    if late:
        _stragglers().add((f, destination(d), started) for f, d in futures if f in late)
    if done:
        _record([f.result() for f, _ in futures if f in done])
    return len(rows)


# Once all but a tenth of a batch's sends are done, each send still running gets as long as those
# took (at least this), counted from its own start, within the straggler wait: a send queued behind
# its destination's others gets its due, while one that has run since the batch began (a receiver
# gone silent) is handed to the straggler thread at once, and the detect tasks queued behind this
# task on the same process do not wait for it.
TAIL_SECONDS = 0.1


def _wait_for_batch(futures: list[Future], timeout: float, started: float) -> None:
    """Wait for ``futures`` at most ``timeout`` seconds from ``started`` (monotonic), and less once
    all but a tenth of them are done (TAIL_SECONDS). A future's ``send_started`` (monotonic, set
    by ``_submit`` when its send begins) dates its allowance; one not begun yet gets it from now."""
    if not futures:
        return
    tail = len(futures) // 10  # 0 for a small batch: it waits for every send, as before
    left = [len(futures)]
    lock = threading.Lock()
    most_done = threading.Event()

    def one_done(_future: Future) -> None:
        with lock:
            left[0] -= 1
            if left[0] <= tail:
                most_done.set()

    for future in futures:
        future.add_done_callback(one_done)
    if not most_done.wait(max(0.0, started + timeout - time.monotonic())):
        return
    tail_began = time.monotonic()
    allowance = max(TAIL_SECONDS, tail_began - started)

    def deadline(f: Future) -> float:
        return min(started + timeout, getattr(f, "send_started", tail_began) + allowance)

    running = [f for f in futures if not f.done()]
    while running:
        now = time.monotonic()
        running = [f for f in running if not f.done() and deadline(f) > now]
        if running:
            wait(running, timeout=min(map(deadline, running)) - now, return_when=FIRST_COMPLETED)


def send_timeout(delivery: Delivery) -> float:
    """The longest one send of this row can take (its transport's total deadline)."""
    if delivery.notification_channel_id:
        return settings.CHANNEL_TIMEOUT_SECONDS
    return {Channel.EMAIL: settings.EMAIL_TIMEOUT,
            Channel.SMS: settings.SMS_TIMEOUT_SECONDS}.get(delivery.channel, settings.WEBHOOK_TIMEOUT_SECONDS)


def start_budget(delivery: Delivery) -> float:
    """Seconds after its claim within which a queued send of this row may still start: one begun
    later could run past the claim's lease (its timeout on top), and the sweeper would then claim
    the row and send it again while the first send is still out. A tenth of the lease is kept as
    margin (the detect task's rows were claimed when written, before its transaction committed);
    at least half the lease."""
    lease_seconds = lease().total_seconds()
    return max(lease_seconds - send_timeout(delivery) - lease_seconds / 10, lease_seconds / 2)


def _submit(rows: list[Delivery]) -> list[tuple[Future, Delivery]]:
    """Each row's send as a future, at most DELIVERY_CONCURRENCY_PER_DESTINATION of them running at
    once per destination: the next row of a destination starts when one of its sends ends, while
    other destinations' rows go out meanwhile.

    Rows still queued behind their destination's sends when ``start_budget`` runs out (a slow or
    silent receiver and many rows for it) are not sent: their futures get an ``unsent`` outcome and
    ``_record`` releases the rows for a later claim, instead of sending them past their lease."""
    futures = [(Future(), d) for d in rows]
    queues: dict[str, deque] = {}
    for item in futures:
        queues.setdefault(destination(item[1]), deque()).append(item)
    lock = threading.Lock()
    pool = _executor()
    submitted = time.monotonic()
    # One destination per queue, so one kind of transport: its rows share their budget.
    start_by = {id(queue): submitted + start_budget(queue[0][1]) for queue in queues.values()}

    def run(future: Future, delivery: Delivery, queue: deque) -> None:
        future.send_started = time.monotonic()  # dates its allowance in _wait_for_batch
        if future.send_started >= start_by[id(queue)]:  # waited that long for a free send thread
            future.set_result(Outcome(delivery, clock.now(), unsent=True))
        else:
            try:
                outcome = send(delivery)
                future.send_ended = time.monotonic()  # its own duration, for stragglers.suspects
                future.set_result(outcome)
            except BaseException as exc:  # send itself never raises; a bug shows where the result is read
                future.set_exception(exc)
        start_next(queue)

    def start_next(queue: deque, first: bool = False) -> None:
        with lock:
            if not queue:
                return
            if first or time.monotonic() < start_by[id(queue)]:
                future, delivery = queue.popleft()
                late = []
            else:
                late = list(queue)
                queue.clear()
        if late:
            now = clock.now()
            for future, delivery in late:
                future.set_result(Outcome(delivery, now, unsent=True))
            return
        pool.run(run, future, delivery, queue)

    limit = settings.DELIVERY_CONCURRENCY_PER_DESTINATION
    for queue in queues.values():
        for _ in range(min(limit, len(queue))):
            start_next(queue, first=True)
    return futures


def destination(delivery: Delivery) -> str:
    """Where a row goes, for the per-destination straggler cap: its endpoint, its channel, or the
    email/SMS provider."""
    if delivery.endpoint_id:
        return f"endpoint:{delivery.endpoint_id}"
    if delivery.notification_channel_id:
        return f"channel:{delivery.notification_channel_id}"
    return str(delivery.channel)


def _stragglers() -> stragglers.Stragglers:
    return stragglers.for_process(_record)


def _without_clogged_destinations(rows: list[Delivery]) -> list[Delivery]:
    """Rows whose destination can take another send now; the rows of a destination already holding
    its cap of slow stragglers (a receiver that does not answer) wait a little (the slow threshold,
    2 s by default; the sweeper brings them back), no attempt counted."""
    slow_after = stragglers.SLOW_FACTOR * settings.DELIVERY_STRAGGLER_SECONDS
    clogged = _stragglers().clogged(settings.DELIVERY_STRAGGLERS_PER_DESTINATION, slow_after)
    if not clogged:
        return rows
    until = clock.now() + timedelta(seconds=slow_after)
    held = [d for d in rows if destination(d) in clogged]
    _put_back([(d, until) for d in held])
    logger.warning("destination not answering: deliveries wait for its pending sends",
                   extra={"count": len(held), "destinations": sorted({destination(d) for d in held})})
    return [d for d in rows if destination(d) not in clogged]


RECORD_TRIES = 3
# deadlock_detected, serialization_failure: PostgreSQL rolled the whole transaction back and says
# to run it again.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}


def _record(outcomes: list[Outcome]) -> None:
    """``record_outcomes``, run again (on rows read afresh) when the database aborted it to break a
    deadlock, e.g. with an escalation that holds the alert row and waits for the endpoint row this
    transaction locked. The sends already happened: if this raised, the rows would stay SENDING
    until the lease ends and the sweeper would send them all again."""
    from .recording import record_outcomes

    unsent = [(o.delivery, clock.now()) for o in outcomes if o.unsent]
    if unsent:
        _put_back(unsent)
        logger.warning("deliveries released unsent: started now, they could outlast their claim",
                       extra={"count": len(unsent), "destinations": sorted({destination(d) for d, _ in unsent})})
        outcomes = [o for o in outcomes if not o.unsent]
        if not outcomes:
            return
    for attempt in range(1, RECORD_TRIES + 1):
        try:
            record_outcomes(outcomes)
            return
        except OperationalError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if attempt == RECORD_TRIES or sqlstate not in _RETRYABLE_SQLSTATES or connection.in_atomic_block:
                raise
            logger.warning("recording the outcomes was rolled back by the database, recording again",
                           extra={"sqlstate": sqlstate, "attempt": attempt, "count": len(outcomes)})
            outcomes = _reread(outcomes)


def _reread(outcomes: list[Outcome]) -> list[Outcome]:
    """The outcomes on their rows as the database holds them now (the rolled-back attempt may have
    changed the instances in memory), still under this process's claim tokens: a claim lost
    meanwhile stays lost and the recording leaves that row to its new holder."""
    fresh = (Delivery.objects.select_related("endpoint", "tenant")
             .in_bulk([o.delivery.pk for o in outcomes]))
    again = []
    for o in outcomes:
        d = fresh.get(o.delivery.pk)
        if d is None:  # deleted meanwhile (tenant removed): nothing left to record on
            continue
        d.claim_token = o.delivery.claim_token
        again.append(Outcome(d, o.started_at, result=o.result, error=o.error, url=o.url))
    _share_endpoints([o.delivery for o in again])
    return again


def _share_endpoints(rows: list[Delivery]) -> None:
    """Rows of one endpoint share one instance, so its secrets are decrypted once per batch."""
    seen: dict[int, object] = {}
    for d in rows:
        if d.endpoint_id:
            d.endpoint = seen.setdefault(d.endpoint_id, d.endpoint)


def _within_rate_limits(rows: list[Delivery]) -> list[Delivery]:
    """Rows whose channel may send now; the others go back to waiting until the channel's window
    ends (no attempt counted, nothing dropped), so a burst to Slack or PagerDuty queues instead of
    getting the key banned. Also loads each row's channel once per batch."""
    channel_ids = {d.notification_channel_id for d in rows if d.notification_channel_id}
    if not channel_ids:
        return rows
    channels = NotificationChannel.objects.in_bulk(channel_ids)
    field = Delivery._meta.get_field("notification_channel")
    now = clock.now()
    wanted: dict[int, int] = {}
    for d in rows:
        channel = channels.get(d.notification_channel_id) if d.notification_channel_id else None
        if d.notification_channel_id:
            field.set_cached_value(d, channel)
        if channel is not None:
            wanted[channel.pk] = wanted.get(channel.pk, 0) + 1
    budget = _channel_budgets({pk: channels[pk] for pk in wanted}, wanted)
    allowed, deferred = [], []
    for d in rows:
        channel = d.notification_channel if d.notification_channel_id else None
        if channel is None:
            allowed.append(d)
        elif budget[channel.pk][0] > 0:
            budget[channel.pk][0] -= 1
            allowed.append(d)
        else:
            deferred.append((d, now + timedelta(seconds=budget[channel.pk][1])))
    _put_back(deferred)
    if deferred:
        logger.info("channel rate limit: deliveries wait for the next window", extra={"count": len(deferred)})
    return allowed


def _channel_budgets(channels: dict[int, NotificationChannel], wanted: dict[int, int]) -> dict[int, list[int]]:
    """{channel id: [rows it may send now, seconds until its window ends]}: the batch's rows of every
    channel counted against the channel's per-minute limit in one Redis pipeline (one round trip per
    batch, not per row). The counter keeps what was asked, as ``ratelimit.hit`` does, so a window
    once full stays full for every worker. Without the cache every row may go (fail open, logged)."""
    window = ratelimit.current_window(60)
    keys = {pk: f"delivery:channel:{pk}" for pk in wanted}
    try:
        totals = ratelimit.add({keys[pk]: n for pk, n in wanted.items()}, seconds=60, window=window)
    except Exception:
        logger.warning("channel rate limit: cache unavailable; sending", exc_info=True)
        return {pk: [n, 0] for pk, n in wanted.items()}
    budgets = {}
    for pk, n in wanted.items():
        channel = channels[pk]
        limit = channel.rate_limit_per_minute or settings.CHANNEL_RATE_LIMITS.get(channel.kind, 60)
        before = totals[keys[pk]] - n
        budgets[pk] = [max(0, min(n, limit - before)), window.retry_after]
    return budgets


def _put_back(rows: list[tuple[Delivery, datetime]]) -> None:
    """Release claimed rows unsent, due again at the given time (no attempt counted, nothing dropped)."""
    groups: dict[tuple, list[int]] = {}
    for d, until in rows:
        # The sweeper takes first attempts FIRST_ATTEMPT_GRACE after they are due (they are normally
        # rung); a deferred one has no doorbell left, so it is made due that much earlier.
        due = until - FIRST_ATTEMPT_GRACE if d.attempts == 0 else until
        state = DeliveryState.DOWNGRADED if d.downgraded_at else DeliveryState.PENDING
        groups.setdefault((state, due, d.claim_token), []).append(d.pk)
    for (state, due, token), ids in groups.items():  # one UPDATE per group, not per row
        Delivery.objects.filter(pk__in=ids, state=DeliveryState.SENDING, claim_token=token).update(
            state=state, claim_token="", next_attempt_at=due)
