"""Measure how many labelled personal identifiers survive redaction.

Input is presidio-research's format: ``[{full_text, spans: [{entity_type,
entity_value, start_position, end_position}]}]``. A labelled value *leaks* if it
still appears verbatim (as a whole word run) in the redacted text; a redaction
is a *false alarm* when the span it replaced overlaps no labelled span at all.

Run ``python -m pipelines.pii_eval PATH [--split-by-template K]`` (or ``sluice eval pii``)
for ours beside stock Presidio. With a split, templates are dealt into K folds by
a hash of their id: fold 0 is held out (report it), the others are for tuning.
"""

from __future__ import annotations

from pipelines import runtime  # noqa: F401  (first: keeps presidio offline)

import argparse
import hashlib
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
        from presidio_anonymizer.entities import RecognizerResult as AnonymizerSpan

        out = []
        for text, results in zip(texts, self._batch.analyze_iterator(texts, language="en")):
            # The anonymizer types its input as its own result class (anonymize() copies into it anyway).
            found = [AnonymizerSpan(r.entity_type, r.start, r.end, r.score) for r in results]
            anonymized = self._anonymizer.anonymize(text=text, analyzer_results=found)
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


def split_by_template(samples: list[dict], k: int) -> tuple[list[dict], list[dict]]:
    """(tuning, held out): whole templates go to one side, fold 0 of ``k`` by a hash of the id."""
    def fold(sample: dict) -> int:
        return int(hashlib.sha256(str(sample["template_id"]).encode()).hexdigest(), 16) % k

    return [s for s in samples if fold(s) != 0], [s for s in samples if fold(s) == 0]


def _timed(samples: list[dict], redactor: SupportsRedactMany) -> dict:
    """``evaluate`` plus the redactor's CPU time per sentence (this process, model loading excluded)."""
    started = time.process_time()
    report = evaluate(samples, redactor)
    report["cpu_ms_per_sentence"] = round(1000 * (time.process_time() - started) / max(len(samples), 1), 2)
    report["false_redaction_rate"] = round(
        report["redactions_overlapping_no_label"] / max(report["redactions"], 1), 4)
    report["leak_rate"] = round(report["leak_rate"], 4)
    return report


def compare(samples: list[dict], ours: SupportsRedactMany, stock: SupportsRedactMany | None,
            split_k: int | None = None) -> dict:
    """Ours and stock side by side: on everything, or on the held-out and tuning parts of a split."""
    def both(part: list[dict]) -> dict:
        out = {"sentences": len(part), "ours": _timed(part, ours)}
        if stock is not None:
            out["stock"] = _timed(part, stock)
        return out

    if not split_k:
        return {"all": both(samples)}
    if any("template_id" not in s for s in samples):
        raise ValueError("--split-by-template needs a template_id on every sentence")
    if split_k < 2:
        raise ValueError("--split-by-template needs K >= 2 folds")
    tuning, held_out = split_by_template(samples, split_k)
    return {
        "split": {"k": split_k, "held_out_fold": 0,
                  "held_out_templates": len({s["template_id"] for s in held_out}),
                  "tuning_templates": len({s["template_id"] for s in tuning})},
        "held_out": both(held_out),
        "tuning": both(tuning),
    }


def table(part: dict) -> str:
    """A person-readable table of one part of ``compare``'s report."""
    ours, stock = part["ours"], part.get("stock")
    lines = [f"{'type':<18} {'labelled':>8} {'ours leaked':>12} {'stock leaked':>13}"]
    for entity in sorted(set(ours["per_type"]) | set((stock or {}).get("per_type", {}))):
        o = ours["per_type"].get(entity, {"labelled": 0, "leaked": 0})
        s = (stock or {}).get("per_type", {}).get(entity, {"leaked": "-"})
        lines.append(f"{entity:<18} {o['labelled']:>8} {o['leaked']:>12} {s['leaked']:>13}")
    lines.append(f"{'ALL':<18} {ours['labelled']:>8} {ours['leaked']:>12} {(stock or {}).get('leaked', '-'):>13}")
    line = f"leak rate: ours {ours['leak_rate']:.1%}; false redactions: ours {ours['false_redaction_rate']:.1%}"
    if stock:
        line += f"; stock leak rate {stock['leak_rate']:.1%}, false redactions {stock['false_redaction_rate']:.1%}"
    lines.append(line + f"; CPU per sentence: ours {ours['cpu_ms_per_sentence']} ms"
                 + (f", stock {stock['cpu_ms_per_sentence']} ms" if stock else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="labelled samples (presidio-research JSON)")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock baseline")
    parser.add_argument("--split-by-template", type=int, default=None, metavar="K")
    args = parser.parse_args(argv)
    with open(args.path, encoding="utf-8") as fh:
        samples = json.load(fh)
    report = compare(samples, Redactor(b"pii-eval"), None if args.no_stock else StockPresidio(),
                     args.split_by_template)
    for name in ("held_out", "tuning", "all"):
        if name in report:
            print(f"[{name}]\n{table(report[name])}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
