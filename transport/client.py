"""``MqttClient``: the one owner of a connection to the broker, for every Coreline
process (the agent, the gateway, the notifier).

It keeps an MQTT session that outlives a dropped connection (MQTT 5: ``clean_start``
false with a session expiry; 3.1.1: ``clean_session`` false), so QoS 1 messages
neither side has acknowledged survive a reconnect; re-subscribes on every connect;
acknowledges received messages only when told to (manual ack) and only on the
connection they came on; falls back to MQTT 3.1.1 where a broker lacks 5
(``versions.VersionProbe``); and reconnects with jittered backoff.  What it hands
out are plain values (``Message``, ``Publication``) and calls on a
``SessionListener``; paho's types stay inside this package.

Two ways to drive it:

* ``start()``/``stop()``: paho's own network thread (the gateway, the notifier);
* ``tick(now)`` on the caller's thread with its socket in a ``SocketMultiplexer``
  (the agent: a thousand simulated handpieces on one thread and one selector).
"""

import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from transport.address import BrokerAddress
from transport.backoff import Backoff
from transport.message import Message, Publication, Will
from transport.versions import ANSWER_WITHIN_S, VersionProbe

log = logging.getLogger(__name__)

_WATCH_EVERY_S: Final = 0.25


@dataclass(frozen=True, slots=True)
class SessionOptions:
    client_id: str
    session_expiry_s: int
    """How long the broker keeps our session (and what is queued in it) while we are away."""
    subscriptions: tuple[tuple[str, int], ...] = ()
    """(topic filter, QoS) pairs, subscribed again on every connect."""
    manual_ack: bool = False
    """Received QoS 1 messages are acknowledged only by ``ack`` (after they are safe)."""
    fresh_start: bool = False
    """Begin with a new session: whatever the broker kept for this client id belongs to
    a past the client no longer has (a board whose flash was wiped), and messages
    queued for that past would be taken as news.  Reconnects after the first CONNACK
    resume the new session.  MQTT 5 only: a 3.1.1 client chooses once, for good."""
    receive_maximum: int | None = None
    """QoS 1 messages the broker may have in flight to us (MQTT 5)."""
    max_inflight: int | None = None
    """QoS 1 messages we may have in flight to the broker."""
    will: Will | None = None
    keepalive_s: int = 30
    answer_within_s: float = ANSWER_WITHIN_S
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


class SessionListener:
    """What a client tells its owner.  Called on the thread that drives the client;
    every method does nothing unless overridden."""

    def on_connected(self, connection: int) -> None:
        """Connected (and subscriptions requested); ``connection`` numbers it."""

    def on_subscribed(self, refused: Sequence[str]) -> None:
        """The broker answered the subscriptions; ``refused`` names refusals."""

    def on_disconnected(self, reason: str) -> None:
        """A connection that was up went down; the client reconnects by itself."""

    def on_message(self, message: Message) -> None:
        """A message arrived (acknowledge it with ``ack`` under ``manual_ack``)."""

    def on_published(self, mid: int, refusal: str | None) -> None:
        """The broker acknowledged our QoS 1 publish ``mid``; ``refusal`` says why
        it refused it, ``None`` when it took it."""

    def on_protocol_changed(self) -> None:
        """The client was rebuilt for the other MQTT version: what it had queued went
        with the old one, and its publications' ``mid`` values mean nothing now."""


class SocketWatcher(Protocol):
    """Whoever multiplexes sockets for clients driven by ``tick`` (a ``SocketMultiplexer``)."""

    def opened(self, client: "MqttClient", sock: Any) -> None: ...

    def closed(self, client: "MqttClient", sock: Any) -> None: ...

    def want_write(self, client: "MqttClient", sock: Any, *, wanted: bool) -> None: ...


@dataclass(slots=True)
class _Attempt:
    started: float | None = None
    retry_at: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)


