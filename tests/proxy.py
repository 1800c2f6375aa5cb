"""A TCP proxy in front of a test's redis-server, for network faults a real network has:
partitions (a blackhole), half-open connections, lost replies and cut connections.

It runs in a background thread with its own selector loop, so it serves nodes in the test's
process and member processes alike (point them at ``proxy.url``)::

    proxy = Proxy(server.port)
    proxy.start()
    ...
    proxy.blackhole(True)    # a partition: nothing passes either way, sockets stay open
    proxy.blackhole(False)   # healed: new connections work; old ones stay dead (half-open)
    proxy.lose_reply_to(b"EVALSHA")   # forward the next matching request, lose its reply
    proxy.cut()              # close every connection now (both sides see it)
    proxy.stop()
"""

from __future__ import annotations

import selectors
import socket
import threading
from dataclasses import dataclass, field

from tests.redis_server import free_port

_CHUNK = 65536


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    server: socket.socket
    dead: bool = False  # traffic is dropped both ways and the sockets stay open
    held: list[tuple[socket.socket, bytes]] = field(default_factory=list)
    lose_next_reply: bool = False

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.server if sock is self.client else self.client


class Proxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.lost = 0  # replies lost so far by lose_reply_to()
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, _Pair] = {}
        self._blackhole = False
        self._hold = False
        self._heal = False
        self._cut = False
        self._lose: list[tuple[bytes, int]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="test-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def blackhole(self, on: bool = True, hold: bool = False) -> None:
        """``on``: nothing passes either way from now on, and connections made meanwhile get
        no answer either. With ``hold`` the traffic is kept and delivered when healed (a short
        partition TCP rides out); without it, the connections of the partition stay dead for
        good after healing, as half-open connections do (new connections work)."""
        with self._lock:
            if on:
                self._blackhole, self._hold = True, hold
            else:
                self._blackhole, self._heal = False, True

    def lose_reply_to(self, marker: bytes, count: int = 1) -> None:
        """The next ``count`` requests containing ``marker`` reach Redis; their replies are
        lost and their connections closed (the caller cannot know whether they took effect)."""
        with self._lock:
            self._lose.append((marker, count))

    def cut(self) -> None:
        """Close every current connection."""
        with self._lock:
            self._cut = True

    # -- the proxy thread -------------------------------------------------------------------

    def _run(self) -> None:
        assert self._listener is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                self._apply_controls(sel)
                for key, _ in sel.select(timeout=0.02):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept(sel)
                    elif sock in self._pairs:
                        self._forward(sel, sock)
        finally:
            for pair in {id(p): p for p in self._pairs.values()}.values():
                self._close(sel, pair)
            sel.close()
            self._listener.close()

    def _apply_controls(self, sel: selectors.BaseSelector) -> None:
        with self._lock:
            cut, self._cut = self._cut, False
            heal, self._heal = self._heal, False
            blackhole, hold = self._blackhole, self._hold
        pairs = list({id(p): p for p in self._pairs.values()}.values())
        for pair in pairs:
            if cut:
                self._close(sel, pair)
            elif blackhole:
                pair.dead = pair.dead or not hold
            elif heal and pair.held:
                for target, data in pair.held:
                    target.sendall(data)
                pair.held.clear()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            client.close()
            return
        pair = _Pair(client, server)
        with self._lock:
            pair.dead = self._blackhole and not self._hold
        for sock in (client, server):
            sock.setblocking(False)
            self._pairs[sock] = pair
            sel.register(sock, selectors.EVENT_READ)

    def _forward(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        pair = self._pairs[sock]
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sel, pair)
            return
        if pair.dead:
            return
        with self._lock:
            blackhole = self._blackhole
            if sock is pair.client:
                for i, (marker, count) in enumerate(self._lose):
                    if marker in data:
                        pair.lose_next_reply = True
                        self._lose[i] = (marker, count - 1)
                        self._lose = [m for m in self._lose if m[1] > 0]
                        break
        target = pair.peer(sock)
        if blackhole:
            pair.held.append((target, data))
        elif sock is pair.server and pair.lose_next_reply:
            self.lost += 1
            self._close(sel, pair)
        else:
            target.setblocking(True)
            try:
                target.sendall(data)
            except OSError:
                self._close(sel, pair)
            finally:
                target.setblocking(False)

    def _close(self, sel: selectors.BaseSelector, pair: _Pair) -> None:
        for sock in (pair.client, pair.server):
            if self._pairs.pop(sock, None) is not None:
                sel.unregister(sock)
            sock.close()
