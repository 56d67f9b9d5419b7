"""The one SQLAlchemy metadata every warehouse table is declared on, and the column types they share.

Alembic migrations create the tables; the modules of this package are what code queries (and what
autogenerate compares with the migrations).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = sa.DateTime(timezone=True)


def key_string(length: int) -> sa.types.TypeEngine:
    """Key columns compare bytewise on Postgres (COLLATE "C"): sorting and index lookups are several times
    faster than with a linguistic collation, and key equality does not depend on the server's locale."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


MONEY = sa.Numeric(18, 4)
