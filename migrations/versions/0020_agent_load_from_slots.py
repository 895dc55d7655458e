"""An agent's total load is the sum of its slots' loads, no longer a column of its own.

``router.agents.total_load`` was kept equal to the sum of ``router.agent_slots.load`` by every
writer, so freeing a slot updated the agent's row too and waited for whoever held it: at 250
msg/s a resolve's decrement waited 10 ms on average for the intake's lock on the agents it may
choose, and the intake's lock 14 ms for the resolves (pg_stat_statements, docs/throughput.md).
Freeing load only makes room and needs no agent lock; taking load does, and the takers (the
intake, ``claim_slot``) hold the agent's row while they sum its slots against ``max_load``.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_CLAIM_SLOT = """
CREATE OR REPLACE FUNCTION router.claim_slot(p_agent text, p_channel text, p_now timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE router.agents a SET {set_load}last_assigned_at = p_now
     WHERE a.id = p_agent AND a.status = 'online'
       AND (a.max_load IS NULL OR {load} < a.max_load);
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
SLOTS_LOAD = "(SELECT coalesce(sum(s.load), 0) FROM router.agent_slots s WHERE s.agent_id = a.id)"


def upgrade() -> None:
    op.execute(_CLAIM_SLOT.format(set_load="", load=SLOTS_LOAD))
    op.execute("ALTER TABLE router.agents DROP COLUMN total_load")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE router.agents ADD COLUMN total_load integer NOT NULL DEFAULT 0 "
        "CHECK (total_load >= 0)"
    )
    op.execute(f"UPDATE router.agents a SET total_load = {SLOTS_LOAD}")
    op.execute(_CLAIM_SLOT.format(set_load="total_load = total_load + 1, ", load="a.total_load"))
