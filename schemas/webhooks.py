"""Webhook request bodies: re-index requests and S3 / MinIO bucket notifications.

Everything here is parsed from untrusted bytes (after the signature check), so
the models are strict about what they accept and bounded in size.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Tenant = Annotated[str, Field(min_length=1, max_length=128)]


class _Reindex(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = False  # re-read and re-index even if unchanged; with scope "all" (no tenant) a fresh generation is then built, gated and switched to
    tenant: Tenant | None = None  # only documents of this tenant (when known)


class DocumentScope(_Reindex):
    scope: Literal["document"]
    document_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class PrefixScope(_Reindex):
    scope: Literal["prefix"]
    prefix: Annotated[str, Field(min_length=1, max_length=1024)]  # matched against document keys


class AllScope(_Reindex):
    scope: Literal["all"]


ReindexRequest = Annotated[DocumentScope | PrefixScope | AllScope, Field(discriminator="scope")]
reindex_request: TypeAdapter[DocumentScope | PrefixScope | AllScope] = TypeAdapter(ReindexRequest)


class _Loose(BaseModel):
    """Notification senders add fields over time; ignore what we do not use."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class S3Bucket(_Loose):
    name: Annotated[str, Field(min_length=3, max_length=63)]


class S3Object(_Loose):
    key: Annotated[str, Field(min_length=1, max_length=4096)]  # URL-encoded, as S3 sends it
    size: int | None = None
    e_tag: str | None = Field(default=None, alias="eTag")
    version_id: str | None = Field(default=None, alias="versionId")
    sequencer: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{1,64}$")] | None = None


class S3Entity(_Loose):
    bucket: S3Bucket
    object: S3Object


class S3Record(_Loose):
    event_name: Annotated[str, Field(alias="eventName", max_length=128)]
    s3: S3Entity


class S3Notification(_Loose):
    """AWS and MinIO both send ``{"Records": [...]}``; an S3 test event has no records."""

    records: Annotated[list[S3Record], Field(alias="Records", max_length=1000)] = []
