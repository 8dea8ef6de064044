"""What the guest runs: the image config merged with the command line, the
way `docker run` merges them, as records for the init."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import Ociext4Error
from ..model import ContainerConfig

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
class GuestMount:
    tag: str           # the virtiofs share's tag
    path: str          # where the guest mounts it
    read_only: bool


@dataclass(frozen=True, slots=True)
class GuestSettings:
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    hostname: str
    rw: bool = False                  # the root's writes kept in the image file
    read_only: bool = False           # a read-only root (else writable, thrown away)
    interactive: bool = False
    tty: bool = False
    winsize: tuple[int, int] | None = None      # rows, columns
    hosts: str | None = None          # /etc/hosts, /etc/resolv.conf as the guest sees them
    resolv: str | None = None
    network: tuple[str, str] | None = None      # eth0's address/prefix and gateway
    mounts: tuple[GuestMount, ...] = ()
    tmpfs: tuple[str, ...] = ()
    verity: str | None = None         # the dm-verity table over the disk (read-only root)

    def pairs(self) -> list[tuple[str, str]]:
        root = "rw" if self.rw else "ro" if self.read_only else "throwaway"
        out = ([("arg", a) for a in self.argv] + [("env", e) for e in self.env]
               + [("workdir", self.workdir), ("user", self.user),
                  ("hostname", self.hostname), ("root", root),
                  ("interactive", "1" if self.interactive else "0"),
                  ("tty", "1" if self.tty else "0")])
        if self.winsize:
            out.append(("winsize", f"{self.winsize[0]} {self.winsize[1]}"))
        if self.hosts is not None:
            out.append(("hosts", self.hosts))
        if self.resolv is not None:
            out.append(("resolv", self.resolv))
        if self.network:
            out += [("net.addr", self.network[0]), ("net.gw", self.network[1])]
        out += [("volume", f"{m.tag}\t{m.path}\t{'ro' if m.read_only else 'rw'}")
                for m in self.mounts]
        out += [("tmpfs", t) for t in self.tmpfs]
        if self.verity is not None:
            out.append(("verity", self.verity))
        return out


def hosts_file(hostname: str, address: str | None) -> str:
    """docker's /etc/hosts: localhost, the IPv6 names, and the guest's own
    name on its address when it has a network."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    if address:
        lines.append(f"{address}\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_file(nameserver: str, host_resolv: str) -> str:
    """The host's search domains and options, with QEMU's DNS relay (which
    asks the host's resolver) as the only nameserver, as docker does for a
    host whose own nameserver is on 127.0.0.1."""
    keep = [line for line in host_resolv.splitlines()
            if line.split()[:1] in (["search"], ["domain"], ["options"])]
    return "\n".join([f"nameserver {nameserver}", *keep]) + "\n"


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


def guest_settings(config: ContainerConfig, o: Overrides,
                   host_env: Mapping[str, str] | None = None) -> GuestSettings:
    """docker's rules: --entrypoint replaces Entrypoint and drops the image's
    Cmd; command-line arguments replace Cmd."""
    if o.entrypoint is not None:
        entry = [o.entrypoint] if o.entrypoint else []
        cmd = list(o.command)
    else:
        entry = list(config.entrypoint or ())
        cmd = list(o.command) or list(config.cmd or ())
    argv = entry + cmd
    if not argv:
        raise SettingsError("no command: the image has no Entrypoint or Cmd; "
                            "give one after the image (IMAGE -- CMD ...)")
    user = o.user if o.user is not None else config.user
    workdir = o.workdir if o.workdir is not None else config.working_dir or "/"
    if not workdir.startswith("/"):
        raise SettingsError(f"working directory {workdir!r} is not absolute")
    env = merge_env(config.env, o.env, o.hostname, host_env)
    return GuestSettings(argv, env, workdir, user, o.hostname, o.rw)
