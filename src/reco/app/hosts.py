"""Where the web app listens: the host and port checked before any work."""

from __future__ import annotations

import errno

from ..core.errors import BusyError, ConfigError


def check_port(host: str, port: int) -> None:
    """Raise a one-line error unless ``host:port`` can be bound here now."""
    import ipaddress
    import socket

    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"port must be in 1-65535, got {port}")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        try:
            family = socket.getaddrinfo(host, None)[0][0]
        except (socket.gaierror, UnicodeError):
            raise ConfigError(f"--host {host!r} is not an address or a name this machine resolves") from None
    try:
        with socket.socket(family) as s:
            s.bind((host, int(port)))
    except socket.gaierror:
        raise ConfigError(f"--host {host!r} is not an address or a name this machine resolves") from None
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host {host}: not an address of this machine ({e.strerror})") from None
        raise BusyError(f"cannot serve on {host}:{port} ({e.strerror or e}); choose another --port") from None
