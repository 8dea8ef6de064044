"""`ociext4 run [options] IMAGE [-- CMD ARGS...]`: boot an image in a thin
VM, run one command in it, and exit with the command's exit code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ociext4.errors import Ociext4Error, SourceError
from ociext4.runcache import image_for
from ociext4.vm.runner import EXIT_VM, VmOptions, exit_code, run_vm
from ociext4.vm.settings import Overrides, guest_settings

from .registryopts import add_platform_option, add_registry_options, registry_kwargs
from .units import parse_size


def add_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run", help="boot an image in a VM and run a command in it",
        description="Boot IMAGE in QEMU with the host's kernel and run its entrypoint, or "
                    "CMD, in it. IMAGE is an ext4 file made by `ociext4 unpack` (its config "
                    "is read from IMAGE.json beside it), oci:DIR[:TAG|@DIGEST], "
                    "docker-archive:FILE or a registry image name (pulled into the blob "
                    "cache; each image is unpacked once into a cache of ext4 images). The "
                    "exit code is the command's; 125 when ociext4 or the VM fails, 126 when "
                    "the command cannot be run, 127 when it is not found, 128+N when signal "
                    "N killed it.")
    p.add_argument("image", help="IMAGE.img, oci:DIR[:TAG|@DIGEST], docker-archive:FILE or "
                                 "a registry image name (pulled into the cache)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="command and arguments (after --), replacing the image's Cmd")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                   help="set an environment variable (KEY alone copies the host's value)")
    p.add_argument("-w", "--workdir", help="working directory in the guest")
    p.add_argument("-u", "--user", help="user[:group], as names or numbers")
    p.add_argument("--entrypoint", help="replace the image's Entrypoint (and drop its Cmd)")
    p.add_argument("--rw", action="store_true",
                   help="keep the guest's writes in the image file (default: discarded)")
    p.add_argument("--memory", type=_memory, default=512, metavar="SIZE",
                   help="guest memory (default 512M; a bare number is MiB)")
    p.add_argument("--cpus", type=_cpus, default=1, help="guest CPUs (default 1)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto",
                   help="KVM or TCG; auto uses KVM only where a probe boot proves it works")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="stop the VM after this long (exit 125)")
    p.add_argument("--kernel", type=Path, help="kernel image (default: the newest /boot/vmlinuz-*)")
    p.add_argument("--console", action="store_true",
                   help="show the kernel's messages on stderr")
    add_platform_option(p, "os/arch[/variant] for image references (default: the host's)")
    add_registry_options(p, timeout_flag="--registry-timeout")
    p.set_defaults(run=run_run)
    p.error_code = 125  # type: ignore[attr-defined]  # docker run's code for its own errors


def _memory(text: str) -> int:
    mib = int(text) if text.isdigit() else parse_size(text) >> 20
    if mib < 64:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 64M")
    return mib


def _cpus(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: a number from 1 to 64")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number of seconds")
    return value


# ---------------------------------------------------------------- the run


def split_command(image: str, rest: list[str]) -> list[str]:
    """What follows IMAGE is the command, as with docker run; a `--` before
    it is optional. Options after IMAGE and before a `--` are a mistake worth
    naming rather than a command called `-u`."""
    if rest[:1] == ["--"]:
        return rest[1:]
    if rest and rest[0].startswith("-") and "--" in rest:
        raise SourceError(f"{rest[0]}: options go before the image ({image}); "
                          "everything after it is the command")
    return rest


def run_run(args: argparse.Namespace, started: float) -> int:
    command = list(args.command)
    try:
        command = split_command(args.image, command)
        img, config = image_for(args.image, args.platform, rw=args.rw,
                                **registry_kwargs(args, args.image))
        settings = guest_settings(config.to_json(), Overrides(
            command=command, entrypoint=args.entrypoint, env=args.env, workdir=args.workdir,
            user=args.user, rw=args.rw))
        opts = VmOptions(kernel=args.kernel, accel=args.accel, memory_mib=args.memory,
                         cpus=args.cpus, timeout=args.timeout, console=args.console)
        sys.stdout.flush()
        outcome = run_vm(img, settings, opts, sys.stdout.buffer, sys.stderr.buffer)
    except Ociext4Error as e:
        print(f"ociext4: error: {e}", file=sys.stderr)
        return EXIT_VM
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"ociext4: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_VM
    code, why = exit_code(outcome)
    if why:
        print(f"ociext4: error: {why}", file=sys.stderr)
    return code
