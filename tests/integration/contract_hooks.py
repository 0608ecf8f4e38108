"""Schemathesis hooks for tests/integration/test_contract.py (loaded by the fuzzer's process
through SCHEMATHESIS_HOOKS).

JSON Schema cannot say "late deliveries cannot exceed orders": the record's schema states
such rules in its description and, machine-readable, in `x-row-rules`. A client that follows
the document applies them; so does the fuzzer here, to the cases it means to be valid, with
the rules read from the document under test (not from our code). Cases generated to be
invalid are left as they are: the service must refuse them.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation


def _stated_rules(raw_schema: dict[str, Any]) -> list[dict[str, str]]:
    schemas = raw_schema.get("components", {}).get("schemas", {})
    return [rule for schema in schemas.values() for rule in schema.get("x-row-rules", [])]


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def follow(rules: list[dict[str, str]], record: Any) -> None:
    """Make one record meet the `left <= right` rules, as a careful client would."""
    if not isinstance(record, dict):
        return
    for rule in rules:
        if rule["op"] != "<=":
            raise ValueError(f"x-row-rules: unknown op {rule['op']!r}: teach the hook")
        left, right = record.get(rule["left"]), record.get(rule["right"])
        if _is_number(left) and _is_number(right) and left > right:
            record[rule["left"]] = right


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY):
        return case
    rules = _stated_rules(case.operation.schema.raw_schema)
    for record in case.body if isinstance(case.body, list) else [case.body]:
        follow(rules, record)
    return case
