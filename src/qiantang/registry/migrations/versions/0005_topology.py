"""Gateway topology: which sub-devices sit behind which gateway.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the topology table."""
    op.create_table(
        "topology",
        sa.Column("sub_device_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["devices.id"],
            name=op.f("fk_topology_gateway_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sub_device_id"],
            ["devices.id"],
            name=op.f("fk_topology_sub_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sub_device_id", name=op.f("pk_topology")),
    )
    with op.batch_alter_table("topology", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_topology_gateway_id"), ["gateway_id"], unique=False)


def downgrade() -> None:
    """Drop the topology table."""
    with op.batch_alter_table("topology", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topology_gateway_id"))
    op.drop_table("topology")
