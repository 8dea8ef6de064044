"""Options every command that reads registries or the cache shares."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ociext4.model import Platform, PlatformSyntaxError
from ociext4.reference import parse_local
from ociext4.store import PullPolicy, Store, default_root

from .units import parse_seconds

if TYPE_CHECKING:
    from ociext4.registry import Options


def add_platform_option(p: argparse.ArgumentParser,
                        help: str = "os/arch[/variant] (default: the host's)") -> None:
    p.add_argument("--platform", type=platform_option, help=help)


def platform_option(text: str) -> Platform:
    """As docker reads --platform (linux/arm64, arm64, arm64/v8, ...)."""
    try:
        return Platform.parse(text)
    except PlatformSyntaxError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="DIR",
                   help="the blob cache, an OCI image layout (default: $OCIEXT4_CACHE, else "
                        "$XDG_CACHE_HOME/ociext4 or ~/.cache/ociext4)")


def add_registry_options(p: argparse.ArgumentParser, timeout_flag: str = "--timeout") -> None:
    """`timeout_flag` renames --timeout where a command has one of its own (run)."""
    add_cache_option(p)
    p.add_argument("--insecure", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow plain http and unverified TLS for this registry (loopback "
                        "registries may use http without it); repeatable")
    p.add_argument("--ca-cert", metavar="FILE",
                   help="PEM bundle of CAs to trust for registries with a private CA")
    p.add_argument(timeout_flag, dest="registry_timeout", type=parse_seconds, default=60.0,
                   metavar="SECONDS",
                   help="give up on a registry that sends nothing for this long, after a "
                        "second try (default: 60)")
    p.add_argument("--creds", metavar="USER[:PASSWORD]",
                   help="credentials for the registry (asked for on a terminal if the "
                        "password is left out)")
    p.add_argument("--authfile", metavar="FILE",
                   help="read credentials from this docker/podman auth file only")
    p.add_argument("--registry-mirror", action="append", default=[],
                   metavar="[REGISTRY=]HOST",
                   help="try this mirror before the registry (docker.io unless REGISTRY= "
                        "says which); repeatable. Also read from $OCIEXT4_CONFIG, else "
                        "config.json in the cache root: {\"registry-mirrors\": [...]} as in "
                        "docker's daemon.json, {\"mirrors\": {REGISTRY: [HOST, ...]}}")
    p.add_argument("--pull", type=PullPolicy, choices=list(PullPolicy), default=PullPolicy.MISSING,
                   metavar="{always,missing,never}",
                   help="when to ask the registry about a tag: always (use the cached image "
                        "only if the registry cannot be reached), missing (only when the tag "
                        "is not cached), never (no network at all); default: %(default)s")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")


def options_from(args: argparse.Namespace) -> Options:
    # The registry client (httpx) takes a third of the CLI's start-up: only
    # commands that talk to a registry load it.
    from ociext4.registry.config import registry_options

    creds = args.creds
    if creds and ":" not in creds and sys.stdin.isatty():
        import getpass

        creds += ":" + getpass.getpass(f"password for {creds}: ")
    return registry_options(args.cache, insecure=args.insecure, ca_cert=args.ca_cert,
                            timeout=args.registry_timeout, pull=args.pull, creds=creds or None,
                            authfile=args.authfile, mirrors=args.registry_mirror, warn=_warn)


def _warn(text: str) -> None:
    print(f"ociext4: warning: {text}", file=sys.stderr)


def registry_kwargs(args: argparse.Namespace, reference: str) -> dict[str, Any]:
    """The cache and registry options as keyword arguments of the API; the
    registry client is loaded only when `reference` names a registry image."""
    if parse_local(reference) is not None or os.path.exists(reference):
        return {"cache": args.cache}
    return {"cache": args.cache, "registry": options_from(args)}


def store_from(args: argparse.Namespace) -> Store:
    return Store(default_root(args.cache))


def show_progress(args: argparse.Namespace) -> bool:
    if getattr(args, "quiet", False):
        return False
    forced = getattr(args, "progress", None)
    return sys.stderr.isatty() if forced is None else bool(forced)
