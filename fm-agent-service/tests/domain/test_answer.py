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
        '{"answer": "x", "hypotheses": [{"likelihood": 3}]}',
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
