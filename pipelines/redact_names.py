"""Names the small spaCy model misses or mistypes, found by their shape.

The small model's recogniser calls many people ORG or GPE ("Valtteri is very
reliable" -> ORG, "Turgeon, Guerra and Ewing" -> ORG, ORG, GPE) and misses
others outright. Its tagger is steadier: it still tags those words as proper
nouns (NNP), in lower-case text too. A proper noun that is not an English word
is most often a name, so a run of proper nouns holding a word that the model's
own lexicon (the lemmatizer's WordNet index) does not know, or that people write
capitalised far more often than not (spaCy's English word-frequency table), is
taken as a person, unless the words around it say place or organisation, or the
recogniser does for a place or a lone word (two capitalised words it calls an
organisation, "Tristan Dennis", with no company word, are a name). Common words
("Stanley Cup", "Team", "Library") never make a name on their own; people listed
with a person are people too.
"""

from __future__ import annotations

import functools
from typing import cast

import regex as re
import spacy
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.pipeline import Lemmatizer
from spacy.tokens import Doc, Token

from pipelines import runtime
from pipelines.redact_wordforms import word_forms
from pipelines.redact_base import ORG_WORDS, PERSON, Recognizer, case_mode, field_label_at, opens_sentence, result

_PROPER = {"NNP", "NNPS"}
_NAME_WORD = re.compile(r"\p{L}[\p{L}\p{M}'’\-]*")
_FOREIGN = re.compile(r"[^\p{Script=Latin}\p{M}'’\-]|[^\x00-\x7fàáâäçèéêëíîïñóôöúûüÀÁÂÄÇÈÉÊËÍÎÏÑÓÔÖÚÛÜ'’\-]")
"""Letters of no English word, loanwords' accents ("café", "naïve") aside: ł, ø, ő, ž, ß, ...; or another script."""
_REGION_AFTER = re.compile(r",[ \t]*(?:\p{Lu}{2}\b|\p{Lu}\p{Ll}+)")  # "Doylestown, PA", "Kiel, Germany"
_LIST_GAP = re.compile(r",[ ]|,?[ ](?:and|or|&)[ ]")
_PARTICLES = frozenset("van von der den de del della di da dos das du le la bin ibn al el st.".split())
_PLACE_LABELS = {"GPE", "LOC", "FAC", "NORP"}
_OTHER_LABELS = {"PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE"}
_NOT_NAMES = {"DATE", "TIME", "MONEY", "PERCENT", "QUANTITY", "CARDINAL", "ORDINAL"}
# Words before a place or an organisation, rarely before a person.
_LOCATIVE = frozenset(
    "in at from near of into via across around outside inside within throughout towards toward".split()
)
_PERSONAL_PRONOUNS = frozenset("he she him her his hers himself herself".split())
_DETERMINERS = frozenset("the a an this that".split())  # "the Shelbyville reservoir"
_ORG_WORDS = ORG_WORDS | frozenset(  # and the institutions and places a run of names may end in
    """club hotel school college hospital council city town county village state province island
    islands republic kingdom united fc library libraries laboratory laboratories museum press journal
    review association society center centre department office committee board project index effect
    law award prize""".split()
)


@functools.cache
def lexicon() -> frozenset[str]:
    """Lower-case English words (WordNet's index as the model's lemmatizer ships it)."""
    others = ["tok2vec", "tagger", "parser", "attribute_ruler", "ner", "senter"]
    lemmatizer = cast(Lemmatizer, spacy.load(runtime.SPACY_MODEL, exclude=others).get_pipe("lemmatizer"))
    index = lemmatizer.lookups.get_table("lemma_index")
    return frozenset(w for words in index.values() for w in words if "_" not in w)


def capitalised() -> frozenset[str]:
    """Lower-case forms of words people write capitalised (names, places, brands): "mary", "schulz",
    "jordan", but not "sluice", "team", "settings"."""
    return word_forms()[0]


