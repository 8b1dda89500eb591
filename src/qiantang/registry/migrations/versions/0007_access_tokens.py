"""ThingsBoard-style access tokens (stored as SHA-256) and gateway auto-provisioning.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add devices.access_token_hash (unique) and devices.provision_product_id."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_token_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("provision_product_id", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_devices_access_token_hash"), ["access_token_hash"]
        )


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_devices_access_token_hash"), type_="unique")
        batch_op.drop_column("provision_product_id")
        batch_op.drop_column("access_token_hash")
