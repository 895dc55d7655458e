"""What changed since a report last looked: the transaction that last changed each
conversation's reported facts, and the openings conversations left.

The metrics service keeps the facts it reports on in memory, one column per fact, in chunks by
hour of the conversations' opening (services/metrics/report_cache.py). To know which hours to read
again it asks for the conversations whose ``changed_xid`` is at least the oldest transaction
its copy could have missed. A trigger sets ``changed_xid`` whenever a reported column is
written (and when the conversation's CSAT changes), so no write path can forget it. A
conversation whose opening changes, or that is deleted, leaves a row in ``report_moves`` with
the opening it had. The waits of a conversation are only ever rewritten together with its row,
so its ``changed_xid`` covers them too.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The columns a report reads: writing any of them marks the conversation changed.
REPORTED = (
    "opened_at, channel, customer_tier, priority, skill, language, agent_id, team, "
    "assignments, customer_messages, agent_replies, resolution_s, resolution_bs, "
    "queue_wait_s, queue_wait_bs"
)

UPGRADE = [
    "ALTER TABLE metrics.conversations ADD COLUMN changed_xid xid8 NOT NULL DEFAULT '0'",
    "CREATE INDEX conversations_changed ON metrics.conversations (changed_xid)",
    """CREATE TABLE metrics.report_moves (
        opened_at timestamptz NOT NULL,
        changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()
    )""",
    "CREATE INDEX report_moves_changed ON metrics.report_moves (changed_xid)",
    """CREATE FUNCTION metrics.conversation_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF OLD.opened_at IS NOT NULL THEN
                INSERT INTO metrics.report_moves (opened_at) VALUES (OLD.opened_at);
            END IF;
            RETURN OLD;
        END IF;
        IF TG_OP = 'UPDATE' AND OLD.opened_at IS NOT NULL THEN
            IF NEW.opened_at IS DISTINCT FROM OLD.opened_at THEN
                INSERT INTO metrics.report_moves (opened_at) VALUES (OLD.opened_at);
            END IF;
        END IF;
        NEW.changed_xid := pg_current_xact_id();
        RETURN NEW;
    END $$""",
    f"""CREATE TRIGGER conversation_changed
    BEFORE INSERT OR DELETE OR UPDATE OF {REPORTED} ON metrics.conversations
    FOR EACH ROW EXECUTE FUNCTION metrics.conversation_changed()""",
    """CREATE FUNCTION metrics.csat_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        changed uuid;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            changed := OLD.conversation_id;
        ELSE
            changed := NEW.conversation_id;
        END IF;
        UPDATE metrics.conversations SET changed_xid = pg_current_xact_id()
        WHERE conversation_id = changed;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER csat_changed AFTER INSERT OR UPDATE OR DELETE ON metrics.csat
    FOR EACH ROW EXECUTE FUNCTION metrics.csat_changed()""",
]

DOWNGRADE = [
    "DROP TRIGGER csat_changed ON metrics.csat",
    "DROP FUNCTION metrics.csat_changed()",
    "DROP TRIGGER conversation_changed ON metrics.conversations",
    "DROP FUNCTION metrics.conversation_changed()",
    "DROP TABLE metrics.report_moves",
    "ALTER TABLE metrics.conversations DROP COLUMN changed_xid",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
