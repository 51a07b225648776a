"""The S3 bucket watcher: polls ListObjectsV2 under a prefix; new and changed ETags become events.

An object's version is the sha256 of its bytes (workers/sources/s3.py hashes an object when its
ETag is new and remembers the pair in Redis), so a restart with Redis intact re-lists the bucket
without downloading anything."""

from __future__ import annotations

import logging
import threading
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

from pipelines.errors import PermanentError, TransientError
from schemas.events import Action, Event
from schemas.settings import Settings
from workers.ingress.admission import Ingress
from workers.ingress.files import ignored
from workers.runtime.logsafe import escaped, shown
from workers.sources.s3 import _guarded, client, etag_of, key_problem, object_event, s3_source, split_url

log = logging.getLogger("sluice.s3")


class S3Watcher:
    """Polls ``s3://bucket/prefix`` with ListObjectsV2; ETag changes become events.

    Polling works with every S3-compatible store and needs no inbound network
    path; notifications (POST /webhooks/s3) can run alongside for lower latency,
    and both produce the same event ids for the same content."""

    def __init__(
        self,
        url: str,
        ingress: Ingress,
        tenant: str,
        poll_s: float,
        s: Settings,
    ) -> None:
        self.bucket, self.prefix = split_url(url)
        self.source = s3_source(self.bucket)
        self.ingress = ingress
        self.tenant = tenant
        self.poll_s = poll_s
        self.max_bytes = s.max_document_bytes
        self.client = client(s)
        self.known: dict[str, str] = {}  # key -> ETag, as of the last listing
        self.refused: set[str] = set()  # reported once, not on every poll
        self.stop_event = threading.Event()

    def listing(self) -> dict[str, str]:
        """Every acceptable key under the prefix with its ETag (all pages)."""
        found: dict[str, str] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, EncodingType="url"  # raw keys may not be valid XML
        )
        for page in _guarded(pages, f"s3://{self.bucket}/{self.prefix}"):
            for obj in page.get("Contents", []):
                raw = obj["Key"]
                problem: str | None
                try:
                    key = unquote(raw, errors="strict")
                except UnicodeDecodeError:
                    key, problem = raw, "key is not valid UTF-8"
                else:
                    problem = key_problem(key)
                if problem:
                    if raw not in self.refused:
                        self.refused.add(raw)
                        log.warning("refused object key %s in s3://%s: %s", shown(raw), self.bucket, problem)
                    continue
                if key.endswith("/") or ignored(PurePosixPath(key)):
                    continue  # folder markers, hidden files, upload temporaries
                found[key] = etag_of(obj)
        return found

    def sync(self, listing: dict[str, str], before: dict[str, str | None]) -> int:
        """Submit events for keys new or changed since ``before`` and for keys gone from it."""
        n = 0
        known = dict(listing)
        for key, etag in listing.items():
            if key in before and before[key] == etag:
                continue
            try:
                event = object_event(self.ingress.st, self.client, self.bucket, key, etag, self.tenant, self.max_bytes)
            except TransientError as exc:
                log.warning("%s: %s; will retry on the next poll", shown(key), escaped(str(exc)))
                previous = before.get(key)
                if previous is None:
                    known.pop(key, None)  # looks new again next time
                else:
                    known[key] = previous  # looks changed again next time
                continue
            if event is not None:
                n += self._submit(event)
        for key in before.keys() - listing.keys():
            n += self._submit(Event(source=self.source, key=key, action=Action.delete, version="", tenant=self.tenant))
        self.known = known
        return n

    def reconcile(self, indexed: dict[str, dict[str, Any]]) -> int:
        """Catch up with changes made while nobody watched: compare the bucket with the index."""
        mine: dict[str, str | None] = {
            i["key"]: None for i in indexed.values() if (i.get("key") or "").startswith(self.prefix)
        }
        return self.sync(self.listing(), mine)

    def poll(self) -> int:
        try:
            listing = self.listing()
        except (TransientError, PermanentError) as exc:  # keep what we knew, try again later
            log.warning("cannot list s3://%s/%s (%s); will retry", self.bucket, self.prefix, exc)
            return 0
        return self.sync(listing, dict(self.known))

    def _submit(self, event: Event) -> int:
        _, outcome = self.ingress.submit(event)  # waits while the pipeline is full
        log.info("%s %s: %s", event.action.value, shown(event.key), outcome)
        return 1

    def run(self, indexed: dict[str, dict[str, Any]]) -> None:
        while True:
            try:
                n = self.reconcile(indexed)
                break
            except TransientError as exc:  # the store is not up yet: wait for it
                log.warning("%s; retrying", exc)
                if self.stop_event.wait(self.poll_s):
                    return
            except PermanentError as exc:  # wrong bucket, credentials, permissions: say so and stop
                log.error("cannot watch s3://%s/%s: %s", self.bucket, self.prefix, exc)
                raise SystemExit(2) from exc
        log.info("reconciled %d objects in s3://%s/%s; polling every %.1fs", n, self.bucket, self.prefix, self.poll_s)
        while not self.stop_event.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # keep watching; the next poll starts from the last good listing
                log.exception("poll of s3://%s/%s failed", self.bucket, self.prefix)
