"""The level-0 prediction service: valid requests get predictions from the handed-over model;
malformed ones get a 4xx that names the field, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from level0_manual.service import ServiceSettings, create_app
from shared import model_file
from shared.schema import FEATURES, example_record


@pytest.fixture(scope="module")
def model_dir(trained, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serving")
    model_file.save(
        trained.pipeline, {"name": "churn", "version": "v-test", "data_version": "d1"}, folder
    )
    return folder


@pytest.fixture(scope="module")
def client(model_dir: Path):
    with TestClient(create_app(ServiceSettings(model_dir=model_dir, max_records=50))) as c:
        yield c


def post_raw(
    client: TestClient, body: str | bytes, content_type: str = "application/json", path="/predict"
):
    content = body.encode() if isinstance(body, str) else body
    return client.post(path, content=content, headers={"content-type": content_type})


def assert_422_names(response, *loc) -> None:
    assert response.status_code == 422, response.text
    locs = [tuple(e["loc"]) for e in response.json()["detail"]]
    assert any(tuple(loc) == found[-len(loc) :] for found in locs), locs


def test_one_record_gets_one_prediction_from_the_loaded_model(client, trained):
    response = client.post("/predict", json={**example_record(), "customer_id": "c-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "v-test" and body["model_name"] == "churn"
    [prediction] = body["predictions"]
    expected = trained.pipeline.predict_proba(pd.DataFrame([example_record()]))[0, 1]
    assert prediction["churn_probability"] == pytest.approx(expected, abs=1e-6)
    assert prediction["customer_id"] == "c-1"
    assert prediction["churn"] == (expected >= 0.5)


def test_a_list_gets_one_prediction_per_record_in_order(client, trained):
    records = [
        example_record(),
        {**example_record(), "complaints_90d": 9, "late_deliveries_30d": 6},
    ]
    response = client.post("/predict", json=records)
    assert response.status_code == 200
    got = [p["churn_probability"] for p in response.json()["predictions"]]
    expected = trained.pipeline.predict_proba(pd.DataFrame(records))[:, 1]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_health_reports_the_model_version(client):
    assert client.get("/health").json() == {"status": "ok", "model_version": "v-test"}


def test_model_endpoint_says_which_file_and_which_data(client, model_dir):
    info = client.get("/model").json()
    assert info["file"] == str(model_dir / "model.skops")
    assert info["version"] == "v-test" and info["data_version"] == "d1"
    assert info["loaded_at"].endswith("Z")


def test_a_missing_field_is_named(client):
    record = {k: v for k, v in example_record().items() if k != "orders_30d"}
    assert_422_names(client.post("/predict", json=record), "record", "orders_30d")


def test_a_wrong_type_is_named(client):
    assert_422_names(client.post("/predict", json={**example_record(), "age": "old"}), "age")


# Values of another JSON type than the document's, per kind of column: refused, not coerced.
WRONG_TYPES = {
    "int": ["27", True, 27.5, [27], {"value": 27}],
    "float": ["0.4", True, [0.4]],
    "bool": [0, 1, "yes", "true", "false", None],
    "category": [1, True, ["ios"]],
}


@pytest.mark.parametrize(
    ("column", "value"),
    [(c.name, v) for c in FEATURES for v in WRONG_TYPES[c.kind]],
    ids=lambda x: repr(x),
)
def test_a_value_of_another_json_type_is_refused_naming_the_field(client, column, value):
    """The strict contract: "27" is not an integer, 0 and "yes" are not booleans, true is not
    a number (pydantic's lax mode accepted all of these with a 200)."""
    assert_422_names(client.post("/predict", json={**example_record(), column: value}), column)


@pytest.mark.parametrize("column", [c.name for c in FEATURES if c.kind == "int"])
def test_a_whole_number_written_with_a_decimal_point_is_an_integer(client, column):
    """JSON Schema's "integer" includes 6.0: a client that follows the document is served."""
    record = example_record()
    body = json.dumps(record).replace(
        f'"{column}": {record[column]}', f'"{column}": {record[column]}.0'
    )
    assert body != json.dumps(record)
    assert post_raw(client, body).status_code == 200


def test_an_integer_is_a_number(client):
    assert (
        client.post("/predict", json={**example_record(), "discount_share": 1}).status_code == 200
    )


def test_the_document_states_the_cross_field_rules(client):
    """A rule JSON Schema cannot express is stated in words and as `x-row-rules`, so a client
    that reads the document is not refused for a reason it could not see."""
    record = client.get("/openapi.json").json()["components"]["schemas"]["CustomerFeatures"]
    assert "late_deliveries_30d cannot exceed orders_30d" in record["description"]
    assert record["x-row-rules"] == [
        {
            "name": "late_not_above_orders",
            "left": "late_deliveries_30d",
            "op": "<=",
            "right": "orders_30d",
        }
    ]


def test_an_unknown_category_is_named(client):
    response = client.post("/predict", json={**example_record(), "platform": "smart_tv"})
    assert_422_names(response, "platform")
    assert "'ios', 'android' or 'web'" in response.text


@pytest.mark.parametrize("column", [c.name for c in FEATURES if c.kind == "float"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_not_a_500(client, column, value):
    body = json.dumps({**example_record(), column: 1.5}).replace("1.5", value)
    assert_422_names(post_raw(client, body), column)


def test_nan_in_an_integer_field_is_refused_not_a_500(client):
    body = json.dumps({**example_record(), "age": 1234567}).replace("1234567", "NaN")
    assert_422_names(post_raw(client, body), "age")


def test_out_of_range_values_are_refused(client):
    assert_422_names(client.post("/predict", json={**example_record(), "age": 999}), "age")
    response = client.post("/predict", json={**example_record(), "discount_share": 1.5})
    assert_422_names(response, "discount_share")


def test_a_renamed_field_is_refused_as_extra(client):
    record = example_record()
    record["orders_last_30d"] = record.pop("orders_30d")
    assert_422_names(client.post("/predict", json=record), "orders_last_30d")


def test_the_cross_column_rule_is_enforced(client):
    response = client.post("/predict", json={**example_record(), "late_deliveries_30d": 99})
    assert response.status_code == 422
    assert "late_deliveries_30d cannot exceed orders_30d" in response.text


def test_an_error_in_the_third_record_of_a_list_points_at_it(client):
    records = [example_record(), example_record(), {**example_record(), "city_tier": "moon"}]
    assert_422_names(client.post("/predict", json=records), "records", 2, "city_tier")


def test_an_empty_list_is_refused(client):
    response = client.post("/predict", json=[])
    assert response.status_code == 422
    assert "at least 1 item" in response.text


def test_a_list_over_the_limit_is_refused_without_echoing_it(client):
    response = client.post("/predict", json=[example_record()] * 51)
    assert response.status_code == 422
    assert "at most 50 items" in response.text
    assert len(response.content) < 1000


def test_a_body_over_the_size_limit_gets_413():
    app = create_app(ServiceSettings(model_dir=Path("nowhere"), max_body_bytes=1000))
    with TestClient(app) as c:
        response = c.post("/predict", json=[example_record()] * 20)
    assert response.status_code == 413
    assert "limit is 1000" in response.json()["detail"]


NOT_UTF8 = b'{"age": "\xff\xfe"}'


@pytest.mark.parametrize("body", ["{not json", "", "null", "42", '"text"', "[1, 2]", NOT_UTF8])
def test_bodies_that_are_not_records_get_422(client, body):
    assert post_raw(client, body).status_code == 422


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_sent_as_another_media_type_is_refused_with_422(client, content_type):
    """As FastAPI decides it: only application/json (or +json, or no header) is read as JSON."""
    response = post_raw(client, json.dumps(example_record()), content_type)
    assert response.status_code == 422
    assert (
        post_raw(client, json.dumps(example_record()), "application/problem+json").status_code
        == 200
    )


def test_without_a_handed_over_model_health_says_why_and_predict_answers_503(tmp_path: Path):
    with TestClient(create_app(ServiceSettings(model_dir=tmp_path))) as c:
        health = c.get("/health")
        assert health.status_code == 200  # alive: the stack waits on this
        assert health.json()["status"] == "no_model"
        assert "model.skops" in health.json()["detail"]
        predict = c.post("/predict", json=example_record())
        assert predict.status_code == 503
        assert "has the model been handed over" in predict.json()["detail"]
        assert c.get("/model").status_code == 503


def test_a_chunked_body_without_a_length_gets_411(client):
    chunks = iter([json.dumps(example_record()).encode()])
    response = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 411


def test_a_corrupt_model_file_leaves_the_service_up_and_saying_why(model_dir: Path, tmp_path: Path):
    (tmp_path / "model.json").write_text((model_dir / "model.json").read_text())
    (tmp_path / "model.skops").write_bytes(b"not a zip file")
    with TestClient(create_app(ServiceSettings(model_dir=tmp_path))) as c:
        health = c.get("/health").json()
        assert health["status"] == "no_model"
        assert "cannot load the model" in health["detail"]
        assert c.post("/predict", json=example_record()).status_code == 503


def test_a_model_card_without_a_version_is_refused_at_load(model_dir: Path, tmp_path: Path):
    (tmp_path / "model.skops").write_bytes((model_dir / "model.skops").read_bytes())
    (tmp_path / "model.json").write_text('{"name": "churn"}')
    with TestClient(create_app(ServiceSettings(model_dir=tmp_path))) as c:
        assert "lacks ['version']" in c.get("/health").json()["detail"]


def test_docs_load_their_assets_from_the_service_not_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "/static/docs/swagger-ui-bundle.js" in page.text
    assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/docs/swagger-ui.css").status_code == 200
    redoc = client.get("/redoc")
    assert "cdn" not in redoc.text.lower() and "fonts.googleapis" not in redoc.text
    assert client.get("/static/docs/redoc.standalone.js").status_code == 200


def test_the_openapi_schema_documents_the_request_from_the_contract(client):
    schema = client.get("/openapi.json").json()
    record = schema["components"]["schemas"]["CustomerFeatures"]
    assert set(record["required"]) == {c.name for c in FEATURES}
    assert record["properties"]["age"]["maximum"] == 100
    assert record["properties"]["platform"]["enum"] == ["ios", "android", "web"]


@pytest.fixture(scope="module")
def level1_client(tmp_path_factory):
    """Level 1's service with no registry to reach: it validates before it scores."""
    from level1_ct import service as level1

    settings = level1.ServiceSettings(
        MLFLOW_TRACKING_URI="http://127.0.0.1:9",
        PREDICTION_STORE_URL=f"sqlite:///{tmp_path_factory.mktemp('level1')}/predictions.db",
        max_records=50,
        max_body_bytes=1_000_000,
        poll_seconds=3600,
    )
    with TestClient(level1.create_app(settings)) as c:
        yield c


BAD_BODIES = [
    json.dumps({k: v for k, v in example_record().items() if k != "orders_30d"}),
    json.dumps({**example_record(), "age": "old"}),
    json.dumps({**example_record(), "platform": "smart_tv"}),
    json.dumps(example_record()).replace("0.4", "NaN"),
    json.dumps({**example_record(), "age": 999}),
    json.dumps({**example_record(), "late_deliveries_30d": 99}),
    json.dumps([example_record(), example_record(), {**example_record(), "city_tier": "moon"}]),
    json.dumps([example_record()] * 51),
    "[]",
    "{not json",
    "",
    "null",
    '"text"',
    "[1, 2]",
    json.dumps({**example_record(), "age": "27"}),
    json.dumps({**example_record(), "has_subscription": 0}),
    json.dumps({**example_record(), "discount_share": True}),
    NOT_UTF8,
]


@pytest.fixture(scope="module")
def level2_client(tmp_path_factory):
    """Level 2's production service, as level 1's above."""
    from level2_cicd.service import ProductionSettings, create_production_app

    settings = ProductionSettings(
        MLFLOW_TRACKING_URI="http://127.0.0.1:9",
        PREDICTION_STORE_URL=f"sqlite:///{tmp_path_factory.mktemp('level2')}/predictions.db",
        max_records=50,
        max_body_bytes=1_000_000,
        poll_seconds=3600,
        api_key="s3cret",
    )
    with TestClient(create_production_app(settings)) as c:
        yield c


@pytest.mark.parametrize("body", BAD_BODIES)
def test_every_level_answers_a_bad_body_exactly_as_level_0(
    client, level1_client, level2_client, body
):
    """Every level answers alike: the same status and the same 422 naming the field, on
    /predict and on levels 1 and 2's /explain, which takes the same body."""
    reference = post_raw(client, body)
    assert reference.status_code == 422, reference.text
    for other in (level1_client, level2_client):
        for path in ("/predict", "/explain"):
            ours = post_raw(other, body, path=path)
            assert (ours.status_code, ours.json()) == (422, reference.json()), path


@pytest.mark.parametrize(
    "body", [NOT_UTF8, b"{not json", b'{"error_rate": true}', b'{"error_rate": "0.5"}']
)
def test_the_admin_route_refuses_an_unreadable_or_mistyped_body_with_422(level2_client, body):
    """FastAPI's own routes answered 400 for a body that is not UTF-8 (undocumented) and took
    true or "0.5" for a number: the same rules as /predict here too."""
    response = level2_client.post(
        "/admin/fault",
        content=body,
        headers={"content-type": "application/json", "X-API-Key": "s3cret"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_level_1_answers_a_good_body_503_while_no_champion_is_loaded(level1_client):
    for path in ("/predict", "/explain"):
        response = level1_client.post(path, json=example_record())
        assert response.status_code == 503
        assert response.json()["detail"].startswith(
            "no model loaded: cannot reach the model registry"
        )
        assert level1_client.post(path, json=[example_record()] * 5000).status_code == 413


def test_ci_smoke_probe_checks_the_field_it_means_to(level1_client):
    """Level 2's CI smoke-tests each serving image with MALFORMED: a record the API takes in
    every field but one. Its 422 names that field, and only it; a body of the wrong shape
    (a 422 for every missing field, "age" among them) does not pass the check."""
    from level2_cicd.flows.ci import MALFORMED, names_the_malformed_field

    answer = level1_client.post("/predict", json=MALFORMED)
    assert names_the_malformed_field(answer.status_code, answer.text)
    wrong_shape = level1_client.post("/predict", json={"records": [{"age": "old"}]})
    assert wrong_shape.status_code == 422 and "age" in wrong_shape.text
    assert not names_the_malformed_field(wrong_shape.status_code, wrong_shape.text)
    good = level1_client.post("/predict", json=[{**MALFORMED[0], "age": 30}])
    assert not names_the_malformed_field(good.status_code, good.text)
