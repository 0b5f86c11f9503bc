"""``direct`` ADB mode: talk to adbd ourselves with adb-shell (no ``adb`` binary needed).

adb-shell does the connection, RSA authentication and packet framing. Streams are driven here
through its stream primitives (``_open``, ``_io_manager``) because its public calls cannot give
an exit code (no shell v2), lose early sync FAILs and have no overall deadline. The private
names used are stable across adb-shell 0.4.x; the adb-shell pin in pyproject should stay < 0.5.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from adb_shell import constants as adb_constants
from adb_shell import exceptions as adb_exceptions
from adb_shell.adb_device import AdbDevice, _AdbIOManager
from adb_shell.auth.keygen import encode_pubkey, get_user_info
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from adb_shell.transport.tcp_transport import TcpTransport

from harness import paths
from harness.errors import (
    AuthenticationError,
    ConfigError,
    DeviceConnectionError,
    DeviceTimeoutError,
)

HANDSHAKE_TIMEOUT_S = 10.0
_HEADER = struct.Struct("<6I")
# Errors that mean "the link is gone" rather than "the device said no".
_LINK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    adb_exceptions.InvalidChecksumError,
    adb_exceptions.InvalidCommandError,
    adb_exceptions.InvalidResponseError,
    adb_exceptions.AdbConnectionError,
)
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (
    adb_exceptions.AdbTimeoutError,
    adb_exceptions.TcpTimeoutException,
)


class _Tcp(TcpTransport):
    """adb-shell's TCP transport, made safe: full writes, EOF is an error, no Nagle delay."""

    def connect(self, transport_timeout_s: float | None) -> None:
        super().connect(transport_timeout_s)
        self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connection.setblocking(False)

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        data: bytes = super().bulk_read(numbytes, transport_timeout_s)
        if not data:  # select said readable and recv gave nothing: the peer closed
            raise ConnectionResetError(errno.ECONNRESET, "the device closed the ADB connection")
        return data

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        # The stock transport sends once on a non-blocking socket and ignores short writes,
        # which corrupts the stream for big WRTE payloads.
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [self._connection], [], transport_timeout_s)
            if not writable:
                raise adb_exceptions.TcpTimeoutException("sending to the device timed out")
            sent = self._connection.send(view)
            view = view[sent:]
        return len(data)


class _BannerIOManager(_AdbIOManager):
    """Keeps the device's CNXN banner (adb-shell drops it), which lists the features."""

    banner: bytes = b""

    def _read_expected_packet_from_device(self, expected_cmds: Any, adb_info: Any) -> Any:
        cmd, arg0, arg1, data = super()._read_expected_packet_from_device(expected_cmds, adb_info)
        if cmd == adb_constants.CNXN:
            self.banner = bytes(data)
        return cmd, arg0, arg1, data


def _checksum(data: bytes) -> int:
    """The ADB payload checksum: the byte sum mod 2**32 (adb-shell and old adbd verify it)."""
    if not data:
        return 0
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


def parse_features(banner: bytes) -> frozenset[str]:
    """Features from a device banner ``device::k=v;...;features=a,b``."""
    text = banner.decode("utf-8", "replace").rstrip("\0")
    for part in text.split(":", 2)[-1].split(";"):
        key, _, value = part.partition("=")
        if key == "features":
            return frozenset(f for f in value.split(",") if f)
    return frozenset()


def default_key_path() -> Path:
    """``~/.android/adbkey`` when it exists (the phone may trust it already), else our own."""
    android = Path.home() / ".android" / "adbkey"
    if android.is_file():
        return android
    return paths.user_config_dir() / "adbkey"


def load_or_create_signer(key_path: Path) -> PythonRSASigner:
    """Load the RSA key pair at ``key_path`` (+ ``.pub``), creating it (mode 0600) if missing."""
    if not key_path.exists():
        _create_key(key_path)
    try:
        private = key_path.read_text()
        pub_path = key_path.with_name(key_path.name + ".pub")
        if pub_path.is_file():
            public = pub_path.read_text()
        else:  # adb keeps the .pub next to the key, but it is derivable
            import base64

            public = base64.b64encode(encode_pubkey(str(key_path))).decode() + get_user_info()
        return PythonRSASigner(public, private)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the ADB key {key_path}: {exc}",
            hint="delete it to have a new one created, or set transport.key_file",
        ) from exc


