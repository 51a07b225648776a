"""Names that the small spaCy model misses or calls an ORG, found by the words around them:
"my name is", "Mrs.", "my kid", "Arne's address", "X lives at", "said X to Y"."""

from __future__ import annotations

from dataclasses import dataclass

import regex as re
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pipelines.redact_base import PERSON, case_mode, result

_CAP = r"\p{Lu}[\p{L}\p{M}'’\-]*[\p{L}\p{M}]"  # capitalised word, 2+ letters
_NAME_STOP = frozenset(
    """the a an and or but i my your his her our their this that it we you he she they
    please yes no well hi hello hey dear thanks thank sorry ok okay so now also however
    sir madam mr mrs ms dr mister miss today tomorrow yesterday everyone anyone someone
    guys folks team all here there what when where why how who""".split()
)
_GROUPS = frozenset("team everyone all guys folks".split())

_NAME = rf"{_CAP}(?:[ ]{{1,2}}{_CAP}){{0,3}}"
_LOWER_NAME = r"[\p{L}\p{M}][\p{L}\p{M}'’\-]+(?:[ ][\p{L}\p{M}][\p{L}\p{M}'’\-]+)?"
_KIN = (
    r"kid|son|daughter|child|wife|husband|partner|spouse|mother|mom|mum|father|dad|brother|"
    r"sister|friend|boss|colleague|manager|grandmother|grandma|grandfather|grandpa|aunt|uncle|"
    r"cousin|nephew|niece|fianc[ée]e?|girlfriend|boyfriend|neighbou?r|tenant|landlord|client|"
    r"patient|grandson|granddaughter|stepson|stepdaughter|baby|roommate|flatmate"
)
_PERSONAL_NOUN = _KIN + r"|address|phone|email|e-mail|home|birthday|name|ssn|passport"
_POSSESSIVE = r"his|her|their|my|our|your"


@dataclass(frozen=True)
class _Cue:
    """Words around a name: ``before`` + NAME + ``after``. A strong cue overrides
    spaCy calling the span an organisation or a place; ``plain`` cues are safe
    in text without capitals, where any word could be the name."""

    before: str
    after: str = ""
    score: float = 0.7
    strong: bool = True
    plain: bool = False


