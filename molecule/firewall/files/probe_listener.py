"""Test listener for the firewall scenario: stands in for every service of the flow list.

Accepts (and closes) TCP connections and echoes UDP datagrams on the given
ports of one address, so a connection attempt measures the firewall alone.
Usage: probe_listener.py ADDRESS TCP_PORTS UDP_PORTS (comma-separated, ranges a-b).
"""

from __future__ import annotations

import selectors
import socket
import sys


def ports(spec: str) -> list[int]:
    found: list[int] = []
    for item in filter(None, spec.split(",")):
        first, _, last = item.partition("-")
        found += range(int(first), int(last or first) + 1)
    return found


def main() -> None:
    address, tcp_spec, udp_spec = sys.argv[1:4]
    selector = selectors.DefaultSelector()
    for port in ports(tcp_spec):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((address, port))
        server.listen(128)
        server.setblocking(False)
        selector.register(server, selectors.EVENT_READ, "tcp")
    for port in ports(udp_spec):
        datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        datagram.bind((address, port))
        datagram.setblocking(False)
        selector.register(datagram, selectors.EVENT_READ, "udp")
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if key.data == "tcp":
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    data, peer = sock.recvfrom(512)
                    sock.sendto(data, peer)
            except OSError:
                continue


if __name__ == "__main__":
    main()