def _create_key(key_path: Path) -> None:
    from adb_shell.auth.keygen import write_public_keyfile
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key_path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start: the private key is never readable by others, not even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    write_public_keyfile(str(key_path), str(key_path) + ".pub")


def _arm(adb_info: Any, deadline: float) -> None:
    """Make adb-shell's next read wait at most until ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeviceTimeoutError("the device did not answer in time")
    adb_info.read_timeout_s = remaining
    adb_info.transport_timeout_s = remaining


class DirectStream:
    """One open ADB stream (shell or sync) on an adb-shell connection."""

    def __init__(self, device: AdbDevice, adb_info: Any) -> None:
        self.device = device
        self.info = adb_info
        self.inbox: deque[bytes] = deque()
        self.closed = False
        self.write_size = max(device._maxdata, 4096)

    def _read(self, expected: list[bytes], deadline: float) -> tuple[bytes, bytes]:
        _arm(self.info, deadline)
        try:
            cmd, _, _, data = self.device._io_manager.read(expected, self.info)
        except _TIMEOUT_ERRORS as exc:
            raise DeviceTimeoutError("the device did not answer in time") from exc
        if cmd == adb_constants.WRTE:
            self._send_packet(adb_constants.OKAY, b"")
        return cmd, bytes(data)

    def _send_packet(self, cmd: bytes, data: bytes) -> None:
        # Packed here rather than with AdbMessage: its pure-Python byte sum costs ~3 ms per MiB,
        # most of a push's time. Header and small payloads go out in one write.
        wire = adb_constants.ID_TO_WIRE[cmd]
        header = _HEADER.pack(
            wire,
            self.info.local_id,
            self.info.remote_id,
            len(data),
            _checksum(data),
            wire ^ 0xFFFFFFFF,
        )
        manager = self.device._io_manager
        timeout = self.info.transport_timeout_s
        with manager._transport_lock:
            if len(data) <= 64 * 1024:
                manager._transport.bulk_write(header + data, timeout)
            else:
                manager._transport.bulk_write(header, timeout)
                manager._transport.bulk_write(data, timeout)

    def send(self, data: bytes, deadline: float) -> None:
        """WRTE ``data`` in packets of at most maxdata, each acknowledged before the next."""
        offset = 0
        while offset < len(data):
            if self.closed:
                raise DeviceConnectionError("the device closed the stream")
            # No copy when the caller already sized the data to one packet (sync does).
            chunk = (
                data if len(data) <= self.write_size else data[offset : offset + self.write_size]
            )
            offset += len(chunk)
            _arm(self.info, deadline)
            self._send_packet(adb_constants.WRTE, chunk)
            while True:  # data may arrive while we wait for the OKAY; keep it
                cmd, payload = self._read([b"OKAY", b"WRTE", b"CLSE"], deadline)
                if cmd == adb_constants.OKAY:
                    break
                if cmd == adb_constants.WRTE:
                    self.inbox.append(payload)
                else:
                    self._closed_by_device()
                    raise DeviceConnectionError("the device closed the stream")

    def recv(self, deadline: float) -> bytes:
        """The next WRTE payload; DeviceConnectionError once the device closed the stream."""
        while not self.inbox:
            if self.closed:
                raise DeviceConnectionError("the device closed the stream")
            cmd, payload = self._read([b"WRTE", b"CLSE"], deadline)
            if cmd == adb_constants.CLSE:
                self._closed_by_device()
            elif payload:
                self.inbox.append(payload)
        return self.inbox.popleft()

    def recv_or_eof(self, deadline: float) -> bytes:
        """Like recv, but b"" at the end of the stream."""
        try:
            return self.recv(deadline)
        except DeviceConnectionError:
            if self.closed:
                return b""
            raise

    def has_pending(self) -> bool:
        return bool(self.inbox)

    def _closed_by_device(self) -> None:
        if not self.closed:
            self.closed = True
            self._send_packet(adb_constants.CLSE, b"")  # adbd waits for our CLSE too

    def abort(self) -> None:
        """Give up on the stream without a word: the caller drops the whole connection."""
        self.closed = True

    def close(self, deadline: float) -> None:
        """Close our end and wait briefly for the device's CLSE."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(*_TIMEOUT_ERRORS, DeviceTimeoutError, *_LINK_ERRORS):
            self._send_packet(adb_constants.CLSE, b"")
            while True:
                cmd, _ = self._read([b"CLSE", b"WRTE"], min(deadline, time.monotonic() + 5))
                if cmd == adb_constants.CLSE:
                    break


