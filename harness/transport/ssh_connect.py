"""Opening a verified, authenticated SSH connection with paramiko.

This module resolves where to connect (the profile, then ``~/.ssh/config``: HostName, User,
Port, IdentityFile, ProxyJump), verifies the host key against ``known_hosts`` and never adds
an unknown key silently, and maps paramiko's exceptions onto the HarnessError tree.
:func:`trust_host` is the one place that writes to ``known_hosts`` (``harness devices trust``).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from harness.errors import AuthenticationError, ConfigError, DeviceConnectionError, HostKeyError
from harness.profiles import SshTransportConfig

# Big channel windows let SFTP keep many write requests in flight (see ssh.py's push).
WINDOW_SIZE_BYTES = 64 * 1024 * 1024
MAX_PACKET_BYTES = 256 * 1024
# AES-GCM needs no separate MAC pass, which is the costly part of paramiko's packetizer.
_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclass(frozen=True)
class SshHop:
    """One SSH server to connect to: the target itself or a ProxyJump host before it."""

    alias: str  # the name as the user wrote it (profile host or ssh_config Host)
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]

    @property
    def known_hosts_name(self) -> str:
        """The host name as OpenSSH writes it in known_hosts (``[host]:port`` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def description(self) -> str:
        """``user@host:port``, for messages."""
        return f"{self.user}@{self.hostname}:{self.port}"


@dataclass(frozen=True)
class SshTarget:
    """Everything needed to open the connection, after ``~/.ssh/config`` was applied."""

    hop: SshHop
    jumps: tuple[SshHop, ...]  # ProxyJump hosts, outermost first
    known_hosts: Path
    password_env: str | None
    connect_timeout_s: float
    keepalive_s: float
    device_name: str | None = None  # the profile name, for `harness devices trust <name>` hints

    @property
    def trust_command(self) -> str:
        """The command that trusts this device's host key."""
        return f"harness devices trust {self.device_name or '<name>'}"


def default_ssh_config_path() -> Path:
    """``~/.ssh/config``."""
    return Path.home() / ".ssh" / "config"


def _load_ssh_config(path: Path | None) -> paramiko.SSHConfig | None:
    if path is None or not path.is_file():
        return None
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise DeviceConnectionError(f"cannot read SSH config {path}: {exc}") from exc


def parse_ssh_target(target: str) -> tuple[str | None, str, int | None]:
    """``user@host[:port]`` (or ``user@[v6addr]:port``) to (user, host, port)."""
    user, at, rest = target.rpartition("@")
    if at and not user:
        raise ConfigError(f"empty user in SSH target {target!r}", hint="use user@host[:port]")
    port_text = ""
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else tail
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host = rest
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"no valid host in SSH target {target!r}", hint="use user@host[:port]")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ConfigError(f"bad port in SSH target {target!r}", hint="use user@host[:port]")
    return (user or None), host, (int(port_text) if port_text else None)


def _resolve_hop(
    alias: str,
    ssh_config: paramiko.SSHConfig | None,
    *,
    user: str | None = None,
    port: int | None = None,
    key_file: str | None = None,
) -> tuple[SshHop, str | None]:
    """Apply ssh_config to one host; explicit values win, like ssh's command line."""
    entry: dict[str, Any] = dict(ssh_config.lookup(alias)) if ssh_config is not None else {}
    keys: list[str] = []
    if key_file:
        keys.append(os.path.expanduser(key_file))
    keys.extend(os.path.expanduser(k) for k in entry.get("identityfile", []))
    hop = SshHop(
        alias=alias,
        hostname=str(entry.get("hostname", alias)),
        port=port or int(entry.get("port", 22)),
        user=user or str(entry.get("user") or getpass.getuser()),
        key_files=tuple(k for k in keys if Path(k).is_file()),
    )
    proxy = entry.get("proxyjump")
    return hop, (str(proxy) if proxy and str(proxy).lower() != "none" else None)