def common(word: str) -> bool:
    """An English word that is not usually a proper noun: known, and not mostly written capitalised."""
    return known(word) and word.lower().strip("'’.") not in capitalised()


def known(word: str) -> bool:
    """An English word, in any of its inflections ("cups", "leafs", "flyers", "cataloging")."""
    w = word.lower().strip("'’.")
    words = lexicon()
    if w in words or w in word_forms()[1]:  # WordNet, or a form written in lower case often enough
        return True
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("'s", ""), ("ers", "er")):
        if w.endswith(suffix) and w[: -len(suffix)] + repl in words:
            return True
    return False


def plural_noun(token: Token) -> bool:
    """"Cups", "Blues", "Settings": tagged plural and an English word once singular; never one person."""
    w = token.lower_
    if token.tag_ not in {"NNS", "NNPS"} or not w.endswith("s"):
        return False
    words = lexicon()  # the singular must be a noun: "Nicholas", "Lucas" are not plurals
    return any(w.endswith(suffix) and w[: -len(suffix)] + repl in words
               for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")))


def _runs(doc: Doc, text: str, cased: bool) -> list[list[Token]]:
    """Maximal runs of proper nouns on one line, joined by single spaces (particles allowed inside)."""
    runs: list[list[Token]] = []
    current: list[Token] = []
    for token in doc:
        shaped = bool(_NAME_WORD.fullmatch(token.text)) and (not cased or token.text[0].isupper())
        # mid-sentence, a capitalised word English does not know is a proper noun whatever its tag
        # ("the Takuda novel": JJ)
        unknown_inside = (cased and shaped and not token.is_stop and not opens_sentence(text, token.idx)
                          and not common(token.text))
        # without capitals, a word people write capitalised ("carol", "smith") is a proper noun too
        truecased = not cased and shaped and token.tag_ != "UH" and token.lower_ in capitalised() and not token.is_stop
        # a capitalised word spelt with letters English never uses ("Wisław", "Søren") is a name, first in
        # its sentence too
        foreign = cased and shaped and token.text[0].isupper() and not token.is_stop and _FOREIGN.search(token.text) is not None
        proper = ((token.tag_ in _PROPER or unknown_inside or truecased or foreign) and shaped
                  and not (cased and _acronym(token.text)))
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


def _is_label(text: str, token: Token) -> bool:
    """"Phone:" in a flattened form is a field label, not part of a name."""
    return field_label_at(text, token.idx + len(token)) and common(token.text)


_TITLE_WORDS = 24
"""A title is short: a longer line in capitals is prose that names many companies and people
("... including Jade Giroux of Apollo Commercial Real Estate Finance Inc., ...")."""


@functools.lru_cache(maxsize=256)
def _title_case(line: str) -> bool:
    if len(line.split()) > _TITLE_WORDS:
        return False
    words = [w for w in line.split() if len(w) > 3 and w.isalpha()]
    return len(words) >= 4 and sum(w[0].isupper() for w in words) >= 0.75 * len(words)


def _title_case_line(text: str, run: list[Token]) -> bool:
    """The run sits on a line written in title case ("Managing Library Automation"), where capitals
    say nothing: there only runs of words English does not know at all are taken."""
    start = text.rfind("\n", 0, run[0].idx) + 1
    end = text.find("\n", run[0].idx)
    return _title_case(text[start : end if end >= 0 else len(text)])


def _surface(run: list[Token]) -> str:
    return " ".join(t.text for t in run)


def _label(ents: list[tuple[int, int, str]], start: int, end: int) -> str:
    """The recogniser's label of the first entity overlapping [start, end), or ""."""
    return next((label for s, e, label in ents if s < end and start < e), "")


def _previous_word(doc: Doc, token: Token) -> str:
    i = token.i - 1
    while i >= 0 and doc[i].is_space:
        i -= 1
    return doc[i].lower_ if i >= 0 else ""


def _subject_name(doc: Doc, text: str, run: list[Token], label: str, cased: bool) -> bool:
    """One known word that opens a sentence, acts and is then referred to as a person ("Regina is very
    reliable. You can depend on her", "Lucas had given Mary his address"): a name, whatever the
    recogniser typed it, unless a date or an amount. "Siemens opened offices" has no "he" or "she"."""
    token = run[0]
    if len(run) != 1 or label in _NOT_NAMES or not (cased or token.lower_ in capitalised()):
        return False
    nxt = doc[token.i + 1] if token.i + 1 < len(doc) else None
    if not (opens_sentence(text, token.idx) and nxt is not None and (nxt.tag_.startswith("VB") or nxt.tag_ == "MD")):
        return False
    # A person is spoken of as one ("... depend on him", "given Stacy his address"); "Sluice watches a folder" is not.
    return any(t.lower_ in _PERSONAL_PRONOUNS for t in doc[token.i + 1 : token.i + 25])


def _named_midway(doc: Doc, text: str, run: list[Token], label: str, cased: bool) -> bool:
    """One English word the tagger calls a proper noun in mid-sentence, untyped by the recogniser,
    right after a verb or "to"/"with" ("Is Ruby in?", "I spoke to Amber"), is a name; "the Library",
    "as Director of", "Big Science", "Cataloging Rules" are not."""
    token = run[0]
    if label or not cased or any(t.tag_ != "NNP" for t in run) or opens_sentence(text, token.idx):
        return False
    before = doc[token.i - 1]
    nxt = doc[run[-1].i + 1] if run[-1].i + 1 < len(doc) else None
    if len(run) > 1:  # "The winner was Crystal Banks.": a full name after "is"/"was" ends the sentence
        return len(run) == 2 and before.lower_ in {"is", "was"} and (nxt is None or nxt.is_punct)
    return (((before.tag_.startswith("VB") and before.tag_ not in {"VBG", "VBN"}) or before.lower_ in {"to", "with"})
            and (nxt is None or not nxt.is_title))


def _subjects(doc: Doc, text: str, taken: set[int], cased: bool) -> list[tuple[int, int, float]]:
    """Sentence openers the tagger did not call proper nouns ("Oline is very reliable. You can depend
    on him": NN) that act and are then spoken of as a person; not a word of the dictionary ("Water
    flows downhill, he said")."""
    found = []
    words = lexicon()
    for token in doc:
        if (token.i not in taken and not token.is_stop and token.lower_ not in words and _NAME_WORD.fullmatch(token.text)
                and (token.is_title or not cased) and opens_sentence(text, token.idx)):
            label = token.ent_type_ if token.ent_iob_ != "O" else ""
            if _subject_name(doc, text, [token], label, cased):
                found.append((token.idx, token.idx + len(token), 0.5))
    return found


def person_runs(doc: Doc, text: str, cased: bool) -> list[tuple[int, int, float]]:
    """(start, end, score) of proper-noun runs judged to be people (``text`` is ``doc.text``, which
    spaCy rebuilds on every access)."""
    runs = [run for run in _runs(doc, text, cased) if not (cased and _title_case_line(text, run) and
                                                      any(common(t.text) for t in run))]
    places = {_surface(run) for run in runs if _previous_word(doc, run[0]) in _LOCATIVE}
    ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents] if runs else []  # Span objects cost
    found: list[tuple[int, int, float]] = []
    seeds: list[int] = []
    labels: dict[int, str] = {}
    for run in runs:
        while run and _is_label(text, run[-1]):
            run = run[:-1]
        if not run:
            continue
        words = [t for t in run if t.lower_ not in _PARTICLES]
        after = doc[run[-1].i + 1].lower_.strip(".") if run[-1].i + 1 < len(doc) else ""
        if after in _ORG_WORDS or any(t.lower_.strip(".") in _ORG_WORDS for t in words):
            continue  # "Globex Corp.", "Cantrell Ltd."
        start, end = run[0].idx, run[-1].idx + len(run[-1])
        label = labels[start] = _label(ents, start, end)
        # Untyped, a word usually written capitalised counts as a name ("Jordan", "Schulz"); against
        # the recogniser's place or organisation only a word English does not know at all does
        # ("Munich", "Texas", "Siemens" stay).
        if label == PERSON:
            seeds.append(start)  # the recogniser's own person: Presidio's spaCy recogniser reports it
            continue
        # Typed an organisation, two or more words people write capitalised read as a name ("Tristan Dennis");
        # a place, or one word alone ("Google"), needs a word English does not know at all.
        by_shape = not label or (label == "ORG" and len(words) > 1)
        unknown = [t for t in words if not (common(t.text) if by_shape else known(t.text))]
        if not unknown:
            if _subject_name(doc, text, run, label, cased) or _named_midway(doc, text, run, label, cased):
                found.append((start, end, 0.5))
            continue
        if label in _NOT_NAMES:
            continue  # a date, an amount
        before = _previous_word(doc, run[0])
        after_locative = before in _LOCATIVE or (label and before in _DETERMINERS) or _surface(run) in places
        if not label:
            score = 0.55
        elif label in _PLACE_LABELS or label in _OTHER_LABELS:
            region = _REGION_AFTER.match(text, end)  # "Doylestown, PA", not "Slavko Bilić, Louelle van Dijk"
            if after_locative or (region and _label(ents, region.end() - 1, region.end()) != PERSON):
                continue  # "in Doylestown", "Doylestown, PA": a place
            score = 0.5
        elif label == "ORG":
            if after_locative or (len(words) == 1 and _brand_like(words[0].text)):
                continue
            score = 0.5
        else:
            continue
        found.append((start, end, score))
    found += _subjects(doc, text, {t.i for run in runs for t in run}, cased)
    people = {start for start, _, _ in found} | set(seeds)
    typed_places = {start for start, label in labels.items() if label in _PLACE_LABELS}
    listed = [run for run in runs if _surface(run) not in places]  # "in Paris and London" stay
    return found + _coordinated(text, listed, people, typed_places)


