"""sd_notify against a real unix datagram socket, as systemd listens on one."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.notify import Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield path, sock
    finally:
        sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_each_message_is_one_datagram_of_key_value_lines(
        listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    n = Notifier(path)
    assert n.ready("3 feeds (0 due)\nsecond line")
    assert received(sock) == {"READY": "1", "STATUS": "3 feeds (0 due) second line"}
    assert n.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    assert n.reloading()
    got = received(sock)
    assert got["RELOADING"] == "1" and got["MONOTONIC_USEC"].isdigit()
    assert n.stopping()
    assert received(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"news-monitor-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
    try:
        assert n.status("ok")
        assert received(sock) == {"STATUS": "ok"}
    finally:
        n.close()
        sock.close()


def test_without_a_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).enabled
    assert not Notifier.from_env({}).ready("x")
    # systemd gone (socket removed): best effort, no exception
    gone = Notifier(str(tmp_path / "gone.sock"))
    assert not gone.watchdog()
    gone.close()


@pytest.mark.parametrize(("env", "expected"), [
    pytest.param({}, None, id="no-watchdog"),
    pytest.param({"WATCHDOG_USEC": "30000000"}, 30.0, id="usec"),
    pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero-is-off"),
    pytest.param({"WATCHDOG_USEC": "junk"}, None, id="junk"),
    pytest.param({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 2.0,
                 id="our-pid"),
    pytest.param({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None, id="another-pid"),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, os.getpid()) == expected
