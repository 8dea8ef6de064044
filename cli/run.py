"""`ociext4 run [options] IMAGE [-- CMD ARGS...]`: boot an image in a thin
VM, run one command in it, and exit with the command's exit code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from ociext4.errors import Ociext4Error, SourceError
from ociext4.ext4.verity import parse_root_hash
from ociext4.runcache import image_for
from ociext4.vm.errors import RunOptionError
from ociext4.vm.options import (
    env_with_files,
    parse_cpus,
    parse_memory,
    parse_mount,
    parse_network,
    parse_publish,
    parse_tmpfs,
    parse_volume,
)
from ociext4.vm.runner import EXIT_VM, run_vm
from ociext4.vm.spec import DEFAULT_STOP_TIMEOUT, MIN_MEMORY_MIB, RunSpec

from .registryopts import add_platform_option, add_registry_options, registry_kwargs
from .units import parse_seconds


class _RunParser(argparse.ArgumentParser):
    """docker run's conventions: option errors exit 125 with one line, and
    an unknown option is an error of `run` itself (not left to the top)."""

    def error(self, message: str) -> NoReturn:
        print(f"ociext4: error: run: {message}", file=sys.stderr)
        raise SystemExit(EXIT_VM)

    def parse_known_args(self, args: Any = None,
                         namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def add_run(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    # argparse makes every subparser of one class; only run's errors are
    # docker run's 125, so the class is swapped for this one parser.
    parser_class = sub._parser_class
    sub._parser_class = _RunParser
    try:
        p = sub.add_parser(
            "run", help=help, add_help=False,
            description="Boot IMAGE in QEMU with the host's kernel and run its entrypoint, "
                        "or CMD, in it. IMAGE is an ext4 file made by `ociext4 unpack` (its "
                        "config is read from IMAGE.json beside it), oci:DIR[:TAG|@DIGEST], "
                        "docker-archive:FILE or a registry image name (pulled into the blob "
                        "cache; each image is unpacked once into a cache of ext4 images). "
                        "The exit code is the command's; 125 when ociext4 or the VM fails "
                        "(option errors included), 126 when the command cannot be run, 127 "
                        "when it is not found, 128+N when signal N killed it.")
    finally:
        sub._parser_class = parser_class
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("image", help="IMAGE.img, oci:DIR[:TAG|@DIGEST], docker-archive:FILE or "
                                 "a registry image name (pulled into the cache)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="command and arguments (after --), replacing the image's Cmd")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                   help="set an environment variable (KEY alone copies the host's value)")
    p.add_argument("--env-file", action="append", default=[], type=Path, metavar="FILE",
                   help="read KEY=VALUE lines from FILE (before -e)")
    p.add_argument("-w", "--workdir", help="working directory in the guest (made if missing)")
    p.add_argument("-u", "--user", help="user[:group], as names or numbers")
    p.add_argument("-h", "--hostname", default="ociext4", help="the guest's host name")
    p.add_argument("--entrypoint", help="replace the image's Entrypoint (and drop its Cmd)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="pass stdin to the command (else it reads /dev/null)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the command a terminal (the host's is put in raw mode)")
    root = p.add_mutually_exclusive_group()
    root.add_argument("--rw", action="store_true",
                      help="keep the guest's writes in the image file (default: the root "
                           "is writable and its writes are thrown away)")
    root.add_argument("--read-only", action="store_true", help="a read-only root")
    p.add_argument("--verity-root-hash", type=_root_hash, metavar="HASH",
                   help="boot under dm-verity pinned to this root hash (default: an image "
                        "made with --verity boots under its sidecar's)")
    p.add_argument("--rm", action="store_true",
                   help="accepted for docker's sake: no container is left to remove")
    p.add_argument("--network", "--net", default="user", metavar="user|none",
                   help="user (default): QEMU's user-mode network, the host's 127.0.0.1 at "
                        "10.0.2.2; none: loopback only")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]",
                   help="forward a host port (on 127.0.0.1 unless HOSTIP) to the guest")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:GUEST[:ro]",
                   help="share a host directory with the guest (virtiofs)")
    p.add_argument("--mount", action="append", default=[],
                   metavar="type=bind,source=HOST,target=GUEST[,readonly]",
                   help="share a host directory, docker's long form")
    p.add_argument("--tmpfs", action="append", default=[], metavar="PATH",
                   help="mount an empty tmpfs at PATH")
    p.add_argument("-m", "--memory", default="512m", metavar="SIZE",
                   help=f"guest memory (default 512m, at least {MIN_MEMORY_MIB}m; "
                        "a bare number is MiB)")
    p.add_argument("--cpus", default="1",
                   help="guest CPUs (default 1; more than the host has are capped)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto",
                   help="KVM or TCG; auto uses KVM only where a probe boot proves it works")
    p.add_argument("--timeout", type=parse_seconds, metavar="SECONDS",
                   help="stop the VM after this long (exit 125)")
    p.add_argument("--stop-timeout", type=parse_seconds, default=DEFAULT_STOP_TIMEOUT,
                   metavar="SECONDS",
                   help="after SIGINT or SIGTERM reaches the command, kill the VM if it is "
                        "still running this much later (default 10)")
    p.add_argument("--kernel", type=Path, help="kernel image (default: the newest /boot/vmlinuz-*)")
    p.add_argument("--console", action="store_true",
                   help="show the kernel's messages on stderr")
    add_platform_option(p, "os/arch[/variant] for image references (default: the host's)")
    add_registry_options(p, timeout_flag="--registry-timeout")
    p.set_defaults(run=run_run)


def _root_hash(text: str) -> str:
    try:
        return parse_root_hash(text)
    except Ociext4Error as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run_spec(args: argparse.Namespace, command: list[str]) -> tuple[RunSpec, list[str]]:
    """The spec the options make, and warnings to show."""
    cpus, warning = parse_cpus(args.cpus)
    volumes = [parse_volume(v) for v in args.volume] + [parse_mount(m) for m in args.mount]
    spec = RunSpec(
        command=tuple(command), entrypoint=args.entrypoint,
        env=env_with_files(args.env, args.env_file), workdir=args.workdir, user=args.user,
        hostname=args.hostname, rw=args.rw, read_only=args.read_only,
        interactive=args.interactive, tty=args.tty, network=parse_network(args.network),
        publish=tuple(parse_publish(p) for p in args.publish), volumes=tuple(volumes),
        tmpfs=tuple(parse_tmpfs(t) for t in args.tmpfs), memory_mib=parse_memory(args.memory),
        cpus=cpus, timeout=args.timeout, stop_timeout=args.stop_timeout, kernel=args.kernel,
        accel=args.accel, console=args.console, forward_signals=True,
        verity_root_hash=args.verity_root_hash)
    if spec.publish and spec.network == "none":
        raise RunOptionError("-p needs a network; it cannot be used with --network none")
    return spec, [warning] if warning else []


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
    if sys.stdout is None:
        # Started with stdout closed: nothing could be written anywhere.
        print("ociext4: error: stdout: Bad file descriptor", file=sys.stderr)
        return EXIT_VM
    try:
        command = split_command(args.image, command)
        spec, warnings = run_spec(args, command)
        for w in warnings:
            print(f"ociext4: warning: {w}", file=sys.stderr)
        img, config = image_for(args.image, args.platform, rw=args.rw,
                                **registry_kwargs(args, args.image))
        sys.stdout.flush()
        sys.stderr.flush()
        result = run_vm(img, config, spec, sys.stdin, sys.stdout.buffer, sys.stderr.buffer)
    except Ociext4Error as e:
        print(f"ociext4: error: {e}", file=sys.stderr)
        return EXIT_VM
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"ociext4: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_VM
    if result.error:
        print(f"ociext4: error: {result.error}", file=sys.stderr)
    return result.exit_code
