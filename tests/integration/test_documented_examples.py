"""The README's examples run as written, against the whole desk as ``make run`` starts it (the
three services on loopback, the real broker and database, make run's keys): every ``curl`` of
its ``sh`` blocks as an httpx request to the service its port names, every ``switchboard``
command through the CLI; and the request-body examples of docs/channels.md (chat widget, web
form, email) and docs/metrics.md (calendar, SLA policy, CSAT). Each answers as documented.

Not run here, and why (``NOT_RUN`` below; any other README example that is neither a ``curl``
nor a ``switchboard`` command fails the test, so a new one is either run or listed):

- ``make run``, ``make test``, ``make bench``, ``make bench-quick``: they start the whole desk
  or suite, which is what this test stands in for (the demo's code runs in test_demo.py).
- ``INGEST=sb_...; OPS=sb_...; ALICE=sb_...``: the shell variables; the test sets them to make
  run's keys.
- ``curl -X PUT 'localhost:8002/v1/agents/bob?issue_key=true' ...``: its body is elided;
  test_runtime_keys.py covers ``issue_key``.
"""

from __future__ import annotations

import re

import httpx

from tests.conftest import eventually
from tests.integration.deskkit import make_run_desk
from tests.integration.docexamples import ROOT, Example, curl_request, sh_examples
from tests.integration.test_cli import switchboard

NOT_RUN = (  # matched against an example's words, comments dropped
    re.compile(r"^make (run|test|bench|bench-quick)$"),
    re.compile(r"^INGEST=sb_\.\.\.; OPS=sb_\.\.\.; ALICE=sb_\.\.\.$"),
    re.compile(r"^curl -X PUT localhost:8002/v1/agents/bob\?issue_key=true \.\.\.$"),
)


def _csv_example() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("```csv\n", 1)[1].split("```", 1)[0]


async def test_the_readme_and_request_body_examples_answer_as_documented(
    common, broker, topics, tmp_path
):
    readme = sh_examples("README.md")
    curls = [e for e in readme if e.argv[0] == "curl" and "..." not in e.argv]
    commands = [e for e in readme if e.argv[0] == "switchboard"]
    others = [e for e in readme if e not in curls and e not in commands]
    assert [e.where for e in others if not any(p.match(" ".join(e.argv)) for p in NOT_RUN)] == []
    assert len(curls) >= 8 and len(commands) >= 10

    async with make_run_desk(common) as desk, httpx.AsyncClient(timeout=30) as http:
        urls = {"ingest": desk.ingest, "router": desk.router, "metrics": desk.metrics}
        env = {
            "INGEST": desk.keys["ingest"],
            "OPS": desk.keys["ops"],
            "ALICE": desk.keys["agent-alice"],
        }
        answers: dict[str, httpx.Response] = {}

        async def run(example: Example, **placeholders: str) -> httpx.Response:
            for name, value in placeholders.items():
                example.argv = [w.replace(f"<{name}>", value) for w in example.argv]
            answer = await http.send(curl_request(example, urls, env))
            assert answer.is_success, f"{example.where}: {answer.status_code} {answer.text}"
            if example.documented_answer is not None:
                assert (
                    answer.json() == httpx.Response(200, content=example.documented_answer).json()
                ), example.where
            answers[example.where] = answer
            return answer

        # "Try it by hand": an agent, online; a message; the agent's long-poll gets it.
        by_hand = [e for e in curls if "/v1/keys" not in e.text]
        for example in by_hand:
            await run(example)
        (held,) = answers[by_hand[-1].where].json()["conversations"]
        assert held["conversation_key"] == "chat:visitor-1"
        assert held["classification"]["priority"] == "urgent" and held["agent_id"] == "alice"

        # "Keys at run time": created (shown once), listed, rotated, revoked.
        create, listing, rotate, revoke = [e for e in curls if "/v1/keys" in e.text]
        created = (await run(create)).json()
        assert created["key"].startswith("sb_") and created["name"] == "night-bot"
        assert "night-bot" in [k["name"] for k in (await run(listing)).json()]
        await run(rotate, id=created["id"])
        await run(revoke, id=created["id"])

        # The operators' CLI, as written (the README's agents.csv in a file of that name).
        (tmp_path / "agents.csv").write_text(_csv_example())
        cli_env = {
            "SWITCHBOARD_ROUTER_URL": desk.router,
            "SWITCHBOARD_OPS_KEY": desk.keys["ops"],
            "SWITCHBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
            "SWITCHBOARD_TOPICS__NAMESPACE": topics.namespace,
        }
        for example in commands:
            argv = [
                str(tmp_path / "agents.csv")
                if w == "agents.csv"
                else held["id"]
                if w == "<id>"
                else w.strip("[]")  # an optional flag, given
                for w in example.argv[1:]
            ]
            code, stdout, stderr = await switchboard(*argv, env=cli_env)
            assert code == 0, f"{example.where}: {example.text}\n{stdout}\n{stderr}"
            if argv[:2] == ["agents", "import"]:
                assert "2 of 2 agents saved" in stdout
            if argv[0] == "conversation":
                assert held["id"] in stdout and "agent: alice" in stdout

        # docs/channels.md: the endpoints we host.
        chat, form, raw_email, parsed_email = sh_examples("docs/channels.md")
        assert (await run(chat)).json()["accepted"] == 1
        ticket = (await run(form)).json()
        assert re.fullmatch(r"SB-[A-Z2-7]{4}-[A-Z2-7]{4}", ticket["ticket"])
        assert ticket["conversation_key"] == f"form:{ticket['ticket']}"
        assert (await run(raw_email)).json()["accepted"] == 1
        assert (await run(parsed_email)).json()["accepted"] == 1

        # docs/metrics.md: a calendar, an SLA policy (its answer as shown), CSAT once resolved.
        calendar, policy, csat = sh_examples("docs/metrics.md")
        await run(calendar)
        await run(policy)
        alice = desk.bearer("agent-alice")
        conversation = f"{desk.router}/v1/conversations/{held['id']}"
        for action, body in (("replies", {"text": "on it"}), ("resolve", {})):
            answer = await http.post(
                f"{conversation}/{action}", json={"agent_id": "alice", **body}, headers=alice
            )
            assert answer.is_success, answer.text
        env["ID"] = held["id"]

        async def scored() -> bool:
            answer = await http.send(curl_request(csat, urls, env))
            assert answer.status_code in (204, 404, 409), answer.text  # 404/409: not folded yet
            return answer.status_code == 204

        await eventually(scored, timeout=30, what="the CSAT example answered 204")
