"""The prediction API every level serves: the request and response models built from the
data contract, scoring, and the HTTP guards that turn bad input into a 4xx naming the field.

A level's service (level 0 serves a handed-over file, level 1 follows the registry) adds
only where its model comes from. Defined here once so that all levels answer alike:

    POST /predict   one record or a list of up to `max_records` -> churn probabilities
    GET  /docs      the API docs (Swagger UI 5), served from local files so they work offline
    GET  /redoc     the same document in ReDoc
"""

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import fastapi_offline
import pandas as pd
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Discriminator, Field, Tag, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.evaluate import THRESHOLD
from shared.schema import FEATURE_NAMES, ID, example_record, request_model

Record = request_model()


class Prediction(BaseModel):
    customer_id: str | None = None
    churn_probability: float = Field(description="Probability that the customer churns")
    churn: bool = Field(description=f"churn_probability >= {THRESHOLD}")


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    predictions: list[Prediction]


class Explained(BaseModel):
    customer_id: str | None = None
    churn_probability: float = Field(description="What /predict answers for this record")
    log_odds: float = Field(description="The model's output: base_value + sum(attributions)")
    attributions: dict[str, float] = Field(
        description="Per feature (a category as one), how far it moved this customer's "
        "log-odds of churn from the base value: SHAP values (shared/explain.py)"
    )


class ExplainResponse(BaseModel):
    model_name: str
    model_version: str
    base_value: float = Field(description="The model's average output (log-odds) in training")
    explanations: list[Explained]


def records_frame(records: list[BaseModel]) -> pd.DataFrame:
    """Validated records as the frame the Pipeline takes (features plus the id)."""
    return pd.DataFrame([r.model_dump() for r in records], columns=[*FEATURE_NAMES, ID])


def churn_probabilities(pipeline: Any, frame: pd.DataFrame) -> Any:
    """What every service answers: the fitted Pipeline's probability of class 1, churn.
    (`make compare`'s bad change is a one-line refactor of this line.)"""
    return pipeline.predict_proba(frame)[:, 1]


def predict_records(pipeline: Any, records: list[BaseModel]) -> list[dict[str, Any]]:
    """Score validated records with a fitted Pipeline, one prediction each."""
    frame = records_frame(records)
    return predictions(frame[ID].tolist(), churn_probabilities(pipeline, frame))


def predictions(ids: list[str | None], probabilities: Any) -> list[dict[str, Any]]:
    """The `predictions` of a PredictResponse, as plain JSON-ready dicts."""
    return [
        {ID: i, "churn_probability": round(float(p), 6), "churn": bool(p >= THRESHOLD)}
        for i, p in zip(ids, probabilities, strict=True)
    ]


def _one_or_many(value: Any) -> str:
    return "records" if isinstance(value, list) else "record"


class RequestLimits(BaseSettings):
    """The request limits of every level's service, defined once; each service's settings
    read them under its own prefix (L0_SERVE_MAX_RECORDS, L1_SERVE_MAX_BODY_BYTES, ...)."""

    max_records: int = 1000  # records per request; a larger list gets a 422
    max_body_bytes: int = 2_000_000  # a larger body gets a 413 before it is parsed


def predict_body(max_records: int) -> Any:
    """The /predict body type: one record, or a non-empty list of at most `max_records`."""
    one_or_many = Annotated[
        Annotated[Record, Tag("record")]
        | Annotated[
            list[Record],
            Field(min_length=1, max_length=max_records, title="A list of CustomerFeatures"),
            Tag("records"),
        ],
        Discriminator(_one_or_many),
    ]
    examples = {
        "one record": {"value": example_record()},
        "a list": {"value": [example_record(), {**example_record(), "complaints_90d": 4}]},
    }
    return Annotated[one_or_many, Body(title="PredictBody", openapi_examples=examples)]


class Problem(BaseModel):
    """Why a request was refused (every 4xx and 5xx but a 422, whose detail is a list)."""

    detail: str


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route for the refusals it can answer (FastAPI documents
    200 and, for a route with a body, 422 itself)."""
    return {status: {"model": Problem, "description": REFUSALS[status]} for status in statuses}


REFUSALS = {
    401: "Missing or wrong X-API-Key header",
    403: "Admin endpoints are off (no key is set)",
    411: "No Content-Length header",
    413: "Body larger than the service's limit",
    503: "No model loaded",
}
# Every route that takes a body answers 411 and 413 (BodyLimit) besides its own refusals.
BODY_REFUSALS = (411, 413)
PREDICT_RESPONSES = responses(*BODY_REFUSALS, 503)


class BodyLimit:
    """411 for a write without Content-Length (a chunked body cannot be checked before it is
    read), 413 for a body over the limit: answered before the body is read or parsed.

    A plain ASGI middleware: Starlette's `@app.middleware("http")` costs about a millisecond
    per request, more than scoring one record.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"").decode()
            refusal = None
            writes = scope["method"] in ("POST", "PUT", "PATCH")
            if writes and not length.isdigit():
                refusal = (411, "a Content-Length header is required")
            elif writes and int(length) > self.max_body_bytes:
                refusal = (413, f"body is {length} bytes; the limit is {self.max_body_bytes}")
            if refusal:
                response = JSONResponse(status_code=refusal[0], content={"detail": refusal[1]})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def readable_errors(errors: list[dict[str, Any]], prefix: tuple = ()) -> list[dict[str, Any]]:
    """Validation errors as a 422's detail: where, what rule, no echo of the input (FastAPI's
    default echoes it: an echoed NaN cannot be rendered as JSON, a 500 instead of a 422,
    and an echoed 1,000-record list buries the reason)."""
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]


