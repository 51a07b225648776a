"""Identifiers that only their surroundings mark (and a surname that looks like a plural noun): a 12-digit Maestro number after a card word, a phone
number after "registered" or with its trunk prefix in brackets, a street named without a house number
at "the corner of", a continental street running on to its number, a postal block quoted with ">", a card
after "cc", a dialogue whose quote is glued to the speaker's colon, the people a role word lists
("founders: ..."), and a name after what only a person has ("the true age of ...").

Every sentence is written here; the rules were found on generated sentences of templates the
development set never used (README, "Redaction").
"""

from __future__ import annotations

import pytest

from pipelines.redact import Redactor


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(b"cue-test-secret")


@pytest.mark.parametrize(("text", "values"), [
    ("Please block card no 501938472617 before tonight.", ["501938472617"]),
    ("My debit card 601128473902 was swallowed by the machine.", ["601128473902"]),
    ("No text ever reached my registered 312 555 019, can you check?", ["312 555 019"]),
    ("Fax: (01632)960123", ["(01632)960123"]),
    ("Meet me at the corner of Birchwood Lane and Harbour Road.", ["Birchwood", "Harbour"]),
    ("Drop it at the corner of Oskarsgata 14 St. and Lindholm Park St.", ["Oskarsgata 14", "Lindholm"]),
    ("She lives on Avenida Almirante Reis Sousa 112 these days.", ["Almirante Reis Sousa 112"]),
    ("Ivo Sanders from Harbour Trust Inc. gives the keynote.", ["Ivo", "Sanders"]),  # a plural-looking surname
    (">  Ana Ribeiro\n>  12 Rua Augusta 44\n>  Apt. 3\n>  Lisboa", ["12 Rua Augusta 44", "Apt. 3", "Ana Ribeiro"]),
    ("What was billed on cc 501938472617 last month?", ["501938472617"]),
    ('Ines: "Who are you?"\nTomas:"I\'m Odile\'s son".', ["Ines", "Tomas", "Odile"]),  # a quote glued to the colon
    ("The firm is the work of its founders: Harlow, Penn and Marsh.", ["Harlow", "Penn", "Marsh"]),
    ("Nobody agrees on the true age of Ilse, the painter.", ["Ilse"]),
    ("Wiesław K Dąbrowski of Harbour Trust Ltd opened the meeting.", ["Wiesław", "Dąbrowski"]),  # first in the sentence
    ("The prize went to Harbour Capital Trust's Radko Jelić, Louelle van den Brandhof of Encres SA, and others.",
     ["Radko", "Jelić"]),  # no "Town, Region"
    ("Please send the invoice to Tristan Dennis", ["Tristan", "Dennis"]),  # the recogniser says ORG
    # a long line in capitals is prose, not a title; "X of Company Inc." is a person of a company
    ("Harbour Board members heard many speakers, among them Coral Tessmer of Bright Basin Energy Inc., Amber "
     "Quennell of Atlas Commercial Real Estate Finance Inc., North Shore Trust's Dale Ormsby, and Slate Ridge "
     "Mining Corporation's Ivy Brankov.", ["Coral Tessmer", "Amber Quennell", "Ivy Brankov"]),
    ("Among the new board members are Jade Quennell of Apollo Commercial Real Estate Finance Inc., Tidewater "
     "Holdings Ltd's Opal Marrick, and Coral Basin Partners' Flint Ormsby.", ["Jade", "Opal Marrick", "Flint"]),
    # a cue's evidence holds where the recogniser found the same word on its own: a common word after "the",
    # a plural-looking surname, a name that is a stop word after a title
    ("Have you read the Young novel everyone talks about?", ["Young"]),
    ("Have you been to a Rosa Waters concert before?", ["Rosa Waters"]),
    ("My name is Will and I need help.", ["Will"]),
    ("Please ask Mrs. May about it.", ["May"]),
    ("Have you been to a Marta K Lindqvist concert before?", ["Marta", "Lindqvist"]),  # a middle initial
])
def test_an_identifier_marked_by_its_surroundings_is_redacted(redactor: Redactor, text: str, values: list[str]) -> None:
    out = redactor.redact(text).text
    assert not [v for v in values if v in out], out


def test_what_only_names_look_like_stays(redactor: Redactor) -> None:
    """The new cues leave their words and what is no person alone."""
    text = "I'm sure of it: the age of Enlightenment shaped the heart of Texas."
    assert redactor.redact(text).text == text
    text = "The contract went to Harbourline Coast Limited, not to Google."  # companies, one word or a legal form
    assert redactor.redact(text).text == text
    assert redactor.redact("I'm Odile's son.").text.startswith("I'm <PERSON_")  # "I'm" is nobody's name


def test_one_english_word_the_recogniser_calls_a_person_is_not_spread_or_taken_after_an_article(
        redactor: Redactor) -> None:
    """The small model calls "Library" a person here; a thing after "the" is nobody, and a common word
    found once is not redacted wherever else it appears."""
    text = ("Library patrons who wish to borrow rare maps must ask at the front desk. The Library opens at nine, "
            "and the Library closes at five.")
    assert redactor.redact(text).text == text


def test_twelve_digits_without_a_card_word_stay(redactor: Redactor) -> None:
    text = "Order 501938472617 shipped on Tuesday."  # Luhn-valid, as one random number in ten is
    assert redactor.redact(text).text == text


def test_a_person_span_running_on_into_of_company_keeps_the_person() -> None:
    """The small model's person spans swallow "of Secure Inc." in lists of who is where; the span ends in a
    company word, so it was dropped whole and the name leaked. The name before "of" is kept."""
    from presidio_analyzer import RecognizerResult

    from pipelines.redact import _clean_person

    text = "Among them were Vesna Lončarić of Secure Inc. and two others."
    start = text.index("Vesna")
    span = RecognizerResult("PERSON", start, text.index(" and"), 0.85)
    assert [text[s:e] for s, e in _clean_person(text, span)] == ["Vesna Lončarić"]


def test_a_person_span_running_on_into_a_unit_and_its_number_keeps_the_person() -> None:
    """"Dr. Kristin Bader Suite 360 4825 ...": the small model's span takes the unit and its number, and a
    span with digits is dropped whole. The name before the unit is kept."""
    from presidio_analyzer import RecognizerResult

    from pipelines.redact import _clean_person

    text = "Dr. Lena Fischer Suite 210 4412 88 Harbour Road"
    span = RecognizerResult("PERSON", text.index("Lena"), text.index(" 4412"), 0.85)
    assert [text[s:e] for s, e in _clean_person(text, span)] == ["Lena Fischer"]
