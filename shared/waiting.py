"""One way to wait for something: `wait_until(condition, timeout)` polls until the condition
holds, with tenacity doing the polling. Every wait of the project goes through it (a server's
health, a container's answer, a version served, a flow run finished, a canary loaded)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    every: float = 1.0,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition` every `every` seconds until it returns something truthy; return that.

    An exception from `condition` ends the wait at once (raise one to give up early: a process
    that exited), unless it is one of `ignoring` (a connection refused while a server starts),
    which counts as not yet. After `timeout` seconds: TimeoutError naming `what` and the last
    answer."""
    not_yet = retry_if_result(operator.not_)
    if ignoring:
        not_yet = not_yet | retry_if_exception_type(ignoring)
    polling = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(every), retry=not_yet)
    try:
        return polling(condition)
    except RetryError as error:
        last = error.last_attempt
        answer = repr(last.exception()) if last.failed else repr(last.result())
        raise TimeoutError(f"waited {timeout:.0f} s for {what}; last answer: {answer}") from None