class MqttClient:
    def __init__(
        self,
        broker: BrokerAddress,
        options: SessionOptions,
        listener: SessionListener | None = None,
        *,
        watcher: SocketWatcher | None = None,
    ) -> None:
        self.broker = broker
        self.options = options
        self._listener = listener or SessionListener()
        self._watcher = watcher
        self._probe = VersionProbe(options.answer_within_s)
        self._attempt = _Attempt(
            backoff=Backoff(base_s=options.reconnect_min_s, cap_s=options.reconnect_max_s)
        )
        self._swap = threading.Lock()
        self._threaded = False
        self._stopping = threading.Event()
        self._session_begun = not options.fresh_start
        self.connection = 0
        self.connected = False
        self._tls = _tls_context(broker) if broker.tls else None
        self._identity = _identity_stamp(broker)
        self._paho = self._new_paho()

    # -- identity ----------------------------------------------------------

    @property
    def protocol_name(self) -> str:
        return "5" if self._probe.is_v5 else "3.1.1"

    @property
    def is_v5(self) -> bool:
        return self._probe.is_v5

    # -- driving on paho's thread -------------------------------------------

    def start(self) -> None:
        """Connect in the background on paho's network thread; reconnects by itself."""
        self._threaded = True
        self._connect_async()
        self._paho.loop_start()
        threading.Thread(target=self._watch_answer, name="mqtt-version", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        with self._swap:
            paho = self._paho
        paho.disconnect()
        paho.loop_stop()

    def _watch_answer(self) -> None:
        # paho never gives up on a CONNACK that does not come; switch version if so.
        while not self._stopping.wait(_WATCH_EVERY_S) and not self._probe.answered:
            paho = self._paho
            if self._probe.overdue():
                log.warning("%s: no CONNACK within %.0fs", self.options.client_id,
                            self.options.answer_within_s)  # fmt: skip
                self._change_protocol(paho)

    def _connect_async(self) -> None:
        self._probe.attempt_started()
        self._paho.connect_async(
            self.broker.host, self.broker.port, self.options.keepalive_s, **self._resume()
        )

    # -- driving on the caller's thread ---------------------------------------

    def tick(self, now: float | None = None) -> bool:
        """Connect when due, give up an attempt left unanswered; whether connected."""
        moment = time.monotonic() if now is None else now
        if self.connected:
            return True
        attempt = self._attempt
        if attempt.started is not None:
            if self._probe.overdue(moment):
                log.warning("%s: no CONNACK within %.0fs", self.options.client_id,
                            self.options.answer_within_s)  # fmt: skip
                self._change_protocol(self._paho, moment)
            elif moment - attempt.started > self.options.answer_within_s:
                self._attempt_failed(moment)  # a broker that answered once, now silent
            return False
        if moment < attempt.retry_at:
            return False
        self._reload_identity()
        try:
            self._paho.connect(
                self.broker.host, self.broker.port, self.options.keepalive_s, **self._resume()
            )
        except OSError as error:
            log.info("%s: broker unreachable (%s)", self.options.client_id, error)
            self._attempt_failed(moment)
            return False
        attempt.started = moment
        self._probe.attempt_started(moment)
        return False

    def _reload_identity(self) -> None:
        """A client certificate renewed on disk since the last attempt (the agent
        renews its own before it expires) is the one this attempt presents.  A file
        caught mid-replacement is tried again at the next attempt."""
        if self._tls is None or self.broker.cert_file is None:
            return
        stamp = _identity_stamp(self.broker)
        if not stamp or stamp == self._identity:
            return
        cert, key = self.broker.cert_file, self.broker.key_file or self.broker.cert_file
        try:
            self._tls.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as error:
            log.warning("%s: the renewed certificate %s did not load: %s",
                        self.options.client_id, cert, error)  # fmt: skip
            return
        self._identity = stamp
        log.info("%s: connecting with the renewed certificate %s", self.options.client_id, cert)

    def loop_read(self, max_packets: int) -> None:
        self._paho.loop_read(max_packets)

    def loop_write(self) -> None:
        self._paho.loop_write()

    def loop_misc(self) -> None:
        self._paho.loop_misc()

    def _attempt_failed(self, now: float) -> None:
        self._attempt.started = None
        self.connected = False
        self._attempt.retry_at = now + self._attempt.backoff.next_delay()

    # -- messages -----------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        *,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> Publication:
        """``expiry_s``: the MQTT 5 message expiry interval (the broker drops the
        message once it has waited that long for a subscriber); ignored on 3.1.1."""
        with self._swap:
            paho = self._paho
            properties = None
            if expiry_s is not None and self._probe.is_v5:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.MessageExpiryInterval = max(1, expiry_s)
        # Not under our lock: paho calls ``on_publish`` holding its own message lock,
        # which ``publish`` takes too, so nesting them the other way could deadlock.
        info = paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        return Publication(info.mid, on_wire=info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS)

    def ack(self, message: Message) -> None:
        """Acknowledge ``message`` (manual ack), if the connection it came on is still up."""
        if message.qos > 0 and message.connection == self.connection and self.connected:
            self._paho.ack(message.mid, message.qos)

    def goodbye(self, topic: str, payload: bytes, timeout_s: float = 2.0) -> None:
        """Publish a last retained QoS 1 message (an offline status), wait up to
        ``timeout_s`` for the broker to take it, and disconnect cleanly (so the
        broker does not publish the will as well)."""
        # Leaving: the disconnect that follows is ours, not a reason to reconnect or to
        # try the other MQTT version (which would re-enter paho from its own callback).
        self._stopping.set()
        if self.connected:
            info = self._paho.publish(topic, payload, qos=1, retain=True)
            deadline = time.monotonic() + timeout_s
            while not info.is_published() and self.connected and time.monotonic() < deadline:
                if self._threaded:
                    info.wait_for_publish(0.05)
                else:
                    self._paho.loop(0.05)
        self._paho.disconnect()
        if not self._threaded:
            self._paho.loop(0.05)
        self.connected = False

    # -- paho -----------------------------------------------------------------

    def _new_paho(self) -> mqtt.Client:
        v5 = self._probe.is_v5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.options.client_id,
            protocol=self._probe.protocol,
            clean_session=None if v5 else False,
            manual_ack=self.options.manual_ack,
        )
        client.max_queued_messages_set(0)  # unbounded: the session's own flow control rules
        if self.options.max_inflight is not None:
            client.max_inflight_messages_set(self.options.max_inflight)
        client.reconnect_delay_set(
            max(1, round(self.options.reconnect_min_s)), round(self.options.reconnect_max_s)
        )
        if self.options.will is not None:
            will = self.options.will
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        _configure(client, self.broker, self._tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        if self._watcher is not None:
            watcher = self._watcher
            client.on_socket_open = lambda _c, _u, sock: watcher.opened(self, sock)
            client.on_socket_close = lambda _c, _u, sock: watcher.closed(self, sock)
            client.on_socket_register_write = lambda _c, _u, sock: watcher.want_write(
                self, sock, wanted=True
            )
            client.on_socket_unregister_write = lambda _c, _u, sock: watcher.want_write(
                self, sock, wanted=False
            )
        return client

    def _resume(self) -> dict[str, Any]:
        if not self._probe.is_v5:
            return {}  # clean_session=False already resumes a 3.1.1 session
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.options.session_expiry_s
        if self.options.receive_maximum is not None:
            properties.ReceiveMaximum = self.options.receive_maximum
        # paho's "first only" holds across its own reconnects (threaded); ``tick``
        # calls ``connect`` anew each time, so the first CONNACK is remembered here.
        clean_start = False if self._session_begun else mqtt.MQTT_CLEAN_START_FIRST_ONLY
        return {"clean_start": clean_start, "properties": properties}

    def _change_protocol(self, failed: mqtt.Client, now: float | None = None) -> None:
        with self._swap:
            if failed is not self._paho:
                return  # the watcher and paho's thread both saw it fail: switch once
            old = self._paho
            protocol = self._probe.switch()
            self._paho = self._new_paho()
        log.warning("%s: trying MQTT %s", self.options.client_id,
                    "5" if protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1")  # fmt: skip
        self.connected = False
        self._listener.on_protocol_changed()
        if self._threaded:
            old.loop_stop()
            old.disconnect()
            if not self._stopping.is_set():
                self._connect_async()
                self._paho.loop_start()
            return
        old.disconnect()
        # Its socket must leave the multiplexer now: unanswered, nothing else closes it.
        old._sock_close()
        self._attempt_failed(time.monotonic() if now is None else now)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if client is not self._paho:
            return  # a client given up for another version, answering late
        if reason.is_failure:
            if self._probe.refused(reason):
                self._change_protocol(client)
                return
            self._probe.accepted()  # it answered: it speaks this version
            log.error("%s: the broker refused the connection: %s", self.options.client_id, reason)
            if not self._threaded:
                self._attempt_failed(time.monotonic())
            return
        self._probe.accepted()
        self._session_begun = True
        self._attempt.started = None
        self._attempt.backoff.reset()
        self.connection += 1
        self.connected = True
        if self.options.subscriptions:
            client.subscribe(list(self.options.subscriptions))
        log.info("%s: connected to %s:%d (MQTT %s)", self.options.client_id,
                 self.broker.host, self.broker.port, self.protocol_name)  # fmt: skip
        self._listener.on_connected(self.connection)

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if client is not self._paho:
            # The client given up on an unanswered CONNECT closes its socket later:
            # that says nothing about the connection in use now.
            return
        was_connected = self.connected
        self.connected = False
        if self._probe.dropped_unanswered() and not self._stopping.is_set():
            self._change_protocol(client)
            return
        if not self._threaded and (was_connected or self._attempt.started is not None):
            self._attempt_failed(time.monotonic())
        if was_connected and not self._stopping.is_set():
            log.warning("%s: disconnected (%s); reconnecting", self.options.client_id, reason)
            self._listener.on_disconnected(str(reason))

    def _on_subscribe(
        self, client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        if client is self._paho:
            self._listener.on_subscribed([str(reason) for reason in reasons if reason.is_failure])

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is self._paho:
            self._listener.on_message(Message._from_paho_message(message, self.connection))

    def _on_publish(
        self, client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        if client is self._paho:  # mids belong to one client: another's would mislead
            self._listener.on_published(mid, str(reason) if reason.is_failure else None)


def _configure(client: mqtt.Client, broker: BrokerAddress, tls: ssl.SSLContext | None) -> None:
    """Give ``client`` the address's credentials and TLS context."""
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if tls is not None:
        client.tls_set_context(tls)


def _tls_context(broker: BrokerAddress) -> ssl.SSLContext:
    """What paho's ``tls_set`` makes of the address's files (the broker's certificate
    checked, host name included), kept so a renewed client certificate can be loaded
    into it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if broker.ca_file is not None:
        context.load_verify_locations(str(broker.ca_file))
    else:
        context.load_default_certs()
    if broker.cert_file is not None:
        context.load_cert_chain(str(broker.cert_file), str(broker.key_file or broker.cert_file))
    return context


def _identity_stamp(broker: BrokerAddress) -> tuple[int, ...]:
    """When the client certificate and key files last changed (empty: none, or gone)."""
    try:
        return tuple(
            path.stat().st_mtime_ns for path in (broker.cert_file, broker.key_file) if path
        )
    except OSError:
        return ()
