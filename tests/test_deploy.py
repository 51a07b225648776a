"""What CI can check of deploy/ without Docker, a cluster or the network.

The compose file and every manifest parse; the services and workloads the
docs promise exist; every setting they pass (SLUICE_*, REDIS_URL, QDRANT_URL,
...) is one the code reads; KEDA scales the pipeline workers on exactly the
queues they consume; the image pins what pyproject pins and runs as non-root;
the Grafana dashboard only asks for metrics the API exports; and Flower
refuses to be served open.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from schemas.settings import Settings
from workers.runtime.flow import ALL_QUEUES, PIPELINE_QUEUES, QUERY_QUEUES

from harness import ROOT

DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").rglob("*.yaml"))
SETTING = re.compile(r"\b(SLUICE_[A-Z0-9_]+|REDIS_URL|QDRANT_URL|QDRANT_API_KEY)\b")


def settings_env_names() -> set[str]:
    """Every environment variable Settings reads: SLUICE_<field>, or the field's alias."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"SLUICE_{name.upper()}")
    return names


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def k8s_docs() -> list[dict]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def commands(doc: dict) -> list[list[str]]:
    return [c.get("args") or [] for c in doc["spec"]["template"]["spec"]["containers"]]


def queues_of(args: list[str]) -> set[str]:
    return set(args[args.index("--queues") + 1].split(",")) if "--queues" in args else set()


def test_compose_parses_with_every_process_and_a_durable_broker():
    c = compose()
    services = c["services"]
    assert {"redis", "qdrant", "api", "query-worker", "beat", "flower"} <= set(services)
    workers = {n: s["command"] for n, s in services.items() if s.get("command", [None])[0] == "worker"}
    assert len(workers) >= 3  # a worker per queue class
    consumed = set().union(*(queues_of(cmd) for cmd in workers.values()))
    assert consumed == set(PIPELINE_QUEUES)  # every pipeline queue has a consumer, none is invented
    assert [s["command"][0] for s in services.values() if s.get("command")].count("query-worker") == 1
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis
    assert "redis-data:/data" in services["redis"]["volumes"]
    flower = services["flower"]
    assert flower["command"][0] == "flower" and "FLOWER_BASIC_AUTH" in flower["environment"]
    assert ":?" in flower["environment"]["FLOWER_BASIC_AUTH"]  # compose refuses to start without a login
    for name, s in services.items():  # published ports stay on loopback unless someone decides otherwise
        assert all(str(p).startswith("127.0.0.1:") for p in s.get("ports", [])), name


def test_every_manifest_parses_and_workers_scale_on_their_own_queues():
    docs = k8s_docs()
    assert MANIFESTS and all("kind" in d and "apiVersion" in d for d in docs)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    pipeline = {n: d for n, d in deployments.items() if commands(d)[0][:1] == ["worker"]}
    assert pipeline and set(scaled) == set(pipeline)
    covered = set()
    for name, d in pipeline.items():
        (args,) = commands(d)
        lists = {t["metadata"]["listName"] for t in scaled[name]["spec"]["triggers"] if t["type"] == "redis"}
        assert lists == queues_of(args), name  # scale on exactly the lists this worker drains
        covered |= lists
    assert covered == set(PIPELINE_QUEUES)
    query = [d for d in deployments.values() if commands(d)[0][:1] == ["query-worker"]]
    assert len(query) == 1 and query[0]["spec"]["replicas"] == 1  # it owns the graph: never two
    assert set(QUERY_QUEUES) <= set(ALL_QUEUES)
    redis = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "sluice-redis")
    args = " ".join(redis["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--appendonly yes" in args and "--maxmemory-policy noeviction" in args
    for d in deployments.values():
        assert d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]


@pytest.mark.parametrize("path", [DEPLOY / "docker-compose.yml", *MANIFESTS], ids=lambda p: p.name)
def test_every_setting_deployed_is_one_the_code_reads(path):
    used = set(SETTING.findall(path.read_text()))
    unknown = used - settings_env_names()
    assert not unknown, f"{path.name} sets {sorted(unknown)}, which schemas/settings.py does not read"


def test_the_image_is_cpu_only_pinned_like_pyproject_and_not_root():
    text = (DEPLOY / "Dockerfile").read_text()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in deps if d.startswith("torch=="))
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert f"pip install {torch} --index-url https://download.pytorch.org/whl/cpu" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "HF_HUB_OFFLINE=1" in text and "TRANSFORMERS_OFFLINE=1" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored  # a 2 GB virtualenv never enters the build context
    for copied in re.findall(r"^COPY (\S+) ", text, re.M):  # what the image copies exists
        assert all((ROOT / p).exists() for p in copied.split()), copied


def test_the_grafana_dashboard_asks_only_for_exported_metrics():
    from workers.http.metrics import METRICS

    dash = json.loads((DEPLOY / "grafana" / "sluice.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs and len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    names = {n for e in exprs for n in re.findall(r"\bsluice_[a-z_]+", e)}
    base = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names}
    assert base <= set(METRICS), base - set(METRICS)
    assert {"sluice_queue_depth", "sluice_task_duration_seconds", "sluice_chunks", "sluice_dead_lettered",
            "sluice_index_chunks", "sluice_graph_entities", "sluice_summary_cost_usd"} <= base


@pytest.mark.parametrize("auth", [None, "", "admin:"], ids=["no-auth", "empty", "no-password"])
def test_flower_refuses_to_serve_open_off_loopback(auth):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("FLOWER_")}
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-b", "redis://127.0.0.1:1/0", "flower", "--address=0.0.0.0",
         "--port=1", f"--conf={ROOT / 'flower.conf'}"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode != 0 and "flower.conf:" in out.stderr + out.stdout, out.stderr


def test_redis_asks_for_a_password_and_every_client_has_it():
    services = compose()["services"]
    redis = services["redis"]
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(redis["command"])
    assert ":?" in redis["environment"]["REDIS_PASSWORD"]  # compose refuses to start without one
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])  # an unauthenticated ping is NOAUTH
    for name, s in services.items():
        if name not in ("redis", "qdrant"):
            assert s["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?"), name

    docs = k8s_docs()
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert "REDIS_URL" not in config["data"]  # a URL without the password would be no use
    stateful = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "sluice-redis")
    (server,) = stateful["spec"]["template"]["spec"]["containers"]
    assert server["args"][1:3] == ["--requirepass", "$(REDIS_PASSWORD)"]
    (env,) = server["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "sluice-redis", "key": "REDIS_PASSWORD"}
    assert "REDISCLI_AUTH" in " ".join(server["readinessProbe"]["exec"]["command"])
    for d in docs:
        if d["kind"] == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert {"secretRef": {"name": "sluice-redis"}} in c["envFrom"], d["metadata"]["name"]
        if d["kind"] == "ScaledObject":
            for t in d["spec"]["triggers"]:
                assert t["authenticationRef"] == {"name": "sluice-redis"}, d["metadata"]["name"]
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    assert auth["metadata"]["name"] == "sluice-redis"
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "sluice-redis", "key": "REDIS_PASSWORD"}]
    example = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}["sluice-redis"]["stringData"]
    assert {"REDIS_PASSWORD", "REDIS_URL"} <= set(example) and example["REDIS_URL"].startswith("redis://:")
