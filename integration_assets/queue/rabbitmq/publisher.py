"""Publishing with publisher confirms, a whole batch in flight at once.

``BlockingChannel.basic_publish`` in confirm mode waits for each confirm in turn, which caps a publisher at
one round trip per message (~1,300 msg/s measured here, docs/BENCHMARKS.md). So the publisher has a
connection of its own, a ``pika.SelectConnection`` driven through pika's public asynchronous API: it sends
every message of a batch (``mandatory``, so an unroutable one comes back instead of vanishing), then runs
the connection's I/O loop (``ioloop.start()``, stopped by the callbacks it waits for or by a timer) until
every delivery tag is acked, nacked or returned.

pika writes every AMQP frame with its own ``send`` (three per message): for a batch, thousands of system
calls under the GIL the receiver's HTTP side needs (+15% receiver throughput without them,
docs/BENCHMARKS.md). So the connection runs on pika's own I/O services with one change, made through pika's
documented extension point (``custom_ioloop`` takes an ``AbstractIOServices``): the stream transport can hold
the frames of a batch and hand them to pika's transport as one buffer. Same bytes, same order.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions as pex
from pika.adapters.select_connection import IOLoop
from pika.adapters.utils import connection_workflow as workflow
from pika.adapters.utils import nbio_interface as nbio
from pika.adapters.utils.selector_ioloop_adapter import SelectorIOServicesAdapter
from pika.channel import Channel

from integration_assets.queue.base import PublishNacked, PublishUnroutable, QueueUnavailable
from integration_assets.queue.rabbitmq.topology import RabbitMQConfig, topology

log = logging.getLogger(__name__)

# exchange, routing key, body, properties
Outgoing = tuple[str, str, bytes, pika.BasicProperties]


class HoldingTransport(nbio.AbstractStreamTransport):
    """pika's stream transport, able to hold what is written and pass it on as one buffer."""

    def __init__(self, transport: nbio.AbstractStreamTransport) -> None:
        self._transport = transport
        self._held: list[bytes] | None = None

    def hold(self) -> None:
        self._held = []

    def flush(self) -> None:
        held, self._held = self._held, None
        if held:
            self._transport.write(b"".join(held))

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._transport.write(data)
        else:
            self._held.append(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held or ()))

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_protocol(self) -> nbio.AbstractStreamProtocol:
        return self._transport.get_protocol()


class _Protocol(nbio.AbstractStreamProtocol):
    """Passes the connection a ``HoldingTransport`` instead of the transport itself."""

    def __init__(self, protocol: nbio.AbstractStreamProtocol, services: HoldingIOServices) -> None:
        self.protocol = protocol
        self._services = services

    def connection_made(self, transport: nbio.AbstractStreamTransport) -> None:
        self._services.transport = HoldingTransport(transport)
        self.protocol.connection_made(self._services.transport)

    def connection_lost(self, error: BaseException | None) -> None:
        self.protocol.connection_lost(error)

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()

    def data_received(self, data: bytes) -> None:
        self.protocol.data_received(data)


class HoldingIOServices(SelectorIOServicesAdapter):
    """pika's I/O services for ``SelectConnection``, whose stream transport is a ``HoldingTransport``."""

    def __init__(self) -> None:
        super().__init__(IOLoop())
        self.transport: HoldingTransport | None = None

    def create_streaming_connection(
        self,
        protocol_factory: Callable[[], nbio.AbstractStreamProtocol],
        sock: Any,
        on_done: Callable[[Any], None],
        ssl_context: Any = None,
        server_hostname: str | None = None,
    ) -> nbio.AbstractIOReference:
        def done(result: Any) -> None:
            if isinstance(result, BaseException):
                on_done(result)
            else:  # the connection workflow expects its own protocol back, with the transport it was given
                on_done((self.transport, result[1].protocol))

        return super().create_streaming_connection(
            lambda: _Protocol(protocol_factory(), self), sock, done, ssl_context, server_hostname
        )


@dataclass(eq=False)
class _ConfirmBatch:
    pending: dict[int, str] = field(default_factory=dict)  # delivery tag -> message id
    nacked: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    return_reasons: set[str] = field(default_factory=set)


