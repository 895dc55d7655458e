"""Every query of the router's schema: conversations, messages, idempotency keys and the
outbox here; the agents' in ``agent_store.py``, the queue's and the sweeps' in
``queue_store.py``, the batched intake's in ``intake_store.py``; the rows they read are
``rows.py``'s. Nothing here commits: the unit of work does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.router.agent_store import RELEASE_SLOT_LAST, AgentStatements
from services.router.model import Claim, Conversation, FirstMessage, MessagePage, StoredAnswer
from services.router.outbox import OUTBOX_CHANNEL, OUTBOX_SCHEMA
from services.router.queue_store import ANYTHING_QUEUED, QueueStatements
from services.router.routing.classify import Classification
from services.router.rows import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    attachments_json,
    claim_of,
    conversation_of,
    stored_message_of,
)
from services.router.statements import NOTIFY_WOKEN, WAKE_AGENT
from shared.events import Attachment, Channel, CustomerTier
from shared.outbox import Outgoing, enqueue_params, enqueue_statement

# A relay in a process of its own (SWITCHBOARD_OUTBOX_RELAY=separate) is woken by the
# notification, delivered when the transaction commits.
_ENQUEUE = enqueue_statement(OUTBOX_SCHEMA, notify=OUTBOX_CHANNEL)
_NO_SEQ_ABOVE = 2**63 - 1
_INSERT_MESSAGE = f"""INSERT INTO router.messages ({MESSAGE_COLUMNS})
                      VALUES (:id, :cid, :direction, :author, :text, :cmid, :sent_at,
                              :created_at, CAST(:attachments AS jsonb), :edit_of)"""


class RouterStore(AgentStatements, QueueStatements):
    """The router's statements on ``db``: a connection of shared/rawdb.py (the services), or
    a SQLAlchemy session or connection (tools and tests). The agents' are in
    ``agent_store.py``, the queue's in ``queue_store.py``."""

    # ------------------------------------------------------------ messages

    async def add_message(
        self,
        *,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        direction: str,
        author: str,
        text: str,
        created_at: datetime,
        channel_message_id: str | None = None,
        sent_at: datetime | None = None,
        attachments: Sequence[Attachment] = (),
        edit_of: uuid.UUID | None = None,
    ) -> None:
        await self._exec(
            _INSERT_MESSAGE,
            id=message_id,
            cid=conversation_id,
            direction=direction,
            author=author,
            text=text,
            cmid=channel_message_id,
            sent_at=sent_at,
            created_at=created_at,
            attachments=attachments_json(attachments),
            edit_of=edit_of,
        )

    async def set_delivery(self, message_id: uuid.UUID, status: str, detail: str | None) -> None:
        """Record what the channel said of an agent's reply (a later 'sent' wins over
        'failed': a reply is delivered once it has been delivered)."""
        await self._exec(
            """UPDATE router.messages SET delivery_status = :status, delivery_detail = :detail
               WHERE id = :id AND direction = 'outbound'
                 AND (delivery_status IS NULL OR delivery_status <> 'sent')""",
            id=message_id,
            status=status,
            detail=detail,
        )

    async def latest_messages(
        self, conversation_ids: Sequence[uuid.UUID], *, limit: int, before: int | None = None
    ) -> dict[uuid.UUID, MessagePage]:
        """The latest ``limit`` messages of each conversation (before the message numbered
        ``before``, if given), oldest first; one backward walk of the (conversation_id, seq)
        index per conversation, whatever its length."""
        rows = await self._exec(
            """SELECT m.* FROM unnest(CAST(:ids AS uuid[])) AS c(id) CROSS JOIN LATERAL (
                   SELECT id, conversation_id, direction, author, text, sent_at, created_at,
                          delivery_status, delivery_detail, attachments, edit_of, seq
                   FROM router.messages
                   WHERE conversation_id = c.id AND seq < :before
                   ORDER BY seq DESC LIMIT :limit) AS m""",
            ids=list(conversation_ids),
            before=before if before is not None else _NO_SEQ_ABOVE,
            limit=limit + 1,  # one more tells whether there are earlier ones
        )
        newest_first: dict[uuid.UUID, list[Any]] = {c: [] for c in conversation_ids}
        for r in rows:
            newest_first[r.conversation_id].append(r)
        pages = {}
        for cid, found in newest_first.items():
            kept = found[:limit][::-1]
            earlier = kept[0].seq if len(found) > limit else None
            pages[cid] = MessagePage([stored_message_of(r) for r in kept], earlier)
        return pages

    # ------------------------------------------------------------ conversations

    async def latest_for_key(self, key: str) -> Conversation | None:
        """The most recent conversation of a thread (any state): its open one, else the one
        resolved last (a thread opens a conversation only when none is open)."""
        # Each branch on its own partial index (conversations_open_key, then
        # conversations_recently_resolved): a condition on the key alone matches neither, and
        # scans the whole table.
        row = await self._exec(
            f"""SELECT {CONVERSATION_COLUMNS} FROM (
                    (SELECT {CONVERSATION_COLUMNS}, 0 AS rank FROM router.conversations
                     WHERE conversation_key = :key AND state <> 'resolved')
                    UNION ALL
                    (SELECT {CONVERSATION_COLUMNS}, 1 AS rank FROM router.conversations
                     WHERE conversation_key = :key AND state = 'resolved'
                     ORDER BY resolved_at DESC LIMIT 1)) AS c
                ORDER BY rank LIMIT 1""",
            key=key,
        )
        found = row.first()
        return conversation_of(found) if found else None

    async def conversation_of_message(self, message_id: uuid.UUID) -> Conversation | None:
        """The conversation that holds a message (inbound or a reply)."""
        row = await self._exec(
            f"""SELECT {CONVERSATION_COLUMNS} FROM router.conversations
                WHERE id = (SELECT conversation_id FROM router.messages WHERE id = :id)""",
            id=message_id,
        )
        found = row.first()
        return conversation_of(found) if found else None

    async def arrival(
        self, message_id: uuid.UUID, key: str, resolved_since: datetime
    ) -> tuple[bool, Conversation | None]:
        """For an inbound message, in one round trip: whether it was applied before, and its
        thread's open conversation, else its latest one resolved at or after
        ``resolved_since`` (to reopen), locked; None: a new conversation is due."""
        # Two look-ups, each on its own partial index (conversations_open_key, then
        # conversations_recently_resolved only if nothing is open): one condition with an OR
        # across both states matches neither index and scans the whole table.
        row = await self._exec(
            f"""WITH open AS (
                    SELECT {CONVERSATION_COLUMNS} FROM router.conversations
                    WHERE conversation_key = :key AND state <> 'resolved' FOR UPDATE),
                recent AS (
                    SELECT {CONVERSATION_COLUMNS} FROM router.conversations
                    WHERE conversation_key = :key AND state = 'resolved'
                      AND resolved_at >= :since AND NOT EXISTS (SELECT 1 FROM open)
                    ORDER BY resolved_at DESC LIMIT 1 FOR UPDATE)
                SELECT EXISTS (SELECT 1 FROM router.messages WHERE id = :message) AS seen, c.*
                FROM (SELECT 1) AS one
                LEFT JOIN (SELECT * FROM open UNION ALL SELECT * FROM recent) AS c ON true""",
            message=message_id,
            key=key,
            since=resolved_since,
        )
        found = row.one()
        return bool(found.seen), conversation_of(found) if found.id is not None else None

    async def conversation(
        self, cid: uuid.UUID, *, for_update: bool = False
    ) -> Conversation | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._exec(
            f"SELECT {CONVERSATION_COLUMNS} FROM router.conversations WHERE id = :id{lock}",
            id=cid,
        )
        found = row.first()
        return conversation_of(found) if found else None

    async def open_conversations_of(
        self, agent_id: str, *, for_update: bool = False
    ) -> list[Conversation]:
        lock = " FOR UPDATE" if for_update else ""
        rows = await self._exec(
            f"""SELECT {CONVERSATION_COLUMNS} FROM router.conversations
                WHERE agent_id = :agent AND state = 'assigned' ORDER BY assigned_at{lock}""",
            agent=agent_id,
        )
        return [conversation_of(r) for r in rows]

    async def create_conversation(
        self,
        *,
        cid: uuid.UUID,
        key: str,
        channel: Channel,
        customer_id: str,
        tier: CustomerTier,
        category: str | None,
        classification: Classification,
        opened_at: datetime,
        first: FirstMessage,
        group: str | None = None,
    ) -> Conversation:
        """A new conversation with its first (inbound) message, queued until it is assigned
        (in the same transaction); one round trip."""
        row = await self._exec(
            f"""WITH conv AS (
                    INSERT INTO router.conversations
                    (id, conversation_key, channel, customer_id, customer_tier, state, priority,
                     priority_rank, skill, language, rules_fired, min_level, team, category,
                     opened_at, queued_at, group_name)
                    VALUES (:id, :key, :channel, :customer, :tier, 'queued', :priority, :rank,
                            :skill, :language, :rules, :min_level, :team, :category,
                            :opened_at, :opened_at, :group_name)
                    RETURNING {CONVERSATION_COLUMNS}),
                first AS (
                    INSERT INTO router.messages ({MESSAGE_COLUMNS})
                    SELECT :message_id, id, 'inbound', :customer, :text, :cmid, :sent_at,
                           :opened_at, CAST(:attachments AS jsonb), CAST(:edit_of AS uuid)
                    FROM conv)
                SELECT * FROM conv""",
            id=cid,
            key=key,
            channel=channel.value,
            customer=customer_id,
            tier=tier.value,
            category=category,
            opened_at=opened_at,
            message_id=first.message_id,
            text=first.text,
            cmid=first.channel_message_id,
            sent_at=first.sent_at,
            attachments=attachments_json(first.attachments),
            edit_of=first.edit_of,
            group_name=group,
            **self._classification(classification),
        )
        return conversation_of(row.one())

    @staticmethod
    def _classification(c: Classification) -> dict[str, Any]:
        return {
            "priority": c.priority.value,
            "rank": c.priority.rank,
            "skill": c.skill.value,
            "language": c.language,
            "rules": list(c.rules_fired),
            "min_level": c.min_level,
            "team": c.team,
        }

    async def rename_group(self, cid: uuid.UUID, group: str) -> None:
        """The group chat's title as its latest message names it (a Telegram group renamed)."""
        await self._exec(
            "UPDATE router.conversations SET group_name = :group_name WHERE id = :id",
            id=cid,
            group_name=group,
        )

    async def reclassify(self, cid: uuid.UUID, classification: Classification) -> None:
        await self._exec(
            """UPDATE router.conversations SET priority = :priority, priority_rank = :rank,
                      skill = :skill, language = :language, rules_fired = :rules,
                      min_level = :min_level, team = :team
               WHERE id = :id""",
            id=cid,
            **self._classification(classification),
        )

    async def mark_assigned(
        self, cid: uuid.UUID, agent_id: str, now: datetime, *, accepted: bool
    ) -> Claim:
        """Give a queued conversation to an agent (as an offer to accept unless ``accepted``)
        and wake the agent (as ``wake_agent``), in one round trip; not ``done`` if it is no
        longer queued."""
        result = await self._exec(
            f"""WITH given AS (
                    UPDATE router.conversations
                    SET state = 'assigned', agent_id = :agent, assigned_at = :now,
                        offered_at = :now,
                        accepted_at = CASE WHEN :accepted THEN CAST(:now AS timestamptz) END
                    WHERE id = :id AND state = 'queued' AND agent_id IS NULL
                    RETURNING id),
                woken AS (
                    {WAKE_AGENT} AND EXISTS (SELECT 1 FROM given) RETURNING id, team)
                SELECT team, {NOTIFY_WOKEN} FROM woken""",
            id=cid,
            agent=agent_id,
            now=now,
            accepted=accepted,
        )
        return claim_of(result.first())

    async def mark_accepted(self, cid: uuid.UUID, now: datetime) -> Claim:
        result = await self._exec(
            """UPDATE router.conversations SET accepted_at = :now
               WHERE id = :id AND state = 'assigned' AND accepted_at IS NULL
               RETURNING (SELECT team FROM router.agents WHERE id = agent_id)""",
            id=cid,
            now=now,
        )
        return claim_of(result.first())

    async def requeue(
        self, cid: uuid.UUID, *, exclude: str | None, now: datetime, keep_age: bool = True
    ) -> None:
        """Take a conversation from its agent and put it back in the queue; by default at its
        original age, so being bounced costs the customer no place in line."""
        await self._exec(
            """UPDATE router.conversations
               SET state = 'queued', last_agent_id = agent_id, agent_id = NULL,
                   offered_at = NULL, accepted_at = NULL,
                   queued_at = CASE WHEN :keep_age THEN queued_at ELSE :now END,
                   excluded_agents = CASE WHEN CAST(:exclude AS text) IS NULL THEN excluded_agents
                                          ELSE array_append(excluded_agents, :exclude) END
               WHERE id = :id""",
            id=cid,
            exclude=exclude,
            now=now,
            keep_age=keep_age,
        )

    async def resolve(
        self, cid: uuid.UUID, agent_id: str, channel: Channel, now: datetime
    ) -> tuple[Conversation, bool]:
        """Resolve the conversation and say whether anything is queued, in one statement;
        with nothing queued it also frees the agent's slot on ``channel``, without the agent's
        row, so that must be the transaction's last lock (``RELEASE_SLOT_LAST``); with a
        queue the caller frees it with ``release_slot`` and pulls. The conversation as
        resolved."""
        row = (
            await self._exec(
                f"""WITH queued AS (SELECT {ANYTHING_QUEUED} AS waiting),
                         released AS ({RELEASE_SLOT_LAST}
                                      AND NOT (SELECT waiting FROM queued)),
                         resolved AS (
                             UPDATE router.conversations
                             SET state = 'resolved', resolved_at = :now,
                                 last_agent_id = agent_id, accepted_at = coalesce(accepted_at, :now)
                             WHERE id = :id RETURNING {CONVERSATION_COLUMNS})
                    SELECT resolved.*, (SELECT waiting FROM queued) AS waiting FROM resolved""",
                id=cid,
                agent=agent_id,
                channel=channel.value,
                now=now,
            )
        ).one()
        return conversation_of(row), bool(row.waiting)

    async def reopen(self, cid: uuid.UUID, now: datetime) -> None:
        """A resolved conversation the customer wrote to again: back in the queue, fresh."""
        await self._exec(
            """UPDATE router.conversations
               SET state = 'queued', agent_id = NULL, resolved_at = NULL, queued_at = :now,
                   offered_at = NULL, accepted_at = NULL, escalated_at = NULL,
                   excluded_agents = '{}', reopened = reopened + 1,
                   overflow_stage = 0, fallback_languages = '{}', overflow_team = NULL,
                   stuck_since = NULL
               WHERE id = :id""",
            id=cid,
            now=now,
        )

    async def mark_escalated(self, cid: uuid.UUID, now: datetime) -> None:
        await self._exec(
            "UPDATE router.conversations SET escalated_at = :now WHERE id = :id", id=cid, now=now
        )

    async def add_reply(
        self,
        *,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        author: str,
        text: str,
        created_at: datetime,
    ) -> None:
        """Store an agent's reply and, if it is the conversation's first, its first response
        time, in one statement."""
        await self._exec(
            f"""WITH added AS ({_INSERT_MESSAGE})
                UPDATE router.conversations SET first_response_at = :created_at
                WHERE id = :cid AND first_response_at IS NULL""",
            id=message_id,
            cid=conversation_id,
            direction="outbound",
            author=author,
            text=text,
            cmid=None,
            sent_at=None,
            created_at=created_at,
            attachments=attachments_json(()),
            edit_of=None,
        )

    # ------------------------------------------------------------ idempotency keys

    async def claim_idempotency_key(
        self, principal: str, key: str, fingerprint: str, *, now: datetime, expired: datetime
    ) -> StoredAnswer | None:
        """Take ``key`` for this transaction's action (None), or the answer stored for it by
        an earlier request (a concurrent one holding it is waited for). A few keys created
        before ``expired`` are deleted on the way."""
        for _ in range(2):
            claimed = await self._exec(
                """WITH expired AS (
                       DELETE FROM router.idempotency_keys WHERE (principal, key) IN (
                           SELECT principal, key FROM router.idempotency_keys
                           WHERE created_at < :expired
                             AND NOT (principal = :principal AND key = :key)
                           ORDER BY created_at LIMIT 20 FOR UPDATE SKIP LOCKED)),
                   claimed AS (
                       INSERT INTO router.idempotency_keys (principal, key, fingerprint, created_at)
                       VALUES (:principal, :key, :fingerprint, :now)
                       ON CONFLICT DO NOTHING RETURNING 1)
                   SELECT EXISTS (SELECT 1 FROM claimed)""",
                principal=principal,
                key=key,
                fingerprint=fingerprint,
                now=now,
                expired=expired,
            )
            if claimed.scalar_one():
                return None
            row = await self._exec(
                """SELECT fingerprint, status, response FROM router.idempotency_keys
                   WHERE principal = :principal AND key = :key""",
                principal=principal,
                key=key,
            )
            found = row.first()
            if found is not None:
                return StoredAnswer(found.fingerprint, found.status, found.response)
            # Deleted as expired by another request in between: claim it afresh.
        raise RuntimeError(f"idempotency key {key!r} could not be claimed")

    async def store_answer(self, principal: str, key: str, status: int, body: Any) -> None:
        """The answer of the action that claimed ``key``, for its retries."""
        await self._exec(
            """UPDATE router.idempotency_keys
               SET status = :status, response = CAST(:response AS jsonb)
               WHERE principal = :principal AND key = :key""",
            principal=principal,
            key=key,
            status=status,
            response=json.dumps(body),
        )

    # ------------------------------------------------------------ outbox

    async def enqueue(self, events: list[Outgoing]) -> None:
        """Write (topic, key, event, trace) rows for the outbox relay, in one statement, each
        with its trace (none given: the context they were made in); the relay publishes them
        in that trace."""
        await self._exec(_ENQUEUE, **enqueue_params(events))
