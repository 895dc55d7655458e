"""The batched intake (one transaction per poll, planned in memory, written set-based) leaves
exactly what applying the same messages one at a time leaves: the same conversations, messages
in the same order, the same agent loads, wake-ups and outbox events in the same order.

Each generated example runs twice on two databases in the same starting state (agents, and a
history made by the one-at-a-time handlers: open, assigned, resolved recently and long ago):
once through ``handlers.receive_message`` per message, once through ``intake.receive_messages``
for the whole batch."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from services.router import handlers
from services.router.intake import receive_messages
from services.router.model import Policy
from services.router.routing.rules import DEFAULT_RULES_PATH, RulesSource
from services.router.uow import UnitOfWork
from shared.events import AgentStatus, Attachment, Channel, Customer, CustomerTier, InboundMessage
from shared.ids import derived_id
from shared.settings import Topics

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TEXTS = [
    "my account was hacked",
    "withdrawal is pending for hours",
    "how do I use the api",
    "I have a suggestion",
    "hello",
    "我的账户被盗了",
    "입금 안됨",
    "liquidated unfairly",
]
KEYS = (
    [f"chat:t{i}" for i in range(6)]
    + [f"email:t{i}" for i in range(3)]
    + [f"telegram:g{i}" for i in range(2)]  # group chats
)
# A group's title as each of its messages names it (a group renamed now and then).
GROUP_TITLES = ["Traders", "Traders", "Traders VIP"]
ATTACHMENTS = st.lists(
    st.builds(
        Attachment,
        kind=st.sampled_from([None, "voice", "photo", "location"]),
        ref=st.sampled_from([None, "AwACAgIAAxkBAAIBY2", "geo:1.29,103.85", "cid:img1@x"]),
        name=st.sampled_from([None, "scan.pdf"]),
        content_type=st.sampled_from([None, "audio/ogg"]),
        size=st.sampled_from([None, 4096]),
    ),
    max_size=2,
)


class _Relay:
    def wake(self) -> None:
        pass


@dataclass(frozen=True)
class AgentSpec:
    id: str
    skills: dict[str, int]
    languages: list[str]
    capacity: dict[str, int]
    online: bool
    team: str | None
    max_load: int | None


@dataclass(frozen=True)
class Scenario:
    agents: list[AgentSpec]
    history: list[tuple[InboundMessage, str]]  # message, then: 'keep' or 'resolve' or 'old'
    batch: list[InboundMessage]
    offers: bool


def _message(
    key: str,
    text_: str,
    i: int,
    tier: str,
    at: datetime,
    *,
    attachments: list[Attachment] | None = None,
    edit_of: uuid.UUID | None = None,
    group: str | None = None,
) -> InboundMessage:
    mid = derived_id("test-message", key, i)
    channel = Channel(key.split(":")[0])
    return InboundMessage(
        event_id=mid,
        occurred_at=at,
        message_id=mid,
        channel=channel,
        channel_message_id=str(mid),
        conversation_key=key,
        customer=Customer(id=f"cust-{key}", tier=CustomerTier(tier)),
        text=text_,
        attachments=attachments or [],
        edit_of=edit_of,
        group=group,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    agents = [
        AgentSpec(
            id=f"agent-{i}",
            # Overlapping skills and languages, so that agents compete for conversations.
            skills={
                "general": draw(st.integers(1, 2)),
                **draw(
                    st.dictionaries(
                        st.sampled_from(["security", "funds", "trading", "api"]),
                        st.integers(1, 3),
                        max_size=3,
                    )
                ),
            },
            languages=["en", *draw(st.lists(st.sampled_from(["zh", "ko"]), max_size=1))],
            capacity={
                "chat": draw(st.integers(0, 2)),
                "email": draw(st.integers(0, 3)),
                "telegram": draw(st.integers(0, 2)),
            },
            online=draw(st.booleans()),
            team=draw(st.sampled_from([None, None, "apac"])),
            max_load=draw(st.sampled_from([None, None, 2])),
        )
        for i in range(draw(st.integers(0, 7)))
    ]
    n = 0
    made: list[uuid.UUID] = []

    def one(at: datetime) -> InboundMessage:
        nonlocal n
        n += 1
        key = draw(st.sampled_from(KEYS))
        # Now and then an edit: of a message made before (stored or not), or of one never seen.
        edited = draw(st.sampled_from([None, None, None, derived_id("never", n), *made[-3:]]))
        message = _message(
            key,
            draw(st.sampled_from(TEXTS)),
            n,
            draw(st.sampled_from(["standard", "standard", "vip"])),
            at,
            attachments=draw(ATTACHMENTS),
            edit_of=edited,
            group=draw(st.sampled_from(GROUP_TITLES)) if key.startswith("telegram:") else None,
        )
        made.append(message.message_id)
        return message

    history = [
        (one(NOW - timedelta(days=3)), draw(st.sampled_from(["keep", "resolve", "old"])))
        for _ in range(draw(st.integers(0, 6)))
    ]
    batch = [one(NOW - timedelta(seconds=5)) for _ in range(draw(st.integers(1, 12)))]
    # Redeliveries: a message of the history or of the batch itself, again.
    extra = draw(st.lists(st.sampled_from(batch + [m for m, _ in history]), max_size=2))
    batch += extra
    return Scenario(agents, history, batch, draw(st.booleans()))


async def _prepare(sessions: Any, scenario: Scenario, uow: UnitOfWork) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "TRUNCATE router.messages, router.conversations, router.agent_slots, "
                "router.agents, router.outbox"
            )
        )
    for agent in scenario.agents:
        async with uow(NOW - timedelta(days=4)) as ctx:
            await handlers.upsert_agent(
                ctx,
                agent_id=agent.id,
                name=agent.id,
                skills=agent.skills,
                languages=agent.languages,
                capacity=agent.capacity,
                team=agent.team,
                max_load=agent.max_load,
            )
            if agent.online:
                await ctx.store.set_status(agent.id, AgentStatus.ONLINE)
    # The history: applied one at a time; resolved (by its agent, if assigned) recently or
    # long before the reopen window.
    for message, fate in scenario.history:
        async with uow(message.occurred_at) as ctx:
            await handlers.receive_message(ctx, message)
        if fate == "keep":
            continue
        when = NOW - timedelta(hours=2) if fate == "resolve" else NOW - timedelta(days=2)
        async with uow(when) as ctx:
            conv = await ctx.store.arrival(uuid.uuid4(), message.conversation_key, when)
            held = conv[1]
            if held is not None and held.state == "assigned" and held.agent_id is not None:
                _, queued = await ctx.store.resolve(held.id, held.agent_id, held.channel, when)
                if queued:  # else the resolve freed the slot
                    await ctx.store.release_slot(held.agent_id, held.channel)
    async with sessions() as session, session.begin():
        await session.execute(text("TRUNCATE router.outbox"))


async def _snapshot(sessions: Any) -> dict[str, Any]:
    queries = {
        "conversations": "SELECT * FROM router.conversations ORDER BY id",
        "messages": """SELECT id, conversation_id, direction, author, text, channel_message_id,
                              sent_at, created_at, attachments, edit_of
                       FROM router.messages ORDER BY seq""",
        "agents": """SELECT id, status, last_assigned_at, inbox_version
                     FROM router.agents ORDER BY id""",
        "slots": "SELECT * FROM router.agent_slots ORDER BY agent_id, channel",
        "outbox": "SELECT topic, key, payload FROM router.outbox ORDER BY id",
    }
    async with sessions() as session:
        return {
            name: [tuple(r) for r in (await session.execute(text(sql))).all()]
            for name, sql in queries.items()
        }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_a_batch_leaves_what_one_message_at_a_time_leaves(two_databases, scenario):
    rules = RulesSource(DEFAULT_RULES_PATH)
    policy = Policy(offer_timeout_s={Channel.EMAIL: 120.0} if scenario.offers else {})
    topics = Topics(namespace="equivalence")
    one_at_a_time, batched = (
        UnitOfWork(sessions.kw["bind"], _Relay(), topics, rules, policy)  # type: ignore[arg-type]
        for sessions in two_databases
    )
    await asyncio.gather(
        _prepare(two_databases[0], scenario, one_at_a_time),
        _prepare(two_databases[1], scenario, batched),
    )
    for message in scenario.batch:
        async with one_at_a_time(NOW) as ctx:
            await handlers.receive_message(ctx, message)
    async with batched(NOW) as ctx:
        await receive_messages(ctx, scenario.batch)
    expected, got = await asyncio.gather(_snapshot(two_databases[0]), _snapshot(two_databases[1]))
    for part in expected:
        assert got[part] == expected[part], part
    # And what both kept is what the messages carried (not, say, NULL on both sides).
    sent = {m.message_id: m for m in [*scenario.batch, *(m for m, _ in scenario.history)]}
    for row in got["messages"]:
        message = sent[row[0]]
        carried = [a.model_dump(exclude_none=True) for a in message.attachments] or None
        assert (row[8], row[9]) == (carried, message.edit_of)
