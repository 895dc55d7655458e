"""Schemathesis against the three services' own OpenAPI schemas, positive and negative cases,
over real HTTP to real processes: no 5xx, and no documented response that breaks its schema."""

import asyncio
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from devtools.stack import create_database, drop_database, unique_name
from shared.settings import Topics
from tests.conftest import Identities
from tests.processes import Services

pytestmark = pytest.mark.fuzz

IDS = Identities()
SECRETS = {
    "SWITCHBOARD_TELEGRAM_SECRET_TOKEN": "fuzz-telegram",
    "SWITCHBOARD_META_APP_SECRET": "fuzz-meta",
    "SWITCHBOARD_META_VERIFY_TOKEN": "fuzz-verify",
    "SWITCHBOARD_X_CONSUMER_SECRET": "fuzz-x",
    "SWITCHBOARD_DISPATCHER_ENABLED": "false",
    "SWITCHBOARD_RATE_LIMIT_PER_CUSTOMER_BURST": "1000000",
}


@pytest.fixture(params=["ingest", "router", "metrics"])
def service(request, broker, pg, template_db, tmp_path):
    """One service alone, on a database and topics of its own, so what one fuzz run leaves
    behind does not steer another's (cross-service behaviour is the e2e and fault tests')."""
    name = unique_name("sb_fuzz")
    asyncio.run(create_database(pg.url, name, template=template_db))
    topics = Topics(namespace=f"fuzz{uuid.uuid4().hex[:8]}")
    services = Services.for_test(
        broker, pg.url_for(name), topics, [e.model_dump() for e in IDS.entries()], tmp_path
    )
    try:
        # INFO: an unhandled exception's traceback lands in the log the test prints.
        services.start(request.param, **SECRETS, SWITCHBOARD_LOG_LEVEL="INFO")
        yield request.param, services.url(request.param)
    finally:
        services.stop()
        asyncio.run(drop_database(pg.url, name))


FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def fuzz(base_url, key):
    """Every operation of a service, positive and negative cases; the failures found."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @FUZZ
            def run(case):
                case.call_and_validate(
                    base_url=base_url,
                    headers={"Authorization": f"Bearer {key}"},
                    checks=[not_a_server_error, response_schema_conformance],
                    timeout=30,
                )

            try:
                run()
            except Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters)
            except Exception as exc:  # every operation is tried; all failures reported
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return operations, failures


def test_a_service_never_answers_5xx_nor_breaks_its_own_schema(service):
    name, url = service
    operations, failures = fuzz(url, IDS.ingest if name == "ingest" else IDS.ops)
    print(f"\n{name}: {operations} operations fuzzed, {len(failures)} failing")
    assert operations >= 3
    assert failures == [], "\n\n".join(failures)
