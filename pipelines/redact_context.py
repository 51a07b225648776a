"""Names that the small spaCy model misses or calls an ORG, found by the words around them:
"my name is", "Mrs.", "my kid", "Arne's address", "X lives at", "said X to Y"."""

from __future__ import annotations

from dataclasses import dataclass

import regex as re
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.tokens import Doc

from pipelines.redact_base import PERSON, PERSON_FIELDS, Recognizer, case_mode, opens_sentence, result
from pipelines.redact_names import common

_CAP = r"\p{Lu}[\p{L}\p{M}'’\-]*[\p{L}\p{M}]"  # capitalised word, 2+ letters
_NAME_STOP = frozenset(
    """the a an and or but i my your his her our their this that it we you he she they
    please yes no well hi hello hey dear thanks thank sorry ok okay so now also however
    sir madam mr mrs ms dr mister miss today tomorrow yesterday everyone anyone someone
    guys folks team all here there what when where why how who not never""".split()
)
_GROUPS = frozenset("team everyone all guys folks".split())

_NAME = rf"{_CAP}(?:[ ]{{1,2}}(?:\p{{Lu}}\.?[ ]{{1,2}})?{_CAP}){{0,3}}"  # a middle initial inside: "Anouk S Morin"
_LOWER_NAME = r"[\p{L}\p{M}][\p{L}\p{M}'’\-]+(?:[ ][\p{L}\p{M}][\p{L}\p{M}'’\-]+)?"
_KIN = (
    r"kid|son|daughter|child|wife|husband|partner|spouse|mother|mom|mum|father|dad|brother|"
    r"sister|friend|boss|colleague|manager|grandmother|grandma|grandfather|grandpa|aunt|uncle|"
    r"cousin|nephew|niece|fianc[ée]e?|girlfriend|boyfriend|neighbou?r|tenant|landlord|client|"
    r"patient|grandson|granddaughter|stepson|stepdaughter|baby|roommate|flatmate"
)
_KIN_WORD = re.compile(rf"(?i:{_KIN})")
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
    rare: bool = False
    """The name must not be an everyday English word ("said nothing")."""


