"""Level 0, step 5: the prediction service. It loads the handed-over model file once, at
start, and serves it until someone restarts it with another file.

    POST /predict   one customer record, or a list of them -> churn probabilities
    GET  /health    200 while the process is up: status "ok" with the model version, or
                    "no_model" (and why) until a model has been handed over
    GET  /model     which file, which version, trained when, on which data
    GET  /docs      the API docs, served from local files so they work offline
"""

import time
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import swagger_ui_bundle
import uvicorn
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Discriminator, Field, Tag
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import model_file
from shared.evaluate import THRESHOLD
from shared.schema import FEATURE_NAMES, ID, example_record, request_model


class ServiceSettings(BaseSettings):
    """Settings of the level-0 service, from L0_SERVE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="L0_SERVE_", frozen=True)

    model_dir: Path = Path("var/level0/serving")
    host: str = "127.0.0.1"
    port: int = 8000
    max_records: int = 1000  # records per request; a larger list gets a 422
    max_body_bytes: int = 2_000_000  # a larger body gets a 413 before it is parsed


@cache
def get_settings() -> ServiceSettings:
    return ServiceSettings()


Record = request_model()


class Prediction(BaseModel):
    customer_id: str | None = None
    churn_probability: float = Field(description="Probability that the customer churns")
    churn: bool = Field(description=f"churn_probability >= {THRESHOLD}")


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    predictions: list[Prediction]


def predict_records(pipeline: Any, records: list[BaseModel]) -> list[Prediction]:
    """Score validated records with a fitted Pipeline, one probability each."""
    rows = [r.model_dump() for r in records]
    frame = pd.DataFrame(rows, columns=[*FEATURE_NAMES, ID])
    probabilities = pipeline.predict_proba(frame)[:, 1]
    return [
        Prediction(customer_id=row[ID], churn_probability=round(float(p), 6), churn=p >= THRESHOLD)
        for row, p in zip(rows, probabilities, strict=True)
    ]


def _one_or_many(value: Any) -> str:
    return "records" if isinstance(value, list) else "record"


def create_app(settings: ServiceSettings) -> FastAPI:
    """The level-0 service for the model files in `settings.model_dir`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load once, at start: per request would cost far more than the prediction itself.
        # A missing, truncated or untrusted file must not crash the service into a restart
        # loop: it stays up, says why in /health, and answers 503 until the next hand-off.
        try:
            app.state.model = model_file.load(settings.model_dir)
            app.state.loaded_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            app.state.problem = None
        except FileNotFoundError as missing:
            app.state.model, app.state.problem = None, str(missing)
        except Exception as broken:  # any unreadable file means "no model"
            app.state.model = None
            app.state.problem = f"cannot load the model in {settings.model_dir}: {broken!r}"
        yield

    app = FastAPI(
        title="Churn prediction service (level 0)",
        description="Serves the model file that was handed over by hand. "
        + __doc__.split("\n\n")[0],
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path))

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method in ("POST", "PUT", "PATCH") and not (length and length.isdigit()):
            # A chunked body has no length to check before it is read: ask for one.
            return JSONResponse(
                status_code=411, content={"detail": "a Content-Length header is required"}
            )
        if length and int(length) > settings.max_body_bytes:
            return JSONResponse(
                status_code=413,
                content={
                    "detail": f"body is {length} bytes; the limit is {settings.max_body_bytes}"
                },
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def readable_422(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the rule, but do not echo the input back: FastAPI's default
        # does, and an echoed NaN cannot be rendered as JSON (a 500 instead of a 422), and
        # an echoed 1,000-record list buries the reason.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    def loaded() -> model_file.LoadedModel:
        if app.state.model is None:
            raise HTTPException(status_code=503, detail=f"no model loaded: {app.state.problem}")
        return app.state.model

    OneOrMany = Annotated[
        Annotated[Record, Tag("record")]
        | Annotated[
            list[Record], Field(min_length=1, max_length=settings.max_records), Tag("records")
        ],
        Discriminator(_one_or_many),
    ]

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={
            411: {"description": "No Content-Length"},
            413: {"description": "Body too large"},
            503: {"description": "No model loaded"},
        },
    )
    def predict(
        body: Annotated[OneOrMany, Body(openapi_examples={
            "one record": {"value": example_record()},
            "a list": {"value": [example_record(), {**example_record(), "complaints_90d": 4}]},
        })],
    ) -> PredictResponse:  # fmt: skip
        """Churn probability for one customer record, or for a list of up to `max_records`."""
        model = loaded()
        records = body if isinstance(body, list) else [body]
        return PredictResponse(
            model_name=model.card["name"],
            model_version=model.card["version"],
            predictions=predict_records(model.pipeline, records),
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness, and whether there is a model to serve: status "ok" or "no_model"."""
        if app.state.model is None:
            return {"status": "no_model", "detail": app.state.problem}
        return {"status": "ok", "model_version": app.state.model.card["version"]}

    @app.get("/model", responses={503: {"description": "No model loaded"}})
    def model_info() -> dict[str, Any]:
        """The loaded model's file, version, training time, data version and metrics."""
        model = loaded()
        return {"file": str(model.path), "loaded_at": app.state.loaded_at, **model.card}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=app.title,
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    return app


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