class ConfirmingPublisher:
    """A confirm-mode channel on a connection of its own; connects on first use. Raises pika's exceptions
    (the queue translates them): ``AMQPConnectionError`` and ``ChannelClosed`` subclasses when the
    connection or channel is lost, ``ChannelClosedByBroker`` when the broker refuses the topology."""

    def __init__(self, params: pika.ConnectionParameters, config: RabbitMQConfig) -> None:
        self._params = params
        self.config = config
        self._io: HoldingIOServices | None = None  # the I/O loop of the current connection
        self._conn: pika.SelectConnection | None = None
        self._ch: Channel | None = None
        self._closed: BaseException | None = None  # why the connection or channel went away
        self._waiting_for: Callable[[], bool] | None = None  # what the running I/O loop waits for
        self._seq = 0  # delivery tag of the last message published on this channel
        self._batch: _ConfirmBatch | None = None

    @property
    def is_open(self) -> bool:
        return (
            self._closed is None
            and self._conn is not None
            and self._conn.is_open
            and self._ch is not None
            and self._ch.is_open
        )

    # -- driving the I/O loop
    def _wake(self) -> None:
        """Called from pika's callbacks: stop the loop once what it waits for happened."""
        if self._conn is not None and self._waiting_for is not None:
            if self._closed is not None or self._waiting_for():
                self._conn.ioloop.stop()

    def _wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Run the I/O loop until ``done()``, the connection or channel closes (raised), or ``timeout_s``
        passes (returns False)."""
        assert self._conn is not None
        if not done() and self._closed is None:
            loop = self._conn.ioloop
            timer = loop.call_later(max(0.0, timeout_s), loop.stop)
            self._waiting_for = done
            try:
                loop.start()
            finally:
                self._waiting_for = None
                loop.remove_timeout(timer)
        if done():
            return True
        if self._closed is not None:
            raise self._closed
        return False

    def _rpc(self, start: Callable[[Callable[[Any], None]], None], what: str) -> None:
        """Start an asynchronous call that reports completion through its callback, and wait for it."""
        answered: list[Any] = []

        def on_done(frame: Any) -> None:
            answered.append(frame)
            self._wake()

        start(on_done)
        if not self._wait(lambda: bool(answered), self.config.confirm_timeout_s):
            raise pex.AMQPConnectionError(f"{what} was not answered in time")

    # -- callbacks
    def _on_connection_closed(self, _conn: Any, reason: Any) -> None:
        self._closed = _connection_error(reason)
        self._wake()

    def _on_channel_closed(self, _ch: Any, reason: BaseException) -> None:
        self._closed = reason
        self._wake()

    def _on_confirm(self, frame: Any) -> None:
        batch = self._batch
        if batch is None:
            return
        method = frame.method
        nack = isinstance(method, pika.spec.Basic.Nack)
        tags = (
            [t for t in batch.pending if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            message_id = batch.pending.pop(tag, None)
            if nack and message_id is not None:
                batch.nacked.append(message_id)
        self._wake()

    def _on_return(self, _channel: Any, method: Any, properties: pika.BasicProperties, _body: bytes) -> None:
        # A mandatory publish that no queue took: the broker still confirms it afterwards.
        if self._batch is not None:
            self._batch.returned.append(properties.message_id or "?")
            self._batch.return_reasons.add(f"{method.reply_code} {method.reply_text}")

    # -- connection
    def connect(self) -> None:
        """Open the connection and a confirm-mode channel, and declare the topology."""
        self.close()
        self._closed = None
        opened: list[Any] = []

        def on_open(conn: Any) -> None:
            opened.append(conn)
            self._wake()

        io = HoldingIOServices()
        try:
            self._conn = pika.SelectConnection(
                self._params,
                on_open_callback=on_open,
                on_open_error_callback=self._on_connection_closed,
                on_close_callback=self._on_connection_closed,
                custom_ioloop=io,
            )
        except BaseException:
            io.get_native_ioloop().close()
            raise
        self._io = io
        try:
            if not self._wait(lambda: bool(opened), (self._params.stack_timeout or 15.0) + 1.0):
                raise pex.AMQPConnectionError("connection was not established in time")
            ch = self._open_channel(self._conn)
            for method, kwargs in topology(self.config):
                self._rpc(functools.partial(_declare, ch, method, kwargs), method)
            ch.add_on_return_callback(self._on_return)
            self._rpc(
                lambda cb: ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=cb),
                "Confirm.Select",
            )
        except BaseException:
            self.close()
            raise
        self._seq = 0

    def _open_channel(self, conn: pika.SelectConnection) -> Channel:
        channels: list[Channel] = []

        def on_open(ch: Channel) -> None:
            channels.append(ch)
            self._wake()

        conn.channel(on_open_callback=on_open)
        if not self._wait(lambda: bool(channels), self.config.confirm_timeout_s):
            raise pex.AMQPConnectionError("Channel.Open was not answered in time")
        ch = channels[0]
        ch.add_on_close_callback(self._on_channel_closed)
        self._ch = ch
        return ch

    def close(self) -> None:
        """Drop the connection (unconfirmed messages of a batch may or may not be stored)."""
        conn, self._conn, self._ch, self._batch, self._io = self._conn, None, None, None, None
        if conn is None:
            return
        try:
            if not (conn.is_closed or conn.is_closing):
                conn.close()  # while opening, this aborts the opening
            if not conn.is_closed:
                # Let the close handshake run (bounded), so the broker sees a clean close.
                stop = conn.ioloop.stop
                closing_done = conn.ioloop.call_later(1.0, stop)
                conn.add_on_close_callback(lambda *_: stop())
                conn.add_on_open_error_callback(lambda *_: stop(), remove_default=False)
                conn.ioloop.start()
                conn.ioloop.remove_timeout(closing_done)
        except (pex.AMQPError, OSError, RuntimeError) as exc:
            log.debug("closing a publisher connection failed: %r", exc)
        finally:
            try:
                conn.ioloop.close()
            except (OSError, RuntimeError) as exc:
                log.debug("closing a publisher I/O loop failed: %r", exc)

    def service(self) -> None:
        """Process what arrived while idle (heartbeats, a close by the broker) without blocking."""
        if self._conn is not None and self._closed is None:
            self._wait(lambda: False, 0.0)

    # -- publishing
    def publish(self, items: Sequence[Outgoing]) -> None:
        """Send every item, then wait for all confirms. Raises ``QueueUnavailable`` on timeout (the
        connection is dropped: late confirms could not be matched), ``PublishUnroutable`` when a message was
        returned, ``PublishNacked`` when the broker refused one, and pika's errors when the link is lost."""
        if not self.is_open:
            self.connect()
        assert self._ch is not None
        batch = _ConfirmBatch()
        self._batch = batch
        transport = self._io.transport if self._io is not None else None
        if transport is not None:
            transport.hold()
        try:
            for exchange, routing_key, body, props in items:
                self._seq += 1
                batch.pending[self._seq] = props.message_id
                self._ch.basic_publish(exchange, routing_key, body, props, mandatory=True)
        finally:
            if transport is not None:
                transport.flush()
        if not self._wait(lambda: not batch.pending, self.config.confirm_timeout_s):
            missing = list(batch.pending.values())
            self.close()
            raise QueueUnavailable(
                f"no publisher confirm within {self.config.confirm_timeout_s}s for {len(missing)} message(s)",
                message_ids=missing,
            )
        self._batch = None
        if batch.returned:
            raise PublishUnroutable(
                f"{len(batch.returned)} message(s) unroutable ({', '.join(sorted(batch.return_reasons))}): no "
                f"queue is bound to exchange {items[0][0]!r} with routing key {items[0][1]!r}",
                message_ids=batch.returned,
            )
        if batch.nacked:
            raise PublishNacked(f"broker nacked {len(batch.nacked)} message(s)", message_ids=batch.nacked)


def _connection_error(reason: Any) -> BaseException:
    """The error of a failed or lost connection, unwrapped from pika's connection workflow the way
    ``BlockingConnection`` reports it (refused credentials stay an authentication error)."""
    if isinstance(reason, workflow.AMQPConnectionWorkflowFailed) and reason.exceptions:
        reason = reason.exceptions[-1]
    if isinstance(reason, workflow.AMQPConnectorSocketConnectError):
        return pex.AMQPConnectionError(reason)
    if isinstance(reason, workflow.AMQPConnectorPhaseErrorBase):
        reason = reason.exception
    return reason if isinstance(reason, BaseException) else pex.AMQPConnectionError(reason)


def _declare(channel: Channel, method: str, kwargs: dict[str, Any], callback: Callable[[Any], None]) -> None:
    getattr(channel, method)(callback=callback, **kwargs)
