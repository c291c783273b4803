"""deploy/postgres/init-databases.sh, run with psql against the test PostgreSQL as the
postgres image runs it (POSTGRES_USER, POSTGRES_DB): one database per service, owned by
POSTGRES_USER, again without harm, and a service creates its tables there."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
import sqlalchemy as sa

from shared.store import make_engine, metadata
from tests.conftest import POSTGRES_AVAILABLE, POSTGRES_URL
from tests.deploy.conftest import DEPLOY, database_url, drop_databases, init_databases

pytestmark = pytest.mark.skipif(
    not (POSTGRES_AVAILABLE and shutil.which("psql")),
    reason=f"PostgreSQL (and psql) not reachable at {POSTGRES_URL}",
)


def test_one_database_per_service_owned_by_postgres_user() -> None:
    names = [f"fph_init_{uuid.uuid4().hex[:8]}_{s}" for s in ("intake", "review")]
    try:
        init_databases(names)
        init_databases(names)  # again: existing databases are left as they are
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT datname, pg_get_userbyid(datdba) FROM pg_database"
                    " WHERE datname = ANY(:names)"
                ),
                {"names": names},
            ).all()
            user = conn.execute(sa.text("SELECT current_user")).scalar_one()
        engine.dispose()
        assert sorted(rows) == sorted((n, user) for n in names)
        service = make_engine(database_url(names[0]))
        metadata.create_all(service)
        assert "fph_checkpoint" in sa.inspect(service).get_table_names()
        service.dispose()
    finally:
        drop_databases(names)


def test_invalid_names_are_refused() -> None:
    done = subprocess.run(
        ["bash", str(DEPLOY / "postgres" / "init-databases.sh")],
        env={"FPH_DATABASES": 'bad"name', "POSTGRES_USER": "postgres", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "invalid database name" in done.stderr