_CUES = [
    _Cue(r"(?i:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|madam|dame|lady|lord|rev|fr)\b\.?)[ ]+", score=0.8),
    _Cue(r"(?i:\b(?:mr|mrs|ms|mx|dr|prof)\b\.?)[ ]+", score=0.8, plain=True),
    _Cue(  # ranks and offices before a surname: "Sergeant Hale", "Judge Okafor"
        r"\b(?:Captain|Capt|Officer|Sergeant|Sgt|Lieutenant|Lt|Colonel|Col|Corporal|Cpl|Detective|Det|"
        r"Inspector|Judge|Senator|Governor|Mayor|Professor|Coach|Nurse|Uncle|Aunt|Auntie|Pastor|Reverend|"
        r"Rabbi|Imam)\.?[ ]+",
        score=0.7,
    ),
    _Cue(
        r"(?i:(?:\b(?:my|his|her|their|your|our)|'s)[ ]+(?:(?:full|first|last|middle|maiden|"
        r"given|family|real|legal|sur)[ ]*)?name(?:[ ]+(?:is|was)|[ ]*[:?])?)[ ]+",
        score=0.85, plain=True,
    ),
    _Cue(r"(?i:\bname[ ]*[:?])[ ]*", score=0.8, plain=True),
    _Cue(rf"\b{PERSON_FIELDS.pattern}(?:[ ](?i:name|person))?[ ]*:[ ]*", score=0.7, plain=True),  # "Contact person: ..."
    _Cue(r"(?i:\b(?:calls?|called)[ ]+me|\bnamed(?:[ ]+(?:him|her|them))?|\bknown[ ]+as|\bmy[ ]+name's)[ ]+",
         plain=True),
    _Cue(rf"(?i:\b(?:{_POSSESSIVE})[ ]+(?:{_KIN}),?)[ ]+"),
    _Cue(  # a letter's closing: "Kind regards,\nBailey Cooper"
        r"(?i:\b(?:regards|sincerely|cheers|thanks|best|best[ ]wishes|yours(?:[ ]truly)?|warmly|respectfully|"
        r"love|cordially),)[ ]*\n?[ ]*",
        r"(?=[ ]*(?:\n|$))", score=0.6,
    ),
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
    _Cue(  # ... and the one speaking
        r"(?i:\b(?:said|says|asked|replied|whispered|shouted|yelled|cried|wrote))[ ]+",
        rf"(?=[ ]+(?i:to)[ ]+{_NAME})", score=0.6,
    ),
    _Cue(  # "the true gender of Alisha", "the daughter of Maria": what only a person has (not "of Texas")
        r"(?i:\b(?:gender|age|birthday|birthplace|death|funeral|wedding|biography|memoirs?|portrait|grave|"
        r"childhood|widow|widower|wife|husband|son|daughter|mother|father|brother|sister|parents|children|"
        r"family|nephew|niece|cousin|grandson|granddaughter)[ ]+of)[ ]+",
        score=0.6, rare=True,
    ),
    _Cue(r",[ ]+", r"(?=[ ]*!)", score=0.6),  # "Don't go to town, Charlotte!": called out
    _Cue(r",[ ]+", r"(?=[ ]*\?)", score=0.6, strong=False),  # "Is it you, Charlotte?"
    _Cue(  # "the Takuda novel", "a Sierra DeRose concert": someone's work ("the Book Processing Center" is not)
        r"(?i:\b(?:a|an|the|that|this)[ ]+)",
        r"(?=[ ]+(?:novels?|books?|films?|movies?|songs?|albums?|concerts?|poems?|paintings?|plays?|"
        r"biography|memoirs?|exhibition|retrospective|tour|records?|symphony|operas?|lyrics|lecture|sermon)\b)",
        score=0.6,
    ),
    _Cue(r"(?i:\b(?:hi|hello|hey|dear),?)[ ]+", score=0.6, strong=False),
    _Cue(  # wishes and thanks said to someone: "Thanks again Brooke!", "Good luck, Mason."
        r"(?i:\b(?:thanks(?:[ ]again)?|thank[ ]you|happy[ ]birthday|congratulations|congrats|good[ ]luck|"
        r"good[ ]night|well[ ]done|bye|goodbye|see[ ]you),?)[ ]+",
        r"(?=[ ]*(?:[.!?]|$))", score=0.6,
    ),
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
        r"passed[ ]+away|got[ ]+married|work(?:s|ed)[ ]+(?:as|at|for))\b"
        r"|,[ ]*(?:aged[ ]+)?\d{1,3},[ ]*\p{L}|[ ]*\((?i:born|b\.|née|aged?)[ ])",  # "Rose, 34, was", "Grace (born 1980)"
    ),
    _Cue(  # '"i'm glad," says péter.'
        r"(?i:\b(?:said|says|asked|asks|replied|replies|wrote|added))[ ]+", r"(?=[ ]*(?:[.!?]|$))",
        score=0.6, strong=False, plain=True, rare=True,
    ),
    _Cue(
        "", r"(?=[ ]+(?i:said|says|asked|replied|shouted|yelled|whispered|told|wrote)\b)",
        score=0.6, strong=False,
    ),
]
_VOCATIVE = re.compile(  # "Marisca, can I please speak to your boss?" - called out first
    rf"(?P<name>{_NAME})(?=,[ ]*(?i:can|could|would|will|please|do|did|are|have|thanks|thank)\b)"
)
_SPEAKER = re.compile(  # 'Kalman: "Who are you?"': a script's or a chat's speaker opens the line
    r"(?m:^)[ \t]*(?P<name>[\p{L}\p{M}][\p{L}\p{M}'’\-]+)(?=[ \t]*:[ \t]*\\?[\"“])"
)
_ROLES = (
    r"founders|co-founders|partners|authors|co-authors|members|speakers|guests|winners|hosts|judges|"
    r"organi[sz]ers|attendees|participants|panel(?:l)?ists|signatories|witnesses|presenters|editors|present"
)
_ROLE_LIST = re.compile(  # "our 3 founders: Harvey, Smith and Mills": the people a role word lists
    rf"(?i:\b(?:{_ROLES}))[ ]*:[ ]*(?P<list>{_NAME}(?:(?:,[ ]+|,?[ ]+(?:and|&)[ ]+){_NAME})+)"
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
    kept: list[str] = []
    for word in name.split(" "):
        if re.split(r"['’]", word.lower().strip("'’"))[0] in _NAME_STOP:  # "I'm Julie's daughter"
            return "" if word.lower() in _GROUPS else " ".join(kept)
        kept.append(word)
    return " ".join(kept)


def _speakers(text: str, doc: Doc | None) -> list[tuple[re.Match, _Cue]]:
    """The speakers of a dialogue, once one of them is a person: a name people write capitalised, or
    the recogniser's person ('Kalman: "Who are you?" Amber: "..."'). Roles ("Customer:", "Agent:")
    are everyday words the recogniser leaves alone."""
    speakers = list(_SPEAKER.finditer(text))
    if not speakers:
        return []
    people = [(e.start_char, e.end_char) for e in (doc.ents if doc is not None else []) if e.label_ == PERSON]
    if not any(not common(m.group("name")) or any(s < m.end() and m.start() < e for s, e in people)
               for m in speakers):
        return []
    return [(m, _Cue("", score=0.6)) for m in speakers]


class ContextPersonRecognizer(Recognizer):
    """Names that the small spaCy model misses or calls an ORG, found by the
    words around them ("my name is", "Mrs.", "my kid", "Arne's address",
    "X lives at"). Weak cues (speech verbs, greetings) defer to spaCy when it
    says the span is an organisation or a place."""

    ENTITIES = (PERSON,)

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
                      if opens_sentence(text, m.start())]
        found += _speakers(text, doc)
        listed = _Cue("", score=0.7)
        found += [(m, listed) for lst in _ROLE_LIST.finditer(text)
                  for m in re.finditer(f"(?P<name>{_NAME})", text, pos=lst.start("list"), endpos=lst.end("list"))]
        results = []
        for m, cue in found:
            name = _trim_name(m.group("name"))
            start, end = m.start("name"), m.start("name") + len(name)
            if not name or any(c.isdigit() for c in name) or (not cased and start in plural):
                continue  # a plural noun ("give customers their ...") is nobody's name
            if (cue.rare and common(name)) or _KIN_WORD.fullmatch(name):
                continue  # "Patient is a 61-year-old male": a relation or a role names nobody
            if not cue.strong and any(s < end and start < e for s, e in other):
                continue
            results.append(result(PERSON, start, end, cue.score, "name by context"))
        return results
