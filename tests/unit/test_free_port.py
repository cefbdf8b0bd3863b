"""free_port: a number is not handed out twice while its first taker may not have bound it yet."""

from __future__ import annotations

import socket

from gateway.state.redisdb import free_port


def test_ports_handed_out_together_are_all_different_and_bindable() -> None:
    # 500 draws from the 12,001 numbers below the ephemeral range: without the memory of what was
    # handed out, some two would be equal (the chance of none is about 3 in 10,000).
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    assert all(20_000 <= p <= 32_000 for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # free as said
