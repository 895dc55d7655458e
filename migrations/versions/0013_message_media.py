"""What a customer's message carries besides its text, for an agent frontend: the provider's
media references, the message an edit replaces, and a group conversation's group.

``attachments`` is a JSON array of what ingest's ``Attachment`` holds (kind, ref, name,
content_type, size; absent fields left out), NULL when the message has none, so messages
without media cost nothing. ``edit_of`` is not a foreign key: an edit may arrive for a message
the router never stored (sent before it ran, or deleted with old history). The group is the
conversation's (a group chat is a conversation of its own, keyed on the group), so it is kept
once, on the conversation, as the latest message named it.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE router.messages ADD COLUMN attachments jsonb, ADD COLUMN edit_of uuid")
    op.execute("ALTER TABLE router.conversations ADD COLUMN group_name text")


def downgrade() -> None:
    op.execute("ALTER TABLE router.conversations DROP COLUMN group_name")
    op.execute("ALTER TABLE router.messages DROP COLUMN attachments, DROP COLUMN edit_of")
