"""Names the small spaCy model misses or mistypes, found by their shape.

The small model's recogniser calls many people ORG or GPE ("Valtteri is very
reliable" -> ORG, "Turgeon, Guerra and Ewing" -> ORG, ORG, GPE) and misses
others outright. Its tagger is steadier: it still tags those words as proper
nouns (NNP), in lower-case text too. A proper noun that is not an English word
is most often a name, so a run of proper nouns holding at least one word that
the model's own English lexicon (the lemmatizer's WordNet index, shipped with
the model) does not know is taken as a person, unless the recogniser or the
words around it say it is a place or an organisation. Known words ("Stanley
Cup", "Team", "Texas", "Library") never make a name on their own.
"""

from __future__ import annotations

import functools

import regex as re
import spacy
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.tokens import Doc, Span, Token

from pipelines import runtime

PERSON = "PERSON"
_PROPER = {"NNP", "NNPS"}
_NAME_WORD = re.compile(r"\p{L}[\p{L}\p{M}'’\-]*")
_REGION_AFTER = re.compile(r",[ \t]*(?:\p{Lu}{2}\b|\p{Lu}\p{Ll}+)")  # "Doylestown, PA", "Kiel, Germany"
_PARTICLES = frozenset("van von der den de del della di da dos das du le la bin ibn al el st.".split())
_PLACE_LABELS = {"GPE", "LOC", "FAC", "NORP"}
_OTHER_LABELS = {"PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE"}
_NOT_NAMES = {"DATE", "TIME", "MONEY", "PERCENT", "QUANTITY", "CARDINAL", "ORDINAL"}
# Words before a place or an organisation, rarely before a person.
_LOCATIVE = frozenset(
    "in at from near of into via across around outside inside within throughout towards toward".split()
)
_DETERMINERS = frozenset("the a an this that".split())  # "the Shelbyville reservoir"
_ORG_WORDS = frozenset(
    """inc ltd llc llp plc gmbh ag sa bv co corp corporation company group bank university
    consulting software services solutions technologies systems partners associates
    foundation institute agency studio labs club hotel school college hospital council
    city town county village state province island islands republic kingdom united fc""".split()
)


@functools.cache
def lexicon() -> frozenset[str]:
    """Lower-case English words (WordNet's index as the model's lemmatizer ships it)."""
    others = ["tok2vec", "tagger", "parser", "attribute_ruler", "ner", "senter"]
    lemmatizer = spacy.load(runtime.SPACY_MODEL, exclude=others).get_pipe("lemmatizer")
    index = lemmatizer.lookups.get_table("lemma_index")
    return frozenset(w for words in index.values() for w in words if "_" not in w)


def known(word: str) -> bool:
    """An English word, in any of its inflections ("cups", "leafs", "flyers")."""
    w = word.lower().strip("'’.")
    words = lexicon()
    if w in words:
        return True
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("'s", ""), ("ers", "er")):
        if w.endswith(suffix) and w[: -len(suffix)] + repl in words:
            return True
    return False


def plural_noun(token: Token) -> bool:
    """"Cups", "Blues", "Settings": tagged plural and an English noun once singular; never one person."""
    return token.tag_ in {"NNS", "NNPS"} and token.text.endswith("s") and known(token.text)


def _runs(doc: Doc, cased: bool) -> list[list[Token]]:
    """Maximal runs of proper nouns on one line, joined by single spaces (particles allowed inside)."""
    runs: list[list[Token]] = []
    current: list[Token] = []
    for token in doc:
        shaped = bool(_NAME_WORD.fullmatch(token.text)) and (not cased or token.text[0].isupper())
        proper = token.tag_ in _PROPER and shaped and not (cased and _acronym(token.text))
        particle = current and token.lower_ in _PARTICLES and token.i + 1 < len(doc)
        joined = current and current[-1].whitespace_ == " " and "\n" not in current[-1].whitespace_
        if proper and (not current or joined):
            current.append(token)
            continue
        if particle and joined:
            current.append(token)
            continue
        if current:
            runs.append(current)
        current = [token] if proper else []
    if current:
        runs.append(current)
    return [_trim(run) for run in runs if _trim(run)]


def _trim(run: list[Token]) -> list[Token]:
    while run and run[-1].lower_ in _PARTICLES:
        run = run[:-1]
    return run


_BRAND_ENDINGS = ("soft", "tech", "ware", "nomics", "graphy", "ify", "ics", "net", "web", "hub", "labs", "works")


