"""Runtime configuration from environment variables (prefix SLUICE_) and ``.env``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    # HTTP API keys, each bound to the tenants it may read (workers/http/auth.py, docs/api-keys.md), as JSON:
    # SLUICE_API_KEYS='{"<key>": ["acme"]}'. Required with tenants; without tenants one key bound to [] or none.
    api_keys: dict[str, list[str]] = Field(default_factory=dict, repr=False)

    # Bounds: admission control at every ingress.
    max_in_flight: int = 256  # documents between ingress and done
    max_queue_depth: int = 200  # messages waiting in any one queue
    max_document_bytes: int = 50 * 1024 * 1024  # 50 MiB; refusals report sizes in MiB
    parse_time_limit_s: int = 120
    # A parse runs in a forked child that may take this much memory above its worker (pipelines/isolated.py):
    # a document needing more is dead-lettered, the worker stays as it was.
    parse_memory_mib: int = 2048
    # A step delivered this often without ever finishing (its worker died each time: out of memory, a crash)
    # is dead-lettered as "crashed the worker N times" instead of being run again.
    max_deliveries: int = 3
    task_time_limit_s: int = 600

    # Retries of transient failures.
    max_retries: int = 5
    retry_backoff_s: float = 2.0
    # Through a broker outage: a publish (hand-on, retry, admission) keeps trying this long before its
    # stage fails and is redone; an event with no stage begun for ``stale_after_s`` (unset: the
    # visibility timeout) is sent again from its first unfinished stage, checked every ``sweep_interval_s``.
    publish_retry_s: float = 30.0
    stale_after_s: float | None = None
    sweep_interval_s: float = 60.0

    # Embedding.
    embed_batch_size: int | None = None  # unset: one text per forward pass on the CPU, 16 on a GPU
    # auto: torch on CUDA, else onnx-int8 (the int8 graph); onnx: the fp32 graph. The embedder of a new index
    # generation; an existing one keeps its own (`sluice generation create` moves an index to another).
    embed_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    model_cache: Path | None = None  # where the exported ONNX graph is kept; unset: ~/.cache/sluice
    chunk_tokens: int = 256
    chunk_overlap_tokens: int = 32

    # Folder watcher.
    settle_seconds: float = 1.0
    poll_interval_s: float = 0.5

    # Artifacts (parsed / redacted / chunked payloads) live this long in Redis.
    artifact_ttl_s: int = 24 * 3600

    # Webhooks and S3-compatible buckets (workers/http/webhooks.py, workers/sources/s3.py).
    # No webhook secret: the webhook endpoints refuse everything with 503.
    webhook_secret: SecretStr | None = None
    webhook_max_body_bytes: int = 1024 * 1024  # 1 MiB
    s3_endpoint_url: str | None = None  # MinIO / moto / other S3-compatible; unset: AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None  # unset: boto3's usual chain (env, profile, role)
    s3_secret_access_key: SecretStr | None = None
    s3_poll_interval_s: float = 10.0

    # Entity graph and summaries (pipelines/graph.py, pipelines/summarise.py). ``followups`` off makes
    # sluice a plain search index (CISI ingests 20-30% faster); documents indexed meanwhile get
    # no graph or summary until they are re-indexed. With no OpenAI key
    # and no base_url, summaries are extractive (local, labelled so) and nothing leaves the machine.
    # Set a base_url alone for an OpenAI-compatible server that needs no key.
    followups: bool = True
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_timeout_s: float = 30.0
    summary_model: str = "gpt-4o-mini"
    summary_batch_size: int = 100  # submit a batch once this many requests wait ...
    summary_batch_age_s: float = 600.0  # ... or once the oldest has waited this long
    summary_poll_interval_s: float = 60.0  # beat: flush and poll batches this often
    summary_max_attempts: int = 3  # a failed or unfinished request is resubmitted at most this often
    summary_input_tokens: int = 6000  # per request; longer documents are summarised map-reduce
    summary_output_tokens: int = 300
    # USD per million (input, output) tokens at the synchronous list price; batches get the discount.
    summary_prices: dict[str, tuple[float, float]] = {"gpt-4o-mini": (0.15, 0.60), "gpt-4.1-mini": (0.40, 1.60)}
    summary_batch_discount: float = 0.5
    summary_budget_usd: float | None = 10.0  # refuse to submit past this total; None: no limit
    # With a model configured, also ask it (same batches, budget and model) for typed relations
    # between the entities of each chunk (pipelines/relations.py).
    graph_relations: bool = True
    graph_hops: int = 1  # graph search walks this many co-occurrence steps from the query's entities
    graph_communities_interval_s: float = 900.0

    @property
    def index_path(self) -> Path:
        return self.data_dir / "qdrant-edge"
