"""How to reach registries, from what a user gives: options as the command
line spells them and the mirror config file.  One builder, so a Python
caller gets what `ociext4 pull` gets with the same inputs, the config file
included."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import RegistryError
from ..store import PullPolicy, default_root
from . import credentials
from .client import Options

CONFIG_ENV = "OCIEXT4_CONFIG"


def config_path(cache: str | os.PathLike[str] | None = None) -> Path:
    """$OCIEXT4_CONFIG, else config.json in the cache's root."""
    return Path(os.environ.get(CONFIG_ENV) or default_root(cache) / "config.json")


def registry_options(cache: str | os.PathLike[str] | None = None, *,
                     insecure: Iterable[str] = (), ca_cert: str | None = None,
                     timeout: float = 60.0, pull: PullPolicy | str = PullPolicy.MISSING,
                     creds: str | None = None, authfile: str | None = None,
                     mirrors: Iterable[str] = (), config: str | os.PathLike[str] | None = None,
                     warn: Callable[[str], None] | None = None) -> Options:
    """Options as `--insecure`, `--ca-cert`, `--timeout`, `--pull`,
    `--creds USER:PASSWORD`, `--authfile` and `--registry-mirror
    [REGISTRY=]HOST` give them, merged with the mirrors of the config file
    (`config`, else config_path(cache)); mirrors given here are tried before
    the file's."""
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    extra: dict[str, Callable[[str, str], credentials.Credentials | None]] = {}
    if creds is not None:
        extra["credentials"] = credentials.fixed(creds)
    elif authfile is not None:
        extra["credentials"] = credentials.from_file(authfile)
    table, plain = read_mirrors(Path(config) if config is not None else config_path(cache))
    given, plain_given = mirror_table([parse_mirror(m) for m in mirrors])
    for registry, hosts in given.items():
        table[registry] = (*hosts, *(h for h in table.get(registry, ()) if h not in hosts))
    return Options(insecure=frozenset(insecure) | plain | plain_given, ca_cert=ca_cert,
                   timeout=timeout, pull=PullPolicy(pull), warn=warn, mirrors=table, **extra)


def parse_mirror(text: str) -> tuple[str, str]:
    """`[REGISTRY=]HOST` as (registry, mirror); docker.io when no registry is named."""
    registry, sep, host = text.partition("=")
    return (registry, host) if sep else ("docker.io", text)


def read_mirrors(path: Path) -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    """Mirrors from a JSON config file: `{"registry-mirrors": [URL, ...]}` (as
    docker's daemon.json: for docker.io) and `{"mirrors": {REGISTRY: [HOST,
    ...]}}`; also the mirror hosts given as http:// URLs (plain http allowed).
    A missing file is no mirrors."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, frozenset()
    except (OSError, ValueError) as e:
        raise RegistryError(f"{path}: unreadable config ({e})") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{path}: not a JSON object")
    table: dict[str, list[str]] = {}
    hub = doc.get("registry-mirrors") or []
    per = doc.get("mirrors") or {}
    if not isinstance(hub, list) or not isinstance(per, dict) or \
            not all(isinstance(v, list) for v in per.values()):
        raise RegistryError(f"{path}: registry-mirrors must be a list and mirrors an object "
                            "of lists")
    table.setdefault("docker.io", []).extend(str(m) for m in hub)
    for registry, hosts in per.items():
        table.setdefault(str(registry), []).extend(str(m) for m in hosts)
    return mirror_table([(r, m) for r, ms in table.items() for m in ms])


def mirror_table(pairs: list[tuple[str, str]]
                 ) -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    """(registry, mirror) pairs, mirrors as host[:port] or URLs, to the
    Options' table and the hosts named with http:// (plain http allowed)."""
    table: dict[str, tuple[str, ...]] = {}
    plain: set[str] = set()
    for registry, mirror in pairs:
        host = mirror
        for scheme in ("https://", "http://"):
            if host.startswith(scheme):
                host = host[len(scheme):]
                if scheme == "http://":
                    plain.add(host.split("/")[0])
        host = host.split("/")[0]
        if not host:
            raise RegistryError(f"{mirror!r} is not a registry mirror (host[:port] or URL)")
        if host not in table.get(registry, ()):
            table[registry] = (*table.get(registry, ()), host)
    return table, frozenset(plain)
