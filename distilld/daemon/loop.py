"""The daemon's loop: one thread, a batch at a time.

consume a batch → per input partition: decode (bad → DLQ), time and key,
grade and select (one reducer per partition, windows per key) → produce the
selected records with a ``distilld-weight`` header → commit each partition
up to where every output has been acknowledged.

Partitions the group assigns reach the consumer through :mod:`distilld.daemon.assignment` (their commits and
state read first); a partition's part of a batch goes through the reducer in :mod:`distilld.daemon.records`.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections.abc import Callable
from itertools import groupby
from types import FrameType
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from distilld import __version__
from distilld.codecs import make_decoder
from distilld.codecs.registry import RegistryUnavailable
from distilld.daemon.assignment import LOOKUP_TIMEOUT_S, Assigner
from distilld.daemon.checkpoint import Checkpoints
from distilld.daemon.clients import (
    TOKEN_ERROR,
    call_by,
    consumer_config,
    error_code,
    error_text,
    producer_config,
    refused_token,
    state_client_config,
)
from distilld.daemon.endpoints import Endpoints
from distilld.daemon.fields import RecordFields
from distilld.daemon.limits import TopicLimits
from distilld.daemon.memory import memory_limit, windows_size, windows_warning
from distilld.daemon.metrics import DaemonMetrics
from distilld.daemon.output import Output
from distilld.daemon.partition import TP, Partition, partition_names
from distilld.daemon.progress import PartitionProgress
from distilld.daemon.records import RecordPath
from distilld.daemon.repeats import Repeats
from distilld.daemon.state import NoInputTopic, StateStore
from distilld.daemon.transactions import TransactionFatal, Transactions
from distilld.daemon.waiting_lag import WaitingLag
from distilld.features import build_graders
from distilld.filters import Filters
from distilld.graders import GradingFunction
from distilld.processor import DistilledProcessor
from distilld.settings import Settings

__all__ = ["Daemon", "FatalRecordError"]

log = logging.getLogger("distilld")

AUTH_ERRORS = (KafkaError._SSL, KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
PERIODIC_WAIT_S = 1.0  # longest a periodic checkpoint waits for outputs: the loop keeps turning
NO_INPUT_RETRY_S = 2.0  # while no input topic exists, how often the cluster's topics are listed again
# /readyz: not ready once the loop has not turned, or the consumer's statistics (served only when the loop polls)
# have not come, for this many statistics intervals (at least STALE_MIN_S): librdkafka keeps a broker that stopped
# answering UP in its statistics until its requests time out, and a stuck loop serves no statistics at all
STALE_INTERVALS = 5
STALE_MIN_S = 15.0
CLOSE_SHARE = (2.0, 0.2)  # a stop keeps min(2 s, 20 % of shutdown_timeout_s) of its deadline for the consumer's close


class FatalRecordError(RuntimeError):
    """``processing.on_error: fail`` met a record it cannot decode."""


def tune_gc() -> None:
    """The loop makes hundreds of thousands of short-lived, acyclic objects per
    second (decoded records, messages), which reference counting frees. With
    the default thresholds the cyclic collector runs every 700 allocations
    and walks each live batch again and again (measured: half the bare
    loop's time). Collect less often, and leave start-up objects out of it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Daemon:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.graders: dict[str, GradingFunction] = build_graders(settings.features)
        self.graders_may_raise = any(g.may_raise for g in self.graders.values())
        self.filters = Filters(settings.filters)
        self.fields = RecordFields(settings.reducer, clock)
        self.clock = clock
        self.partitions: dict[TP, Partition] = {}
        self.metrics = DaemonMetrics(list(self.graders))
        self.stopping = False
        self.stop_requested: float | None = None  # when SIGTERM/SIGINT came (monotonic): the stop works to it
        self.failure: str | None = None
        self.paused = False
        self.joined = False  # the group has given us an assignment (maybe empty)
        self.broker_up = False
        self.subscribed = False
        self._last_stats = time.monotonic()  # the consumer's last statistics (readiness)
        self._last_commit = self._last_refresh = self._last_snapshot = time.monotonic()
        self._batch_started = time.monotonic()  # when the batch being processed was consumed
        # when batches began to wait on the schema registry (_registry_wait); kept while the waits end with the
        # batch read again, cleared by a batch processed to its end: /readyz says so, not that the brokers or the
        # loop are stuck (no statistics are served while a batch waits, the consumer not polled)
        self._registry_since: float | None = None
        self._registry_held = False  # the last batch ended waiting on the schema registry (read again)
        self._registry_until = 0.0  # when the last wait on it ends: the registry is named only until a while after
        self._in_batch = False  # a batch is being processed (its waits on the registry, and the requests between)
        self._repeats = Repeats(60.0)
        self.missing_topics: set[str] = set()  # subscribed topics the brokers say do not exist
        self._subscribe_at = 0.0  # monotonic time of the next try to subscribe (while no input topic exists)
        self.assigner = Assigner(self)  # partitions assigned by the group, on their way to the consumer
        # revoked or lost partitions whose outputs still wait for acknowledgement (still in output.in_flight):
        # their oldest dates distilld_outputs_unacknowledged_age_seconds until they are acknowledged
        self._leaving: list[PartitionProgress] = []
        self.record_path = RecordPath(self)  # a partition's records through the reducer to their outputs
        # bound before any client exists: a port in use stops start-up without a client's log lines; serving
        # at once: a probe during the engine's compilation (seconds) is answered, not left hanging
        m = settings.metrics
        self.endpoints = (
            Endpoints(m.host, m.port, self.metrics.registry, m.health_timeout_s, self.readiness, self.metrics.ready)
            if m.port
            else None
        )
        self._starting("starting: compiling the engine")
        probe = self._new_reducer()
        probe.warm_up()
        self._starting("starting: creating the Kafka clients")
        self.state_bytes_per_key = probe.bytes_per_key
        self.decode = make_decoder(
            settings.format, wait=self._registry_wait, on_registry_error=self.metrics.registry_errors.inc
        )
        consumer_conf = consumer_config(settings)
        # how long a batch may wait on the schema registry (_registry_wait)
        self._hold_limit_s = float(consumer_conf.get("max.poll.interval.ms", 300_000)) / 2000.0
        self._stats_interval_s = float(consumer_conf.get("statistics.interval.ms", 0)) / 1000.0  # 0: none
        self.consumer = Consumer(
            {
                **consumer_conf,
                "on_commit": self._on_commit,
                "stats_cb": self._on_stats,
                "error_cb": self._on_client_error,
            }
        )
        exactly_once = settings.processing.guarantee == "exactly_once"
        timeout = settings.processing.shutdown_timeout_s
        producer_conf = producer_config(settings)
        # a refused record's size against its topic's max.message.bytes says whether it is at fault, unless the
        # producer compresses: then the broker counts the compressed batch, which distilld does not know
        self.compression = str(producer_conf.get("compression.type", producer_conf.get("compression.codec", "none")))
        self.output = Output(
            Producer({**producer_conf, "error_cb": self._on_client_error}),
            self.metrics,
            transactional=exactly_once,
            waiting=self._alive,
            on_error=settings.processing.on_error,
            dlq_topic=settings.kafka.dlq_topic,
            fail=self._fail,
            # librdkafka fills a batch up to this: a record larger than it travels alone (output.blamed)
            batch_bytes=min(
                int(producer_conf.get("batch.size", 1_000_000)), int(producer_conf.get("message.max.bytes", 1_000_000))
            ),
            limits=TopicLimits() if self.compression == "none" else None,
            remake=None if exactly_once else lambda: Producer({**producer_conf, "error_cb": self._on_client_error}),
            broker_up=lambda: self.broker_up,  # the consumer's statistics: a broker answers
        )
        # librdkafka times a request out after socket.timeout.ms, and the coordinator aborts a transaction open
        # transaction.timeout.ms: a transactional call still running past both never returns
        stuck_ms = float(producer_conf.get("transaction.timeout.ms", 60_000)) + float(
            producer_conf.get("socket.timeout.ms", 60_000)
        )
        stuck_s = stuck_ms / 1000.0
        self.txn = Transactions(self.output.producer, timeout, stuck_s=stuck_s) if exactly_once else None
        if exactly_once:
            # the coordinator aborts a transaction open longer than transaction.timeout.ms: a batch held longer
            # on the registry would lose the work already in it (redone, not duplicated, but lost time)
            txn_timeout_s = float(producer_conf.get("transaction.timeout.ms", 60_000)) / 1000.0
            self._hold_limit_s = min(self._hold_limit_s, txn_timeout_s / 2)
        self.state = StateStore(
            settings.kafka.state_topic_name(), {**state_client_config(settings), "error_cb": self._on_client_error}
        )
        self.checkpoints = Checkpoints(
            self.partitions, self.consumer, self.output, self.txn, self.state, self.metrics, timeout,
            rewind=self._rewind, fail=self._fail,
        )  # fmt: skip
        # the lag of partitions waiting for their state, which librdkafka's statistics do not cover
        # librdkafka's isolation.level defaults to read_committed: the consumer's lag then counts to the LSO
        read_committed = consumer_conf.get("isolation.level", "read_committed") == "read_committed"
        self.waiting_lag = WaitingLag(self.metrics, self.state.admin, read_committed, LOOKUP_TIMEOUT_S)
        self._starting(None)

    @property
    def pending(self) -> list[TopicPartition]:
        """Partitions assigned by the group whose committed offsets are not read yet (:class:`Assigner`)."""
        return self.assigner.pending

    @pending.setter
    def pending(self, partitions: list[TopicPartition]) -> None:
        self.assigner.pending = partitions

    @property
    def restoring(self) -> dict[TP, int]:
        """Partitions assigned by the group waiting for their state, with their committed offsets (-1: none)."""
        return self.assigner.restoring

    @property
    def records_consumed(self) -> int:
        """Records read from the input topics so far (:class:`RecordPath`)."""
        return self.record_path.records_consumed

    def _starting(self, doing: str | None) -> None:
        """What start-up is doing, for /readyz (None: done, :meth:`readiness` answers from here)."""
        if self.endpoints is not None:
            self.endpoints.beat()
            self.endpoints.starting = doing
            self.endpoints.start()

    # -- lifecycle -------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def request_stop(self) -> None:
        """Stop: the loop ends after what it is doing, and :meth:`shutdown` works to ``shutdown_timeout_s``
        from now, not from when the loop gets there (a commit waiting for absent brokers may take as long)."""
        if self.stop_requested is None:
            self.stop_requested = time.monotonic()
        self.stopping = True

    def readiness(self) -> tuple[bool, str]:
        if self.stopping:  # partitions assigned since are not looked up: not named as waiting for a retry
            return False, "stopping: nothing more is read" if self.failure is None else f"stopping: {self.failure}"
        if self.checkpoints.unfinished:
            # nothing is consumed meanwhile, so the consumer's statistics behind broker_up are not served either;
            # nor are the commits or the state of partitions waiting for them read
            return False, "the open transaction is not committed yet (retrying it): nothing is read meanwhile"
        stale = _stale_s(self._stats_interval_s)
        now = time.monotonic()
        if self.endpoints is not None and (quiet := now - self.endpoints.heartbeat) > stale:
            return False, f"the processing loop has not turned for {quiet:.0f}s: it or the brokers are stuck"
        # named while a batch waits on it (a request between two waits can outlast the staleness interval), and
        # for a while after; not once no batch has waited on it since (its partitions revoked, say, or nothing
        # more read): the checks below were hidden behind it for good. Read here (the HTTP thread), not cleared
        since = self._registry_since
        if since is not None and (self._in_batch or now - self._registry_until <= stale):
            return False, (
                f"schema registry unreachable for {now - since:.0f}s: a batch waits for it up to "
                f"{self._hold_limit_s:.0f}s, then its records are read again (no broker statistics meanwhile)"
            )
        if self.subscribed and self._stats_interval_s > 0 and (quiet := now - self._last_stats) > stale:
            return False, f"no broker statistics for {quiet:.0f}s: the brokers or the loop are stuck"
        if (waiting := self.assigner.waiting()) is not None:
            return False, waiting
        if not self.broker_up:
            return False, "no broker connection"
        if self.missing_topics and not self.partitions:
            return False, f"input topic(s) not found: {', '.join(sorted(self.missing_topics))}"
        if not self.joined:
            return False, "not yet in the consumer group"
        return True, f"ready: {len(self.partitions)} partitions assigned"

    def start(self) -> None:
        tune_gc()
        if self.endpoints is not None:  # serving since they were bound (__init__)
            host = self.settings.metrics.host
            shown = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
            log.info("metrics and health on http://%s:%d/metrics", shown, self.endpoints.port)
        kafka = self.settings.kafka
        log.info(
            "distilld %s: %s → %s (group %s, rate %g, window %gs)",
            __version__,
            kafka.subscription(),
            kafka.output_topic,
            kafka.group_id,
            self.settings.reducer.rate,
            self.settings.reducer.window_seconds,
        )
        max_keys = self.settings.reducer.max_keys
        log.info(windows_size(self.state_bytes_per_key, max_keys))
        warning = windows_warning(self.state_bytes_per_key, max_keys, memory_limit())
        if warning:
            log.warning(warning)
        health, stop = self.settings.metrics.health_timeout_s, self.settings.processing.shutdown_timeout_s
        if self.endpoints is not None and health <= stop:
            log.warning(
                "metrics.health_timeout_s (%gs) is not above processing.shutdown_timeout_s (%gs): a commit waiting "
                "for brokers that do not answer holds the loop that long, and /healthz turns 503 meanwhile (a "
                "liveness probe would restart the pod)",
                health,
                stop,
            )

    def _subscribe(self) -> None:
        """Join the group once the state topic is there; a broker that does not
        answer yet is retried (logged and counted), not a crash."""
        kafka = self.settings.kafka
        if time.monotonic() < self._subscribe_at:
            time.sleep(0.1)  # waiting for an input topic; a stop still comes within 0.1 s
            return
        doing = f"check the state topic {self.state.topic}"
        try:
            if not self.state.partitions:  # checked once: a retry for the transactional producer says nothing again
                self.state.ensure_topic(kafka.reads, kafka.state_partitions, timeout_s=5.0, listed=kafka.input_topics)
            if self.txn is not None and not self.txn.ready:
                doing = "register the transactional producer with its transaction coordinator (init_transactions)"
                self.txn.init(timeout_s=5.0)
        except NoInputTopic:
            self.broker_up = True
            self.missing_topics = set(kafka.input_topics or [f"matching {kafka.input_pattern}"])
            self._subscribe_at = time.monotonic() + NO_INPUT_RETRY_S
            if self._repeats.admit("no input topic") is not None:
                log.warning(
                    "no input topic is visible (%s: missing, or no Describe permission on it): waiting for one "
                    "before creating the state topic %s, which gets as many partitions as the widest input "
                    "(or set kafka.state_partitions)",
                    kafka.subscription(), self.state.topic,
                )  # fmt: skip
            return
        except TransactionFatal as e:
            self._fail(f"transactional producer: {e}")
            return
        except (KafkaException, TimeoutError) as e:
            self.output.poll(0)  # serves the clients' error callbacks: a TLS or SASL failure stops here
            self.consumer.poll(0)  # and the consumer's, which are not served until it is subscribed
            if self.failure:
                return
            if not self.state.partitions:
                self.metrics.state_errors.inc()
            reason, code = error_text(e), error_code(e)
            if isinstance(e, TimeoutError):
                reason = str(e) or "not answered in time"
            elif not (self.broker_up or self.state.partitions) and code in _NO_BROKER:
                # no broker has answered yet (the state topic's check is the first ask): a wrong address or
                # port, most often, not the state topic
                log.warning(
                    "no broker answers at %s (kafka.bootstrap_servers: check the address and port, and that the "
                    "brokers are up) (%s); retrying", kafka.bootstrap_servers, reason,
                )  # fmt: skip
                return
            log.warning("cannot %s on %s (%s); retrying", doing, kafka.bootstrap_servers, reason)
            return
        self.broker_up = True
        self.subscribed = True
        self._last_stats = time.monotonic()  # statistics come once the loop polls the subscribed consumer
        self.missing_topics.clear()
        for name, topic in (("output_topic", kafka.output_topic), ("dlq_topic", kafka.dlq_topic)):
            if topic is not None and topic not in self.state.topics:
                log.warning(
                    "kafka.%s %s does not exist: its records wait (and are retried, counted in "
                    "distilld_produce_errors_total) until it does, unless the brokers create topics on first use",
                    name, topic,
                )  # fmt: skip
        self._read_limits()
        try:
            self.consumer.subscribe(
                kafka.subscription(), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except KafkaException as e:  # a pattern librdkafka's regex refuses, which the settings check should catch
            self._fail(f"cannot subscribe to {kafka.subscription()} ({error_text(e)})")
            return
        log.info("joining group %s on %s: waiting for partitions", kafka.group_id, kafka.subscription())

    def _read_limits(self) -> None:
        """The max.message.bytes of the topics records are written to (output.blamed): the output topic, and the
        DLQ topic when refused records go there; the state topic's chunks are far below any limit."""
        kafka = self.settings.kafka
        topics = [kafka.output_topic]
        if self.settings.processing.on_error == "dlq" and kafka.dlq_topic:
            topics.append(kafka.dlq_topic)
        if self.output.limits is None:
            log.info(
                "the producer compresses (compression.type %s): a record the brokers refuse as too large is blamed "
                "(and follows processing.on_error) only when larger than its batch.size, the topics' "
                "max.message.bytes counting compressed batches; smaller, it is retried",
                self.compression,
            )
            return
        self.output.limits.read(self.state.admin(), topics, timeout_s=5.0)

    def run(self) -> int:
        """Loop until stopped; return the exit code (0: clean stop, 1: fatal record)."""
        self.start()
        try:
            while not self.stopping:
                self.step()
        finally:
            self.shutdown()
        if self.failure:
            log.error("stopped: %s", self.failure)
            return 1
        return 0

    def step(self) -> None:
        """One batch: consume, process, produce, maybe commit."""
        proc = self.settings.processing
        if not self.subscribed:
            self._subscribe()
            if self.endpoints is not None:
                self.endpoints.beat()
            return
        if self.checkpoints.unfinished:
            # a transaction the brokers have not taken yet: nothing more goes into it, nothing is read
            self.checkpoints.commit()
            self._last_commit = time.monotonic()
            if self.endpoints is not None:
                self.endpoints.beat()
            self._refresh(self._last_commit)  # outputs are acknowledged meanwhile
            return
        self.assigner.turn()
        if self.stopping:
            # a stop that came during the turn: nothing more is read. Partitions it assigned meanwhile start where
            # nothing checked (the log-start lookup is skipped once stopping), and a reset to the log's end would
            # take records past their commit, which the stop's commit would then skip over
            return
        self._backpressure()
        msgs = self.consumer.consume(proc.batch_max_records, proc.batch_max_wait_ms / 1000.0)
        if msgs and self.checkpoints.unfinished:
            # a revoke in consume() could not commit the transaction: nothing more goes into it (its offsets
            # are sent without these); they are read again once it is committed
            kept = [m for m in msgs if m.error() is None]
            groups = group_by_partition(kept, [m.topic() for m in kept], [m.partition() for m in kept])
            if again := self._read_again(list(groups.items())):
                log.info("%d partitions read again once the open transaction is committed", again)
            return
        if msgs:
            started = time.perf_counter()
            self._batch_started = time.monotonic()
            self.broker_up = True
            if self.txn is not None and not self.checkpoints.begin():
                return
            self.process(msgs)
            self.metrics.batch_duration.observe(time.perf_counter() - started)
        self.output.poll(0)
        if self.checkpoints.snapshots_due:  # a periodic checkpoint's commit was answered (in consume())
            self.checkpoints.answered()
        now = time.monotonic()
        if self.endpoints is not None:
            self.endpoints.beat()
        due = now - self._last_snapshot >= proc.snapshot_interval_s
        if due or now - self._last_commit >= proc.commit_interval_ms / 1000.0:
            self._skip_gaps()
        if due:
            self.checkpoints.checkpoint(list(self.partitions), wait_s=PERIODIC_WAIT_S)
            self._last_snapshot = self._last_commit = now
        elif now - self._last_commit >= proc.commit_interval_ms / 1000.0:
            self.checkpoints.commit()
            self._last_commit = now
        self._refresh(now)

    def _refresh(self, now: float) -> None:
        """The gauges the loop sets, every ``metrics.refresh_ms``."""
        if now - self._last_refresh >= self.settings.metrics.refresh_ms / 1000.0:
            self.metrics.observe_reducers(p.reducer for p in self.partitions.values())
            self._observe_outputs()
            self.waiting_lag.refresh(self.assigner.waiting_commits())
            self.state.serve()
            self.metrics.ready.set(1 if self.readiness()[0] else 0)
            self._last_refresh = now

    def shutdown(self) -> None:
        """Stop fetching, flush, commit, snapshot, close: inside ``processing.shutdown_timeout_s``
        in all: closing revokes the partitions, and that checkpoint works to the same deadline as the
        stop's. A slice of it is kept for the close itself (leaving the group): a flush waiting for the
        brokers to the end left the close no time, and the group then waited session.timeout.ms for the
        member before handing its partitions over."""
        timeout = self.settings.processing.shutdown_timeout_s
        asked = time.monotonic() if self.stop_requested is None else self.stop_requested
        deadline = asked + timeout
        self.checkpoints.stop_by = deadline - min(CLOSE_SHARE[0], CLOSE_SHARE[1] * timeout)
        self.checkpoints.checkpoint(list(self.partitions))
        left = deadline - time.monotonic()
        try:
            call_by(deadline, self.consumer.close)
        except TimeoutError:
            log.warning(
                "closing the consumer: not done in the %.1fs left before the stop's deadline (the group "
                "coordinator did not answer, or a commit still waits for it); the group hands this member's "
                "partitions over after session.timeout.ms",
                max(0.0, left),
            )
        except KafkaException as e:
            log.warning("closing the consumer: %s", e)
        self.output.producer.flush(max(0.0, deadline - time.monotonic()))
        self.assigner.close()
        self.state.close()
        if self.endpoints is not None:
            self.endpoints.stop()
        log.info("stopped")

    # -- rebalances ------------------------------------------------------------

    def _new_reducer(self) -> DistilledProcessor:
        r = self.settings.reducer
        return DistilledProcessor(
            self.graders,
            r.window_seconds,
            r.rate,
            batch_size=self.settings.processing.batch_max_records,
            clock=self.clock,
            **r.engine_options(),
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Note what the group assigned; the loop reads their commits and state between polls (:meth:`step`).
        Read here, a long restore (many partitions, big snapshots, a slow state topic) held the loop (the
        partitions already held were not processed) and the group's rebalance, which waits for this callback:
        every member waited, and a coordinator drops a member that does not rejoin a rebalance within its
        timeout (max.poll.interval.ms), which then rejoins and restores again. After a stop nothing more is
        looked up (it would take from its shutdown_timeout_s): they are not read, and the close's revoke
        forgets them."""
        if partitions:
            self.assigner.add(partitions)
            self.metrics.rebalances.labels("assign").inc()  # a cooperative rebalance calls every member
        self.joined = True
        self.missing_topics.clear()  # a topic still missing is reported again by the next fetch
        # assigned here (with nothing) so that the client does not assign them itself, from their commits
        self._assign(consumer, [])

    def _assign(self, consumer: Consumer, starts: list[TopicPartition]) -> None:
        """Assign ``starts`` to the consumer, paused while fetching is (a pause holds only assigned partitions)."""
        consumer.incremental_assign(starts)
        if self.paused and starts:
            consumer.pause(starts)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish the partitions' work, commit and snapshot it before they go."""
        if not partitions:
            return
        self.checkpoints.checkpoint([(tp.topic, tp.partition) for tp in partitions])
        # the client does not unassign them, once a rewind assigned any
        consumer.incremental_unassign(self.assigner.unpend(partitions))
        self._drop(partitions)
        log.info("revoked %s", partition_names(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # unassigned as in a revoke: the abort below may rewind others
        consumer.incremental_unassign(self.assigner.unpend(partitions))
        self._drop(partitions, "lost")  # not a revoke: counted apart
        self.joined = False  # out of the group until the next assignment
        log.warning("lost %s (another member may own them now; not committed)", partition_names(partitions))
        if self.txn is not None and self.txn.open:
            self.checkpoints.abort()  # the transaction holds work of the lost partitions

    def _drop(self, partitions: list[TopicPartition], kind: str = "revoke") -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        for key in keys:
            part = self.partitions.pop(key, None)
            if part is not None and part.progress.oldest_open() is not None:
                self._leaving.append(part.progress)
        self.metrics.forget_partitions(keys)
        self.metrics.rebalances.labels(kind).inc()
        self.metrics.assigned.set(len(self.partitions))

    def _on_stats(self, stats_json: str) -> None:
        self._last_stats = time.monotonic()
        committed = {key: p.progress.committed for key, p in self.partitions.items()}
        self.broker_up = self.metrics.observe_statistics(stats_json, committed)

    # -- the work ----------------------------------------------------------------

    def process(self, msgs: list[Any]) -> None:
        """Split a consumed batch by partition (order kept) and process each part."""
        self._registry_held = False
        if self._registry_since is not None and time.monotonic() - self._registry_until > _stale_s(
            self._stats_interval_s
        ):
            self._registry_since = None  # an outage no batch has waited on for a while: a new one starts anew
        self._in_batch = True
        try:
            self._process_groups(msgs)
        finally:
            self._in_batch = False
            if self._registry_since is not None:
                # nothing polled the consumer while the batch waited: its statistics are due from the next poll on
                self._last_stats = max(self._last_stats, time.monotonic())
                if not self._registry_held:  # the batch got through: the registry answers
                    self._registry_since = None

    def _process_groups(self, msgs: list[Any]) -> None:
        if any(map(Message.error, msgs)):
            msgs = self._drop_errors(msgs)
        partitions: list[Any] = list(map(Message.partition, msgs))
        topics: list[Any] = list(map(Message.topic, msgs))
        groups = list(group_by_partition(msgs, topics, partitions).items())
        if self.txn is not None and not self._commit_starts(groups):
            return
        for n, (tp, group) in enumerate(groups):
            part = self.partitions.get(tp)
            if part is None:
                continue  # revoked while these were in flight: the next owner reads them
            try:
                self.record_path.process_partition(tp, part, group)
            except RegistryUnavailable:
                # stopping while the registry is down: these stay uncommitted, read again later; or
                # the registry has been down as long as the batch may be held: read them again
                held = time.monotonic() - self._batch_started
                self._registry_held = True  # still unreachable: /readyz says so until a batch gets through
                if not self.stopping and (again := self._read_again(groups[n:])):
                    log.warning(
                        "schema registry unreachable for %.0fs: %d partitions read again from their first "
                        "unprocessed record, so that this consumer stays in its group (max.poll.interval.ms)",
                        held,
                        again,
                    )
                return
            if self.failure:
                return

    def _commit_starts(self, groups: list[tuple[TP, list[Any]]]) -> bool:
        """exactly_once: the partitions of ``groups`` with no commit, reading their first records, commit where
        they begin before producing anything (:meth:`Checkpoints.commit_starts`), and a transaction is opened
        again. False when that failed: none of the batch is processed, it is read again (after the
        transaction's retry, or the abort's rewind)."""
        starts = {
            tp: group[0].offset()
            for tp, group in groups
            # processed: set by a commit (a restored one too) and by every record read
            if (part := self.partitions.get(tp)) is not None and part.processed is None
        }
        if not starts:
            return True
        if not self.checkpoints.commit_starts(starts):
            if not self.stopping:
                self._read_again(groups)
            return False
        begun = ", ".join(f"{t}[{p}] at {o}" for (t, p), o in starts.items())
        log.info("%s: no commit yet; committed where each begins, before its first outputs", begun)
        return self.checkpoints.begin()

    def _skip_gaps(self) -> None:
        """Move each partition's processed offset up to the consumer's position where that is past it: the
        gap holds only offsets never delivered (transaction markers, and aborted records under read_committed),
        which librdkafka steps over, sometimes at a later empty poll. Else an idle transactional input keeps a
        lag of 1 per partition (its last marker) and is never committed to its end. Only between batches, with
        every record delivered processed (a batch read again is unassigned: its position is unknown until
        delivered); not once stopping (a failure may leave the rest of a batch unprocessed), nor for a
        partition with no commit and no record (under exactly_once its start is committed with its first
        records). Replaying, only a gap that reaches the commit ends the replay; the snapshot and commit at
        the new offset hold the same state, nothing being in the gap."""
        if self.stopping or not self.partitions:
            return
        asked = [TopicPartition(t, p) for (t, p), part in self.partitions.items() if part.processed is not None]
        try:
            positions = self.consumer.position(asked)
        except KafkaException as e:
            log.debug("consumer position: %s", e)
            return
        for tp in positions:
            part = self.partitions.get((tp.topic, tp.partition))
            if part is None or part.processed is None or tp.error is not None or tp.offset <= part.processed:
                continue
            if part.replay_until is not None:
                if tp.offset < part.replay_until:
                    continue  # records still to re-read
                part.replay_until = None
                log.info("%s[%d]: state caught up to the committed offset %d", tp.topic, tp.partition, tp.offset)
            part.processed = tp.offset
            part.progress.add(tp.offset, 0)  # committable once every output before it is acknowledged

    def _drop_errors(self, msgs: list[Any]) -> list[Any]:
        kept = []
        for m in msgs:
            err = m.error()
            if err is None:
                kept.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART and not self.partitions:
                    # a subscribed topic that does not exist (yet): /readyz says so until partitions come
                    self.missing_topics.add(m.topic() or err.str())
                self._consume_error(m.topic(), err)
        return kept

    def _consume_error(self, topic: str | None, err: KafkaError) -> None:
        """An error the consumer reported instead of records: counted, and logged once a minute per error and
        topic (an input whose Read ACL is gone reports one at every fetch)."""
        self.metrics.consume_errors.labels(err.name()).inc()
        more = self._repeats.note(("consume", err.code(), topic))
        if more is not None:
            log.warning("consume: %s%s", err, more)

    def _observe_outputs(self) -> None:
        """Outputs waiting for acknowledgement into the metrics: the producer's count, and the oldest open
        batch over the partitions (per partition, not per record: what the commit tracking holds anyway)."""
        self._leaving = [p for p in self._leaving if p.oldest_open() is not None]
        opened = (p.oldest_open() for p in [*(p.progress for p in self.partitions.values()), *self._leaving])
        oldest = min((t for t in opened if t is not None), default=None)
        self.metrics.observe_outputs(self.output.in_flight, oldest)

    def _backpressure(self) -> None:
        """Pause fetching while too many outputs wait for acknowledgement."""
        limit = self.settings.processing.max_in_flight
        in_flight = self.output.in_flight
        if not self.paused and in_flight >= limit:
            self.paused = True
            self.metrics.paused.set(1)
            self.consumer.pause(self.consumer.assignment())
            log.warning("%d outputs unacknowledged (limit %d): fetching paused", in_flight, limit)
        elif self.paused and in_flight <= limit // 2:
            self.paused = False
            self.metrics.paused.set(0)
            self.consumer.resume(self.consumer.assignment())
            log.info("outputs drained: fetching resumed")
        if self.paused:
            self.output.poll(0.1)

    # -- commits -----------------------------------------------------------------

    def commit(self, asynchronous: bool = True) -> None:
        self.checkpoints.commit(asynchronous)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        self.checkpoints.on_commit(err, partitions)

    def _rewind(self) -> None:
        """Every partition back where the last commit left it: those with work in the aborted
        transaction get restored state and fetch from there (they are unassigned and assigned
        again at those offsets: a seek could still let already-fetched records through); the
        others are there already and keep their state (a rebuild would not move their commit).
        Every partition with work in it has a commit: its start is committed before its first
        outputs (:meth:`_commit_starts`). Stopping, those with work in it are dropped instead:
        their state would not be used. Called from a rebalance callback too (a lost partition's
        abort): their state is read back by the loop."""
        self._leaving.clear()  # their outputs were discarded with the transaction: none waits any more
        rewound = {key: p for key, p in self.partitions.items() if p.uncommitted()}
        if not rewound:
            return
        assigned = [TopicPartition(t, p) for t, p in rewound]
        # what this instance committed last; the group coordinator may not show the newest yet
        known = {key: -1 if p.progress.committed is None else p.progress.committed for key, p in rewound.items()}
        for key in rewound:
            del self.partitions[key]
        self.metrics.assigned.set(len(self.partitions))  # back once their state is (Assigner._take)
        if self.stopping:
            return  # dropped, not rebuilt: reading their state back could take past the stop's deadline
        try:
            self.consumer.incremental_unassign(assigned)
        except KafkaException as e:
            self._fail(f"cannot rewind the partitions: {e}")
            return
        self.assigner.to_restore(known)
        log.info("%s rewound to their last commit: their state is read back", partition_names(assigned))

    def _registry_wait(self, seconds: float) -> bool:
        """A schema lookup's retry, within the batch: False once stopping, or once the batch has
        been held for half of ``max.poll.interval.ms``. Past that, librdkafka would take this
        consumer out of its group, and the partitions' next owner would produce their outputs
        again; instead the batch's unprocessed records are read again (:meth:`_read_again`)."""
        now = time.monotonic()
        if self._registry_since is None:
            self._registry_since = now
        self._registry_until = now + seconds
        if now - self._batch_started + seconds > self._hold_limit_s:
            return False
        return self._wait(seconds)

    def _read_again(self, groups: list[tuple[TP, list[Any]]]) -> int:
        """Fetch these partitions again from their first record the reducer has not taken.
        They are unassigned and assigned again at that offset: a seek could still let records
        already fetched through. The reducer state stays: it holds exactly what came before.
        Returns how many partitions are read again."""
        starts = []
        for tp, group in groups:
            part = self.partitions.get(tp)
            if part is not None:
                first: int = group[0].offset()
                # a replay may have taken the head of the group before the lookup failed
                starts.append(TopicPartition(tp[0], tp[1], max(first, part.processed or first)))
        if not starts:
            return 0
        try:
            self.consumer.incremental_unassign([TopicPartition(t.topic, t.partition) for t in starts])
            self._assign(self.consumer, starts)
        except KafkaException as e:
            self._fail(f"cannot read the partitions again: {e}")
        return len(starts)

    def _wait(self, seconds: float) -> bool:
        """Pause for a retry (staying alive for /healthz); False once stopping."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            if self.endpoints is not None:
                self.endpoints.beat()
            time.sleep(min(0.1, seconds))
        return not self.stopping

    def _alive(self) -> bool:
        """While a retry waits for the brokers (a restore, a window-start lookup, a producer's queue with no
        room): staying alive for /healthz; False once stopping, so that a stop is not held up."""
        if self.endpoints is not None:
            self.endpoints.beat()
        return not self.stopping

    def _on_client_error(self, err: KafkaError) -> None:
        """librdkafka's client-level errors: TLS and authentication failures are configuration
        errors that no retry fixes, so the daemon stops with the reason; the rest are retried.
        A token the identity provider did not hand out (OAUTHBEARER's oidc method) is the
        provider's outage, which librdkafka retries: counted and logged, not ready meanwhile;
        unless the provider answered that the credentials themselves are wrong."""
        if err.code() == KafkaError._AUTHENTICATION and TOKEN_ERROR in err.str():
            self.metrics.token_errors.inc()
            refused = refused_token(err.str())
            if refused and not self.failure:
                self._fail(
                    f"the identity provider refused the token request ({refused}): {err.str()} (check "
                    "kafka.sasl.oauthbearer_client_id and _client_secret, and any sasl.oauthbearer.scope "
                    "or extensions set through kafka.consumer / kafka.producer)"
                )
                return
            more = self._repeats.note("token")
            if more is not None:
                log.warning(
                    "cannot fetch a SASL token: %s (retried; check kafka.sasl's token endpoint)%s", err.str(), more
                )
            return
        if err.code() in AUTH_ERRORS or err.fatal():
            if not self.failure:
                self._fail(
                    f"cannot connect to the brokers: {err.str()} "
                    "(check kafka.security_protocol, kafka.ssl and kafka.sasl)"
                )
        else:
            log.debug("kafka client: %s", err.str())

    def _fail(self, reason: str) -> None:
        """Stop with exit code 1: a new instance (the orchestrator's restart) takes over."""
        log.error("%s: stopping", reason)
        self.failure = reason
        self.stopping = True


# librdkafka's errors when no broker could be reached
_NO_BROKER = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE)


def _stale_s(stats_interval_s: float) -> float:
    """How long without a loop turn or broker statistics /readyz takes for stuck."""
    return max(STALE_MIN_S, STALE_INTERVALS * stats_interval_s)


def group_by_partition(msgs: list[Any], topics: list[Any], partitions: list[Any]) -> dict[TP, list[Any]]:
    """Messages by (topic, partition), in order. consume() returns runs of one
    partition, so the runs are cut and moved whole."""
    if len(set(partitions)) == 1 and len(set(topics)) == 1:
        return {(topics[0], partitions[0]): msgs}
    groups: dict[TP, list[Any]] = {}
    start = 0
    for tp, run in groupby(zip(topics, partitions, strict=True)):
        length = sum(1 for _ in run)
        groups.setdefault(tp, []).extend(msgs[start : start + length])
        start += length
    return groups
