"""Level 0, step 5: the prediction service. It loads the handed-over model file once, at
start, and serves it until someone restarts it with another file.

    POST /predict   one customer record, or a list of them -> churn probabilities
    GET  /health    200 while the process is up: status "ok" with the model version, or
                    "no_model" (and why) until a model has been handed over
    GET  /model     which file, which version, trained when, on which data
    GET  /docs      the API docs, served from local files so they work offline
    GET  /metrics   Prometheus metrics (shared/telemetry.py): requests, latency, the model
                    and its age, the probabilities answered. Level 0 has telemetry in its
                    server, not in its process: nothing scrapes or alerts on it here.
"""

import time
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic_settings import SettingsConfigDict

from shared import model_file
from shared.api import (
    RequestLimits,
    add_predict,
    predict_body,
    predict_records,
    responses,
)
from shared.keepalive import SERVER_KEEP_ALIVE_SECONDS
from shared.telemetry import ModelFacts, Telemetry, TelemetrySettings, iso_seconds


class ServiceSettings(RequestLimits, TelemetrySettings):
    """Settings of the level-0 service, from L0_SERVE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="L0_SERVE_", frozen=True)

    model_dir: Path = Path("var/level0/serving")
    host: str = "127.0.0.1"
    port: int = 8000
    keep_alive_seconds: int = SERVER_KEEP_ALIVE_SECONDS  # idle connections kept open


@cache
def get_settings() -> ServiceSettings:
    return ServiceSettings()


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

    def loaded() -> model_file.LoadedModel:
        if app.state.model is None:
            raise HTTPException(status_code=503, detail=f"no model loaded: {app.state.problem}")
        return app.state.model

    Body = predict_body(settings.max_records)
    telemetry = app.state.telemetry = Telemetry(settings.metrics)

    def served() -> ModelFacts | None:
        model = getattr(app.state, "model", None)
        if model is None:
            return None
        card = model.card
        return ModelFacts(card["name"], card["version"], iso_seconds(card.get("trained_at")))

    telemetry.serving("champion", served)

    async def answer(body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Score a validated /predict body with the loaded file's model."""
        model = loaded()
        records = body if isinstance(body, list) else [body]
        scored = predict_records(model.pipeline, records)
        telemetry.answered("champion", (p["churn_probability"] for p in scored))
        return (
            200,
            {
                "model_name": model.card["name"],
                "model_version": model.card["version"],
                "predictions": scored,
            },
            {},
        )

    add_predict(app, Body, answer, settings.max_body_bytes)
    telemetry.add_metrics(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness, and whether there is a model to serve: status "ok" or "no_model"."""
        if app.state.model is None:
            return {"status": "no_model", "detail": app.state.problem}
        return {"status": "ok", "model_version": app.state.model.card["version"]}

    @app.get("/model", responses=responses(503))
    def model_info() -> dict[str, Any]:
        """The loaded model's file, version, training time, data version and metrics."""
        model = loaded()
        return {"file": str(model.path), "loaded_at": app.state.loaded_at, **model.card}

    return app


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                timeout_keep_alive=settings.keep_alive_seconds)  # fmt: skip


if __name__ == "__main__":
    main()
