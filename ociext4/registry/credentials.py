"""Credentials for a registry, found where docker and podman keep them:
$REGISTRY_AUTH_FILE, podman's auth.json, then docker's config.json
(`credHelpers`, `credsStore` through `docker-credential-*` helpers, `auths`
with a base64 `auth`, username/password or an identity token)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuthError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""   # an OAuth2 refresh token, for Bearer realms

    def __repr__(self) -> str:  # never print secrets in a traceback
        return f"Credentials(username={self.username!r}, ...)"


def auth_files(env: dict[str, str] | None = None) -> list[Path]:
    """Where to look, most specific first."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    files = []
    if p := env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(p))
    if p := env.get("XDG_RUNTIME_DIR"):
        files.append(Path(p) / "containers" / "auth.json")
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "auth.json")
    files.append(Path(env.get("DOCKER_CONFIG") or home / ".docker") / "config.json")
    return files


def _key_name(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
            key = key.split("/", 1)[0]  # a URL key names a whole registry
            break
    key = key.rstrip("/")
    first, sep, rest = key.partition("/")
    if first in _HUB_NAMES:
        first = "docker.io"
    return first + sep + rest


def _matches(key: str, registry: str, repository: str) -> bool:
    name = _key_name(key)
    full = f"{registry}/{repository}"
    return name == registry or full == name or full.startswith(name + "/")


def _from_entry(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = str(entry.get("identitytoken") or "")
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=True).decode()
            user, sep, pw = raw.partition(":")
        except (ValueError, UnicodeDecodeError):  # binascii.Error, non-ASCII text
            raise AuthError(f"{where}: the base64 `auth` value is not valid") from None
        if not sep:
            raise AuthError(f"{where}: the `auth` value is not user:password")
        return Credentials(user, pw, token)
    if entry.get("username") or token:
        return Credentials(str(entry.get("username") or ""), str(entry.get("password") or ""),
                           token)
    return None


def run_helper(helper: str, server: str, env: dict[str, str] | None = None) -> Credentials | None:
    """Ask `docker-credential-HELPER get` for the server's credentials."""
    prog = f"docker-credential-{helper}"
    if not helper or "/" in helper or "\0" in helper:
        raise AuthError(f"{helper!r} is not a credential helper's name")
    try:
        proc = subprocess.run([prog, "get"], input=server, capture_output=True, text=True,
                              timeout=60, env=env, check=False)
    except FileNotFoundError:
        raise AuthError(f"credential helper {prog} is not on PATH (named in the docker "
                        "config)") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {prog} did not answer within 60 s") from None
    except OSError as e:
        raise AuthError(f"credential helper {prog[:80]}: {e.strerror or e}") from None
    if proc.returncode != 0:
        if "not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise AuthError(f"credential helper {prog} failed for {server}: "
                        f"{(proc.stderr or proc.stdout).strip()[:200]}")
    try:
        doc = json.loads(proc.stdout)
        user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper {prog} gave no JSON for {server}") from None
    if user == "<token>":  # the helper protocol's way of handing over an identity token
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


def _helper_server(registry: str) -> str:
    return DOCKER_HUB_KEY if registry == "docker.io" else registry


def lookup(registry: str, repository: str, env: dict[str, str] | None = None,
           files: list[Path] | None = None) -> Credentials | None:
    """The first credentials any auth file gives for registry/repository
    (`files`, else the usual places)."""
    env = dict(os.environ) if env is None else env
    for path in auth_files(env) if files is None else files:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            raise AuthError(f"{path}: unreadable auth file ({e})") from None
        if not isinstance(doc, dict):
            raise AuthError(f"{path}: not a JSON object")
        helpers = _object(doc, "credHelpers", path)
        for key, helper in helpers.items():
            if _matches(key, registry, repository):
                return run_helper(str(helper), _helper_server(registry), env)
        auths = _object(doc, "auths", path)
        # The most specific key wins (podman allows registry/namespace keys).
        keys = sorted((k for k in auths if _matches(k, registry, repository)),
                      key=lambda k: len(_key_name(k)), reverse=True)
        for key in keys:
            if creds := _from_entry(auths[key], f"{path}: auths[{key!r}]"):
                return creds
        if store := doc.get("credsStore"):
            if creds := run_helper(str(store), _helper_server(registry), env):
                return creds
    return None


def _object(doc: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    """A section of an auth file that must map names to entries, if there."""
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise AuthError(f"{path}: {key} must be a JSON object")
    return value


def fixed(user_pass: str) -> Callable[[str, str], Credentials]:
    """`USER:PASS` (as skopeo's --creds) for every registry of one command."""
    user, _, password = user_pass.partition(":")
    if not user:
        raise AuthError("--creds: give USER[:PASSWORD]")
    creds = Credentials(user, password)
    return lambda registry, repository: creds


def from_file(path: str) -> Callable[[str, str], Credentials | None]:
    """Credentials from this auth file only (as skopeo's --authfile)."""
    if not Path(path).is_file():
        raise AuthError(f"{path}: no such auth file")
    return lambda registry, repository: lookup(registry, repository, files=[Path(path)])


def docker_config(env: dict[str, str] | None = None) -> Path:
    """Where `docker login` writes: $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    return Path(env.get("DOCKER_CONFIG") or home / ".docker") / "config.json"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise AuthError(f"{path}: unreadable auth file ({e})") from None
    if not isinstance(doc, dict):
        raise AuthError(f"{path}: not a JSON object")
    return doc


def _write_config(path: Path, doc: dict[str, Any]) -> None:
    """Replaced whole, readable by its owner only (it holds passwords)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise AuthError(f"{path}: cannot write the auth file ({e.strerror})") from None


def save(registry: str, creds: Credentials, path: Path | None = None) -> Path:
    """Records the credentials for `registry` under `auths` as `docker login`
    does (base64 user:password), keeping everything else in the file."""
    path = path or docker_config()
    doc = _read_config(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = doc["auths"] = {}
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[_helper_server(registry)] = {"auth": token}
    _write_config(path, doc)
    return path


def remove(registry: str, path: Path | None = None) -> bool:
    """Forgets the credentials stored for `registry`; False if there were none."""
    path = path or docker_config()
    doc = _read_config(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return False
    keys = [k for k in auths if _key_name(k) == registry]
    for k in keys:
        del auths[k]
    if keys:
        _write_config(path, doc)
    return bool(keys)
