"""Every size refusal speaks one unit, MiB (1024**2 bytes), whoever refuses."""

from __future__ import annotations

import pytest

from pipelines.errors import PermanentError
from pipelines.parse import parse_bytes
from workers.sources.folder import folder_source
from workers.sources.reader import read

MIB = 1024 * 1024


def test_the_folder_source_and_the_parser_say_the_same_thing_in_mib(tmp_path):
    big = b"a" * (60 * MIB)
    (tmp_path / "big.txt").write_bytes(big)
    expected = "file is 60.0 MiB, over the 50.0 MiB limit"
    with pytest.raises(PermanentError) as at_read:
        read(folder_source(tmp_path), "big.txt", 50 * MIB)
    with pytest.raises(PermanentError) as at_parse:
        parse_bytes(big, "big.txt", max_bytes=50 * MIB)
    assert str(at_read.value) == str(at_parse.value) == expected


def test_small_limits_keep_their_precision():
    with pytest.raises(PermanentError) as refused:
        parse_bytes(b"a" * 200_000, "note.txt", max_bytes=100_000)
    assert str(refused.value) == "file is 0.191 MiB, over the 0.095 MiB limit"
