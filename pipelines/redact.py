"""PII redaction: replace personal identifiers with keyed pseudonyms.

Why pseudonyms and not blanks: the same value maps to the same token in every
document (``<PERSON_3f9a1c>``), so search and the entity graph still connect
facts about "someone", while without the secret a token cannot be tied back to
the value. Only identifiers of a person are replaced; cities, countries,
organisations and dates stay, because they are not personal on their own and
the entity graph is built from them.

Stock Presidio with the small spaCy model lets a quarter of identifiers through on
text it never saw. The recognisers beside its own, one module each: street
addresses (``redact_addresses``), phone numbers by shape (``redact_phones``),
card numbers in any grouping (``redact_cards``), names by the words around them
(``redact_context``) and names by how they are
written (``redact_names``). This module holds the engine: one spaCy pass (tagger
and recogniser), the rules that choose among overlapping findings, and the
pseudonyms.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import regex as re
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
    UsLicenseRecognizer,
    UsSsnRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerSpan
from spacy.attrs import IDX, LOWER
from spacy.language import Language
from spacy.tokens import Doc

from pipelines import runtime  # noqa: I001  (first: keeps presidio offline)
from pipelines.redact_addresses import StreetAddressRecognizer
from pipelines.redact_base import ORG_WORDS, PERSON, PERSON_FIELDS, PHONE_NUMBER, STOP, STREET_ADDRESS, UNIT, case_mode, field_label_at, is_cap
from pipelines.redact_cards import LuhnCardRecognizer
from pipelines.redact_context import ContextPersonRecognizer
from pipelines.redact_names import ProperNounRecognizer, common, load_tagged, plural_noun
from pipelines.redact_phones import LoosePhoneRecognizer

THRESHOLDS: dict[str, float] = {
    PERSON: 0.5,
    STREET_ADDRESS: 0.5,
    PHONE_NUMBER: 0.5,  # libphonenumber alone (0.4) finds phones in any digit run
    "EMAIL_ADDRESS": 0.5,
    "CREDIT_CARD": 0.5,
    "US_SSN": 0.5,
    "IBAN_CODE": 0.5,
    "IP_ADDRESS": 0.5,
    "US_DRIVER_LICENSE": 0.4,  # its bare patterns score 0.01-0.3; only context lifts them
}
"""Entity types we redact and the minimum score for each. Anything else
(LOCATION, ORGANIZATION, DATE_TIME, NRP, URL) is deliberately left in place."""

# Validated, tightly shaped identifiers win an overlap over fuzzier ones.
_PRIORITY = {
    "EMAIL_ADDRESS": 4, "CREDIT_CARD": 4, "IBAN_CODE": 4, "US_SSN": 4, "IP_ADDRESS": 4,
    STREET_ADDRESS: 3, PHONE_NUMBER: 2, "US_DRIVER_LICENSE": 2, PERSON: 1,
}
_NUMERIC_TYPES = {"CREDIT_CARD", PHONE_NUMBER, "US_SSN", "IBAN_CODE", "US_DRIVER_LICENSE"}

_ESCAPE = re.compile(r"\\(?=[\"'])")
"""Backslashes that escape quotes in exported text (JSON, CSV dumps): ``Mary\\'s`` would hide a name
from the tokenizer. Recognisers read a view with each one as a space; offsets stay the same."""

_GLUED_QUOTE = re.compile(r"(?<=\p{L}:)[\"“]")
"""A quote right after a speaker's colon (``Sara:"I'm Julie's``) makes one token of three words. spaCy
reads a view with it as a space (same offsets); the recognisers still see the quote, which marks a
speaker."""

TOKEN_RE = re.compile(r"<[A-Z][A-Z_]*_[0-9a-f]{8}>")
"""A pseudonym this module wrote; never analysed again (keeps redaction idempotent)."""


# --------------------------------------------------------------------------- pseudonyms


def _normalise(entity_type: str, value: str) -> str:
    """Case, width and spacing variants of one value must give one token."""
    text = unicodedata.normalize("NFKC", value).casefold()
    if entity_type in _NUMERIC_TYPES:
        return re.sub(r"[^0-9a-z]", "", text)
    text = re.sub(r"[’`]", "'", text)
    text = " ".join(text.replace(",", " , ").split()).replace(" , ", ", ")
    return text.strip(" ,.;:'\"-")


def pseudonym(entity_type: str, value: str, secret: bytes) -> str:
    """``<TYPE_xxxxxxxx>``: keyed HMAC-SHA256 of the normalised value; 32 bits keep collisions rare."""
    digest = hmac.new(secret, _normalise(entity_type, value).encode(), hashlib.sha256)
    return f"<{entity_type}_{digest.hexdigest()[:8]}>"


@dataclass(frozen=True)
class Redaction:
    text: str
    """The redacted text."""
    counts: dict[str, int]
    """Replacements per entity type; never the values."""
    spans: tuple[tuple[int, int, str], ...] = ()
    """(start, end, entity type) of each replaced span in the *original* text."""
    entities: tuple[tuple[str, str], ...] = ()
    """(surface, spaCy label) of each named entity left intact, as it reads in the redacted text.

    The entity graph reads these instead of running the recogniser a second time."""


# --------------------------------------------------------------------------- engine



def nlp_engine_config(language: str = "en", model_name: str = runtime.SPACY_MODEL) -> dict:
    """Pins the installed spaCy model; Presidio otherwise downloads en_core_web_lg."""
    return {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": language, "model_name": model_name}],
        # spaCy labels that are never personal identifiers: ignored instead of logged per text.
        "ner_model_configuration": {
            "labels_to_ignore": ["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "TIME", "LANGUAGE",
                                 "LAW", "WORK_OF_ART", "PRODUCT", "EVENT", "FAC"],
        },
    }


def _build_analyzer(language: str) -> AnalyzerEngine:
    config = nlp_engine_config(language)
    nlp_engine = _TaggedEngine(
        models=config["models"], ner_model_configuration=NerModelConfiguration.from_dict(config["ner_model_configuration"])
    )
    nlp_engine.load()
    registry = RecognizerRegistry(supported_languages=[language])
    for recognizer in (
        SpacyRecognizer(supported_language=language, supported_entities=[PERSON]),
        EmailRecognizer(supported_language=language),
        PhoneRecognizer(supported_language=language),
        CreditCardRecognizer(supported_language=language),
        UsSsnRecognizer(supported_language=language),
        CaseBlindIbanRecognizer(supported_language=language),
        IpRecognizer(supported_language=language),
        UsLicenseRecognizer(supported_language=language),
        StreetAddressRecognizer(),
        LuhnCardRecognizer(),
        LoosePhoneRecognizer(),
        ProperNounRecognizer(),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


class CaseBlindIbanRecognizer(IbanRecognizer):
    """IBANs written in lower case ("gb82west1234..."): Presidio's patterns want capitals; the
    checksum it validates is the same either way."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        upper = text.upper()
        # presidio annotates these None defaults as plain NlpArtifacts / int (no Optional)
        return super().analyze(upper if len(upper) == len(text) else text, entities,
                               nlp_artifacts, regex_flags)  # type: ignore[arg-type]


