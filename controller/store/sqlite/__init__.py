"""The default store: one SQLite file, over the connections of :mod:`~controller.store.sqlite.link`.

One module per aggregate (calls, deliveries, groups, numbers, agents, compliance), each
a class over the connections of :mod:`~controller.store.sqlite.connection`;
:class:`SqliteStore` is all of them on those connections (one writes, one reads),
so a call's change and the deliveries it causes still commit together.
"""

from __future__ import annotations

from controller.store.sqlite.agents import SqliteAgents
from controller.store.sqlite.calls import SCHEDULED, SqliteCalls
from controller.store.sqlite.compliance import SqliteCompliance
from controller.store.sqlite.deliveries import SqliteDeliveries
from controller.store.sqlite.groups import SqliteGroups
from controller.store.sqlite.numbers import SqliteNumbers

__all__ = ["SCHEDULED", "SqliteStore"]


class SqliteStore(SqliteCalls, SqliteDeliveries, SqliteGroups, SqliteNumbers, SqliteAgents,
                  SqliteCompliance):
    """:class:`~controller.store.Store` in one SQLite file."""