def _brand_like(word: str) -> bool:
    """Company names are often two English words run together ("Billguard", "Spacecurve",
    "Microsoft") or end in a trade suffix; given names rarely are."""
    w = word.lower()
    words = lexicon()
    if w.endswith(_BRAND_ENDINGS):
        return True
    return any(w[:i] in words and w[i:] in words for i in range(3, len(w) - 2))


def _acronym(word: str) -> bool:
    return len(word) >= 2 and word.isupper()


def _is_label(doc: Doc, token: Token) -> bool:
    """"Phone:" in a flattened form is a field label, not part of a name."""
    nxt = doc[token.i + 1] if token.i + 1 < len(doc) else None
    return nxt is not None and nxt.text.startswith(":") and known(token.text)


def _surface(run: list[Token]) -> str:
    return " ".join(t.text for t in run)


def _entity(doc: Doc, start: int, end: int) -> Span | None:
    for ent in doc.ents:
        if ent.start_char < end and start < ent.end_char:
            return ent
    return None


def _previous_word(doc: Doc, token: Token) -> str:
    i = token.i - 1
    while i >= 0 and doc[i].is_space:
        i -= 1
    return doc[i].lower_ if i >= 0 else ""


def _subject_name(doc: Doc, run: list[Token], label: str, cased: bool) -> bool:
    """One known word that opens a sentence and acts ("Regina is very reliable", "Blake had given"):
    a name, when the recogniser calls it no organisation, place or date."""
    if len(run) != 1 or label in {"ORG", "GPE", "LOC"} | _NOT_NAMES or not cased:
        return False
    token = run[0]
    before = doc[token.i - 1] if token.i else None
    opens = before is None or before.text in {".", "!", "?", ":"} or "\n" in before.whitespace_ or before.is_space
    nxt = doc[token.i + 1] if token.i + 1 < len(doc) else None
    return opens and nxt is not None and (nxt.tag_.startswith("VB") or nxt.tag_ == "MD")


def person_runs(doc: Doc, cased: bool) -> list[tuple[int, int, float]]:
    """(start, end, score) of proper-noun runs judged to be people."""
    runs = _runs(doc, cased)
    places = {_surface(run) for run in runs if _previous_word(doc, run[0]) in _LOCATIVE}
    found = []
    for run in runs:
        while run and _is_label(doc, run[-1]):
            run = run[:-1]
        if not run:
            continue
        words = [t for t in run if t.lower_ not in _PARTICLES]
        unknown = [t for t in words if not known(t.text)]
        if any(t.lower_.strip(".") in _ORG_WORDS for t in words):
            continue
        start, end = run[0].idx, run[-1].idx + len(run[-1])
        ent = _entity(doc, start, end)
        label = ent.label_ if ent is not None else ""
        if not unknown:
            if _subject_name(doc, run, label, cased):
                found.append((start, end, 0.5))
            continue
        if label == PERSON or label in _NOT_NAMES:
            continue  # the recogniser's own person; or a date, amount
        before = _previous_word(doc, run[0])
        after_locative = before in _LOCATIVE or (label and before in _DETERMINERS) or _surface(run) in places
        if not label:
            score = 0.55
        elif label in _PLACE_LABELS or label in _OTHER_LABELS:
            if after_locative or _REGION_AFTER.match(doc.text, end):
                continue  # "in Doylestown", "Doylestown, PA": a place
            score = 0.5
        elif label == "ORG":
            if after_locative or (len(words) == 1 and _brand_like(words[0].text)):
                continue
            score = 0.5
        else:
            continue
        found.append((start, end, score))
    return found


class ProperNounRecognizer(LocalRecognizer):
    """People named by proper nouns that are not English words (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(supported_entities=[PERSON], name="ProperNounRecognizer")

    def load(self) -> None:  # noqa: D102 - the lexicon loads on first use
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        doc = nlp_artifacts.tokens if nlp_artifacts is not None else None
        if doc is None or not doc.has_annotation("TAG"):
            return []
        cased = any(c.isupper() for c in text) and any(c.islower() for c in text)
        return [
            RecognizerResult(PERSON, start, end, score, analysis_explanation=None,
                             recognition_metadata={"recognizer_name": "proper noun"})
            for start, end, score in person_runs(doc, cased)
        ]


def load_tagged(model: str = runtime.SPACY_MODEL) -> spacy.Language:
    """The recogniser with the tagger (and their shared tok2vec); no parser, lemmatizer or rules."""
    return spacy.load(model, exclude=["parser", "attribute_ruler", "lemmatizer", "senter"])
