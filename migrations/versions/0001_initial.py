"""Router and metrics schemas.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROUTER = """
CREATE SCHEMA router;

CREATE TABLE router.agents (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    skills           jsonb NOT NULL DEFAULT '{}',
    languages        text[] NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'offline'
                     CHECK (status IN ('online', 'away', 'offline')),
    last_assigned_at timestamptz,
    -- bumped whenever something new reaches the agent; the long-poll cursor
    inbox_version    bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per agent and channel: capacity, and the open conversations held (load).
-- Slots are claimed with a conditional UPDATE ... WHERE load < capacity (see docs/routing.md).
CREATE TABLE router.agent_slots (
    agent_id text NOT NULL REFERENCES router.agents (id) ON DELETE CASCADE,
    channel  text NOT NULL,
    capacity integer NOT NULL CHECK (capacity >= 0),
    load     integer NOT NULL DEFAULT 0 CHECK (load >= 0),
    PRIMARY KEY (agent_id, channel)
);

CREATE TABLE router.conversations (
    id               uuid PRIMARY KEY,
    conversation_key text NOT NULL,
    channel          text NOT NULL,
    customer_id      text NOT NULL,
    customer_tier    text NOT NULL,
    state            text NOT NULL CHECK (state IN ('queued', 'assigned', 'resolved')),
    priority         text NOT NULL,
    priority_rank    smallint NOT NULL,
    skill            text NOT NULL,
    language         text NOT NULL,
    rules_fired      text[] NOT NULL DEFAULT '{}',
    agent_id         text REFERENCES router.agents (id),
    opened_at        timestamptz NOT NULL,
    queued_at        timestamptz,
    assigned_at      timestamptz,
    first_response_at timestamptz,
    resolved_at      timestamptz,
    CHECK ((state = 'assigned') = (agent_id IS NOT NULL AND resolved_at IS NULL))
);
-- At most one open conversation per channel thread.
CREATE UNIQUE INDEX conversations_open_key
    ON router.conversations (conversation_key) WHERE state <> 'resolved';
CREATE INDEX conversations_queue
    ON router.conversations (priority_rank, queued_at) WHERE state = 'queued';
CREATE INDEX conversations_agent
    ON router.conversations (agent_id) WHERE state = 'assigned';

CREATE TABLE router.messages (
    id                 uuid PRIMARY KEY,
    seq                bigserial UNIQUE,
    conversation_id    uuid NOT NULL REFERENCES router.conversations (id),
    direction          text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    author             text NOT NULL,
    text               text NOT NULL,
    channel_message_id text,
    sent_at            timestamptz,
    created_at         timestamptz NOT NULL
);
CREATE INDEX messages_conversation ON router.messages (conversation_id, seq);

-- Transactional outbox: events written in the same transaction as the state they describe,
-- published by the relay, then deleted.
CREATE TABLE router.outbox (
    id      bigserial PRIMARY KEY,
    topic   text NOT NULL,
    key     text NOT NULL,
    payload text NOT NULL
);
"""

METRICS = """
CREATE SCHEMA metrics;

CREATE TABLE metrics.processed_events (
    event_id     uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per conversation; every time is the earliest seen for it, so the order in which
-- events arrive (or a replay) does not change the result.
CREATE TABLE metrics.conversations (
    conversation_id   uuid PRIMARY KEY,
    channel           text NOT NULL,
    customer_tier     text,
    priority          text,
    skill             text,
    language          text,
    classified_at     timestamptz,
    agent_id          text,
    opened_at         timestamptz,
    first_message_at  timestamptz,
    first_assigned_at timestamptz,
    last_assigned_at  timestamptz,
    first_response_at timestamptz,
    resolved_at       timestamptz,
    assignments       integer NOT NULL DEFAULT 0,
    customer_messages integer NOT NULL DEFAULT 0,
    agent_replies     integer NOT NULL DEFAULT 0
);
CREATE INDEX conversations_opened ON metrics.conversations (opened_at);
"""


def _statements(script: str) -> list[str]:
    # asyncpg prepares each statement, so a script is sent one statement at a time.
    return [s.strip() for s in script.split(";\n") if s.strip()]


def upgrade() -> None:
    for statement in _statements(ROUTER) + _statements(METRICS):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP SCHEMA metrics CASCADE")
    op.execute("DROP SCHEMA router CASCADE")
