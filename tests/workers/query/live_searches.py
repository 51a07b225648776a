"""Searches kept running while generations are built and switched: none may fail or come back empty."""

from __future__ import annotations

import threading
from typing import Any


class LiveSearches:
    """Hybrid searches for ``query`` in a thread for as long as the ``with`` block lasts."""

    def __init__(self, query: str, k: int = 5) -> None:
        self.query, self.k = query, k
        self.answers: list[int] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        from schemas.search import Mode, SearchRequest
        from workers.client import search

        while not self._stop.is_set():
            try:
                self.answers.append(len(search(SearchRequest(q=self.query, k=self.k, mode=Mode.hybrid))))
            except BaseException as e:
                self.failures.append(e)

    def __enter__(self) -> LiveSearches:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        assert not self.failures, self.failures[:3]
        assert self.answers and all(self.answers), "a search came back empty"
