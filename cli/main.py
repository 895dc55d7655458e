"""The ``switchboard`` commands. Each one parses its arguments, calls a service (or Kafka), and
prints; errors say what failed and exit non-zero."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from cli.agents_file import AgentsFileError, Refusal, read_agents, schema_refusals
from cli.calls import KeyOption, RouterOption, _call, _client, _every_page, _fail, err, out
from cli.keys import keys
from cli.replay import replay_dead_letters
from cli.settings import CliSettings
from cli.topics import apply_specs
from cli.topics_file import TopicsFileError, parse_topics
from services.router.routing.rules import RulesError, load_rules

app = typer.Typer(help="Operate a Switchboard desk.", no_args_is_help=True)
agents = typer.Typer(help="Create, update and list agents; set their status.")
dead_letters = typer.Typer(help="Records consumers gave up on.")
rules = typer.Typer(help="The routing rules file.")
topics = typer.Typer(help="Kafka topics.")
app.add_typer(agents, name="agents")
app.add_typer(dead_letters, name="dead-letters")
app.add_typer(rules, name="rules")
app.add_typer(keys, name="keys")
app.add_typer(topics, name="topics")


@agents.command("import")
def import_agents(
    file: Annotated[Path, typer.Argument(help="agents as CSV or YAML")],
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic",
            help="save nothing unless every row is valid (the default saves the valid rows)",
        ),
    ] = False,
    key: KeyOption = None,
    router: RouterOption = None,
) -> None:
    """Create or update every agent of a CSV or YAML file (a progress bar shows the way).

    Each row is checked on its own: the valid ones are saved, each refused one is named with
    its line, column and reason, and the exit code is 1 if any was refused. With --atomic a
    refused row saves nothing."""
    settings = CliSettings()
    try:
        rows = read_agents(file)
    except AgentsFileError as exc:
        raise _fail(str(exc)) from exc
    valid = [row for row in rows if row.valid]
    saved = 0
    if atomic and len(valid) < len(rows):
        valid = []
    with _client(router or settings.router_url, key, settings) as client, Progress() as bar:
        task = bar.add_task(f"importing {len(valid)} agents", total=len(valid))
        for row in valid:
            row.refusals += _put_agent(client, row.agent_id, row.body)
            saved += row.valid
            bar.advance(task)
            if atomic and not row.valid:
                break  # the router has no multi-agent transaction: stop at the first refusal
    out.print(f"{saved} of {len(rows)} agents saved")
    refused = [row for row in rows if not row.valid]
    for row in refused:
        for refusal in row.refusals:
            err.print(
                Text.assemble(
                    ("refused", "red"),
                    f" {row.where}, agent {row.agent_id or '?'}, column {refusal.column}: "
                    f"{refusal.reason}",
                ),
                soft_wrap=True,
            )
    if refused:
        if atomic and saved == 0:
            err.print(f"--atomic: nothing saved, {len(refused)} of {len(rows)} rows refused")
        elif atomic:
            err.print(f"--atomic: the router refused a row; the {saved} before it were saved")
        raise typer.Exit(1)


def _put_agent(client: httpx.Client, agent_id: str, body: dict[str, Any]) -> list[Refusal]:
    """Save one agent; what the router refused of it (nothing when saved)."""
    try:
        answer = client.put(f"/v1/agents/{agent_id}", json=body)
    except httpx.HTTPError as exc:
        return [Refusal("-", f"PUT {client.base_url}/v1/agents/{agent_id}: {exc}")]
    if not answer.is_error:
        return []
    try:
        problem = answer.json()
    except ValueError:
        problem = {}
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if answer.status_code == 422 and isinstance(errors, list) and errors:
        # loc is ["body", column, ...] or ["path", "agent_id"]
        return schema_refusals(
            [{**e, "loc": ["id"] if e["loc"][0] == "path" else e["loc"][1:]} for e in errors]
        )
    detail = problem.get("detail") if isinstance(problem, dict) else None
    return [
        Refusal("-", f"the router answered {answer.status_code}: {detail or answer.text[:300]}")
    ]


@agents.command("list")
def list_agents(key: KeyOption = None, router: RouterOption = None) -> None:
    """Agents with their status, team, load and capacity per channel, overall load and cap
    (max_load; "-": none), skills and languages."""
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        found = _every_page(client, "/v1/agents")
    table = Table(
        "agent", "status", "team", "load / capacity", "total / max_load", "skills", "languages"
    )
    for a in found:
        load = ", ".join(f"{c} {a['load'].get(c, 0)}/{n}" for c, n in a["capacity"].items())
        cap = "-" if a["max_load"] is None else str(a["max_load"])
        skills = ", ".join(f"{s}:{lvl}" for s, lvl in a["skills"].items())
        table.add_row(
            a["id"],
            a["status"],
            a["team"] or "",
            load,
            f"{a['total_load']}/{cap}",
            skills,
            " ".join(a["languages"]),
        )
    out.print(table)


@agents.command("status")
def set_status(
    agent_id: str,
    status: Annotated[str, typer.Argument(help="online, away or offline")],
    key: KeyOption = None,
    router: RouterOption = None,
) -> None:
    """Set an agent's status (as ops)."""
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        _call(client, "PUT", f"/v1/agents/{agent_id}/status", json={"status": status})
    out.print(f"{agent_id} is {status}")


