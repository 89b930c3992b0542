"""The structured answer: validation, and decoding `answer` while it streams."""

from __future__ import annotations

import json

import pytest

from agent_service.domain.turns.answer import (
    AnswerExtractor,
    MalformedAnswer,
    parse_answer,
    plain_answer,
)


def test_a_valid_answer_parses_and_unknown_milestones_are_dropped() -> None:
    text = (
        "```json\n"
        + json.dumps(
            {
                "answer": "Hi",
                "milestone_updates": ["symptom_verified", "made_up"],
                "proposed_state": "",
            }
        )
        + "\n```"
    )
    answer = parse_answer(text)
    assert answer.milestone_updates == ["symptom_verified"]
    assert answer.proposed_state is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"answer": ',
        '{"answer": ""}',
        '{"answer": 7}',
    ],
)
def test_malformed_answers_are_refused(text: str) -> None:
    with pytest.raises(MalformedAnswer):
        parse_answer(text)


def test_answer_is_decoded_across_any_chunking() -> None:
    value = 'Line 1\nHe said "restart" \\ then \u00e9t\u00e9 \U0001f600 done'
    text = json.dumps({"answer": value, "cited_sources": ["S1"]})
    for size in (1, 2, 3, 7):
        ex = AnswerExtractor()
        out = "".join(ex.feed(text[i : i + size]) for i in range(0, len(text), size)) + ex.flush()
        assert out == value


def test_prose_is_passed_through_and_plain_answer_recovers_text() -> None:
    ex = AnswerExtractor()
    assert ex.feed("Just prose") + ex.flush() == "Just prose"
    assert plain_answer('{"answer": "partial answer", "hypotheses": [oops') == "partial answer"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ('{"answer": "bad \\uZZZZ escape"}', "bad \ufffdZZZZ escape"),
        ('{"answer": "cut \\u12"}', "cut \ufffd12"),
        ('{"answer": "lone \\ud800 high"}', "lone \ufffd high"),
        ('{"answer": "lone \\udc00 low"}', "lone \ufffd low"),
        ('{"answer": "half \\ud83d\\u0041 pair"}', "half \ufffdA pair"),
        ('{"answer": "pair \\ud83d\\ude00 ok"}', "pair \U0001f600 ok"),
    ],
)
def test_invalid_unicode_escapes_decode_to_a_replacement_never_an_error(
    raw: str, shown: str
) -> None:
    for size in (1, 2, 3, 5, 7, len(raw)):
        ex = AnswerExtractor()
        out = "".join(ex.feed(raw[i : i + size]) for i in range(0, len(raw), size)) + ex.flush()
        assert out == shown, size
        out.encode("utf-8")  # no lone surrogate survives
    assert plain_answer(raw) == shown


def test_a_stream_ending_inside_an_escape_is_not_an_error() -> None:
    for raw in ('{"answer": "end \\u12', '{"answer": "end \\ud83d', '{"answer": "end \\'):
        ex = AnswerExtractor()
        assert ex.feed(raw) + ex.flush() == "end "


def test_parse_answer_refuses_every_malformed_text_with_malformed_answer_only() -> None:
    bad = [
        '{"answer": "bad \\uZZZZ"}',
        '{"answer": "truncated',
        "[" * 100_000 + "]" * 100_000,
        "{" + '"a": {' * 50_000 + "}" * 50_001,
        "",
        "   ",
        "Just prose, no JSON at all.",
    ]
    for text in bad:
        with pytest.raises(MalformedAnswer):
            parse_answer(text)


def test_lone_surrogates_in_valid_json_become_replacements() -> None:
    answer = parse_answer('{"answer": "x \\ud800 y", "hypotheses": [{"statement": "\\udc00"}]}')
    assert answer.answer == "x \ufffd y"
    assert answer.hypotheses[0].statement == "\ufffd"
    answer.model_dump_json().encode("utf-8")


def test_raw_newlines_inside_strings_are_accepted() -> None:
    assert parse_answer('{"answer": "line 1\nline 2"}').answer == "line 1\nline 2"


def test_an_unreadable_hypothesis_or_action_is_dropped_not_the_whole_answer() -> None:
    answer = parse_answer(
        json.dumps(
            {
                "answer": "The pool is exhausted.",
                "cited_sources": ["S1", 3],
                "hypotheses": [
                    {"statement": "", "likelihood": 0.5},
                    {"statement": "Pool too small", "likelihood": 7},
                    {"statement": "Pool exhausted", "likelihood": 0.8},
                ],
                "suggested_actions": [{"label": ""}, {"label": "Check the pool"}],
                "evidence_findings": [
                    {"evidence": "the log shows the pool is full", "summary": "full"},
                    {"summary": "no evidence id"},
                    {"evidence": "E1", "summary": "pool at 100/100"},
                ],
                "working_conclusion": "  ",
            }
        )
    )
    assert [h.statement for h in answer.hypotheses] == ["Pool exhausted"]
    assert [a.label for a in answer.suggested_actions] == ["Check the pool"]
    assert [(f.evidence, f.summary) for f in answer.evidence_findings] == [
        ("E1", "pool at 100/100")
    ]
    assert answer.cited_sources == ["S1"]
    assert answer.working_conclusion is None
