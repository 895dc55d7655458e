"""The API docs (/docs, /redoc, /openapi.json) need a key, as every route but /healthz and
/readyz does, unless SWITCHBOARD_DOCS_PUBLIC (or the development environment) makes them
public; deploy/ turns them off."""

import httpx
import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.metrics.app import create_app as create_metrics
from services.metrics.settings import MetricsSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from shared.auth import new_key
from tests.conftest import Identities

SERVICES = {
    "ingest": (create_ingest, IngestSettings),
    "router": (create_router, RouterSettings),
    "metrics": (create_metrics, MetricsSettings),
}
DOCS = ("/openapi.json", "/docs", "/redoc")


def client(service, **settings):
    """A client of the service's app; no lifespan: the docs need no broker nor database."""
    create_app, settings_class = SERVICES[service]
    app = create_app(settings_class(**settings))
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://app")


@pytest.mark.parametrize("service", SERVICES)
async def test_docs_refuse_a_caller_without_a_valid_key_in_production(service):
    ids = Identities()
    async with client(service, environment="production", api_keys=ids.entries()) as http:
        for path in DOCS:
            for headers in ({}, Identities.bearer(new_key())):
                answer = await http.get(path, headers=headers)
                assert answer.status_code == 401, (path, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
            assert (await http.get("/healthz")).status_code == 200


@pytest.mark.parametrize("service", SERVICES)
async def test_docs_answer_any_valid_key_and_the_schema_lists_the_routes(service):
    ids = Identities()
    keys = [ids.as_ingest, ids.as_ops, ids.as_agent(ids.agent_ids[0])]
    async with client(service, environment="production", api_keys=ids.entries()) as http:
        for headers in keys:
            schema = await http.get("/openapi.json", headers=headers)
            assert schema.status_code == 200
            paths = schema.json()["paths"]
            assert "/healthz" in paths and not set(DOCS) & set(paths)
            for path in ("/docs", "/redoc"):
                page = await http.get(path, headers=headers)
                assert page.status_code == 200 and "/openapi.json" in page.text


async def test_docs_are_public_in_development_unless_turned_off():
    async with client("ingest") as http:  # environment defaults to development
        assert all([(await http.get(p)).status_code == 200 for p in DOCS])
    async with client("ingest", docs_public=False) as http:
        assert {(await http.get(p)).status_code for p in DOCS} == {401}
    async with client("ingest", environment="production", docs_public=True) as http:
        assert all([(await http.get(p)).status_code == 200 for p in DOCS])
