"""Ports for the servers this project starts."""

from __future__ import annotations

from pathlib import Path

from tabular_mlops.adapters import net


def test_a_free_port_is_never_one_configured_and_not_bound_yet(monkeypatch):
    # the kernel handed a router's own port the number of the stable address it was about
    # to bind (seen in the suite: "address already in use" on the router's start)
    monkeypatch.setattr(net, "any_port", iter([51075, 51075, 40001]).__next__)
    assert net.free_port(avoid={51075}) == 40001


def test_a_test_port_lies_below_the_kernels_ephemeral_range():
    from tests.helpers import free_port

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(3)}
    assert len(ports) == 3 and all(port < low for port in ports)
