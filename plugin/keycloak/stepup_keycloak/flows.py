"""Reading Keycloak's flat execution listing as a tree.

``GET /admin/realms/{realm}/authentication/flows/{alias}/executions`` returns every execution
of a flow and of its sub-flows, depth first, as ``AuthenticationExecutionInfoRepresentation``:
``level`` (0 for the flow's own executions), ``index`` (position among its siblings),
``priority``, ``displayName`` (a sub-flow's alias), ``providerId``, ``requirement``,
``authenticationFlow`` (true for a sub-flow), ``flowId`` (the sub-flow's id) and
``authenticationConfig`` (config id). It does not say which sub-flow an execution belongs to;
:func:`read_steps` works that out from the order and the levels, because every admin call that
adds, moves or lists executions is addressed by the *parent* flow's alias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One execution, with the alias of the flow that holds it and its place there."""

    info: dict[str, Any]
    parent: str
    position: int

    @property
    def id(self) -> str:
        return str(self.info["id"])

    @property
    def provider(self) -> str | None:
        return self.info.get("providerId")

    @property
    def is_subflow(self) -> bool:
        return bool(self.info.get("authenticationFlow"))

    @property
    def alias(self) -> str | None:
        """The sub-flow's alias (Keycloak reports it as ``displayName``); None for executions."""
        return self.info.get("displayName") if self.is_subflow else None

    @property
    def requirement(self) -> str:
        return str(self.info.get("requirement", ""))

    @property
    def config_id(self) -> str | None:
        return self.info.get("authenticationConfig")


def read_steps(flow_alias: str, listing: list[dict[str, Any]]) -> list[Step]:
    """Attach parent alias and sibling position to each entry of the executions listing."""
    parents = {0: flow_alias}
    counts: dict[str, int] = {}
    steps = []
    for info in listing:
        level = int(info.get("level", 0))
        parent = parents[level]
        position = counts.get(parent, 0)
        counts[parent] = position + 1
        step = Step(info=info, parent=parent, position=position)
        if step.is_subflow:
            parents[level + 1] = str(step.alias)
        steps.append(step)
    return steps


def find(steps: list[Step], match: Callable[[Step], bool]) -> list[Step]:
    """All steps for which ``match`` is true, in flow order."""
    return [step for step in steps if match(step)]


def by_provider(provider: str) -> Callable[[Step], bool]:
    return lambda step: not step.is_subflow and step.provider == provider


def by_subflow(alias: str) -> Callable[[Step], bool]:
    return lambda step: step.is_subflow and step.alias == alias
