"""The socket multiplexer the agent's links share: paho's socket callbacks are
harmless once it is closed."""

import socket
from typing import cast

from transport import MqttClient, SocketMultiplexer


def test_socket_callbacks_after_close_are_ignored() -> None:
    """A paho client that closes its socket after the multiplexer closed (collected
    at interpreter exit, say) raises nothing: a closed selector has no map to ask."""
    multiplexer = SocketMultiplexer()
    client = cast(MqttClient, object())
    ours, theirs = socket.socketpair()
    multiplexer.opened(client, ours)
    multiplexer.close()
    multiplexer.want_write(client, ours, wanted=False)
    multiplexer.closed(client, ours)
    multiplexer.opened(client, theirs)
    assert multiplexer.watching == 0
    ours.close()
    theirs.close()


def test_an_open_multiplexer_unregisters_closed_sockets() -> None:
    """Open, a socket's close takes it out of the selector, and write interest follows paho."""
    multiplexer = SocketMultiplexer()
    client = cast(MqttClient, object())
    ours, theirs = socket.socketpair()
    multiplexer.want_write(client, ours, wanted=True)  # before it is opened: ignored
    multiplexer.opened(client, ours)
    multiplexer.want_write(client, ours, wanted=True)
    multiplexer.closed(client, ours)
    assert multiplexer.watching == 0
    multiplexer.close()
    ours.close()
    theirs.close()