def resolve_target(
    config: SshTransportConfig,
    *,
    ssh_config_path: Path | None = None,
    device_name: str | None = None,
) -> SshTarget:
    """Combine the profile with ``~/.ssh/config`` (when ``use_ssh_config``) into a target."""
    if ssh_config_path is None and config.use_ssh_config:
        ssh_config_path = default_ssh_config_path()
    ssh_config = _load_ssh_config(ssh_config_path) if config.use_ssh_config else None
    hop, proxy = _resolve_hop(
        config.host, ssh_config, user=config.user, port=config.port, key_file=config.key_file
    )
    jumps: list[SshHop] = []
    for spec in proxy.split(",") if proxy else []:
        j_user, j_host, j_port = parse_ssh_target(spec.strip())
        j_hop, _ = _resolve_hop(j_host, ssh_config, user=j_user, port=j_port)
        jumps.append(j_hop)
    known = Path(os.path.expanduser(config.known_hosts or "~/.ssh/known_hosts"))
    return SshTarget(
        hop=hop,
        jumps=tuple(jumps),
        known_hosts=known,
        password_env=config.password_env,
        connect_timeout_s=config.connect_timeout_s,
        keepalive_s=config.keepalive_s,
        device_name=device_name,
    )


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH-style ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _RejectUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse hosts that are not in known_hosts, telling the user how to trust them."""

    def __init__(self, hop: SshHop, target: SshTarget) -> None:
        self._hop = hop
        self._target = target

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyError(
            f"unknown SSH host key for {hostname} ({key.get_name()} {fingerprint(key)}); "
            f"it is not in {self._target.known_hosts}, so the connection was refused",
            hint=f"if this is your device, run `{self._target.trust_command}` or "
            f"`ssh -p {self._hop.port} {self._hop.user}@{self._hop.hostname}` once",
        )


def _load_known_hosts(path: Path) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    if path.is_file():
        try:
            keys.load(str(path))
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"cannot read known_hosts file {path}: {exc}") from exc
    return keys


def _big_window_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(
        sock,
        default_window_size=WINDOW_SIZE_BYTES,
        default_max_packet_size=MAX_PACKET_BYTES,
        **kwargs,
    )
    ciphers = transport.get_security_options().ciphers
    fast = [c for c in _FAST_CIPHERS if c in ciphers]
    transport.get_security_options().ciphers = tuple(fast + [c for c in ciphers if c not in fast])
    return transport


def _password(target: SshTarget) -> str | None:
    if not target.password_env:
        return None
    value = os.environ.get(target.password_env)
    if value is None:
        raise AuthenticationError(
            f"the profile asks for a password from ${target.password_env}, which is not set",
            hint=f"export {target.password_env}=... or use a key (ssh-copy-id)",
        )
    return value


def connect_hop(
    hop: SshHop, target: SshTarget, *, sock: Any = None, password: str | None = None
) -> paramiko.SSHClient:
    """Connect and authenticate to one hop, verifying its host key."""
    client = paramiko.SSHClient()
    # The "system" set is read-only: paramiko never writes it back to disk.
    if target.known_hosts.is_file():
        try:
            client.load_system_host_keys(str(target.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"cannot read known_hosts file {target.known_hosts}: {exc}") from exc
    client.set_missing_host_key_policy(_RejectUnknownHost(hop, target))
    try:
        client.connect(
            hop.hostname,
            port=hop.port,
            username=hop.user,
            password=password,
            key_filename=list(hop.key_files) or None,  # type: ignore[arg-type]
            look_for_keys=not hop.key_files,
            allow_agent=True,
            sock=sock,
            timeout=target.connect_timeout_s,
            banner_timeout=target.connect_timeout_s,
            auth_timeout=target.connect_timeout_s,
            channel_timeout=target.connect_timeout_s,
            transport_factory=_big_window_transport,
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"SSH HOST KEY CHANGED for {hop.known_hosts_name}: known_hosts ({target.known_hosts}) "
            f"has {fingerprint(exc.expected_key)} but the device offered "
            f"{fingerprint(exc.key)}. Someone may be intercepting the connection, or the "
            "device was reinstalled; refusing to connect",
            hint=f"if the device was reinstalled, run `ssh-keygen -R '{hop.known_hosts_name}' "
            f"-f {target.known_hosts}` and then `{target.trust_command}`",
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        tried = ", ".join(hop.key_files) or "ssh-agent and ~/.ssh/id_*"
        raise AuthenticationError(
            f"{hop.description} refused our credentials (tried {tried}): {exc}",
            hint="check key_file in the profile, or install your key with `ssh-copy-id`",
        ) from exc
    except paramiko.SSHException as exc:
        client.close()
        if "authentication methods" in str(exc):
            raise AuthenticationError(
                f"no SSH key or password to log in to {hop.description}",
                hint="set key_file in the profile, add a key to ssh-agent, or IdentityFile "
                "in ~/.ssh/config",
            ) from exc
        raise DeviceConnectionError(
            f"cannot connect to {hop.description}: {exc or type(exc).__name__}",
            hint="is the device on, on the network, and running sshd?",
        ) from exc
    except (OSError, EOFError) as exc:
        client.close()
        raise DeviceConnectionError(
            f"cannot connect to {hop.description}: {exc or type(exc).__name__}",
            hint="is the device on, on the network, and running sshd?",
        ) from exc
    return client


def open_client(target: SshTarget) -> tuple[paramiko.SSHClient, tuple[paramiko.SSHClient, ...]]:
    """Connect through every ProxyJump hop to the target; return (client, jump clients)."""
    jump_clients: list[paramiko.SSHClient] = []
    sock: Any = None
    try:
        for jump in target.jumps:
            jump_clients.append(connect_hop(jump, target, sock=sock))
            sock = _tunnel(jump_clients[-1], target.jumps, target, jump)
        client = connect_hop(target.hop, target, sock=sock, password=_password(target))
    except BaseException:
        for jc in reversed(jump_clients):
            jc.close()
        raise
    transport = client.get_transport()
    if transport is not None and target.keepalive_s > 0:
        transport.set_keepalive(int(max(1, target.keepalive_s)))
    return client, tuple(jump_clients)


def _tunnel(
    via: paramiko.SSHClient, jumps: tuple[SshHop, ...], target: SshTarget, current: SshHop
) -> paramiko.Channel:
    """A ``direct-tcpip`` channel from ``current`` to the next hop."""
    index = jumps.index(current)
    nxt = jumps[index + 1] if index + 1 < len(jumps) else target.hop
    transport = via.get_transport()
    if transport is None:
        raise DeviceConnectionError(f"jump host {current.description} closed the connection")
    try:
        return transport.open_channel(
            "direct-tcpip",
            (nxt.hostname, nxt.port),
            ("127.0.0.1", 0),
            timeout=target.connect_timeout_s,
        )
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise DeviceConnectionError(
            f"jump host {current.description} could not reach {nxt.hostname}:{nxt.port}: {exc}"
        ) from exc


def trust_host(
    config: SshTransportConfig, *, ssh_config_path: Path | None = None, hashed: bool = True
) -> str:
    """Fetch the device's host key, append it to known_hosts and return its fingerprint.

    ProxyJump hosts must already be trusted. A key that is already present is not written
    again; a *different* key already recorded for the host raises :class:`HostKeyError`
    (remove the old line with ``ssh-keygen -R`` first). ``hashed`` writes the name hashed
    (``|1|salt|hash``) like OpenSSH's ``HashKnownHosts yes``.
    """
    target = resolve_target(config, ssh_config_path=ssh_config_path)
    hop = target.hop
    jump_clients: list[paramiko.SSHClient] = []
    try:
        sock: Any = None
        for jump in target.jumps:
            jump_clients.append(connect_hop(jump, target, sock=sock))
            sock = _tunnel(jump_clients[-1], target.jumps, target, jump)
        if sock is None:
            try:
                sock = socket.create_connection(
                    (hop.hostname, hop.port), timeout=target.connect_timeout_s
                )
            except OSError as exc:
                raise DeviceConnectionError(f"cannot connect to {hop.description}: {exc}") from exc
        key = _fetch_host_key(sock, target, hop)
    finally:
        for jc in reversed(jump_clients):
            jc.close()
    known = _load_known_hosts(target.known_hosts)
    recorded: Any = known.lookup(hop.known_hosts_name) or {}
    if key.get_name() in recorded:
        if recorded[key.get_name()] == key:
            return fingerprint(key)
        raise HostKeyError(
            f"known_hosts ({target.known_hosts}) already has a DIFFERENT {key.get_name()} key for "
            f"{hop.known_hosts_name}; not overwriting it",
            hint=f"if the device was reinstalled, run `ssh-keygen -R '{hop.known_hosts_name}' "
            f"-f {target.known_hosts}` first",
        )
    name = paramiko.HostKeys.hash_host(hop.known_hosts_name) if hashed else hop.known_hosts_name
    _append_known_host(target.known_hosts, f"{name} {key.get_name()} {key.get_base64()}\n")
    return fingerprint(key)


def _fetch_host_key(sock: Any, target: SshTarget, hop: SshHop) -> paramiko.PKey:
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=target.connect_timeout_s)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise DeviceConnectionError(
            f"cannot read the host key of {hop.description}: {exc}"
        ) from exc
    finally:
        transport.close()


def _append_known_host(path: Path, line: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = path.read_bytes() if path.is_file() else b""
    prefix = "\n" if existing and not existing.endswith(b"\n") else ""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as out:
        out.write(prefix + line)
