"""Log condensation: templates with counts, errors and rare lines verbatim, a timeline,
bursts, within the token budget."""

from __future__ import annotations

from agent_service.domain.evidence.condense import condense_log, condense_text, looks_like_log


def _log() -> str:
    lines = []
    for i in range(600):
        minute = 10 + i // 20
        lines.append(
            f"2024-03-01T12:{minute:02d}:{i % 60:02d}Z INFO served /orders/{i} in {i % 97} ms"
        )
    for i in range(300):  # a burst of errors in minute 12:45
        lines.append(
            f"2024-03-01T12:45:{i % 60:02d}Z ERROR connect to pg-{i % 3} refused (attempt {i})"
        )
    lines.append("2024-03-01T12:31:00Z WARN disk /var is 97% full")
    return "\n".join(lines)


def test_a_long_log_becomes_templates_errors_and_a_timeline() -> None:
    text = _log()
    out = condense_log(text, token_budget=600)
    assert out.total_lines == 901
    assert len(out.text) <= 600 * 4
    assert len(out.text) < len(text) / 10
    assert "x600" in out.text
    assert "served" in out.text
    assert "(attempt 0)" in out.text
    assert "(attempt 299)" in out.text
    assert "disk /var is 97% full" in out.text  # a rare line, verbatim
    assert out.first_ts == "2024-03-01T12:10:00Z"
    assert any("12:45" in b for b in out.bursts)


def test_non_log_text_is_cut_to_the_budget() -> None:
    prose = "word " * 5000
    assert not looks_like_log(prose)
    out = condense_text(prose, 100)
    assert len(out) < 500
    assert "chars cut" in out
