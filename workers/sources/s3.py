"""S3-compatible buckets: safe keys, streaming reads with a size limit, and a polling watcher.

Documents in a bucket have source ``s3://bucket`` and key = the object key, so
the watcher, the notification webhook and the parse stage agree on document
ids. ``Event.version`` is the sha256 of the object's bytes (the parse stage
checks it), which an ETag is not (multipart ETags are not even an MD5). The
watcher therefore hashes an object when its ETag is new to it, streaming, and
remembers the (ETag -> sha256) pair in Redis: a restart with Redis intact
re-lists the bucket without downloading anything; a Redis loss costs one
download per object, never an embedding.

The polling watcher is workers/ingress/s3_watcher.py.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterator
from functools import cache
from typing import Any

from pipelines.errors import PermanentError, TransientError, mib, too_large
from schemas.events import Action, Event, content_version, document_id
from schemas.settings import Settings
from workers.runtime.config import settings
from workers.runtime.state import State

S3 = "s3://"
MAX_KEY_BYTES = 1024  # S3's own limit; anything longer is not a real key
BLOCK = 1 << 20
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_RETRYABLE = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
              "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def s3_source(bucket: str) -> str:
    return S3 + bucket


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix)."""
    if not url.startswith(S3):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url.removeprefix(S3).partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"not a valid bucket name: {bucket!r}")
    if prefix and key_problem(prefix.rstrip("/") or "x"):
        raise ValueError(f"unsafe prefix {prefix!r}: {key_problem(prefix.rstrip('/'))}")
    return bucket, prefix


def key_problem(key: str) -> str | None:
    """Why an object key is refused, or None. Keys are untrusted: they name files in logs,
    parsers and (for a careless consumer) the file system, so refuse anything that could
    climb, hide or spoof."""
    if not key:
        return "empty key"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "key is not valid UTF-8"
    if size > MAX_KEY_BYTES:
        return f"key is {size} bytes, over the {MAX_KEY_BYTES}-byte limit"
    if any(unicodedata.category(c) == "Cc" or c in _BIDI for c in key):
        return "key contains control or bidirectional-override characters"
    if key.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", key):
        return "key is an absolute path"
    if ".." in re.split(r"[/\\]", key):
        return "key contains a '..' path segment"
    return None


@cache
def _client(endpoint: str | None, region: str, key_id: str | None, secret: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint else {},
    )
    session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region)
    return session.client("s3", endpoint_url=endpoint, config=config)


_client_lock = threading.Lock()


def client(config: Settings) -> Any:
    """A boto3 S3 client from settings (boto3 clients are thread-safe; sessions are not)."""
    with _client_lock:
        return _client(
            config.s3_endpoint_url,
            config.s3_region,
            config.s3_access_key_id.get_secret_value() if config.s3_access_key_id else None,
            config.s3_secret_access_key.get_secret_value() if config.s3_secret_access_key else None,
        )


def _refusal(exc: Exception, what: str) -> Exception:
    """Map an S3 client error to transient (retry) or permanent (dead letter, with the code)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in _RETRYABLE:
            return PermanentError(f"S3 refused {what}: {code or exc}")
    return TransientError(f"S3 unreachable reading {what}: {type(exc).__name__}: {exc}")


def etag_of(obj: dict[str, Any]) -> str:
    """Listings quote ETags, notifications do not: compare them unquoted."""
    return str(obj.get("ETag") or "").strip('"')


def blocks(s3: Any, bucket: str, key: str, max_bytes: int) -> tuple[str, Iterator[bytes]] | None:
    """(ETag, byte blocks) of an object, streamed; None when it does not exist.

    Over ``max_bytes`` is a permanent error, checked on the declared length and
    again while reading (a length header is not proof)."""
    from botocore.exceptions import BotoCoreError, ClientError

    what = f"s3://{bucket}/{key}"
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING:
            return None
        raise _refusal(exc, what) from exc
    except BotoCoreError as exc:
        raise _refusal(exc, what) from exc
    body = obj["Body"]
    if int(obj.get("ContentLength") or 0) > max_bytes:
        body.close()
        raise too_large("object", obj["ContentLength"], max_bytes)

    def stream() -> Iterator[bytes]:
        seen = 0
        try:
            for block in body.iter_chunks(BLOCK):
                seen += len(block)
                if seen > max_bytes:
                    raise PermanentError(f"object grew past the {mib(max_bytes)} limit while being read")
                yield block
        except (BotoCoreError, OSError) as exc:
            raise _refusal(exc, what) from exc
        finally:
            body.close()

    return etag_of(obj), stream()


def _guarded(pages: Any, what: str) -> Iterator[dict[str, Any]]:
    """Pages of a listing, with S3 errors mapped to transient or permanent."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield from pages
    except (BotoCoreError, ClientError) as exc:
        raise _refusal(exc, what) from exc


def read_object(source: str, key: str, max_bytes: int) -> bytes | None:
    """``sources.read`` for ``s3://bucket`` sources (used by the parse stage)."""
    if problem := key_problem(key):
        raise PermanentError(f"refused object key: {problem}")
    found = blocks(client(settings()), source.removeprefix(S3), key, max_bytes)
    return None if found is None else b"".join(found[1])


def digest(s3: Any, bucket: str, key: str, max_bytes: int) -> tuple[str, str] | None:
    """(sha256 of the bytes, ETag) of an object, streamed; None when it does not exist."""
    found = blocks(s3, bucket, key, max_bytes)
    if found is None:
        return None
    etag, stream = found
    return content_version(stream), etag


def object_event(
    state: State, c: Any, bucket: str, key: str, etag: str | None, tenant: str, max_bytes: int
) -> Event | None:
    """A create/modify event for an object (None if it is gone by now).

    An object that cannot be hashed for a permanent reason (too large, access
    denied) still becomes an event, versioned by its ETag, so the parse stage
    dead-letters it with that reason instead of it vanishing silently."""
    source = s3_source(bucket)
    doc_id = document_id(source, key)
    etag = (etag or "").strip('"')
    version = state.object_digest(doc_id, etag) if etag else None
    if version is None:
        try:
            found = digest(c, bucket, key, max_bytes)
        except PermanentError:
            found = (f"etag:{etag or 'unknown'}", "")  # parse meets the same error and records it
        if found is None:
            return None
        version, etag_now = found
        if etag_now:
            state.remember_digest(doc_id, etag_now, version)
    action = Action.modify if state.indexed_version(doc_id) is not None else Action.create
    return Event(source=source, key=key, action=action, version=version, tenant=tenant)


def version_of(state: State, s3: Any, bucket: str, key: str, max_bytes: int) -> str | None:
    """Current sha256 of an object (None if gone); a HEAD suffices when its ETag was hashed before."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING:
            return None
        raise _refusal(exc, f"s3://{bucket}/{key}") from exc
    except BotoCoreError as exc:
        raise _refusal(exc, f"s3://{bucket}/{key}") from exc
    doc_id = document_id(s3_source(bucket), key)
    if cached := state.object_digest(doc_id, etag_of(head)):
        return cached
    found = digest(s3, bucket, key, max_bytes)
    if found is None:
        return None
    state.remember_digest(doc_id, found[1], found[0])
    return found[0]
