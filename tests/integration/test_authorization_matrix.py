"""Every endpoint of the three services × every kind of caller: no key is 401, a key without
the scope is 403, and an agent never reaches another agent's conversation (404, as if it did
not exist). Mutating calls by the rightful caller go last, so the conversation stays put."""

import uuid

from services.ingest.app import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.metrics.app import create_app as metrics_app
from services.metrics.settings import MetricsSettings
from services.router.app import create_app as router_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, running
from tests.integration.routerkit import assignments, inbound, put_agent, send

CALLERS = ("nobody", "ingest", "ops", "agent", "desk", "other agent")


def matrix(a, b, conversation):
    """(service, method, path, body for each caller, callers allowed)."""

    def as_caller(**body):
        return lambda caller: {**body, "agent_id": b if caller == "other agent" else a}

    none = None
    agent = f"/v1/agents/{a}"
    conv = f"/v1/conversations/{conversation}"
    message = {
        "channel": "chat",
        "channel_message_id": "z",
        "conversation_ref": "z",
        "customer": {"id": "z"},
        "text": "hello",
    }
    profile = {"name": "A", "skills": {"general": 2}, "languages": ["en"], "capacity": {"chat": 2}}
    policy = {"first_response_target_s": 60, "resolution_target_s": 600}
    calendar = {"time_zone": "UTC", "weekly": {"mon": [["09:00", "17:00"]]}}
    return [
        ("ingest", "POST", "/v1/messages", message, {"ingest"}),
        (
            "ingest",
            "POST",
            "/v1/channels/chat/messages",
            {"visitor_id": "v", "session_id": "s", "message_id": "m", "text": "hi"},
            {"ingest"},
        ),
        (
            "ingest",
            "POST",
            "/v1/channels/form/tickets",
            {"submission_id": "f", "subject": "s", "body": "b", "email": "a@example.com"},
            {"ingest"},
        ),
        ("ingest", "GET", "/metrics/service", none, {"ops"}),
        ("router", "GET", "/v1/agents", none, {"ops"}),
        ("router", "GET", "/v1/queues", none, {"ops"}),
        ("router", "GET", "/v1/tickets/SB-AAAA-AAAA", none, {"ops"}),
        ("router", "GET", "/metrics/service", none, {"ops"}),
        ("router", "GET", f"{agent}/assignments?wait=0", none, {"ops", "agent", "desk"}),
        ("router", "POST", f"{agent}/heartbeat", none, {"agent", "desk"}),
        ("router", "GET", conv, none, {"ops", "agent", "desk"}),
        ("router", "GET", "/v1/conversations?key=chat:authz", none, {"ops", "agent", "desk"}),
        ("router", "PUT", agent, profile, {"ops"}),
        ("router", "GET", "/v1/keys", none, {"ops"}),
        ("router", "POST", "/v1/keys", {"name": "authz", "scopes": ["ingest"]}, {"ops"}),
        ("router", "POST", f"/v1/keys/{uuid.uuid4()}/rotate", none, {"ops"}),
        ("router", "DELETE", f"/v1/keys/{uuid.uuid4()}", none, {"ops"}),
        ("router", "PUT", f"{agent}/status", {"status": "online"}, {"ops", "agent", "desk"}),
        ("router", "POST", f"{conv}/accept", as_caller(), {"agent", "desk"}),
        (
            "router",
            "POST",
            f"{conv}/classification",
            as_caller(priority="high"),
            {"agent", "desk"},
        ),
        ("router", "POST", f"{conv}/replies", as_caller(text="on it"), {"agent", "desk"}),
        (
            "router",
            "POST",
            f"{conv}/transfer",
            as_caller(to_skill="funds", reason="x"),
            {"agent", "desk"},
        ),
        ("metrics", "GET", "/v1/metrics/summary", none, {"ops"}),
        ("metrics", "GET", "/v1/metrics/timeseries", none, {"ops"}),
        ("metrics", "GET", "/metrics", none, {"ops"}),
        ("metrics", "GET", "/metrics/service", none, {"ops"}),
        ("metrics", "GET", "/v1/sla-policies", none, {"ops"}),
        ("metrics", "PUT", "/v1/sla-policies/urgent/chat", policy, {"ops"}),
        ("metrics", "GET", "/v1/sla/at-risk", none, {"ops"}),
        ("metrics", "GET", "/v1/live/queues", none, {"ops"}),
        ("metrics", "GET", "/v1/live/agents", none, {"ops"}),
        ("metrics", "GET", "/v1/calendars", none, {"ops"}),
        ("metrics", "PUT", "/v1/calendars/day", calendar, {"ops"}),
        ("metrics", "GET", "/v1/calendars/day", none, {"ops"}),
        ("metrics", "DELETE", "/v1/calendars/day", none, {"ops"}),
        (
            "metrics",
            "POST",
            f"/v1/conversations/{uuid.uuid4()}/csat",
            {"score": 5},
            {"ingest", "ops"},
        ),
    ]


async def test_every_endpoint_refuses_every_caller_without_the_scope(common, ids, broker, topics):
    a, b = ids.agent_ids[:2]
    headers = {
        "nobody": {},
        "ingest": ids.as_ingest,
        "ops": ids.as_ops,
        "agent": ids.as_agent(a),
        "desk": ids.as_desk,
        "other agent": ids.as_agent(b),
    }
    apps = {
        "ingest": ingest_app(IngestSettings(**common)),
        "router": router_app(RouterSettings(**common)),
        "metrics": metrics_app(MetricsSettings(**common)),
    }
    seen = []
    async with running(apps["ingest"]) as ingest, running(apps["router"]) as router:
        async with running(apps["metrics"]) as metrics:
            clients = {"ingest": ingest, "router": router, "metrics": metrics}
            await put_agent(router, ids, a, skills={"general": 3})
            await put_agent(router, ids, b, skills={"general": 3}, online=False)
            await send(broker, topics, inbound("authz", "hello there"))

            async def held():
                return (await assignments(router, ids, a, wait=1))["conversations"]

            (conversation,) = await eventually(held, what="a conversation for agent a")
            conversation_id = conversation["id"]
            for service, method, path, body, allowed in matrix(a, b, conversation_id):
                # The rightful callers last: their call may change the conversation.
                for caller in sorted(CALLERS, key=lambda c: c in allowed):
                    payload = body(caller) if callable(body) else body
                    answer = await clients[service].request(
                        method, path, headers=headers[caller], json=payload
                    )
                    code = answer.status_code
                    seen.append((service, method, path, caller, code))
                    where = f"{caller} {method} {service}{path} -> {code}: {answer.text[:200]}"
                    assert code < 500, where
                    hidden = service == "router" and path.startswith("/v1/conversations")
                    if caller == "nobody":
                        assert code == 401, where
                    elif (
                        hidden
                        and caller not in allowed
                        and (caller == "other agent" or method == "GET")
                    ):
                        assert code == 404, where  # someone else's conversation: not there
                    elif caller in allowed:
                        assert code not in (401, 403), where
                    else:
                        assert code == 403, where
                        assert answer.headers["content-type"] == "application/problem+json"
    assert len(seen) == len(matrix(a, b, conversation_id)) * len(CALLERS)
    print(f"\n{len(seen)} calls: every endpoint × {len(CALLERS)} callers")
