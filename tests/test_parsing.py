"""From output to label: exact, normalised, contained, closest, invalid; and the constrained-decoding options."""
from __future__ import annotations

import json
import re

import pytest

from harness.errors import HarnessError
from harness.llm.parsing import LabelParser, gbnf_grammar, normalise, request_extra

LABELS = ["card_arrival", "card_payment_fee_charged", "card_payment_not_recognised", "Refund_not_showing_up",
          "reverted_card_payment?", "atm_support"]


@pytest.fixture
def parser():
    return LabelParser(LABELS)


@pytest.mark.parametrize("output, label, step", [
    ("card_arrival", "card_arrival", "exact"),
    ("  reverted_card_payment?\n", "reverted_card_payment?", "exact"),
    ("Card Arrival", "card_arrival", "normalised"),
    ("refund not showing up.", "Refund_not_showing_up", "normalised"),
    ("reverted card payment", "reverted_card_payment?", "normalised"),
    ("The intent is card_payment_fee_charged.", "card_payment_fee_charged", "contained"),
    ("card_arival", "card_arrival", "closest"),
    ("card_payment_not_recognized", "card_payment_not_recognised", "closest"),
    ('{"label": "atm_support"}', "atm_support", "exact"),
    ('{"label": "ATM support"}', "atm_support", "normalised"),
])
def test_output_maps_to_label(parser, output, label, step):
    assert parser.parse(output) == (label, step)


@pytest.mark.parametrize("output", ["no idea", "", "card", "weather_forecast", '{"label": 3}', "{not json"])
def test_output_naming_no_label_is_invalid(parser, output):
    assert parser.parse(output) == (None, "invalid")


def test_contained_prefers_the_longest_label():
    parser = LabelParser(["card", "card_payment_fee_charged"])
    assert parser.parse("I think card payment fee charged") == ("card_payment_fee_charged", "contained")


def test_cutoff_controls_closest_match():
    assert LabelParser(LABELS, cutoff=0.99).parse("card_arival") == (None, "invalid")


def test_normalise_folds_case_spaces_and_punctuation():
    assert normalise("  Card-Payment  Fee, charged! ") == "card_payment_fee_charged"


def _language(grammar: str) -> set[str]:
    """Every string the generated grammar accepts (its shape: literals, each optionally followed by a rule)."""
    rules = dict(line.split(" ::= ") for line in grammar.splitlines())

    def expand(name: str) -> set[str]:
        out = set()
        for alternative in rules[name].split(" | "):
            match = re.fullmatch(r'"((?:[^"\\]|\\.)*)"(?: ([\w-]+)(\?)?)?', alternative)
            literal = re.sub(r"\\(.)", r"\1", match.group(1))
            tails = expand(match.group(2)) if match.group(2) else {""}
            out |= {literal + tail for tail in tails | ({""} if match.group(3) else set())}
        return out
    return expand("root")


def test_grammar_accepts_exactly_the_labels():
    labels = ["card_arrival", "card_payment", "card_payment_fee", "atm", 'with "quote"', "back\\slash", "x"]
    grammar = gbnf_grammar(labels)
    assert grammar.startswith("root ::= ")
    assert _language(grammar) == set(labels)
    assert 'root-2 ::= "arrival" | "payment" root-2-1?\nroot-2-1 ::= "_fee"\n' in grammar  # shared prefixes factored


def test_grammar_parses_in_llama_cpp():
    llama_cpp = pytest.importorskip("llama_cpp")
    from harness.data import load_banking77

    labels = load_banking77().labels
    grammar = gbnf_grammar(labels)
    assert _language(grammar) == set(labels)
    assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None


def test_request_extra_per_mode():
    assert request_extra("none", LABELS) == {}
    assert request_extra("grammar", LABELS) == {"extra_body": {"grammar": gbnf_grammar(LABELS)}}
    enum = request_extra("json_enum", LABELS)["response_format"]
    assert enum["type"] == "json_object" and enum["schema"]["properties"]["label"]["enum"] == LABELS
    strict = request_extra("json_schema", LABELS)["response_format"]
    assert strict["type"] == "json_schema" and strict["json_schema"]["schema"]["required"] == ["label"]
    json.dumps(strict)  # sent as JSON: must serialise


def test_unknown_output_mode_lists_choices():
    with pytest.raises(HarnessError, match="no output_mode 'regex'; known: none, grammar, json_enum, json_schema"):
        request_extra("regex", LABELS)
