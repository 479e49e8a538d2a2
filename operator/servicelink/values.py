"""Decide every value a ServiceLink writes, and which keys it may not write (pure).

The operator's reconcile (``plan.plan_values``) and the offline tools
(``tools.offline``) both call ``decide_values``, so ``servicelink render``
and a running operator cannot disagree about a value or a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from servicelink.resolve import LinkResult
from servicelink.views import Claim, ObjectKey, ServiceView


@dataclass(frozen=True)
class Values:
    """What the links resolve to, and which of those values this ServiceLink may write."""

    results: list[LinkResult]
    services: dict[ObjectKey, ServiceView]
    desired: dict[str, str]  # resolved or kept, less the keys an earlier ServiceLink holds
    conflicts: dict[str, str]  # key -> message
    siblings: frozenset[str]  # every key the other ServiceLinks of the ConfigMap claim
    creator: str | None = None  # the older ServiceLink that creates our ConfigMap while it is missing
    # The values of the links with credentials, for the Secret alone: never in a repr, a log or the status.
    secret: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


def desired_values(results: Sequence[LinkResult], previous: Mapping[str, str]) -> dict[str, str]:
    """Return the values to write: each resolved link's, else its last written one where that may stay."""
    desired: dict[str, str] = {}
    for result in results:
        if result.value is not None:
            desired[result.key] = result.value
        elif result.keeps_last_value and result.key in previous:
            desired[result.key] = previous[result.key]  # running apps keep a working address
    return desired


def sibling_conflicts(
    desired: Mapping[str, str], *, earlier: Iterable[Claim], namespace: str, configmap: str
) -> dict[str, str]:
    """Return the keys of ``desired`` that an earlier ServiceLink of the same ConfigMap claims: key -> message."""
    return {
        key: (
            f"key {key} of ConfigMap {namespace}/{configmap} is already written by "
            f"ServiceLink {namespace}/{claim.name}; remove it from one of them"
        )
        for claim in earlier
        for key in claim.keys
        if key in desired
    }


def decide_values(
    results: Sequence[LinkResult],
    *,
    services: Mapping[ObjectKey, ServiceView],
    previous: Mapping[str, str],
    earlier: Sequence[Claim],
    siblings: frozenset[str],
    namespace: str,
    configmap: str,
    creator: str | None = None,
    secret_keys: frozenset[str] = frozenset(),
) -> Values:
    """Decide the values of one ServiceLink and where each goes.

    The ConfigMap gets each link's value, resolved or kept from ``previous``
    where a link may keep its last value, less the keys an ``earlier``
    ServiceLink of the same ConfigMap claims (each a conflict). The keys of
    links with credentials (``secret_keys``) never go to the ConfigMap: their
    resolved values go to ``Values.secret``, for the Secret alone.
    """
    plain = [r for r in results if r.key not in secret_keys]
    desired = desired_values(plain, previous)
    conflicts = sibling_conflicts(desired, earlier=earlier, namespace=namespace, configmap=configmap)
    kept = {k: v for k, v in desired.items() if k not in conflicts}
    secret = {r.key: r.secret_value for r in results if r.key in secret_keys and r.secret_value is not None}
    return Values(list(results), dict(services), kept, conflicts, siblings, creator, secret)
