"""What rollout pacing keeps in memory: who waits for a slot and in what order, and slots just taken (pure).

The record that a rollout is owed is ``status.deferred`` (reason
WaitingForRolloutSlot), so an operator that restarts still rolls each
waiting workload once; only the order of the waiters lives here, and
starts again from the order the ServiceLinks are reconciled in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from servicelink.rollout import WorkloadKey, count_in_flight
from servicelink.views import ObjectKey, WorkloadView


@dataclass
class Pacer:
    """The waiters of ``--max-rollouts-in-flight``, oldest first, and the slots taken that the watch has not seen.

    Mutated only from the event loop's thread, and only between two awaits:
    counting the slots and taking one is then one step for every reconcile.
    """

    cap: int
    timeout: float
    # (workload, ServiceLink) -> its place in the line; a ServiceLink's entries are those its last reconcile held.
    _line: dict[tuple[WorkloadKey, ObjectKey], int] = field(default_factory=dict)
    _arrivals: int = 0
    # Workload -> (its generation when its slot was taken, when): held until the watch sees a newer generation.
    _taken: dict[WorkloadKey, tuple[int, str]] = field(default_factory=dict)

    def waiting(self) -> list[WorkloadKey]:
        """Every workload waiting for a slot, oldest first."""
        order: dict[WorkloadKey, int] = {}
        for (workload, _), place in sorted(self._line.items(), key=lambda item: item[1]):
            order.setdefault(workload, place)
        return list(order)

    def first_in_line(self, slots: int) -> list[ObjectKey]:
        """The ServiceLinks waiting for the first ``slots`` workloads in line, in that order."""
        first = set(self.waiting()[: max(slots, 0)])
        found: dict[ObjectKey, None] = {}
        for (workload, servicelink), _ in sorted(self._line.items(), key=lambda item: item[1]):
            if workload in first:
                found.setdefault(servicelink)
        return list(found)

    def line_up(self, servicelink: ObjectKey, workloads: Iterable[WorkloadKey]) -> None:
        """Make ``workloads`` the ones ``servicelink`` waits for: those already waiting keep their place, new
        ones go last, and the others leave the line."""
        wanted = set(workloads)
        for entry in [entry for entry in self._line if entry[1] == servicelink and entry[0] not in wanted]:
            del self._line[entry]
        for workload in sorted(wanted):
            if (workload, servicelink) not in self._line:
                self._line[(workload, servicelink)] = self._arrivals
                self._arrivals += 1

    def leave(self, servicelink: ObjectKey) -> None:
        """Take a ServiceLink out of the line (deleted, or no longer waiting for anything)."""
        self.line_up(servicelink, ())

    def take(self, workload: WorkloadKey, *, generation: int, now: str) -> None:
        """Take a slot for ``workload``, about to be patched: it leaves the line, for every ServiceLink."""
        for entry in [entry for entry in self._line if entry[0] == workload]:
            del self._line[entry]
        self._taken[workload] = (generation, now)

    def release(self, workload: WorkloadKey) -> None:
        """Give back a slot whose patch was not made (refused, or the workload is gone)."""
        self._taken.pop(workload, None)

    def clear(self) -> None:
        """Forget everything: another replica leads now."""
        self._line.clear()
        self._taken.clear()

    def in_flight(
        self,
        watched: Mapping[WorkloadKey, str],
        *,
        workload: Callable[[WorkloadKey], WorkloadView | None],
        now: str,
    ) -> dict[WorkloadKey, str]:
        """The rollouts holding a slot at ``now``, each with when it times out (``rollout.count_in_flight``).

        ``watched`` are those the watch shows rolling since servicelink rolled them; to them come the slots
        taken here whose patch the watch has not shown yet (the workload's generation has not risen).
        """
        for key, (generation, _) in list(self._taken.items()):
            view = workload(key)
            if view is None or view.generation > generation:
                del self._taken[key]
        since = {key: when for key, (_, when) in self._taken.items()} | dict(watched)
        counted = count_in_flight(since, timeout=self.timeout, now=now)
        for key in [key for key in self._taken if key not in counted]:
            del self._taken[key]
        return counted
