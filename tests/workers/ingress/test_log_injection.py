"""A file name cannot forge log lines or colour an operator's terminal.

A real folder watcher over a real folder, a private Redis and no workers: its
reconcile logs each file it submits through the same format `sluice watch` uses.
"""

from __future__ import annotations

import logging

from harness import Sluice

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # `sluice watch`'s


def test_escaped_keeps_printable_text_and_escapes_the_rest():
    from workers.runtime.logsafe import escaped

    assert escaped("reports/2024 Q1 — naïve.pdf") == "reports/2024 Q1 — naïve.pdf"
    assert escaped("a\nb\r\x1b[31mc\u2028d\\e\x00") == "a\\nb\\r\\x1b[31mc\\u2028d\\\\e\\x00"


def test_a_file_name_with_a_newline_and_an_ansi_escape_is_one_log_line(tmp_path):
    from workers import client
    from workers.ingress.admission import Ingress
    from workers.ingress.watcher import FolderWatcher
    from workers.runtime.config import settings
    from workers.runtime.logsafe import shown

    sluice = Sluice(tmp_path / "sluice")
    try:
        s = settings()
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        name = "invoice\n2026-12-02 INFO sluice.watch: create forged.txt: queued\x1b[31m.txt"
        (inbox / name).write_text("An invoice for the weir repairs.")
        log_file = tmp_path / "watcher.log"
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(FORMAT))
        logger = logging.getLogger("sluice.watch")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            watcher = FolderWatcher(inbox, Ingress(client.connect(s), s), s.tenant, 0.1, 0.1)
            assert watcher.reconcile({}) == 1
        finally:
            logger.removeHandler(handler)
            handler.close()
        lines = log_file.read_text().splitlines()
        assert len(lines) == 1, lines
        assert "\x1b" not in lines[0]
        assert "forged" not in lines[0] and lines[0].endswith(f"create {shown(name)}: queued")  # pseudonymised
    finally:
        sluice.close()
