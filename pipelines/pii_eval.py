"""Measure how many labelled personal identifiers survive redaction.

Input is presidio-research's format: ``[{full_text, spans: [{entity_type,
entity_value, start_position, end_position}]}]``. A labelled value *leaks* if it
still appears verbatim (as a whole word run) in the redacted text; a redaction
is a *false alarm* when the span it replaced overlaps no labelled span at all.

Run ``python -m pipelines.pii_eval PATH`` for ours beside stock Presidio.
"""

from __future__ import annotations

from pipelines import runtime  # noqa: F401  (first: keeps presidio offline)

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Protocol

import regex as re

from pipelines.redact import TOKEN_RE, Redaction, Redactor, nlp_engine_config

LABEL_TYPES: dict[str, str] = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "NAME": "PERSON",
    "FIRST_NAME": "PERSON",
    "LAST_NAME": "PERSON",
    "ADDRESS": "STREET_ADDRESS",
    "STREET_ADDRESS": "STREET_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD",
    "US_SSN": "US_SSN",
    "IBAN_CODE": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
}
"""Label names of the data set -> our entity types (personal identifiers only)."""

NOT_IDENTIFIERS = frozenset(
    {"ORGANIZATION", "DATE_TIME", "LOCATION", "GPE", "TITLE", "NRP", "DOMAIN_NAME", "URL",
     "PREFIX", "AGE", "NORP"}
)
"""Labels that name no one on their own: ignored for leaks, still count as labels
when deciding whether a redaction was a false alarm."""

_PLACEHOLDER = re.compile(TOKEN_RE.pattern + r"|<[A-Z][A-Z_]*>")


class SupportsRedactMany(Protocol):
    def redact_many(self, texts: list[str]) -> list[Redaction]: ...


def _leaked(value: str, redacted: str) -> bool:
    """Verbatim, not inside a longer word or number, placeholders blanked first
    (so "23" is not found inside ``<PERSON_a1b23c>``)."""
    haystack = _PLACEHOLDER.sub("\x00", redacted)
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", haystack) is not None


def _uncovered(text: str, span: dict, redacted: Sequence[tuple[int, int, str]]) -> bool:
    """Stricter than a leak: some letter or digit of the label was not replaced."""
    return any(
        text[i].isalnum() and not any(s <= i < e for s, e, _ in redacted)
        for i in range(span["start_position"], span["end_position"])
    )


def evaluate(samples: list[dict], redactor: SupportsRedactMany) -> dict:
    """Leaks per type, leak rate, redactions and redactions that overlap no label.

    ``partially_leaked`` (extra) counts labels with any character left unreplaced.
    """
    redactions = redactor.redact_many([s["full_text"] for s in samples])
    per_type: dict[str, dict[str, int]] = {}
    total = leaked = partial = count = stray = 0
    for sample, red in zip(samples, redactions):
        for span in sample["spans"]:
            entity = LABEL_TYPES.get(span["entity_type"])
            if entity is None:
                continue
            row = per_type.setdefault(entity, {"labelled": 0, "leaked": 0})
            row["labelled"] += 1
            total += 1
            if _leaked(span["entity_value"], red.text):
                row["leaked"] += 1
                leaked += 1
            if _uncovered(sample["full_text"], span, red.spans):
                partial += 1
        labels = [(s["start_position"], s["end_position"]) for s in sample["spans"]]
        for start, end, _ in red.spans:
            count += 1
            if not any(start < e and s < end for s, e in labels):
                stray += 1
    return {
        "per_type": dict(sorted(per_type.items())),
        "labelled": total,
        "leaked": leaked,
        "leak_rate": leaked / total if total else 0.0,
        "partially_leaked": partial,
        "redactions": count,
        "redactions_overlapping_no_label": stray,
    }


class StockPresidio:
    """Baseline: default recognizers, same spaCy model, default threshold, ``<TYPE>``."""

    def __init__(self) -> None:
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        nlp_engine = NlpEngineProvider(nlp_configuration=nlp_engine_config()).create_engine()
        self._batch = BatchAnalyzerEngine(AnalyzerEngine(nlp_engine=nlp_engine))
        self._anonymizer = AnonymizerEngine()

    def redact_many(self, texts: list[str]) -> list[Redaction]:
        out = []
        for text, results in zip(texts, self._batch.analyze_iterator(texts, language="en")):
            anonymized = self._anonymizer.anonymize(text=text, analyzer_results=results)
            # Spans for the false-alarm count: results not contained in another one.
            spans = {
                (r.start, r.end, r.entity_type)
                for r in results
                if not any(
                    o is not r and o.start <= r.start and r.end <= o.end
                    and (o.end - o.start, o.score) > (r.end - r.start, r.score)
                    for o in results
                )
            }
            counts: dict[str, int] = {}
            for item in anonymized.items:
                counts[item.entity_type] = counts.get(item.entity_type, 0) + 1
            out.append(Redaction(text=anonymized.text, counts=counts, spans=tuple(sorted(spans))))
        return out


def _table(ours: dict, stock: dict) -> str:
    lines = [f"{'type':<18} {'labelled':>8} {'ours leaked':>12} {'stock leaked':>13}"]
    for entity in sorted(set(ours["per_type"]) | set(stock["per_type"])):
        o = ours["per_type"].get(entity, {"labelled": 0, "leaked": 0})
        s = stock["per_type"].get(entity, {"labelled": 0, "leaked": 0})
        lines.append(f"{entity:<18} {o['labelled']:>8} {o['leaked']:>12} {s['leaked']:>13}")
    lines.append(f"{'ALL':<18} {ours['labelled']:>8} {ours['leaked']:>12} {stock['leaked']:>13}")
    lines.append(
        f"leak rate: ours {ours['leak_rate']:.1%}, stock {stock['leak_rate']:.1%}; partially "
        f"leaked: ours {ours['partially_leaked']}, stock {stock['partially_leaked']}; "
        f"redactions overlapping no label: ours {ours['redactions_overlapping_no_label']}"
        f"/{ours['redactions']}, stock {stock['redactions_overlapping_no_label']}/{stock['redactions']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="labelled samples (presidio-research JSON)")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock baseline")
    args = parser.parse_args(argv)
    with open(args.path, encoding="utf-8") as fh:
        samples = json.load(fh)
    started = time.perf_counter()
    ours = evaluate(samples, Redactor(b"pii-eval"))
    report = {"ours": ours, "seconds": round(time.perf_counter() - started, 2)}
    if not args.no_stock:
        report["stock"] = evaluate(samples, StockPresidio())
        print(_table(ours, report["stock"]), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