_CUES = [
    _Cue(r"(?i:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|madam|dame|lady|lord|rev|fr)\b\.?)[ ]+", score=0.8),
    _Cue(r"(?i:\b(?:mr|mrs|ms|mx|dr|prof)\b\.?)[ ]+", score=0.8, plain=True),
    _Cue(
        r"(?i:(?:\b(?:my|his|her|their|your|our)|'s)[ ]+(?:(?:full|first|last|middle|maiden|"
        r"given|family|real|legal|sur)[ ]*)?name(?:[ ]+(?:is|was)|[ ]*[:?])?)[ ]+",
        score=0.85, plain=True,
    ),
    _Cue(r"(?i:\bname[ ]*[:?])[ ]*", score=0.8, plain=True),
    _Cue(r"(?i:\b(?:calls?|called)[ ]+me|\bnamed(?:[ ]+(?:him|her|them))?|\bknown[ ]+as|\bmy[ ]+name's)[ ]+",
         plain=True),
    _Cue(rf"(?i:\bmy[ ]+(?:{_KIN}),?)[ ]+"),
    # "had given Tyler his address": the recipient of give/send/tell ...
    _Cue(
        r"(?i:\b(?:gave|given|give|gives|sent|send|sends|told|tell|tells|showed|show|handed|"
        r"lent|owe|owes|owed|offered|emailed|texted|thanked|asked)[ ]+)",
        rf"(?=[ ]+(?i:{_POSSESSIVE})\b)", score=0.6, plain=True,
    ),
    _Cue(  # "said Keiko to Jessica": the one spoken to
        rf"(?i:\b(?:said|says|asked|replied|whispered|shouted|yelled|cried|wrote))[ ]+{_NAME}[ ]+(?i:to)[ ]+",
        score=0.6,
    ),
    _Cue(r",[ ]+", r"(?=[ ]*[!?])", score=0.6, strong=False),  # "Don't go to town, Charlotte!"
    _Cue(r"(?i:\b(?:hi|hello|hey|dear),?)[ ]+", score=0.6, strong=False),
    _Cue(
        r"(?i:\b(?:said|says|asked|asks|replied|replies|told|tells|shouted|yelled|whispered|"
        r"cried|wrote|added|explained)(?:[ ]+(?:to|at))?)[ ]+",
        score=0.6, strong=False,
    ),
    _Cue(
        r"(?i:\b(?:directed|written|composed|performed|sung|narrated|illustrated|painted|"
        r"photographed|signed|approved|reviewed|submitted|prepared|authored)[ ]+by|\bstarring|"
        r"\bfeaturing|\bft\.)[ ]+",
        score=0.6,
    ),
    _Cue("", rf"(?=['’]s[ ]+(?i:{_KIN})\b)"),
    _Cue("", rf"(?=['’]s[ ]+(?i:{_PERSONAL_NOUN})\b)", strong=False),  # "Amazon's address"
    _Cue(
        "",
        r"(?=[ ]+(?i:lives|lived|resides|resided|was[ ]+born|grew[ ]+up|is[ ]+a[ ]+\d+[ -]year|"
        r"passed[ ]+away|got[ ]+married|works[ ]+as)\b)",
    ),
    _Cue(
        "", r"(?=[ ]+(?i:said|says|asked|replied|shouted|yelled|whispered|told|wrote)\b)",
        score=0.6, strong=False,
    ),
]
_VOCATIVE = re.compile(  # "Marisca, can I please speak to your boss?" - called out first
    rf"(?P<name>{_NAME})(?=,[ ]*(?i:can|could|would|will|please|do|did|are|have|thanks|thank)\b)"
)
_LEFT_EDGE = r"(?<![\p{L}\p{M}'’\-])"
_CASED_CUES = [(re.compile(c.before + _LEFT_EDGE + f"(?P<name>{_NAME})" + c.after), c) for c in _CUES]
_PLAIN_CUES = [
    (re.compile(c.before + _LEFT_EDGE + f"(?P<name>{_LOWER_NAME})" + c.after), c)
    for c in _CUES
    if c.plain
]
_NOT_PERSON_LABELS = {"ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "NORP"}


def _trim_name(name: str) -> str:
    """Cut a captured name at the first word that cannot be part of it;
    "Dear Support Team" names a group, not a person."""
    kept = []
    for word in name.split(" "):
        if word.lower().strip("'’") in _NAME_STOP:
            return "" if word.lower() in _GROUPS else " ".join(kept)
        kept.append(word)
    return " ".join(kept)


def _sentence_start(text: str, pos: int) -> int:
    """Where the sentence holding ``pos`` starts, after any quotes or bullets."""
    head = max(0, pos - 300)
    ends = [head + m.end() for m in re.finditer(r"\n|[.!?]+[ \t]+", text[head:pos])]
    cut = ends[-1] if ends else head
    return cut + len(text[cut:pos]) - len(text[cut:pos].lstrip(" \t\"'(*-?"))


class ContextPersonRecognizer(LocalRecognizer):
    """Names that the small spaCy model misses or calls an ORG, found by the
    words around them ("my name is", "Mrs.", "my kid", "Arne's address",
    "X lives at"). Weak cues (speech verbs, greetings) defer to spaCy when it
    says the span is an organisation or a place."""

    def __init__(self) -> None:
        super().__init__(supported_entities=[PERSON], name="ContextPersonRecognizer")

    def load(self) -> None:  # noqa: D102 - nothing to load
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        doc = nlp_artifacts.tokens if nlp_artifacts is not None else None
        other = [(e.start_char, e.end_char) for e in (doc.ents if doc is not None else [])
                 if e.label_ in _NOT_PERSON_LABELS]
        cased = case_mode(text)
        found = [(m, cue) for pattern, cue in (_CASED_CUES if cased else _PLAIN_CUES)
                 for m in pattern.finditer(text, overlapped=True)]
        plural = {t.idx for t in doc if t.tag_ in {"NNS", "NNPS"}} if found and not cased and doc is not None else set()
        if cased:
            called = _Cue("", score=0.6)  # "Lucas, can I ...": called out, whatever the recogniser says
            found += [(m, called) for m in _VOCATIVE.finditer(text)
                      if m.start() == _sentence_start(text, m.start())]
        results = []
        for m, cue in found:
            name = _trim_name(m.group("name"))
            start, end = m.start("name"), m.start("name") + len(name)
            if not name or any(c.isdigit() for c in name) or (not cased and start in plural):
                continue  # a plural noun ("give customers their ...") is nobody's name
            if not cue.strong and any(s < end and start < e for s, e in other):
                continue
            results.append(result(PERSON, start, end, cue.score, "name by context"))
        return results
