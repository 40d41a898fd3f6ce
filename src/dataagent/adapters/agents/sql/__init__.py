"""SQL tools shared by the agent engines: analysis, approval policy, a bounded read-only database, demo data.

Import everything from here: `from dataagent.adapters.agents.sql import SqlDatabase, analyze_sql, ...`.
"""

from __future__ import annotations

from dataagent.adapters.agents.sql.analysis import (
    SIDE_EFFECT_FUNCTIONS,
    SqlAnalysis,
    analyze_sql,
    needs_approval,
)
from dataagent.adapters.agents.sql.database import SqlDatabase, sqlite_url
from dataagent.adapters.agents.sql.demo import DEMO_ROW_COUNTS, build_demo_database
from dataagent.adapters.agents.sql.enforce import PolicyRefusal, Schema, enforce
from dataagent.adapters.agents.sql.errors import (
    SqlExecutionError,
    SqlRefusedError,
    SqlTimeoutError,
    SqlToolError,
    SqlUnknownTableError,
)
from dataagent.adapters.agents.sql.estimate import Estimate
from dataagent.adapters.agents.sql.policy import (
    DataPolicy,
    DataPolicyError,
    PolicyEntry,
    TableRule,
    load_data_policy,
)
from dataagent.adapters.agents.sql.results import QueryResult, json_safe

HITL_POLICIES: tuple[str, ...] = ("always", "writes", "never")

__all__ = [
    "DEMO_ROW_COUNTS",
    "Estimate",
    "HITL_POLICIES",
    "DataPolicy",
    "DataPolicyError",
    "PolicyEntry",
    "PolicyRefusal",
    "Schema",
    "TableRule",
    "SIDE_EFFECT_FUNCTIONS",
    "QueryResult",
    "SqlAnalysis",
    "SqlDatabase",
    "SqlExecutionError",
    "SqlRefusedError",
    "SqlTimeoutError",
    "SqlToolError",
    "SqlUnknownTableError",
    "analyze_sql",
    "build_demo_database",
    "enforce",
    "load_data_policy",
    "json_safe",
    "needs_approval",
    "sqlite_url",
]
