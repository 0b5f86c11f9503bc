"""``server`` ADB mode: go through a running host ``adb`` server (port 5037) with adbutils.

For phones already held by ``adb`` over USB. adbutils finds the device and opens services on
it; each command or transfer gets its own server connection, so a timed-out one is just closed.
The server must already run: harness never starts one (adbutils would, on the default port).
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import adbutils

from harness.errors import DeviceConnectionError, DeviceTimeoutError

_SERVER_ERRORS: tuple[type[BaseException], ...] = (adbutils.AdbError, OSError)


class ServerStream:
    """A service stream relayed by the adb server: a plain socket after the OKAY."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.sock: socket.socket = connection.conn
        self.write_size = 1024 * 1024
        self.closed = False

    def send(self, data: bytes, deadline: float) -> None:
        self._arm(deadline)
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise DeviceTimeoutError("the adb server did not take our data in time") from exc
        except OSError as exc:
            raise DeviceConnectionError(f"lost the adb server connection: {exc}") from exc

    def recv(self, deadline: float) -> bytes:
        data = self.recv_or_eof(deadline)
        if not data:
            raise DeviceConnectionError("the device closed the stream")
        return data

    def recv_or_eof(self, deadline: float) -> bytes:
        self._arm(deadline)
        try:
            data = self.sock.recv(1024 * 1024)
        except TimeoutError as exc:
            raise DeviceTimeoutError("the device did not answer in time") from exc
        except OSError as exc:
            raise DeviceConnectionError(f"lost the adb server connection: {exc}") from exc
        if not data:
            self.closed = True
        return data

    def has_pending(self) -> bool:
        with contextlib.suppress(OSError):
            self.sock.setblocking(False)
            try:
                return bool(self.sock.recv(1, socket.MSG_PEEK))
            except BlockingIOError:
                return False
            finally:
                self.sock.setblocking(True)
        return False

    def _arm(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeviceTimeoutError("the device did not answer in time")
        self.sock.settimeout(remaining)

    def abort(self) -> None:
        """Drop the server connection; the server closes the device stream."""
        self.close(0.0)

    def close(self, deadline: float) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.connection.close()


class ServerLink:
    """One device as seen by the host adb server."""

    def __init__(self, *, host: str, port: int, serial: str | None, address: str | None) -> None:
        self.client = adbutils.AdbClient(host=host, port=port)
        self.host, self.port = host, port
        self.where_server = f"{host}:{port}"
        self.serial = serial or address
        self.address = address
        self.device: Any = None
        self.features: frozenset[str] = frozenset()

    @property
    def where(self) -> str:
        return f"{self.serial or '?'} via adb server {self.where_server}"

    def _probe_server(self) -> None:
        # adbutils runs `adb start-server` (default port, user's HOME) when it cannot connect;
        # in server mode the user's own server must be there, so check first and say so.
        try:
            with socket.create_connection((self.host, self.port), timeout=3):
                pass
        except OSError as exc:
            raise DeviceConnectionError(
                f"no adb server at {self.where_server}: {exc.strerror or exc}",
                hint="start it with `adb start-server`, or use transport.mode: direct",
            ) from exc

    def connect(self) -> None:
        """Find the device on the server (``adb connect`` first for a TCP address)."""
        self._probe_server()
        try:
            if self.address:
                answer = self.client.connect(self.address, timeout=15)
                if "connected" not in answer or "failed" in answer or "unable" in answer:
                    raise DeviceConnectionError(
                        f"adb server could not connect to {self.address}: {answer}"
                    )
            if self.serial is None:
                devices = self.client.device_list()
                if len(devices) != 1:
                    raise DeviceConnectionError(
                        f"adb server {self.where_server} has {len(devices)} devices; "
                        "set transport.serial in the profile"
                    )
                self.serial = devices[0].serial
            self.device = self.client.device(serial=self.serial)
            state = self.device.get_state()
            if state != "device":
                raise DeviceConnectionError(
                    f"{self.serial} is {state!r} on the adb server",
                    hint="accept the RSA prompt on the phone" if state == "unauthorized" else None,
                )
            self.features = frozenset(f for f in self.device.get_features().split(",") if f)
        except _SERVER_ERRORS as exc:
            raise DeviceConnectionError(
                f"cannot use the adb server at {self.where_server}: {exc}",
                hint="start it with `adb start-server`, or use transport.mode: direct",
            ) from exc

    def close(self) -> None:
        self.device = None

    def open(self, service: str, deadline: float) -> ServerStream:
        """Open ``service`` on the device through the server."""
        if self.device is None:
            raise DeviceConnectionError(f"not connected to {self.where}")
        timeout = max(0.1, deadline - time.monotonic())
        try:
            connection = self.device.open_transport(timeout=timeout)
            connection.send_command(service)
            connection.check_okay()
        except _SERVER_ERRORS as exc:
            raise DeviceConnectionError(
                f"cannot open {service.split(':')[0]} on {self.where}: {exc}"
            ) from exc
        return ServerStream(connection)
