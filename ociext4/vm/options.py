"""docker run's option strings turned into typed records: pure functions
that raise RunOptionError, shared by the command line and the API."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import RunOptionError
from .spec import MIN_MEMORY_MIB, Publish, Volume

_SIZE = re.compile(r"^(\d+)([bkmgt]?)i?b?$", re.IGNORECASE)
_SHIFT = {"": 20, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}   # a bare number is MiB


def parse_memory(text: str) -> int:
    """--memory: MiB from "512", "512m", "1G", "1GiB"; refused below the
    least that boots."""
    m = _SIZE.match(text.strip())
    if not m:
        raise RunOptionError(f"--memory {text}: expected a size such as 512m or 1g")
    mib = (int(m.group(1)) << _SHIFT[m.group(2).lower()]) >> 20
    if mib < MIN_MEMORY_MIB:
        raise RunOptionError(f"--memory {text}: the guest needs at least {MIN_MEMORY_MIB}m")
    return mib


def parse_cpus(text: str, host_cpus: int | None = None) -> tuple[int, str | None]:
    """--cpus: a whole number from 1; more than the host has is capped (more
    vCPUs than cores only slows TCG down), with a warning to show."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0 and value == int(value)):
        raise RunOptionError(f"--cpus {text}: expected a whole number of CPUs from 1")
    host = host_cpus or os.cpu_count() or 1
    if int(value) > host:
        return host, f"--cpus {text}: the host has {host}; using {host}"
    return int(value), None


def parse_publish(text: str) -> Publish:
    """-p [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]"""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise RunOptionError(f"-p {text}: protocol {proto!r}: expected tcp or udp")
    host_ip, ports = "127.0.0.1", spec
    if spec.startswith("["):   # [::1]:8080:80
        end = spec.find("]:")
        if end < 0:
            raise RunOptionError(f"-p {text}: expected [HOSTIP:]HOSTPORT:GUESTPORT")
        host_ip, ports = spec[1:end], spec[end + 2:]
    elif spec.count(":") == 2:
        host_ip, ports = spec.split(":", 1)
    parts = ports.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise RunOptionError(f"-p {text}: expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]")
    host_port, guest_port = int(parts[0]), int(parts[1])
    if not (1 <= host_port <= 65535 and 1 <= guest_port <= 65535):
        raise RunOptionError(f"-p {text}: ports are from 1 to 65535")
    try:
        ipaddress.ip_address(host_ip or "0.0.0.0")
    except ValueError:
        raise RunOptionError(f"-p {text}: {host_ip!r} is not an IP address") from None
    return Publish(host_port, guest_port, proto, host_ip or "0.0.0.0")


def _guest_path(opt: str, text: str, path: str) -> str:
    if not path.startswith("/"):
        raise RunOptionError(f"{opt} {text}: the guest path {path!r} is not absolute")
    norm = os.path.normpath(path)
    if norm == "/":
        raise RunOptionError(f"{opt} {text}: cannot mount over the guest's root")
    if "\t" in norm or "\n" in norm:
        raise RunOptionError(f"{opt} {text}: tabs and newlines are not allowed in the path")
    return norm


def _host_dir(opt: str, text: str, source: str) -> Path:
    path = Path(source).resolve()
    if not path.is_dir():
        raise RunOptionError(f"{opt} {text}: {source} is not a directory on the host"
                             if path.exists() else f"{opt} {text}: {source} does not exist")
    return path


def parse_volume(text: str) -> Volume:
    """-v HOST:GUEST[:ro|:rw]: HOST must be an existing directory (named
    volumes have no meaning without a daemon)."""
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts[2]
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise RunOptionError(f"-v {text}: expected HOST:GUEST[:ro]")
    if not parts[0].startswith(("/", ".")):
        raise RunOptionError(f"-v {text}: named volumes are not supported; give a host "
                             "directory (an absolute path or one starting with .)")
    return Volume(_host_dir("-v", text, parts[0]), _guest_path("-v", text, parts[1]),
                  mode == "ro")


def parse_mount(text: str) -> Volume:
    """--mount type=bind,source=HOST,target=GUEST[,readonly]"""
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key in ("readonly", "ro") and not sep:
            value = "true"
        fields[key] = value
    kind = fields.pop("type", "volume")
    if kind != "bind":
        raise RunOptionError(f"--mount {text}: type {kind!r} is not supported (only bind)")
    source = fields.pop("source", fields.pop("src", ""))
    target = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    ro = fields.pop("readonly", fields.pop("ro", "false")).lower()
    if ro not in ("true", "1", "false", "0"):
        raise RunOptionError(f"--mount {text}: readonly={ro}: expected true or false")
    fields.pop("bind-propagation", None)
    if fields:
        raise RunOptionError(f"--mount {text}: unknown field {next(iter(fields))!r}")
    if not source or not target:
        raise RunOptionError(f"--mount {text}: source and target are both needed")
    return Volume(_host_dir("--mount", text, source), _guest_path("--mount", text, target),
                  ro in ("true", "1"))


def parse_tmpfs(text: str) -> str:
    """--tmpfs PATH[:OPTIONS]; options are not passed on yet."""
    return _guest_path("--tmpfs", text, text.split(":", 1)[0])


def parse_network(text: str) -> str:
    if text in ("user", "bridge", "default"):
        return "user"
    if text == "none":
        return "none"
    raise RunOptionError(f"--network {text}: expected user or none")


def read_env_file(path: Path) -> list[str]:
    """--env-file: docker's format, one KEY=VALUE or KEY per line, # comments
    and blank lines skipped, values taken literally (no quotes removed)."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise RunOptionError(f"--env-file {path}: {e.strerror or e}") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key = stripped.split("=", 1)[0]
        if not key or any(c.isspace() for c in key):
            raise RunOptionError(f"--env-file {path}:{n}: {key!r} is not a variable name")
        out.append(stripped)
    return out


def env_with_files(env: Iterable[str], files: Iterable[Path]) -> tuple[str, ...]:
    """docker's order: --env-file entries first, -e after them (later wins)."""
    merged: list[str] = []
    for f in files:
        merged += read_env_file(f)
    return (*merged, *env)
