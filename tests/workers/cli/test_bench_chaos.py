"""`sluice bench chaos`: one SIGKILL of each kind during a small ingest loses, duplicates and strands nothing."""

from __future__ import annotations

import json

from harness import cli, no_traceback


def test_bench_chaos_one_kill_of_each_kind_loses_nothing(tmp_path):
    import os

    result = cli(dict(os.environ), "bench", "chaos", "--docs", "30", "--kills", "1", "--json", cwd=tmp_path, timeout=900)
    no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    kills = figures["kills"]  # the ingest may end before the last kind's moment comes
    assert set(kills) == {"pipeline_child", "pipeline_worker", "query_worker", "redis"}, figures
    assert all(n <= 1 for n in kills.values()) and sum(kills.values()) >= 3, figures
    assert figures["indexed"] + figures["dead_lettered"] == figures["documents_expected"] == 30, figures
    assert (figures["lost"], figures["duplicate_points"], figures["left_in_flight"]) == (0, 0, 0), figures
    print(figures)
