"""Blob downloads into the cache: from the registry (through any redirects)
or a foreign layer's `urls`, hashed while streaming, resumed with a Range
request after a dropped connection (kept only on a 206 for exactly that
range, else started over), never stored under the digest unless it matches."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from ..errors import CacheError, DigestMismatch, RegistryError
from ..store import Ingest, Store
from .client import RegistryClient, error_for, no_answer, retry_delay

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

OnBytes = Callable[[int], None]


class Cancelled(RegistryError):
    """Another layer failed; this download stopped early."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: stopped, another download of the pull failed")


def fetch_blob(client: RegistryClient, store: Store, digest: str, size: int | None,
               urls: list[str], what: str, on_bytes: OnBytes | None = None,
               cancel: threading.Event | None = None) -> Path:
    """The blob's path in the cache, downloading it if it is not there yet
    (or waiting for the process that is downloading it)."""
    if store.has(digest, size):
        if on_bytes is not None and size:
            on_bytes(size)
        return store.blob_path(digest)

    def waiting() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(what)

    sources = [*urls, client.url(f"blobs/{digest}")]
    last: Exception | None = None
    for url in sources:
        try:
            return _download(client, store, url, digest, size, what, on_bytes, cancel, waiting)
        except (DigestMismatch, Cancelled, CacheError):
            raise
        except RegistryError as e:
            # A foreign layer's URL may be gone; the registry may still have the blob.
            last = e
    assert last is not None
    raise last


def _download(client: RegistryClient, store: Store, url: str, digest: str, size: int | None,
              what: str, on_bytes: OnBytes | None, cancel: threading.Event | None,
              waiting: Callable[[], None]) -> Path:
    ing = store.ingest(digest, size, what, waiting)
    if ing is None:  # another process fetched it while we waited
        if on_bytes is not None and size:
            on_bytes(size)
        return store.blob_path(digest)
    if on_bytes is not None and ing.offset:
        on_bytes(ing.offset)
    failures = timeouts = 0
    from_scratch = ing.resumed == 0
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(what)
            before = ing.offset
            err: Exception | None = None
            if ing.size is not None and ing.offset == ing.size:
                finished = True  # an earlier run got every byte but did not commit
            else:
                try:
                    finished = _one_request(client, ing, url, what, on_bytes, cancel)
                except (httpx.TransportError, httpx.StreamError) as e:
                    finished, err = False, e
            if finished:
                try:
                    return ing.commit()
                except DigestMismatch:
                    if from_scratch:
                        raise
                # What an earlier run left was not a prefix of this blob:
                # once more, from byte 0.
                if on_bytes is not None:
                    on_bytes(-ing.offset)
                from_scratch = True
                ing = store.ingest(digest, size, what, waiting)
                if ing is None:
                    return store.blob_path(digest)
                ing.restart()
                continue
            # A transfer that moved forward earns a fresh set of attempts.
            failures = 0 if ing.offset > before else failures + 1
            if isinstance(err, httpx.TimeoutException):
                timeouts = 0 if ing.offset > before else timeouts + 1
                if timeouts >= client.opts.timeout_attempts:
                    raise no_answer(what, httpx.URL(url).host, client.opts, timeouts)
            if failures >= client.opts.attempts:
                raise RegistryError(f"{what}: download kept failing at byte {ing.offset}"
                                    + (f" ({type(err).__name__}: {err})" if err else ""),
                                    temporary=True)
            time.sleep(retry_delay(None, failures, client.opts))
    except (DigestMismatch, CacheError):
        ing.discard()
        raise
    except BaseException:
        # Bytes that arrived are right so far: the next pull resumes after them.
        ing.discard(keep=True)
        raise


def _one_request(client: RegistryClient, ing: Ingest, url: str, what: str,
                 on_bytes: OnBytes | None, cancel: threading.Event | None) -> bool:
    """One GET (ranged if bytes are already in); True once the whole blob is in."""
    headers = {"Range": f"bytes={ing.offset}-"} if ing.offset else {}
    resp = client.open("GET", url, headers, what)
    try:
        if resp.status_code == 206 and ing.offset:
            m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
            if not m or int(m.group(1)) != ing.offset:
                # Not the range asked for: start again from byte 0.
                ing.restart()
                return False
        elif resp.status_code == 200:
            if ing.offset:
                if on_bytes is not None:
                    on_bytes(-ing.offset)
                ing.restart()  # the server ignored Range and sends it all again
            length = resp.headers.get("content-length")
            if length is not None and ing.size is not None and int(length) != ing.size:
                raise DigestMismatch(f"{what}: the server's Content-Length {length} is not "
                                     f"the {ing.size} bytes its descriptor gives")
        else:
            raise error_for(resp, what)
        # Unsized: every byte that arrived is kept if the connection drops next.
        for chunk in resp.iter_bytes():
            if cancel is not None and cancel.is_set():
                raise Cancelled(what)
            ing.write(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    finally:
        resp.close()
    return ing.size is None or ing.offset == ing.size