class _TaggedEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over the recogniser and the tagger (names by shape need the tags).

    No parser, attribute ruler or lemmatizer: they serve only Presidio's context lemmas, for
    which lower-case forms stand in. The tagger adds ~4-8 ms per CISI abstract to the ~17 ms
    of the recogniser alone."""

    # presidio's engine sets an unannotated ``self.nlp = None`` until load(), so mypy types it None
    nlp: dict[str, Language]  # type: ignore[assignment]

    def load(self) -> None:
        self.nlp = {m["lang_code"]: load_tagged(m["model_name"]) for m in self.models}

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        columns = doc.to_array([LOWER, IDX])  # one C-level pass instead of a Token object per word
        entities, scores = self._get_updated_entities(self._get_entities(doc), self._get_scores_for_entities(doc))
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=columns[:, 1].tolist(),
            lemmas=[doc.vocab.strings[int(h)] for h in columns[:, 0]],
            nlp_engine=self,
            language=language,
            scores=scores,
        )




def _table_header(text: str, pos: int) -> str | None:
    """The column header above ``pos`` when the text is a flattened table ("a | b\nc | d"), else None."""
    lines = text.split("\n")
    if sum(" | " in line for line in lines) < 2:
        return None
    line_start = text.rfind("\n", 0, pos) + 1
    if line_start == 0:
        return ""  # the header row itself: labels, not people
    column = text[line_start:pos].count(" | ")
    headers = lines[0].split(" | ")
    return headers[column] if column < len(headers) else ""


def _by_cue(r: RecognizerResult) -> bool:
    """Found by the words around it (redact_context), not by the recogniser or by shape."""
    return (r.recognition_metadata or {}).get("recognizer_name") == "name by context"


def _may_be_person(text: str, r: RecognizerResult, doc: Doc) -> bool:
    """A plural common noun is nobody ("Stanley Cups", "Settings"), and in a table only a column
    headed by a person word ("Customer", "Name") holds people ("Team": Blues, Flyers)."""
    strong = _by_cue(r)
    span = doc.char_span(r.start, r.end, alignment_mode="expand")
    # "Zak Sanders" is somebody: a plural that people mostly write capitalised is a surname
    if span is not None and len(span) and plural_noun(span[-1]) and common(span[-1].text) and not strong:
        return False
    # "the Library", "a Handbook": one English word after an article is a thing, whatever the recogniser says
    if span is not None and len(span) == 1 and span.start and common(span[0].text) and not strong and \
            doc[span.start - 1].lower_ in {"the", "a", "an"}:
        return False
    header = _table_header(text, r.start)
    return header is None or bool(PERSON_FIELDS.search(header))


def _clean_person(text: str, r: RecognizerResult) -> list[tuple[int, int]]:
    """spaCy PERSON spans run across lines, swallow "'s" and catch URLs; keep the name parts."""
    cased = case_mode(text)
    # "My name is Will", "Mrs. May": after the strongest cues a capitalised word is a name, stop word or not
    named = _by_cue(r) and r.score >= 0.8
    pieces = []
    offset = r.start
    for part in text[r.start : r.end].split("\n"):
        lead = len(part) - len(part.lstrip(" \t?*•-\"'("))
        core = re.sub(r"(?:['’]s?|[\s,.;:\"')])+$", "", part.strip(" \t?*•-\"'("))
        head, of, _ = core.partition(" of ")
        if of and head and core.split()[-1].lower().strip(".,") in ORG_WORDS:
            core = head  # "Donna Lončar of Secure Inc.": the person, not the company after "of"
        words = core.split()
        label_end = offset + lead + len(core)
        while len(words) > 1 and common(words[-1]) and field_label_at(text, label_end):
            words.pop()  # "Margaret Holloway Phone: ...": a form's next label ends the name
            core = core[: core.rindex(words[-1]) + len(words[-1])]
            label_end = offset + lead + len(core)
        if len(words) > 2 and re.fullmatch(UNIT, words[-2]) and re.fullmatch(r"#?\d[\w-]*", words[-1]):
            words.pop()  # "Kristin Bader Suite 360": the unit and its number open the address
        while len(words) > 1 and re.fullmatch(UNIT, words[-1]):
            words.pop()  # "Diana Weöres Apt. 434 ...": the unit opens the address
            core = core[: core.rindex(words[-1]) + len(words[-1])]
        if len(words) == 1 and common(words[0]) and field_label_at(text, label_end):
            words = []  # "Address:" opens a field
        if (
            words
            and len(core) >= 2
            and not re.search(r"[\d/@:_<>]", core)
            and (not cased or any(is_cap(w) or (w.isalpha() and not common(w)) for w in words))  # "by rose taylor"
            and words[-1].lower().strip(".,") not in ORG_WORDS  # "Blue Fjord Ltd"
            and not TOKEN_RE.search(core)
            and (any(w.lower() not in STOP for w in words) or (named and all(is_cap(w) for w in words)))
        ):
            pieces.append((offset + lead, offset + lead + len(core)))
        offset += len(part) + 1
    return pieces


def _glued(text: str, start: int, end: int) -> bool:
    """Digits that continue an identifier ("INV-2023-000123") are not a phone number."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return before.isalnum() or before in "-/_" or after.isalpha()


