"""Redaction across the layouts people write identifiers in, and the names that are English words.

Every sentence is written here; stock Presidio catches each card and phone layout below, so ours
must too. The spaCy model loads once per module.
"""

from __future__ import annotations

import gzip
import json
from importlib.metadata import version
from pathlib import Path

import pytest

from pipelines import redact_wordforms
from pipelines.redact import Redactor
from pipelines.redact_addresses import _name_line_above
from pipelines.redact_base import Recognizer, opens_sentence
from pipelines.redact_cards import LuhnCardRecognizer, luhn
from pipelines.redact_context import ContextPersonRecognizer


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(b"format-test-secret")


@pytest.mark.parametrize(("text", "value"), [
    ("Card number: 4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("paid with 5105105105105100 yesterday", "5105105105105100"),
    ("Please charge (5500 0000 0000 0004) for the order.", "5500 0000 0000 0004"),
    ("amex 3782 822463 10005 on file", "3782 822463 10005"),
    ("My card is 3782-822463-10005 (Amex).", "3782-822463-10005"),
    ("Diners: 3056 930902 5904", "3056 930902 5904"),
    ("Diners Club 3852 0000 0232 37", "3852 0000 0232 37"),
    ("Mastercard 2223 0031 2200 3222", "2223 0031 2200 3222"),
    ("Visa: 4222-2222-2222-2", "4222-2222-2222-2"),
    ("cc:4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("Card 6011-0009-9013-9424 declined", "6011-0009-9013-9424"),
])
def test_card_numbers_in_every_layout(redactor: Redactor, text: str, value: str) -> None:
    result = redactor.redact(text)
    assert value not in result.text and result.counts.get("CREDIT_CARD") == 1, result


@pytest.mark.parametrize(("text", "value"), [
    ("ring +33 1 42 68 53 00 after six", "+33 1 42 68 53 00"),
    ("Call (+1) 202 555 0173 now.", "(+1) 202 555 0173"),
    ("Call 1-202-555-0173", "1-202-555-0173"),
    ("toll free 1 (800) 555-0199", "1 (800) 555-0199"),
    ("Office: +44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
    ("Tel: +91 98765 43210", "+91 98765 43210"),
    ("Call me: +7 495 123-45-67", "+7 495 123-45-67"),
    ("+55 11 91234-5678 is my WhatsApp", "+55 11 91234-5678"),
    ("You can call me on 07911 123456.", "07911 123456"),
    ("My phone number is +1-202-555-0173 ext. 12", "+1-202-555-0173 ext. 12"),
    ("phone:+12025550173", "+12025550173"),
    ("Call +44(0)2079460958", "+44(0)2079460958"),
    ("Tel: 030/901820", "030/901820"),
])
def test_phone_numbers_of_many_regions(redactor: Redactor, text: str, value: str) -> None:
    result = redactor.redact(text)
    assert value not in result.text and result.counts == {"PHONE_NUMBER": 1}, result


def test_a_card_is_not_a_phone_and_a_random_run_is_not_a_card() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    found = LuhnCardRecognizer().analyze("ref 4111 1111 1111 1112 and +44 20 7946 0958", ["CREDIT_CARD"])
    assert found == []


@pytest.mark.parametrize(("text", "name"), [
    ("She named him Nicholas", "Nicholas"),  # tagged a plural noun
    ("Oline is very reliable. You can always depend on him.", "Oline"),  # tagged a common noun
    ("Don't go to town, Brandon!", "Brandon"),  # the recogniser says a place
    ("said Orvald to Mary", "Orvald"),
    ("Unlike the Takuda novel, it is short.", "Takuda"),
    ("Have you been to a Sierra DeRose concert before?", "Sierra DeRose"),
    ("founders: Schulz, Strickland and Mary Jones.", "Strickland"),
    ("I just spoke to Amber, she is fine.", "Amber"),
    ("Is Ruby available tomorrow?", "Ruby"),
    ("Contact person: Faith Young", "Faith Young"),
    ("Hunter: \"Where were you?\"", "Hunter"),
    ("Mason, could you check the logs?", "Mason"),
    ("I met Hunter and Mason at the station.", "Mason"),
    ("Rose called yesterday about the invoice.", "Rose"),
    ("Sincerely,\nBailey Cooper", "Bailey Cooper"),  # the recogniser says a work of art
    ("Cheers,\nJordan", "Jordan"),
    ("Sergeant Hale arrived.", "Hale"),
    ("Our tenant Bishop pays late.", "Bishop"),
    ("Rose works at the bank.", "Rose"),
    ("The form was signed by rose taylor.", "rose taylor"),
    ("Rose, 34, was arrested on Friday.", "Rose"),
    ("Grace (born 1980) is a painter.", "Grace"),
    ("Thanks again Brooke!", "Brooke"),
    ("Good luck, Mason.", "Mason"),
])
def test_names_that_are_english_words_or_mistyped(redactor: Redactor, text: str, name: str) -> None:
    result = redactor.redact(text)
    assert name not in result.text and set(result.counts) == {"PERSON"}, result.text


@pytest.mark.parametrize(("text", "name"), [
    ("lucas said he would call back", "lucas"),
    ("hey scott, are you coming tonight?", "scott"),
    ("\"i'm glad,\" says péter.", "péter"),
    ("user: carol king", "carol king"),
    ("tell hannah i said hi", "hannah"),
    ("inessa: \"who are you?\"\njasmine: \"i'm here\".", "jasmine"),
])
def test_names_in_lower_case_chat(redactor: Redactor, text: str, name: str) -> None:
    assert name not in redactor.redact(text).text


@pytest.mark.parametrize("text", [
    "Customer: \"I want a refund.\"\nAgent: \"Sure.\"",  # roles speak, nobody is named
    "Water flows downhill; he said so.",
    "Cataloging Rules ad Principles\nThe present study compares the rules of two codes.",
    "Centralized Processing for Academic Libraries; the Colorado Academic Libraries Book Processing Center.",
    "Version 1.20.3045 was released.",
    "my name is not important here",  # a cue, but no name after it
    "Patient is a 58-year-old woman with chest pain. Client lives alone.",  # roles, not names
    "General Motors opened a plant.",
    "See Aslib Proceedings, 20, 12, 542-50 (1968).",
    "ISBN 978-3-16-148410-0 covers pages 1200-1350 of the 2023/2024 season; ratio 1/25000.",
])
def test_no_name_where_there_is_none(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text).text == text


@pytest.mark.parametrize(("text", "values"), [
    ("Dr. Mirela Stanescu Apt. 630 39 Rincon 9082\nCarlos Reyles DU 47621", ["Apt. 630", "9082", "DU", "47621"]),
    ("Miss Tova Lindqvist Suite 574 34 Sireli 74\nTartu TA 56325", ["Suite 574", "34", "56325"]),
    ("Mrs. Ilse Brandvold Suite 680 36 4022 Oakridge Lane\nDallas TX 48486", ["680", "4022 Oakridge", "48486"]),
    ("Dr. Oskar Velde Apt. 712 21 36 Rue de Pologne\nCite De L'Interieur 13 70486", ["13 70486"]),
    ("He had given Mary his address: 85 Trg revolucije 12", ["85", "revolucije 12"]),
    ("i'd like it to be sent to 98 lahof 26 suite 300, las vegas, turkey 43686", ["lahof 26", "suite 300"]),
    ("Ivar Moen\n\n05 Björkvägen 55\n Suite 988\n GETINGE\n Kingdom of the Netherlands 37521",
     ["Netherlands 37521"]),
    ("Paula Varga lives at 90 Árpád fejedelem útja 3., Budapest", ["fejedelem útja 3"]),
    # quote markers are no words of a town line; a saint or a capitalised town goes on to the postcode
    (">  \n>  Ruth Okafor\n>  12 Cankarjeva 5\n>  Suite 40\n>  Šempeter ob Savinji\n>  Slovenia 33110", ["33110"]),
    (">  \n>  88 Hollis Road\n>  Apt. 12\n>  St Brelade\n>  Jersey 40211", ["40211", "Brelade"]),
    ("15 Storgata 7\nSuite 300\nBØ I TELEMARK\nNorway 38001", ["38001"]),
    # street types and name words of other languages: French "place", "Str.", a saint, Slovene,
    # Norwegian, Italian particles, a French elision
    ("She lives at 3 place Bellecour, Lyon", ["3 place"]),
    ("Our address: 41 Ermou Str., Athens", ["41 ", "Str."]),
    ("Send it to 27 St. Kilda Street, Perth", ["27 St."]),
    ("He lives at Slovenska ulica 19, Ljubljana", ["Slovenska"]),
    ("Address: Kongens vei 14, Oslo", ["vei 14"]),
    ("She moved to Via dei Mille 24, Roma", ["Via dei"]),
    ("Ship it to 8 rue de l'Université, Paris", ["Université"]),
    ("Ship it to 14 rue de la Croix aux Moines, Nantes", ["Moines"]),
    ("She moved to Via dalla Fontana 6, Lugano", ["Via dalla"]),
    ("Our address: Andrássy krt. 12., Budapest", ["krt. 12"]),
])
def test_postal_blocks_with_the_unit_first(redactor: Redactor, text: str, values: list[str]) -> None:
    result = redactor.redact(text)
    for value in values:
        assert value not in result.text, result.text


def test_the_addressee_line_is_found_where_it_is() -> None:
    text = "Dear team,\n>  Ruth Okafor\n>  12 Cankarjeva 5"
    start, end = _name_line_above(text, text.index("12 Cank"), cased=True)
    assert text[start:end] == "Ruth Okafor"


def test_one_answer_to_where_a_sentence_starts() -> None:
    for text in ("Lucas is", "Hi. Lucas is", 'said "Lucas', "a\n  Lucas", "Name: Lucas", "- Lucas"):
        assert opens_sentence(text, text.index("Lucas")), text
    for text in ("said Lucas", "e.g.Lucas", "two  Lucas"):
        assert not opens_sentence(text, text.index("Lucas")), text


def test_recognisers_share_one_base() -> None:
    recogniser = ContextPersonRecognizer()
    assert isinstance(recogniser, Recognizer)
    assert recogniser.name == "ContextPersonRecognizer" and recogniser.supported_entities == ["PERSON"]


def test_word_forms_are_derived_once_into_the_model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def derive() -> tuple[frozenset[str], frozenset[str]]:
        calls.append(1)
        return frozenset({"mary"}), frozenset({"water"})

    monkeypatch.setenv("SLUICE_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(redact_wordforms, "derive", derive)
    redact_wordforms.word_forms.cache_clear()
    try:
        assert redact_wordforms.word_forms() == (frozenset({"mary"}), frozenset({"water"}))
        path = redact_wordforms.cache_path()
        assert path.parent == tmp_path and version("spacy-lookups-data") in path.name and path.exists()
        with gzip.open(path, "rt") as fh:
            assert json.load(fh) == {"capitalised": ["mary"], "frequent": ["water"]}
        redact_wordforms.word_forms.cache_clear()
        assert redact_wordforms.word_forms() == (frozenset({"mary"}), frozenset({"water"}))
        assert len(calls) == 1  # the second process reads the file
        path.write_bytes(b"damaged")
        redact_wordforms.word_forms.cache_clear()
        assert redact_wordforms.word_forms()[0] == frozenset({"mary"}) and len(calls) == 2
    finally:
        redact_wordforms.word_forms.cache_clear()
