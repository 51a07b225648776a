"""What integration tests share: the private-sluice launcher the benchmarks use too, the repository's
paths, and running the `sluice` command as a user does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from workers.launcher.local import LocalSluice as Sluice

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
_script = Path(sys.executable).with_name("sluice")
SLUICE = [str(_script)] if _script.exists() else [sys.executable, "-m", "workers.cli"]


def cli(env: dict[str, str], *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``sluice ARGS`` in a subprocess with ``env``, output collected."""
    return subprocess.run([*SLUICE, *args], check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


def searchable(token: str) -> bool:
    """Some chunk holding ``token`` is found by a lexical search of the running sluice."""
    from schemas.search import Mode, SearchRequest
    from workers.client import search

    return any(token in h.text for h in search(SearchRequest(q=token, mode=Mode.lexical, k=5)))


__all__ = ["ROOT", "SAMPLES", "SLUICE", "Sluice", "cli", "no_traceback", "searchable"]
