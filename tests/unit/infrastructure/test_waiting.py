"""shared.waiting.wait_until, the project's one polling loop."""

from __future__ import annotations

import time

import pytest

from shared.waiting import wait_until


def answers(*values):
    """A condition that answers each value in turn, then the last one forever."""
    calls = []

    def condition():
        calls.append(time.monotonic())
        value = values[min(len(calls), len(values)) - 1]
        if isinstance(value, BaseException):
            raise value
        return value

    condition.calls = calls
    return condition


def test_it_returns_the_first_truthy_answer_polling_at_the_interval():
    condition = answers(None, 0, "", "v3")
    assert wait_until(condition, timeout=5, what="v3", every=0.05) == "v3"
    assert len(condition.calls) == 4
    gaps = [b - a for a, b in zip(condition.calls, condition.calls[1:], strict=False)]
    assert all(gap >= 0.045 for gap in gaps)


def test_a_condition_that_never_holds_times_out_naming_what_and_the_last_answer():
    started = time.monotonic()
    with pytest.raises(
        TimeoutError, match=r"waited 0 s for production serving v2; last answer: \[\]"
    ):
        wait_until(answers(None, []), timeout=0.3, what="production serving v2", every=0.05)
    assert 0.3 <= time.monotonic() - started < 2


def test_an_exception_from_the_condition_ends_the_wait_at_once():
    condition = answers(None, RuntimeError("the server exited"))
    with pytest.raises(RuntimeError, match="the server exited"):
        wait_until(condition, timeout=30, what="healthy", every=0.01)
    assert len(condition.calls) == 2


def test_an_ignored_exception_counts_as_not_yet():
    condition = answers(ConnectionError("refused"), ConnectionError("refused"), True)
    assert wait_until(condition, 5, "up", every=0.01, ignoring=(ConnectionError,)) is True
    with pytest.raises(TimeoutError, match="ConnectionError"):
        wait_until(answers(ConnectionError("refused")), 0.1, "up", every=0.02,
                   ignoring=(ConnectionError,))  # fmt: skip
