"""OTA: firmware packages, upgrade jobs, and devices' reported firmware versions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create firmware and ota_jobs; add devices.firmware_versions."""
    op.create_table(
        "firmware",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("module", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_firmware_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware")),
        sa.UniqueConstraint("product_id", "module", "version", name=op.f("uq_firmware_product_id")),
    )
    with op.batch_alter_table("firmware", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_enterprise_id"), ["enterprise_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_firmware_product_id"), ["product_id"], unique=False)
    op.create_table(
        "ota_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("firmware_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_ota_jobs_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["firmware_id"],
            ["firmware.id"],
            name=op.f("fk_ota_jobs_firmware_id_firmware"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ota_jobs")),
    )
    with op.batch_alter_table("ota_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ota_jobs_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ota_jobs_firmware_id"), ["firmware_id"], unique=False)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("firmware_versions", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade made."""
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("firmware_versions")
    with op.batch_alter_table("ota_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ota_jobs_firmware_id"))
        batch_op.drop_index(batch_op.f("ix_ota_jobs_device_id"))
    op.drop_table("ota_jobs")
    with op.batch_alter_table("firmware", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_product_id"))
        batch_op.drop_index(batch_op.f("ix_firmware_enterprise_id"))
    op.drop_table("firmware")
