"""`run.py dashboard` starts a real local ZenML server that shows this project's runs."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.helpers import invoke

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_dashboard_starts_serves_and_stops(dev_stack, free_port):
    try:
        result = invoke("dashboard", "--port", str(free_port))
        assert result.exit_code == 0, result.output
        base = f"http://127.0.0.1:{free_port}"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        info = httpx.get(f"{base}/api/v1/info", timeout=10).json()
        assert info["version"] == "0.98.0"
        page = httpx.get(base, timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        result = invoke("dashboard", "--stop")
    assert result.exit_code == 0, result.output
    assert not _listening(free_port)
