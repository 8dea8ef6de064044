"""What one run asks for: the typed form of `ociext4 run`'s options, shared
by the command line and the Python API. Strings such as `-p 8080:80` are
turned into these records by ociext4.vm.options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MEMORY_MIB = 512
# Below this the cloud kernel panics while unpacking its initramfs or
# setting up the page tables (64M does; 128M boots and runs a shell).
MIN_MEMORY_MIB = 128
DEFAULT_STOP_TIMEOUT = 10.0   # seconds, as docker's


@dataclass(frozen=True, slots=True)
class Publish:
    """-p [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]"""

    host_port: int
    guest_port: int
    protocol: str = "tcp"
    host_ip: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Volume:
    """-v HOST:GUEST[:ro] or --mount type=bind,source=HOST,target=GUEST[,readonly]"""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything about a run but the image: None leaves a field to the
    image config (command, entrypoint, workdir, user) or to the default."""

    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    env: tuple[str, ...] = ()          # KEY=VALUE, or KEY to copy the host's value
    workdir: str | None = None
    user: str | None = None
    hostname: str = "ociext4"
    rw: bool = False                   # keep the guest's writes in the image file
    read_only: bool = False            # a read-only root (else a throwaway writable one)
    interactive: bool = False          # -i: stdin passed through, with its EOF
    tty: bool = False                  # -t: the command gets a terminal
    network: str = "user"              # "user" or "none"
    publish: tuple[Publish, ...] = ()
    volumes: tuple[Volume, ...] = ()
    tmpfs: tuple[str, ...] = ()
    memory_mib: int = DEFAULT_MEMORY_MIB
    cpus: int = 1
    timeout: float | None = None       # stop the VM after this long (exit 125)
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    kernel: Path | None = None
    accel: str = "auto"
    console: bool = False              # the kernel's messages on stderr
    forward_signals: bool = False      # SIGINT, SIGTERM, ... reach the guest (main thread only)
    extra_hosts: tuple[tuple[str, str], ...] = field(default=())   # (name, address)
    # A dm-verity root hash the caller trusts, instead of the sidecar's; an
    # image with a hash tree always boots under dm-verity.
    verity_root_hash: str | None = None
