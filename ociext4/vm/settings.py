"""What the guest runs: the image config merged with the command line, the
way `docker run` merges them, as records for the init."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Ociext4Error

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_HOSTNAME = "ociext4"


class SettingsError(Ociext4Error):
    """The image config and the command line do not make a runnable command."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line says (None: the image config decides)."""

    command: Sequence[str] = ()
    entrypoint: str | None = None
    env: Sequence[str] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str = DEFAULT_HOSTNAME
    rw: bool = False


@dataclass(frozen=True, slots=True)
class GuestSettings:
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    hostname: str
    rw: bool = False

    def pairs(self) -> list[tuple[str, str]]:
        return ([("arg", a) for a in self.argv] + [("env", e) for e in self.env]
                + [("workdir", self.workdir), ("user", self.user),
                   ("hostname", self.hostname), ("rw", "1" if self.rw else "0")])


def _strings(config: Mapping[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if isinstance(value, str):  # docker's shell form, as some configs store it
        return ["/bin/sh", "-c", value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"image config {key} is not a list of strings: {value!r}")
    return list(value)


def merge_env(image_env: Sequence[str], cli_env: Sequence[str], hostname: str,
              host_env: Mapping[str, str] | None = None) -> list[str]:
    """Image Env, then -e (KEY=VALUE sets, a bare KEY copies the host's value
    or is dropped when the host has none), PATH and HOSTNAME by default."""
    host = os.environ if host_env is None else host_env
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    for item in cli_env:
        key, sep, value = item.partition("=")
        if not key:
            raise SettingsError(f"-e {item!r}: no variable name")
        if sep:
            merged[key] = value
        elif key in host:
            merged[key] = host[key]
    merged.setdefault("PATH", DEFAULT_PATH)
    merged.setdefault("HOSTNAME", hostname)
    return [f"{k}={v}" for k, v in merged.items()]


def guest_settings(config: Mapping[str, Any], o: Overrides,
                   host_env: Mapping[str, str] | None = None) -> GuestSettings:
    """docker's rules: --entrypoint replaces Entrypoint and drops the image's
    Cmd; command-line arguments replace Cmd."""
    if o.entrypoint is not None:
        entry = [o.entrypoint] if o.entrypoint else []
        cmd = list(o.command)
    else:
        entry = _strings(config, "Entrypoint")
        cmd = list(o.command) or _strings(config, "Cmd")
    argv = entry + cmd
    if not argv:
        raise SettingsError("no command: the image has no Entrypoint or Cmd; "
                            "give one after the image (IMAGE -- CMD ...)")
    user = o.user if o.user is not None else str(config.get("User") or "")
    workdir = o.workdir if o.workdir is not None else str(config.get("WorkingDir") or "/")
    if not workdir.startswith("/"):
        raise SettingsError(f"working directory {workdir!r} is not absolute")
    image_env = config.get("Env") or []
    if not isinstance(image_env, list) or not all(isinstance(v, str) for v in image_env):
        raise SettingsError(f"image config Env is not a list of strings: {image_env!r}")
    env = merge_env(image_env, o.env, o.hostname, host_env)
    return GuestSettings(argv, env, workdir, user, o.hostname, o.rw)
