"""API keys bound to tenants: who is asking, and which tenants it may read.

Without keys the tenant was only a parameter: anyone who reached the port read any tenant by
naming it. A key (``SLUICE_API_KEYS``, ``Authorization: Bearer <key>`` or ``X-API-Key``) now
names its tenants, and every route that reads the index resolves the tenant through it. Keys are
compared as SHA-256 digests with ``hmac.compare_digest``, all of them on every request, so neither
a key's length nor which key matched shows in the time taken. Webhooks keep their own HMAC
signatures (workers/http/signing.py); /healthz, /readyz and /metrics carry no document data.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header, HTTPException

from schemas.settings import Settings

CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """The tenants a request may read; None: every tenant (no keys configured, single-tenant)."""

    tenants: frozenset[str] | None

    def tenant(self, asked: str | None) -> str | None:
        """The tenant a request is answered for: the one it names, if this caller may read it, else
        this caller's only tenant. 403 for any other (existing or not: nothing is confirmed)."""
        if self.tenants is None:
            return asked
        if asked is None:
            return next(iter(self.tenants)) if len(self.tenants) == 1 else None
        if asked not in self.tenants:
            raise HTTPException(403, "this API key is not bound to that tenant")
        return asked

    def may_read(self, owner: str | None) -> bool:
        return self.tenants is None or owner in self.tenants


def check(s: Settings) -> None:
    """Refuse a configuration that would leave tenants readable by naming them."""
    if s.tenants and not s.api_keys:
        raise ValueError("SLUICE_TENANTS is set but SLUICE_API_KEYS is not: with several tenants every request"
                         " needs a key bound to its tenants (docs/api-keys.md)")
    for tenants in s.api_keys.values():
        if s.tenants and not tenants:
            raise ValueError("every API key must name its tenants when SLUICE_TENANTS is set")
        if unknown := sorted(set(tenants) - set(s.tenants)):
            raise ValueError(f"an API key is bound to tenants SLUICE_TENANTS does not list: {unknown}")


def caller_of(s: Settings) -> Callable[..., Caller]:
    """The FastAPI dependency that turns a request's key into its ``Caller`` (401 without a known key)."""
    check(s)
    digests = [(_digest(key), frozenset(tenants)) for key, tenants in s.api_keys.items()]

    def caller(
        authorization: Annotated[str | None, Header(description="Bearer <API key> (docs/api-keys.md)")] = None,
        x_api_key: Annotated[str | None, Header(description="The API key, instead of Authorization")] = None,
    ) -> Caller:
        if not digests:
            return Caller(None)
        presented = x_api_key or _bearer(authorization)
        if not presented:
            raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)", headers=CHALLENGE)
        digest, found = _digest(presented), None
        for known, tenants in digests:  # every key, every time
            if hmac.compare_digest(known, digest):
                found = tenants
        if found is None:
            raise HTTPException(401, "unknown API key", headers=CHALLENGE)
        return Caller(found or None)

    return caller


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
