"""The loopback ports the stacks, the demos and the tests publish on (shared/servers.py)."""

from __future__ import annotations

import socket

from shared import servers


def test_a_port_once_handed_out_is_not_handed_out_again(monkeypatch):
    """The kernel may offer a port again once its probe socket closed: two of one stack's
    ports would collide, and Docker may still hold a removed stack's port."""
    offered = iter([41001, 41001, 41002, 41001, 41003])

    class Probe(socket.socket):
        def bind(self, address):
            self.port = next(offered)

        def getsockname(self):
            return (servers.LOOPBACK, self.port)

    monkeypatch.setattr(servers, "_HANDED_OUT", set())
    monkeypatch.setattr(servers.socket, "socket", Probe)
    assert [servers.free_port() for _ in range(3)] == [41001, 41002, 41003]