@app.command("queues")
def queues(key: KeyOption = None, router: RouterOption = None) -> None:
    """Conversations waiting for an agent, per skill and language."""
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        found = _every_page(client, "/v1/queues")
    table = Table("skill", "language", "waiting", "oldest wait (s)", "by priority")
    for q in found:
        by_priority = ", ".join(f"{p} {n}" for p, n in q["priorities"].items())
        table.add_row(
            q["skill"], q["language"], str(q["depth"]), f"{q['oldest_wait_s']:.0f}", by_priority
        )
    out.print(table if found else "no conversation is waiting")


@app.command("conversation")
def show_conversation(
    conversation_id: Annotated[str | None, typer.Argument(help="the conversation's id")] = None,
    conversation_key: Annotated[
        str | None,
        typer.Option(help="or the thread's conversation_key, as ingest answered it"),
    ] = None,
    message_id: Annotated[
        str | None, typer.Option(help="or the id of one of its messages, as ingest answered it")
    ] = None,
    key: KeyOption = None,
    router: RouterOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw answer")] = False,
) -> None:
    """A conversation: its routing decision (which rules fired), its agent and messages."""
    given = [v for v in (conversation_id, conversation_key, message_id) if v is not None]
    if len(given) != 1:
        raise _fail("give exactly one of an id, --conversation-key and --message-id")
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        if conversation_id is not None:
            c = _call(client, "GET", f"/v1/conversations/{conversation_id}")
        else:
            lookup = {"key": conversation_key} if conversation_key else {"message_id": message_id}
            c = _call(client, "GET", "/v1/conversations", params=lookup)
    if as_json:
        out.print_json(json.dumps(c))
        return
    k = c["classification"]
    out.print(f"[bold]{c['id']}[/bold]  {c['channel']}  {c['state']}  customer {c['customer_id']}")
    out.print(
        f"routing: priority {k['priority']}, skill {k['skill']} (level {k['min_level']}+), "
        f"language {k['language']}, team {k['team'] or 'any'}; rules fired: "
        f"{', '.join(k['rules_fired']) or 'none'}"
    )
    out.print(f"agent: {c['agent_id'] or '(waiting)'}; opened {c['opened_at']}")
    if c.get("earlier_messages"):
        out.print(f"  (the latest {len(c['messages'])} messages; earlier ones not shown)")
    for m in c["messages"]:
        who = "customer" if m["direction"] == "inbound" else m["author"]
        delivery = f" [{m['delivery_status']}]" if m.get("delivery_status") else ""
        out.print(f"  {m['created_at']}  {who}: {m['text']}{delivery}", markup=False)


@dead_letters.command("replay")
def replay(
    source_topic: Annotated[str | None, typer.Option(help="only letters from this topic")] = None,
    consumer_group: Annotated[
        str | None,
        typer.Option(
            help="only letters this consumer group gave up on: its full name, or router, "
            "metrics, dispatcher for the default switchboard-<name> groups (ingest: ingest)"
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="count, publish nothing")] = False,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap address")] = None,
) -> None:
    """Put dead-lettered records back on their source topics, after a fix. Each letter is
    replayed once (the replay's own consumer group remembers where it stopped); consumers
    are idempotent, so a record replayed twice is applied once."""
    settings = CliSettings()
    with Progress() as bar:
        task = bar.add_task("replaying dead letters", total=None)
        outcome = asyncio.run(
            replay_dead_letters(
                bootstrap or settings.kafka_bootstrap,
                settings.topics.dead_letter,
                source_topic=source_topic,
                consumer_group=consumer_group,
                dry_run=dry_run,
                progress=lambda n: bar.update(task, completed=n),
            )
        )
    verb = "would replay" if dry_run else "replayed"
    out.print(f"{verb} {outcome.replayed} of {outcome.read} dead letters")


@rules.command("validate")
def validate_rules(file: Path) -> None:
    """Check a routing rules file the way the router would load it."""
    try:
        ruleset = load_rules(file)
    except RulesError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"{file}: valid, {len(ruleset.rules)} rules")


@topics.command("apply")
def apply_topics(
    file: Annotated[Path, typer.Argument(help="the topics file, e.g. deploy/topics.yaml")],
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap address")] = None,
    replication_factor: Annotated[
        int | None, typer.Option(help="override every topic's (1 for a one-broker cluster)")
    ] = None,
) -> None:
    """Create the topics of the file that do not exist yet, with their partitions,
    replication and configs; report the ones that exist with other partition counts."""
    settings = CliSettings()
    try:
        specs = parse_topics(
            file.read_text(encoding="utf-8"), replication_factor=replication_factor
        )
    except (OSError, TopicsFileError) as exc:
        raise _fail(f"{file}: {exc}") from exc
    created, differing = asyncio.run(apply_specs(bootstrap or settings.kafka_bootstrap, specs))
    for name in created:
        out.print(f"created {name}")
    for name, have, want in differing:
        err.print(f"[yellow]{name}[/yellow] has {have} partitions, the file says {want}")
    out.print(f"{len(created)} created, {len(specs) - len(created)} already there")
