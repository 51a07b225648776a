"""Runtime configuration from environment variables (prefix SLUICE_) and ``.env``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICE_", env_file=".env", extra="ignore")

    # Where things live. REDIS_URL / QDRANT_URL are also read without the prefix.
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    qdrant_url: str | None = Field(default=None, validation_alias="QDRANT_URL")
    qdrant_api_key: SecretStr | None = Field(default=None, validation_alias="QDRANT_API_KEY")
    data_dir: Path = Path(".sluice")
    inbox: Path = Path("inbox")
    collection: str = "sluice"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    flower_port: int = 5555

    # Secret key for keyed PII pseudonyms. The default is only safe for a laptop.
    pseudonym_secret: SecretStr = SecretStr("sluice-local-development-key")
    tenant: str = "default"  # tenant of documents this process ingests
    # When set, every search must name one of these tenants (multi-tenant mode).
    tenants: list[str] = Field(default_factory=list)

    # Bounds: admission control at every ingress.
    max_in_flight: int = 256  # documents between ingress and done
    max_queue_depth: int = 200  # messages waiting in any one queue
    max_document_bytes: int = 50 * 1024 * 1024
    parse_time_limit_s: int = 120
    task_time_limit_s: int = 600

    # Retries of transient failures.
    max_retries: int = 5
    retry_backoff_s: float = 2.0

    # Embedding.
    embed_batch_size: int = 16
    embed_backend: str = "auto"  # auto | torch | onnx
    chunk_tokens: int = 256
    chunk_overlap_tokens: int = 32

    # Folder watcher.
    settle_seconds: float = 1.0
    poll_interval_s: float = 0.5

    # Artifacts (parsed / redacted / chunked payloads) live this long in Redis.
    artifact_ttl_s: int = 24 * 3600

    # Webhooks and S3-compatible buckets (workers/webhooks.py, workers/s3.py).
    # No webhook secret: the webhook endpoints refuse everything with 503.
    webhook_secret: SecretStr | None = None
    webhook_max_body_bytes: int = 1024 * 1024
    s3_endpoint_url: str | None = None  # MinIO / moto / other S3-compatible; unset: AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None  # unset: boto3's usual chain (env, profile, role)
    s3_secret_access_key: SecretStr | None = None
    s3_poll_interval_s: float = 10.0

    @property
    def index_path(self) -> Path:
        return self.data_dir / "qdrant-edge"