BODY_MISSING = {"loc": ["body"], "msg": "Field required", "type": "missing"}
BODY_NOT_JSON = {"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}


def is_json(content_type: str) -> bool:
    """Is a body of this Content-Type parsed as JSON? As FastAPI decides it: no header, or
    application/json or application/*+json."""
    if not content_type:
        return True
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


# What a direct POST answers: status, JSON content, headers
Answer = Callable[[Any], Awaitable[tuple[int, dict[str, Any], dict[str, str]]]]


class DirectPost:
    """POST `path` answered in plain ASGI by `answer`, ahead of FastAPI's routing.

    Under load, FastAPI's per-request machinery (its middleware wrappers, request and
    response objects, dependency solving) cost level 1's service more than scoring did:
    at 16 connections on 2 cores, 770-800 req/s through the route, 1,000 directly. The body
    is parsed and validated as FastAPI does it (json.loads, then the route's body type) and
    a bad one gets the same 422. Add it before `add_guards_and_docs`, so that the size
    limits stay in front. The route keeps documenting the endpoint in /docs.
    """

    def __init__(self, app: ASGIApp, path: str, body_type: Any, answer: Answer):
        self.app, self.path, self.answer = app, path, answer
        self.body = TypeAdapter(body_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        status, content, headers = await self._respond(b"".join(chunks), content_type)
        await JSONResponse(content, status, headers)(scope, receive, send)

    async def _respond(
        self, raw: bytes, content_type: str = ""
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not raw:
            return 422, {"detail": [BODY_MISSING]}, {}
        if not is_json(content_type):
            return 422, {"detail": [BODY_NOT_JSON]}, {}
        try:
            parsed = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return (
                422,
                {"detail": [{**BODY_NOT_JSON, "loc": ["body", getattr(error, "pos", 0)]}]},
                {},
            )
        try:
            value = self.body.validate_python(parsed, from_attributes=True)  # as FastAPI
        except ValidationError as invalid:
            return 422, {"detail": readable_errors(invalid.errors(), prefix=("body",))}, {}
        try:
            return await self.answer(value)
        except HTTPException as refusal:
            return refusal.status_code, {"detail": refusal.detail}, dict(refusal.headers or {})


def add_predict(
    app: FastAPI, body_type: Any, answer: Answer, max_body_bytes: int,
    explain: Answer | None = None,
) -> None:  # fmt: skip
    """Every level's POST /predict: read, validated and refused by `DirectPost` with the same
    code, `answer` scoring a valid body; behind the body-size guards, with the API docs.
    With `explain` (levels 1 and 2), POST /explain too: the same body, read and refused by
    the same code, `explain` answering it. Create the app with `docs_url=None, redoc_url=None`."""
    app.add_middleware(DirectPost, path="/predict", body_type=body_type, answer=answer)
    if explain is not None:
        app.add_middleware(DirectPost, path="/explain", body_type=body_type, answer=explain)
    add_guards_and_docs(app, max_body_bytes)

    @app.post("/predict", response_model=PredictResponse, responses=PREDICT_RESPONSES)
    async def predict(body: body_type) -> JSONResponse:  # type: ignore[valid-type]
        """Churn probability for one customer record, or for a list of up to `max_records`.
        (Requests are answered by `DirectPost` before they get here: the same `answer`.)"""
        status, content, headers = await answer(body)
        return JSONResponse(content, status, headers)

    if explain is None:
        return

    @app.post("/explain", response_model=ExplainResponse, responses=PREDICT_RESPONSES)
    async def explain_records(body: body_type) -> JSONResponse:  # type: ignore[valid-type]
        """Why the served version scores each record as it does: SHAP attributions per
        feature (a category as one), in log-odds of churn, that add up with `base_value` to
        the model's output. The same body as /predict; nothing is logged. The first call
        loads the explainer (a few seconds). (Answered by `DirectPost`, as /predict.)"""
        status, content, headers = await explain(body)
        return JSONResponse(content, status, headers)


FASTAPI_UNPARSABLE_BODY = "There was an error parsing the body"  # fastapi/routing.py, 0.150-0.154

# Swagger UI 5 and ReDoc, as the fastapi-offline package ships them (installed from PyPI with
# the rest of the lock; Swagger UI is Apache-2.0, ReDoc MIT). FastAPI writes OpenAPI 3.1,
# which Swagger UI renders only from 5.x on.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/static/docs"


def add_guards_and_docs(app: FastAPI, max_body_bytes: int) -> None:
    """Body-size limits (411, 413), a 422 that names the field without echoing the input,
    and offline /docs and /redoc. Create the app with `docs_url=None, redoc_url=None`."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def readable_422(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": readable_errors(exc.errors())})

    @app.exception_handler(StarletteHTTPException)
    async def unparsable_body_422(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 for a body it cannot decode (not UTF-8) but 422 for one that is
        # not JSON: a body that cannot be read as JSON is a 422 on every route, as /predict's
        # DirectPost answers it, and as the OpenAPI document says.
        if exc.status_code == 400 and exc.detail == FASTAPI_UNPARSABLE_BODY:
            return JSONResponse(status_code=422, content={"detail": [BODY_NOT_JSON]})
        return await http_exception_handler(request, exc)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
