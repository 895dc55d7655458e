"""router.claim_slot(): an agent's slot claimed in one round trip.

The claim used to be four statements from the router (SAVEPOINT, the agent's UPDATE, the
slot's UPDATE, RELEASE or ROLLBACK TO SAVEPOINT); the profile of a router applying a backlog
showed the socket writes of such round trips as its largest cost. The function does the same
thing in the server: the agent row first, then the slot row, each re-checked after waiting for
a concurrent claim, inside a block whose exception handler is the savepoint, so a failed claim
keeps no lock (trying candidates in rank order still cannot deadlock).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CLAIM_SLOT = """
CREATE FUNCTION router.claim_slot(p_agent text, p_channel text, p_now timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE router.agents SET total_load = total_load + 1, last_assigned_at = p_now
     WHERE id = p_agent AND status = 'online'
       AND (max_load IS NULL OR total_load < max_load);
    IF NOT FOUND THEN
        RETURN false;  -- nothing updated, so nothing locked
    END IF;
    UPDATE router.agent_slots SET load = load + 1
     WHERE agent_id = p_agent AND channel = p_channel AND load < capacity;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'SB001';  -- undoes the agent's update, and its lock
    END IF;
    RETURN true;
EXCEPTION WHEN SQLSTATE 'SB001' THEN
    RETURN false;
END
$$
"""


def upgrade() -> None:
    op.execute(CLAIM_SLOT)


def downgrade() -> None:
    op.execute("DROP FUNCTION router.claim_slot(text, text, timestamptz)")
