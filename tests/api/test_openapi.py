"""The OpenAPI schema is complete and accurate: schemathesis drives every operation and finds no 5xx,
and every response conforms to what the schema declares (status, media type, body)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from starlette.exceptions import StarletteDeprecationWarning

from storage import DuckDBStore

from .conftest import Hub, make_hub

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see conftest: starlette's test client
    import schemathesis
    from schemathesis.specs.openapi.checks import positive_data_acceptance
    from schemathesis.specs.openapi.schemas import OpenApiSchema

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def schema_hub(tmp_path_factory: pytest.TempPathFactory, filled_store_file: Path) -> Iterator[Hub]:
    folder = tmp_path_factory.mktemp("openapi")
    shutil.copyfile(filled_store_file, folder / "hub.duckdb")
    store = DuckDBStore(folder / "hub.duckdb")
    yield make_hub(folder, store)
    store.close()


@pytest.fixture(scope="module")
def api_schema(schema_hub: Hub) -> OpenApiSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", schema_hub.app)


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, read from a throw-away app (the schema does not depend on data)."""
    from api.http.app import create_app
    from api.settings import ApiSettings
    from core.register import Register

    doc = create_app(ApiSettings(), DuckDBStore(":memory:"), Register).openapi()
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_server_errors_and_responses_match_the_schema(
    api_schema: OpenApiSchema, schema_hub: Hub, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    headers = schema_hub.auth("admin" if path.startswith("/v1/tokens") else "analyst")

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case[Any]) -> None:
        # Every check but one: a request the schema allows may still be refused (422) for what OpenAPI cannot
        # express -- a cursor this API did not issue, or a window of more than api.max_periods periods.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    run()


def test_schema_declares_problem_responses_and_media_types(schema_hub: Hub, tmp_path: Path) -> None:
    doc = schema_hub.client.get("/openapi.json").json()
    series = doc["paths"]["/v1/series"]["get"]["responses"]
    assert set(series["200"]["content"]) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.arrow.stream",
        "application/vnd.apache.parquet",
    }
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (path, method, status)
            if path.startswith("/v1/"):
                assert {"401"} <= set(op["responses"]), (path, method)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