def _spread_names(text: str, spans: list[tuple[int, int, str, float]]) -> list[tuple[int, int, str, float]]:
    """A name found once is redacted everywhere in the document, surname alone too."""
    names: set[str] = set()
    for start, end, entity, _ in spans:
        if entity == PERSON:
            value = text[start:end]
            words = value.split()
            if len(words) > 1 or not common(value):  # one mistaken "Library" must not take every other
                names.add(value)
            if len(words) > 1:
                names.update(w for w in words if len(w) > 2 and is_cap(w) and w.lower() not in STOP)
    extra = []
    for name in names:
        for m in re.finditer(rf"(?<![\p{{L}}\p{{M}}\d_<])({re.escape(name)})(?![\p{{L}}\p{{M}}\d_])", text):
            extra.append((m.start(), m.end(), PERSON, 0.6))
    return spans + extra


def _inside_token(start: int, end: int, tokens: list[tuple[int, int]]) -> bool:
    """The span touches a pseudonym written by an earlier pass."""
    i = bisect.bisect_right(tokens, (start, 1 << 62))
    return (i > 0 and tokens[i - 1][1] > start) or (i < len(tokens) and tokens[i][0] < end)


def _rank(entity: str, score: float) -> int:
    """A validated shape wins only when validated (checksum) or confirmed by context: Presidio's bare
    SSN pattern (0.5) also reads "680 36 4022" in "Suite 680 36 4022 Oakridge Lane"."""
    priority = _PRIORITY.get(entity, 0)
    return min(priority, _PRIORITY[PHONE_NUMBER]) if priority == _PRIORITY["US_SSN"] and score <= 0.5 else priority