class DirectLink:
    """An authenticated adb-shell connection to one adbd (TCP, or USB with adb-shell[usb])."""

    def __init__(
        self,
        *,
        address: str | None,
        serial: str | None,
        key_path: Path,
        auth_timeout_s: float,
    ) -> None:
        self.address = address
        self.serial = serial
        self.key_path = key_path
        self.auth_timeout_s = auth_timeout_s
        self.device: AdbDevice | None = None
        self.features: frozenset[str] = frozenset()
        self.banner = b""

    @property
    def where(self) -> str:
        return self.address or f"usb:{self.serial}"

    def _make_device(self) -> AdbDevice:
        if self.address:
            host, _, port = self.address.rpartition(":")
            if not host:
                host, port = self.address, "5555"
            device = AdbDevice(_Tcp(host, int(port)))
        else:
            try:
                from adb_shell.transport.usb_transport import UsbTransport
            except ImportError as exc:
                raise ConfigError(
                    "direct ADB over USB needs libusb support",
                    hint="pip install 'adb-shell[usb]', or use transport.mode: server",
                ) from exc
            device = AdbDevice(UsbTransport.find_adb(self.serial))
        device._io_manager = _BannerIOManager(device._io_manager._transport)
        return device

    def connect(self) -> None:
        """Connect and authenticate; AuthenticationError when the phone does not accept our key."""
        signer = load_or_create_signer(self.key_path)
        device = self._make_device()
        prompted: list[bool] = []
        try:
            device.connect(
                rsa_keys=[signer],
                transport_timeout_s=HANDSHAKE_TIMEOUT_S,
                auth_timeout_s=self.auth_timeout_s,
                read_timeout_s=HANDSHAKE_TIMEOUT_S,
                auth_callback=lambda _dev: prompted.append(True),
            )
        except _TIMEOUT_ERRORS as exc:
            device.close()
            if prompted:
                raise AuthenticationError(
                    f"the phone at {self.where} did not accept our ADB key within "
                    f"{self.auth_timeout_s:g} s: accept the RSA prompt on the phone",
                    hint="unlock the phone, tick 'Always allow from this computer' and tap Allow; "
                    f"our public key is {self.key_path}.pub",
                ) from exc
            raise DeviceConnectionError(
                f"no ADB handshake from {self.where} within {HANDSHAKE_TIMEOUT_S:g} s",
                hint="is USB/wireless debugging on and the address right?",
            ) from exc
        except OSError as exc:
            device.close()
            if prompted:
                raise AuthenticationError(
                    f"the phone at {self.where} refused our ADB key ({self.key_path})",
                    hint="revoke USB debugging authorizations on the phone and connect again",
                ) from exc
            raise DeviceConnectionError(
                f"cannot reach adbd at {self.where}: {exc.strerror or exc}",
                hint="enable wireless debugging or run `adb tcpip 5555` with the phone on USB",
            ) from exc
        except _LINK_ERRORS as exc:
            device.close()
            raise DeviceConnectionError(f"ADB handshake with {self.where} failed: {exc}") from exc
        manager = device._io_manager
        self.banner = manager.banner if isinstance(manager, _BannerIOManager) else b""
        self.features = parse_features(self.banner)
        self.device = device

    def close(self) -> None:
        if self.device is not None:
            with contextlib.suppress(Exception):
                self.device.close()
            self.device = None

    def open(self, service: str, deadline: float) -> DirectStream:
        """Open a stream to ``service`` (e.g. ``shell,v2,raw:ls``)."""
        if self.device is None:
            raise DeviceConnectionError(f"not connected to {self.where}")
        remaining = max(0.1, min(deadline - time.monotonic(), HANDSHAKE_TIMEOUT_S))
        try:
            info = self.device._open(service.encode("utf-8"), remaining, remaining, None)
        except _TIMEOUT_ERRORS as exc:
            raise DeviceTimeoutError(f"the device did not open {service.split(':')[0]}") from exc
        return DirectStream(self.device, info)
