"""Where an image is when it is not a plain local path: ``file://`` URIs and object storage
(``s3://``, ``gs://``), read through pyarrow's file systems with every network wait bounded, the
size capped, and an unreachable bucket tried once per run (one timeout, not one per row)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from scoring.errors import UnsafePathError

URI_SCHEME = "://"
OBJECT_STORES = ("s3", "gs", "gcs")  # read through pyarrow's file systems, with timeouts
NETWORK_TIMEOUT_S = 30.0  # connect and each request to object storage
UNREACHABLE: dict[tuple[str, str], str] = {}  # (scheme, bucket) that failed this run -> why
FAILED_WAIT_BUDGET_S = 120.0  # in all, per run: after this long spent on requests that failed, none is tried
_FAILED_WAIT = [0.0]  # seconds spent on failed object-storage requests in this run (process)


def is_uri(path: str | Path) -> bool:
    """``s3://bucket/x.jpg``, ``gs://...``, ``file:///...``: not a plain local path."""
    return isinstance(path, str) and URI_SCHEME in path


def local_path_of(uri: str) -> Path | None:
    """The local path a ``file://`` URI names (None for any other scheme)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme.lower() != "file":
        return None
    if parsed.netloc not in ("", "localhost"):
        raise UnsafePathError(f"{uri}: a file:// URI on another host ({parsed.netloc}) cannot be read; copy it here")
    return Path(unquote(parsed.path))


def _object_store(uri: str, scheme: str) -> tuple[Any, str]:
    """pyarrow's file system for ``uri`` with every network wait bounded (NETWORK_TIMEOUT_S)."""
    try:
        from pyarrow import fs
    except ImportError as exc:
        raise OSError(
            f"reading {uri} needs pyarrow (pip install 'image-triage[ray]' or pip install pyarrow)"
        ) from exc
    bucket_path = uri.split(URI_SCHEME, 1)[1]
    if scheme == "s3":
        filesystem, inner = fs.FileSystem.from_uri(uri)
        opts = {"connect_timeout": NETWORK_TIMEOUT_S, "request_timeout": NETWORK_TIMEOUT_S}
        region = getattr(filesystem, "region", None)
        return fs.S3FileSystem(**opts, **({"region": region} if region else {})), inner
    import datetime

    return fs.GcsFileSystem(retry_time_limit=datetime.timedelta(seconds=NETWORK_TIMEOUT_S)), bucket_path



def read_object(uri: str, max_bytes: int) -> bytes:
    """The bytes of an object-storage URI (``s3://``, ``gs://``), at most ``max_bytes``; any
    other scheme is refused in one line. A bucket that did not answer (a timeout, a refused
    connection) is not tried again in this run: its later rows fail at once, naming why."""
    scheme = uri.split(URI_SCHEME, 1)[0].lower()
    if scheme not in OBJECT_STORES:
        raise UnsafePathError(
            f"{uri}: Image Triage reads local files, file:// and object storage ({', '.join(OBJECT_STORES)}) only; "
            "download the file and list its local path"
        )
    bucket = uri.split(URI_SCHEME, 1)[1].split("/", 1)[0]
    if (scheme, bucket) in UNREACHABLE:
        raise OSError(f"{uri}: {scheme}://{bucket} did not answer earlier in this run "
                      f"({UNREACHABLE[(scheme, bucket)]}); not tried again")
    if _FAILED_WAIT[0] >= FAILED_WAIT_BUDGET_S:  # many buckets, each failing slowly: an overall deadline
        raise OSError(f"{uri}: not tried: object storage already cost {_FAILED_WAIT[0]:.0f} s of failed requests in "
                      "this run; check the network and the credentials, then run again")
    t0 = time.monotonic()
    filesystem, inner = _object_store(uri, scheme)
    try:
        with filesystem.open_input_file(inner) as fh:
            size = fh.size()
            if size > max_bytes:
                raise UnsafePathError(f"{uri}: {size / 2**20:,.0f} MiB is larger than the {max_bytes / 2**20:,.0f} MiB cap")
            return bytes(fh.read(size))
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):  # "no such object" is an answer: the bucket is reachable
            UNREACHABLE[(scheme, bucket)] = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            _FAILED_WAIT[0] += time.monotonic() - t0
        raise
