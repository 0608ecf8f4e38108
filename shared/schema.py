"""The data contract of a churn batch: every column, its type, range, categories and null policy.

This is the one place the contract lives. Batch validation (`validation.py`), the model's
feature lists (`features.py`) and the prediction service's request model
(`request_model()` below) all derive from it, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator

SCHEMA_VERSION = "1"
MODEL_NAME = "churn"  # the model's name in every level's registry, model card and log

Kind = Literal["id", "date", "int", "float", "bool", "category", "label"]


@dataclass(frozen=True)
class Column:
    """One column of the contract."""

    name: str
    kind: Kind
    description: str
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False


@dataclass(frozen=True)
class RowRule:
    """A rule across columns that every row must satisfy, e.g. late deliveries <= orders."""

    name: str
    columns: tuple[str, str]
    description: str

    op: ClassVar[str] = "<="  # every rule so far: left <= right

    def holds(self, left: Any, right: Any) -> Any:
        """True where the row satisfies the rule; works on scalars and on pandas Series."""
        return left <= right


ID = "customer_id"
DATE = "event_date"
LABEL = "churned"

FEATURES: tuple[Column, ...] = (
    Column("age", "int", "Customer age in years", min=13, max=100),
    Column("tenure_months", "int", "Months since sign-up", min=0, max=240),
    Column("orders_30d", "int", "Orders placed in the last 30 days", min=0, max=200),
    Column("avg_order_value", "float", "Average basket value in EUR, last 30 days", 0, 500),
    Column("avg_delivery_minutes", "float", "Average delivery time in minutes", min=5, max=180),
    Column("late_deliveries_30d", "int", "Deliveries over 15 min late, last 30 days", 0, 200),
    Column("complaints_90d", "int", "Support complaints in the last 90 days", min=0, max=50),
    Column("discount_share", "float", "Share of orders paid with a discount code", 0, 1),
    Column("has_subscription", "bool", "Pays for the free-delivery subscription"),
    Column("platform", "category", "App platform", categories=("ios", "android", "web")),
    Column("city_tier", "category", "City size", categories=("metro", "urban", "rural")),
)

# A landed feature batch: one row per active customer on one day.
BATCH_COLUMNS: tuple[Column, ...] = (
    Column(ID, "id", "Customer identifier"),
    Column(DATE, "date", "Day the features were observed"),
    *FEATURES,
)

# A landed label file: ground truth for one feature day, arriving days later.
LABEL_COLUMNS: tuple[Column, ...] = (
    Column(ID, "id", "Customer identifier"),
    Column(DATE, "date", "Feature day these labels belong to"),
    Column(LABEL, "label", "1 if the customer stopped ordering in the following 30 days"),
)

ROW_RULES: tuple[RowRule, ...] = (
    RowRule(
        "late_not_above_orders",
        ("late_deliveries_30d", "orders_30d"),
        "late_deliveries_30d cannot exceed orders_30d",
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(c.name for c in FEATURES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c.name for c in FEATURES if c.kind in ("int", "float", "bool")
)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(c.name for c in FEATURES if c.kind == "category")


def _whole_number(value: Any) -> Any:
    """27.0 is an integer in JSON Schema's terms (and what a pandas column with a null holds):
    accept it as 27. Anything else goes to the strict check unchanged."""
    return int(value) if type(value) is float and value.is_integer() else value


def _field_type(column: Column) -> tuple[Any, Any]:
    """The pydantic (type, Field) pair for one feature column."""
    bounds = {"ge": column.min, "le": column.max, "description": column.description}
    if column.kind == "int":
        return Annotated[int, BeforeValidator(_whole_number)], Field(**bounds)
    if column.kind == "float":
        # NaN and infinity are not values a customer can have: reject them with a 422.
        return float, Field(allow_inf_nan=False, **bounds)
    if column.kind == "bool":
        return bool, Field(description=column.description)
    if column.kind == "category":
        return Literal[column.categories], Field(description=column.description)  # type: ignore[valid-type]
    raise ValueError(f"column {column.name}: kind {column.kind} is not a request field")


def row_rules_text() -> str:
    """The cross-column rules in words, as the API docs state them."""
    return "; ".join(f"{r.description} ({r.name})" for r in ROW_RULES)


def _state_row_rules(schema: dict[str, Any]) -> None:
    """JSON Schema cannot compare two fields: the rules go into the record's description, so
    a reader of the docs sees them, and into `x-row-rules`, so a client (or a fuzzer) can
    apply them; a record that breaks one gets a 422 naming the rule."""
    schema["description"] = f"One customer's features. Cross-field rules: {row_rules_text()}."
    schema["x-row-rules"] = [
        {"name": r.name, "left": r.columns[0], "op": r.op, "right": r.columns[1]} for r in ROW_RULES
    ]


class _RecordBase(BaseModel):
    # A renamed or extra field is an error, not silently ignored; a value of another JSON type
    # ("27" for an integer, 0 or "yes" for a boolean, true for a number) is refused, not
    # coerced: the request is validated exactly as the OpenAPI document says.
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_state_row_rules)

    @model_validator(mode="after")
    def _row_rules(self) -> _RecordBase:
        for rule in ROW_RULES:
            left, right = (getattr(self, name) for name in rule.columns)
            if not rule.holds(left, right):
                raise ValueError(f"{rule.name}: {rule.description} (got {left} > {right})")
        return self


@cache
def request_model() -> type[BaseModel]:
    """The pydantic model of one customer record, built from the contract.

    The prediction services use it as their request body, so a payload that breaks the
    contract gets a 422 naming the field and the rule before it reaches the model.
    """
    fields: dict[str, Any] = {c.name: _field_type(c) for c in FEATURES}
    fields[ID] = (str | None, Field(default=None, description="Optional, echoed back"))
    return create_model("CustomerFeatures", __base__=_RecordBase, **fields)


def example_record() -> dict[str, Any]:
    """A valid record: the request example in the API docs and in tests."""
    return {
        "age": 27,
        "tenure_months": 14,
        "orders_30d": 6,
        "avg_order_value": 23.5,
        "avg_delivery_minutes": 38.0,
        "late_deliveries_30d": 2,
        "complaints_90d": 1,
        "discount_share": 0.4,
        "has_subscription": False,
        "platform": "android",
        "city_tier": "urban",
    }
