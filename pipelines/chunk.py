"""Structure-first chunking, sized by the embedder's own tokenizer.

all-MiniLM-L6-v2 reads 256 word pieces and silently drops the rest, so a chunk
is measured in *its* word pieces: sections start new chunks, paragraphs are
packed until the window is full, and only a paragraph that alone overflows the
window is split (on sentences, then on tokens) with a small overlap.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from schemas.documents import Chunk, Element, RedactedDocument

CountTokens = Callable[[list[str]], list[int]]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(<])")


def normalise(text: str) -> str:
    """Unicode NFC and collapsed white space: cosmetic edits must not change a hash."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def chunk_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    section: str | None
    page: int | None
    heading: bool = False


class Chunker:
    """Packs elements into chunks of at most ``max_tokens`` word pieces."""

    def __init__(self, count_tokens: CountTokens, max_tokens: int = 254, overlap: int = 32) -> None:
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.overlap = overlap

    def chunk(self, doc_id: str, doc: RedactedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for text, section, page in self._pack(self._pieces(doc.elements)):
            chunks.append(
                Chunk(
                    doc_id=doc_id,
                    position=len(chunks),
                    text=text,
                    hash=chunk_hash(text),
                    section=section,
                    page=page,
                    title=doc.title,
                )
            )
        return chunks

    def _pieces(self, elements: list[Element]) -> Iterator[_Piece]:
        texts = [normalise(e.text) if e.kind != "table" else e.text.strip() for e in elements]
        counts = self.count_tokens(texts) if texts else []
        for element, text, tokens in zip(elements, texts, counts):
            if not text:
                continue
            if tokens <= self.max_tokens:
                yield _Piece(text, tokens, element.section, element.page, element.kind == "title")
            else:
                for part in self._split(text):
                    yield _Piece(part, self.max_tokens, element.section, element.page)

    def _pack(self, pieces: Iterator[_Piece]) -> Iterator[tuple[str, str | None, int | None]]:
        buf: list[_Piece] = []
        used = 0
        for piece in pieces:
            boundary = buf and (piece.section != buf[-1].section or piece.page != buf[-1].page)
            only_headings = all(p.heading for p in buf)  # headings stay with the text they introduce
            if buf and ((boundary and not only_headings) or used + piece.tokens + 1 > self.max_tokens):
                yield self._joined(buf)
                buf, used = [], 0
            buf.append(piece)
            used += piece.tokens + 1
        if buf:
            yield self._joined(buf)

    @staticmethod
    def _joined(buf: list[_Piece]) -> tuple[str, str | None, int | None]:
        """Chunk text plus the section and page of its first non-heading piece."""
        body = next((p for p in buf if not p.heading), buf[-1])
        return "\n".join(p.text for p in buf), body.section, body.page

    def _split(self, text: str) -> Iterator[str]:
        """Split an over-long paragraph: whole sentences where they fit, token windows otherwise.

        The last sentence of a window carries over as overlap when it is short
        and still leaves room for the next sentence.
        """
        sentences = _SENTENCE_END.split(text)
        window: list[tuple[str, int]] = []
        for sentence, tokens in zip(sentences, self.count_tokens(sentences)):
            if tokens > self.max_tokens:
                if window:
                    yield " ".join(s for s, _ in window)
                    window = []
                yield from self._windows(sentence)
                continue
            if window and sum(n for _, n in window) + tokens > self.max_tokens:
                yield " ".join(s for s, _ in window)
                last = window[-1]
                window = [last] if last[1] <= self.overlap and last[1] + tokens <= self.max_tokens else []
            window.append((sentence, tokens))
        if window:
            yield " ".join(s for s, _ in window)

    def _windows(self, text: str) -> Iterator[str]:
        """Token windows over one huge sentence, cut on word boundaries."""
        words = text.split()
        counts = self.count_tokens(words)
        start = 0
        while start < len(words):
            used, end = 0, start
            while end < len(words) and used + counts[end] <= self.max_tokens:
                used += counts[end]
                end += 1
            end = max(end, start + 1)
            yield " ".join(words[start:end])
            if end >= len(words):
                break
            back, carried = end, 0
            while back > start + 1 and carried + counts[back - 1] <= self.overlap:
                back -= 1
                carried += counts[back]
            start = back if back > start else end
