"""Indexes of columns that most rows leave empty hold only the rows that fill them (migration 0029).

A completion inserts a task row and a candidate row and updates the finished task: every index of those tables
took an entry per row, NULLs included. 已办 (completed_by_id), co-signers (parent_task_id) and a candidate's
user, unit or role are only ever looked up by a value, so their indexes leave NULLs out: five fewer index entries
a completion. The lookups (and PostgreSQL's foreign-key checks when a user, unit, role or task is deleted) must
still be served by them, which the plans below prove with sequential scans switched off.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, text

SPARSE = {  # index: (table, column)
    "ix_human_task_done": ("human_task", "completed_by_id"),
    "ix_human_task_parent_task_id": ("human_task", "parent_task_id"),
    "ix_task_candidate_user_id": ("task_candidate", "user_id"),
    "ix_task_candidate_org_unit_id": ("task_candidate", "org_unit_id"),
    "ix_task_candidate_role_id": ("task_candidate", "role_id"),
    "ix_process_instance_start_root": ("process_instance", "start_root_id"),  # migration 0037
}


def _definition(engine: Engine, name: str) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return str(conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}))
        return str(conn.scalar(text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": name}))


@pytest.mark.parametrize("name", sorted(SPARSE))
def test_the_index_leaves_empty_values_out(db_engine: Engine, name: str) -> None:
    _table, column = SPARSE[name]
    definition = _definition(db_engine, name)
    assert re.search(rf"WHERE \(?{column} IS NOT NULL\)?\s*$", definition), definition


LOOKUPS = {  # the statements that must still use the index (PostgreSQL plans them with the value as a parameter)
    "ix_human_task_done": "SELECT id FROM human_task WHERE completed_by_id = $1 AND state = 'completed' "
                          "ORDER BY completed_at DESC, id DESC LIMIT 50",
    "ix_human_task_parent_task_id": "SELECT id FROM human_task WHERE parent_task_id = $1 AND kind = 'cosign'",
    "ix_task_candidate_user_id": "SELECT task_id FROM task_candidate WHERE user_id = $1",
    "ix_task_candidate_org_unit_id": "SELECT task_id FROM task_candidate WHERE org_unit_id = ANY($1::int[])",
    "ix_task_candidate_role_id": "SELECT task_id FROM task_candidate WHERE role_id = ANY($1::int[])",
    "ix_process_instance_start_root": "SELECT count(*) FROM process_instance WHERE start_root_id = $1 "
                                      "AND status IN ('running', 'suspended', 'incident')",
    "ix_bpmn_message_kept_by": "SELECT count(*) FROM bpmn_message WHERE status = 'buffered' AND expires_at > now() "
                               "AND source_instance_id IS NULL AND created_by_id = $1",  # migration 0038
}
_PARAM_TYPE = {"ix_task_candidate_org_unit_id": "int[]", "ix_task_candidate_role_id": "int[]"}


@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_lookups_by_value_still_use_the_index(db_engine: Engine, name: str) -> None:
    if db_engine.dialect.name != "postgresql":
        pytest.skip("the plans of a generic prepared statement are PostgreSQL's")
    with db_engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")  # the value unknown, as in a prepared plan
        conn.exec_driver_sql(f"PREPARE lookup ({_PARAM_TYPE.get(name, 'int')}) AS {LOOKUPS[name]}")
        value = "'{1,2}'" if name in _PARAM_TYPE else "1"
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN EXECUTE lookup({value})"))
    assert name in plan, plan


def test_deleting_a_referenced_row_is_checked_through_the_index(db_engine: Engine) -> None:
    if db_engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's foreign-key check")
    # The check PostgreSQL runs for ON DELETE of app_user: the same shape, a generic plan on `col = $1`.
    with db_engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql("PREPARE fk (int) AS SELECT 1 FROM ONLY task_candidate x WHERE user_id = $1 "
                             "FOR KEY SHARE OF x")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN EXECUTE fk(1)"))
    assert "ix_task_candidate_user_id" in plan, plan


def test_the_state_is_compressed_with_lz4_where_the_server_has_it(db_engine: Engine) -> None:
    if db_engine.dialect.name != "postgresql":
        pytest.skip("column compression is PostgreSQL's")
    with db_engine.connect() as conn:
        methods = conn.scalar(text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
        if "lz4" not in (methods or []):
            pytest.skip("this PostgreSQL has no lz4: the state keeps pglz")
        method = conn.scalar(text("SELECT attcompression FROM pg_attribute "
                                  "WHERE attrelid = 'process_instance'::regclass AND attname = 'state'"))
    assert method == "l"