def _coordinated(text: str, runs: list[list[Token]], people: set[int], places: set[int]) -> list[tuple[int, int, float]]:
    """Proper nouns listed with a person (runs starting at ``people``) are people too ("Turgeon,
    Guerra and Ewing"). A run the recogniser typed a place joins only a list with a conjunction
    ("Schulz, Strickland and Mary Jones"), not a comma alone ("Iwan Roberts, Norwich")."""
    lists: list[list[tuple[list[Token], str]]] = []  # each run of a list with the gap before it
    for run in runs:
        if lists:
            last = lists[-1][-1][0][-1]
            gap = text[last.idx + len(last) : run[0].idx]
            if _LIST_GAP.fullmatch(gap):
                lists[-1].append((run, gap))
                continue
        lists.append([(run, "")])
    extra: list[tuple[int, int, float]] = []
    for members in lists:
        if len(members) < 2 or not any(run[0].idx in people for run, _ in members):
            continue
        conjoined = any(gap.strip(", ") for _, gap in members)
        for run, _ in members:
            start = run[0].idx
            if start not in people and (conjoined or start not in places):
                extra.append((start, run[-1].idx + len(run[-1]), 0.5))
    return extra


class ProperNounRecognizer(Recognizer):
    """People named by proper nouns that are not English words (see the module docstring)."""

    ENTITIES = (PERSON,)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        doc = nlp_artifacts.tokens if nlp_artifacts is not None else None
        if doc is None or not doc.has_annotation("TAG"):
            return []
        cased = case_mode(text)
        return [result(PERSON, start, end, score, "proper noun") for start, end, score in person_runs(doc, text, cased)]


def load_tagged(model: str = runtime.SPACY_MODEL) -> spacy.Language:
    """The recogniser with the tagger (and their shared tok2vec); no parser, lemmatizer or rules."""
    return spacy.load(model, exclude=["parser", "attribute_ruler", "lemmatizer", "senter"])
