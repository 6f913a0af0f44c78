"""The prediction log: a sample of prediction requests with their inputs and outputs, kept for audit.

Read newest first per model (the ``(model, at)`` index) and pruned by age (the ``at`` index).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("key_id", sa.String(8), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_prediction_log_at", "prediction_log", ["at"])
    op.create_index("ix_prediction_log_model_at", "prediction_log", ["model", "at"])


def downgrade() -> None:
    op.drop_table("prediction_log")
