"""The ledger's tables and its forward-only migrations.

Times are stored as epoch seconds (float) so SQLite and PostgreSQL compare them the same
way; the `Ledger` converts them to timezone-aware datetimes at its boundary.

Migrations are an ordered list of `(version, apply)` pairs. `schema_version` holds the
versions applied; a new version is appended, never edited, and runs once on first use.

The tables below are the current shape. Version 1 creates its tables in that shape (so a
fresh ledger is born with later columns too); a later version adds only what an older
ledger lacks (columns found missing by inspection, tables if absent) and backfills them
from the older rows (see `_v2`): both roads end at the same schema, which
tests/clients/test_ledger_migration.py checks on both databases.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
    update,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

# One row per issue episode: first detection until seen cleared.
issue_episodes = Table(
    "issue_episodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(512), nullable=False),
    Column("host", String(255), nullable=False),
    Column("check_name", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", Float),
    Column("reported_at", Float),
    Column("closed_at", Float),
    Column("close_reason", String(64)),
    # at most one open episode per fingerprint
    Index(
        "uq_open_episode",
        "fingerprint",
        unique=True,
        sqlite_where=text("closed_at IS NULL"),
        postgresql_where=text("closed_at IS NULL"),
    ),
)

actions = Table(
    "actions",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("cycle_id", String(64), nullable=False),
    Column("flow_run_id", String(64)),
    Column("host", String(255), nullable=False),
    Column("catalog_key", String(128), nullable=False),
    Column("risk", String(16), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("fingerprints", Text, nullable=False),  # JSON list
    Column("proposal", Text, nullable=False),  # JSON of the ProposedAction
    Column("status", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    # v2: facts the audit trail used to be read back for
    Column("verdict", String(32)),  # the verification's verdict, once it ran
    Column("verdict_at", Float),
    Column("gave_up_at", Float),  # the reconciler stopped continuing it (it needs a human)
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("action_id", String(64), primary_key=True),
    # One channel's ids, or several channels' (`channels.channel_set`: "discord=…;slack=…")
    Column("channel_id", String(255)),
    Column("message_id", String(255)),
    Column("flow_run_id", String(64)),
    Column("risk", String(16), nullable=False),
    Column("deadline", Float, nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("reminder_sent_at", Float),
    Column("pause_key", String(128)),
)

votes = Table(
    "votes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(64), nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("username", String(128), nullable=False),
    Column("emoji", String(16), nullable=False),
    Column("first_seen_at", Float, nullable=False),
    Column("removed_at", Float),
    UniqueConstraint("action_id", "user_id", "emoji", name="uq_vote"),
)

# The unique decision per action: intended first, applied once Prefect accepted it.
decisions = Table(
    "decisions",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("decider", String(255), nullable=False),
    Column("via", String(32), nullable=False),
    Column("comment", Text),
    Column("intended_at", Float, nullable=False),
    Column("applied_at", Float),
    Column("announced_at", Float),  # v2: its Discord message was edited to show it
)

# At most one job per action: intent written before the launch request, id after.
jobs = Table(
    "jobs",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("runner", String(16), nullable=False),
    Column("template", String(255), nullable=False),
    Column("marker", String(128), nullable=False),
    Column("intent_at", Float, nullable=False),
    Column("job_id", String(64)),
    Column("job_url", Text),
    Column("launched_at", Float),
    Column("state", String(16)),
    Column("finished_at", Float),
    Column("output_tail", Text),
)

# One row per (action, fingerprint) outcome: the attempt history behind cooldowns.
attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(64), nullable=False),
    Column("fingerprint", String(512), nullable=False),
    Column("host", String(255), nullable=False),
    Column("catalog_key", String(128), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("explanation", Text),
    Column("counts", Boolean, nullable=False),
    Column("recorded_at", Float, nullable=False),
    UniqueConstraint("action_id", "fingerprint", name="uq_attempt"),
)

cycles = Table(
    "cycles",
    metadata,
    Column("cycle_id", String(64), primary_key=True),
    Column("flow_run_id", String(64)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("actions_dispatched", Integer, nullable=False, default=0),
    Column("summary_posted_at", Float),
    Column("report", Text),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("action_id", String(64)),
    Column("cycle_id", String(64)),
    Column("detail", Text, nullable=False),  # JSON
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("component", String(64), primary_key=True),
    Column("at", Float, nullable=False),
    Column("detail", Text),
)

# Firing/clear state of the remediator's own alerts (dead-man's switch), so each
# transition is posted exactly once.
alert_states = Table(
    "alert_states",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("firing", Boolean, nullable=False),
    Column("changed_at", Float, nullable=False),
    Column("detail", Text),
)

# v2: one row per dead run of an action that a fresh run continued (at most once each).
continuations = Table(
    "continuations",
    metadata,
    Column("action_id", String(64), nullable=False),
    Column("dead_run_id", String(64), nullable=False),
    Column("continued_at", Float, nullable=False),
    PrimaryKeyConstraint("action_id", "dead_run_id", name="pk_continuation"),
)

V1_TABLES = [
    issue_episodes,
    actions,
    approval_requests,
    votes,
    decisions,
    jobs,
    attempts,
    cycles,
    audit,
    heartbeats,
    alert_states,
]


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=V1_TABLES)


# --- v2: facts in columns, read once from the audit events that carried them ----------------
V2_COLUMNS = {
    actions: ("verdict", "verdict_at", "gave_up_at"),
    decisions: ("announced_at",),
}
CONTINUED = "reconcile_continued"
GAVE_UP = "reconcile_gave_up"
ANNOUNCED = "decision_announced"
FINISHED = "finished"
EVENT_FACTS = (CONTINUED, GAVE_UP, ANNOUNCED, FINISHED)


def _add_missing_columns(conn: Connection, table: Table, names: tuple[str, ...]) -> None:
    """`ALTER TABLE … ADD COLUMN` for each column the table lacks (nullable, no default:
    the same statement on SQLite and PostgreSQL)."""
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    for name in names:
        if name in have:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))


def record_event_fact(
    conn: Connection, *, audit_id: int, at: float, event: str, action_id: str, detail: str
) -> None:
    """Write the fact a v1 audit event carried into its v2 home (rules in `_v2`)."""
    if event not in EVENT_FACTS:
        return
    if (
        conn.execute(select(actions.c.action_id).where(actions.c.action_id == action_id)).first()
        is None
    ):
        return
    data = json.loads(detail or "{}")
    if event == CONTINUED:
        dead_run_id = str(data.get("dead_run_id") or f"audit:{audit_id}")
        seen = conn.execute(
            select(continuations.c.action_id).where(
                continuations.c.action_id == action_id,
                continuations.c.dead_run_id == dead_run_id,
            )
        ).first()
        if seen is None:
            conn.execute(
                insert(continuations).values(
                    action_id=action_id, dead_run_id=dead_run_id, continued_at=at
                )
            )
    elif event == GAVE_UP:
        conn.execute(
            update(actions)
            .where(actions.c.action_id == action_id, actions.c.gave_up_at.is_(None))
            .values(gave_up_at=at)
        )
    elif event == ANNOUNCED:
        conn.execute(
            update(decisions)
            .where(decisions.c.action_id == action_id, decisions.c.announced_at.is_(None))
            .values(announced_at=at)
        )
    elif data.get("verdict"):
        conn.execute(
            update(actions)
            .where(actions.c.action_id == action_id)
            .values(verdict=str(data["verdict"]), verdict_at=at)
        )


def _v2(conn: Connection) -> None:
    """Continuations, give-ups, announcements and verdicts become columns (and the
    `continuations` table), backfilled from the audit events that recorded them:

    - `reconcile_continued` → a `continuations` row per (action, `dead_run_id`); an event
      without a `dead_run_id` still counts, as `audit:<id>` (the first one per run wins);
    - `reconcile_gave_up` → `actions.gave_up_at` (the first event);
    - `decision_announced` → `decisions.announced_at` (the first event);
    - `finished` with a verdict → `actions.verdict`/`verdict_at` (the last event, as the
      cycle summary read it).

    Only rows of actions still in the ledger are filled (pruned actions leave none)."""
    for table, names in V2_COLUMNS.items():
        _add_missing_columns(conn, table, names)
    metadata.create_all(conn, tables=[continuations])
    events = conn.execute(
        select(audit)
        .where(audit.c.event.in_(EVENT_FACTS), audit.c.action_id.is_not(None))
        .order_by(audit.c.id)
    )
    for row in list(events):
        record_event_fact(
            conn,
            audit_id=row.id,
            at=row.at,
            event=row.event,
            action_id=row.action_id,
            detail=row.detail,
        )


def _v3(conn: Connection) -> None:
    """A request's `channel_id`/`message_id` grow from 32 to 255 characters, to hold the
    ids of a request asked in several chat channels at once. SQLite does not enforce a
    VARCHAR's length, so only PostgreSQL changes."""
    if conn.dialect.name != "postgresql":
        return
    for name in ("channel_id", "message_id"):
        conn.execute(text(f"ALTER TABLE approval_requests ALTER COLUMN {name} TYPE VARCHAR(255)"))


Migration = tuple[int, Callable[[Connection], None]]

MIGRATIONS: list[Migration] = [(1, _v1), (2, _v2), (3, _v3)]
