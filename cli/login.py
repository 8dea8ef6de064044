"""`ociext4 login HOST` and `logout HOST`: credentials in docker's config format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ociext4.errors import AuthError


def add_login(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "login", help=help,
        description="Check the credentials against the registry, then store them as "
                    "`docker login` does: in $DOCKER_CONFIG/config.json or "
                    "~/.docker/config.json (or --authfile FILE), readable by you only.")
    p.add_argument("host", nargs="?", default="docker.io",
                   help="registry host[:port] (default: docker.io)")
    p.add_argument("-u", "--username", help="user name (asked for on a terminal if left out)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password (or token) from standard input")
    p.add_argument("--authfile", metavar="FILE", help="the auth file to write instead")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain http and unverified TLS for this registry")
    p.add_argument("--ca-cert", metavar="FILE", help="PEM bundle of CAs to trust")
    p.set_defaults(run=run_login)


def add_logout(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    out = sub.add_parser("logout", help=help)
    out.add_argument("host", nargs="?", default="docker.io",
                     help="registry host[:port] (default: docker.io)")
    out.add_argument("--authfile", metavar="FILE", help="the auth file to change instead")
    out.set_defaults(run=run_logout)


def _ask(prompt: str, secret: bool) -> str:
    if not sys.stdin.isatty():
        raise AuthError(f"{prompt.rstrip(': ')} not given (use -u and --password-stdin "
                        "when not on a terminal)")
    import getpass

    return getpass.getpass(prompt) if secret else input(prompt)


def run_login(args: argparse.Namespace, started: float) -> int:
    from ociext4.registry import Options, credentials
    from ociext4.registry.client import check_login
    from ociext4.registry.credentials import Credentials

    user = args.username or _ask("username: ", secret=False)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = _ask(f"password for {user}: ", secret=True)
    if not user or not password:
        raise AuthError(f"{args.host}: a user name and a password are needed")
    creds = Credentials(user, password)
    opts = Options(insecure=frozenset([args.host] if args.insecure else []),
                   ca_cert=args.ca_cert, credentials=lambda registry, repository: creds)
    check_login(args.host, opts)
    path = credentials.save(args.host, creds, Path(args.authfile) if args.authfile else None)
    print(f"login to {args.host} succeeded; credentials stored in {path}", file=sys.stderr)
    return 0


def run_logout(args: argparse.Namespace, started: float) -> int:
    from ociext4.registry import credentials

    path = Path(args.authfile) if args.authfile else credentials.docker_config()
    if not credentials.remove(args.host, path):
        raise AuthError(f"{path}: no credentials stored for {args.host}")
    print(f"removed the credentials for {args.host} from {path}", file=sys.stderr)
    return 0
