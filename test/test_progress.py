"""Progress bars: redrawn in place on a terminal, a few whole lines in a log file."""

from __future__ import annotations

import io

from mmsag_ros.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_whole_lines_not_redraws() -> None:
    log = io.StringIO()
    bar = progress_bar(range(5000), desc="compose", unit="scene", stream=log)
    assert sum(1 for _ in bar) == 5000
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # The first draw and the last, not one line per step.
    assert 1 <= len(lines) <= 3, lines
    assert lines[-1].startswith("compose: 100%") and "5000/5000" in lines[-1]


def test_a_log_file_gets_no_line_per_postfix_or_description() -> None:
    # A training loop shows its loss on every step: in a log that must not force a line.
    log = io.StringIO()
    bar = progress_bar(range(2000), desc="epoch 1/3", stream=log)
    for step in bar:
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}")
        bar.set_description(f"epoch 1/3 step {step}")
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 3, lines[:5]
    assert "loss=" in lines[-1] and "2000/2000" in lines[-1]


def test_a_terminal_gets_the_bar_redrawn_in_place() -> None:
    terminal = _Terminal()
    bar = progress_bar(total=3, desc="epoch 1/2", stream=terminal, mininterval=0)
    for _ in range(3):
        bar.update()
    bar.close()
    assert terminal.getvalue().count("\r") >= 3


def test_a_disabled_bar_draws_nothing() -> None:
    log = io.StringIO()
    bar = progress_bar(total=10, stream=log, enabled=False)
    bar.update(10)
    bar.close()
    assert log.getvalue() == ""