def _resolve(spans: Iterable[tuple[int, int, str, float]]) -> list[tuple[int, int, str]]:
    """Non-overlapping spans: merge same-type overlaps, then keep the
    higher-priority, longer, higher-scoring one of any clash."""
    merged: list[list] = []
    for start, end, entity, score in sorted(spans, key=lambda s: (s[2], s[0], -s[1])):
        if merged and merged[-1][2] == entity and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][3] = max(merged[-1][3], score)
        else:
            merged.append([start, end, entity, score])
    chosen: list[tuple[int, int, str]] = []  # kept sorted and disjoint
    ranked = sorted(merged, key=lambda s: (-_rank(s[2], s[3]), -(s[1] - s[0]), -s[3]))
    for start, end, entity, _ in ranked:
        i = bisect.bisect_left(chosen, (start,))
        if (i == 0 or chosen[i - 1][1] <= start) and (i == len(chosen) or chosen[i][0] >= end):
            chosen.insert(i, (start, end, entity))
    return chosen


class Redactor:
    """Finds personal identifiers and replaces them with keyed pseudonyms.

    Loading spaCy and Presidio takes a second or two: build one per process.
    """

    def __init__(self, secret: bytes, *, language: str = "en") -> None:
        if not secret:
            raise ValueError("a non-empty secret is required: it keys the pseudonyms")
        self._language = language
        self._analyzer = _build_analyzer(language)
        # outside Presidio's engine, which drops a result inside a higher-scored one of the same type: a
        # cue's "Gallo" inside the recogniser's own "Gallo" would lose the evidence that it is a name
        self._cues = ContextPersonRecognizer()
        self._anonymizer = AnonymizerEngine()
        self._operators = {
            entity: OperatorConfig(
                "custom", {"lambda": lambda value, _e=entity: pseudonym(_e, value, secret)}
            )
            for entity in THRESHOLDS
        }

    def redact(self, text: str) -> Redaction:
        return self.redact_many([text])[0]

    def redact_many(self, texts: list[str], batch_size: int = 32) -> list[Redaction]:
        """Batched: spaCy runs over all texts in one ``nlp.pipe`` (Presidio's batch engine, keeping the docs)."""
        analyzer = self._analyzer
        out = []
        views = [_ESCAPE.sub(" ", t) for t in texts]  # same length: spans found in a view fit the text
        tokenized = [_GLUED_QUOTE.sub(" ", v) for v in views]
        batch = analyzer.nlp_engine.process_batch(tokenized, self._language, batch_size=batch_size)
        for text, view, (_, artifacts) in zip(texts, views, batch):
            results = analyzer.analyze(
                text=view, language=self._language, nlp_artifacts=artifacts,
                entities=list(THRESHOLDS), score_threshold=0.0,
            ) + self._cues.analyze(view, [PERSON], artifacts)
            out.append(self._apply(text, results, artifacts.tokens, view))
        return out

    def _select(self, text: str, results: list[RecognizerResult], doc: Doc) -> list[tuple[int, int, str]]:
        kept = [r for r in results if r.score >= THRESHOLDS.get(r.entity_type, 1.1)]
        kept = [r for r in kept if r.entity_type != PERSON or _may_be_person(text, r, doc)]
        tokens = [(m.start(), m.end()) for m in TOKEN_RE.finditer(text)]  # sorted, disjoint
        spans: list[tuple[int, int, str, float]] = []
        for r in kept:
            if r.entity_type == PERSON:
                spans.extend((s, e, PERSON, r.score) for s, e in _clean_person(text, r))
            else:
                spans.append((r.start, r.end, r.entity_type, r.score))
        spans = [s for s in spans if s[2] != PHONE_NUMBER or not _glued(text, s[0], s[1])]
        spans = _spread_names(text, spans)
        return _resolve(s for s in spans if not _inside_token(s[0], s[1], tokens))

    def _apply(self, text: str, results: list[RecognizerResult], doc: Doc, view: str) -> Redaction:
        spans = self._select(view, results, doc)
        ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        kept = _intact(text, ents, spans)
        if not spans:
            return Redaction(text=text, counts={}, spans=(), entities=kept)
        engine_result = self._anonymizer.anonymize(
            text=text,
            analyzer_results=[AnonymizerSpan(e, s, t, 1.0) for s, t, e in spans],
            operators=self._operators,
            merge_entities_with_spaces=False,
        )
        counts = Counter(entity for _, _, entity in spans)
        return Redaction(text=engine_result.text, counts=dict(counts), spans=tuple(spans), entities=kept)


def _intact(text: str, ents: list[tuple[int, int, str]], redacted: list[tuple[int, int, str]]) -> tuple[tuple[str, str], ...]:
    """Named entities that no redaction touches: their words appear unchanged in the redacted text.

    A person the recogniser found is kept only when redaction left it alone (the
    small model calls "Globex Corporation" a person); the graph decides what to use.
    """
    return tuple(
        (" ".join(text[start:end].split()), label)
        for start, end, label in ents
        if not any(s < end and start < e for s, e, _ in redacted)
    )
