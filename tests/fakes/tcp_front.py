"""A TCP front for a test server, on 127.0.0.1: it passes each connection's bytes both ways,
after holding it a while (a slow TLS handshake, as the client sees it), or resets the first
ones once the client has spoken (a connection lost during the handshake)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from contextlib import suppress
from types import TracebackType

__all__ = ["TcpFront"]


class TcpFront:
    def __init__(self, backend_port: int, *, hold: float = 0.0, reset_first: int = 0) -> None:
        self.backend_port, self.hold, self._n_resets = backend_port, hold, reset_first
        self.n_accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> TcpFront:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.n_accepted += 1
            if self._n_resets > 0:
                self._n_resets -= 1
                client.recv(65536)  # the client's first bytes (a ClientHello), then a reset
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            threading.Thread(target=self._pass, args=(client,), daemon=True).start()

    def _pass(self, client: socket.socket) -> None:
        time.sleep(self.hold)
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
        except OSError:  # the backend gone (its test over): the client too
            client.close()
            return
        threading.Thread(target=_pump, args=(backend, client), daemon=True).start()
        _pump(client, backend)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
