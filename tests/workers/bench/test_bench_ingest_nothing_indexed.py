"""``sluice bench ingest`` when the ingest indexed no chunk: a reason, not a ZeroDivisionError.

Every figure of the bench is per chunk; a run whose documents all failed (a stage broken in the working
tree) divided by zero chunks and died with ``ZeroDivisionError``.
"""

from __future__ import annotations

import pytest

from workers.bench.speed import NothingIndexed, check_indexed


def _failure(key: str, stage: str, error: str) -> dict[str, str]:
    return {"path": key, "stage": stage, "error": error}


def test_every_document_failed_is_told_by_stage_and_error_without_keys() -> None:
    failed = [
        _failure("margaret-holloway.txt", "redact", "ImportError: cannot import name 'STOP'"),
        _failure("b.txt", "redact", "ImportError: cannot import name 'STOP'"),
        _failure("c.txt", "parse", "PDF needs a page"),
    ]
    with pytest.raises(NothingIndexed) as caught:
        check_indexed(documents=3, chunks=0, failed=failed)
    message = str(caught.value)
    assert "3 of 3 documents failed (redact: 2, parse: 1)" in message
    assert "most often: ImportError: cannot import name 'STOP'" in message
    assert "holloway" not in message  # keys may name people: never in the message


def test_an_empty_corpus_says_there_is_nothing_to_ingest() -> None:
    with pytest.raises(NothingIndexed, match="holds no document"):
        check_indexed(documents=0, chunks=0, failed=[])


def test_no_failure_and_no_chunk_is_named_too() -> None:
    with pytest.raises(NothingIndexed, match="none of the 4 documents failed"):
        check_indexed(documents=4, chunks=0, failed=[])


def test_a_run_that_indexed_chunks_goes_on_even_with_some_failures() -> None:
    check_indexed(documents=3, chunks=5, failed=[_failure("a.txt", "parse", "unsupported")])
