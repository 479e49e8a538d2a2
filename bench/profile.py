"""Where the operator's CPU and memory go at one size (does I/O): ``python -m bench --profile [--services N]``.

servicelink's side of the comparison alone, on a fresh local control plane
with kube-controller-manager (``bench/compare.py`` makes the objects). The operator runs twice through the
same work: a cold start, single Service changes, and a burst. The first run is
sampled by py-spy from outside the process (CPU); the second runs under memray
(the heap at its peak). Each CPU sample and each byte at the peak is put in
one category by the frames of its stack, and the tables say how much went
where: ``what`` by the innermost frame that names a library, ``for whom`` by
the innermost frame of kopf, the kubernetes client or servicelink.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.compare import DEFAULT, Compare, Side, sweep_size
from bench.run import measured_at
from servicelink.testing.controlplane import start_control_plane

# (category, fragments of a frame's file): the first category whose fragment is in a frame's file, looking from
# the innermost frame outwards, is what a sample or an allocation is spent on.
WHAT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON", ("/json/",)),
    ("pydantic", ("/pydantic/", "/pydantic_core/")),
    ("YAML", ("/yaml/",)),
    ("HTTP and TLS", ("/urllib3/", "/aiohttp/", "/multidict/", "/yarl/", "/ssl.py", "/http/", "/socket.py")),
    ("kubernetes client", ("/kubernetes/",)),
    ("kopf", ("/kopf/",)),
    ("servicelink: cache and views", ("servicelink/cache.py", "servicelink/views.py")),
    ("servicelink: kube", ("servicelink/kube.py",)),
    (
        "servicelink: reconcile",
        tuple(
            f"servicelink/{m}.py"
            for m in ("reconcile", "plan", "values", "resolve", "rollout", "status", "conditions", "consent", "render")
        ),
    ),
    ("servicelink: other", ("servicelink/",)),
    ("asyncio", ("/asyncio/",)),
    ("logging", ("/logging/",)),
    ("threads and queues", ("/threading.py", "/concurrent/", "/queue.py")),
)
FOR_WHOM: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kopf", ("/kopf/",)),
    ("kubernetes client", ("/kubernetes/",)),
    ("servicelink", ("servicelink/",)),
)
OTHER = "other"


IMPORTS = "loading code (imports)"


def categorise(files: Sequence[str], rules: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    """The category of a stack given its frames' files, innermost first: ``IMPORTS`` when it loads a module, else
    the first rule any frame matches. py-spy names files relative to their package root, memray in full."""
    if any("importlib" in file for file in files):
        return IMPORTS
    for file in files:
        anchored = "/" + file.lstrip("/")
        for name, fragments in rules:
            if any(fragment in anchored for fragment in fragments):
                return name
    return OTHER


def _frame_file(frame: str) -> str:
    """The file of one py-spy raw frame, ``function (path/file.py:line)``."""
    inside = frame.rsplit(" (", 1)[-1]
    return inside.rsplit(":", 1)[0]


def cpu_shares(raw: Iterable[str]) -> dict[str, dict[str, float]]:
    """Per cent of py-spy's samples (raw format: root-first frames, ``;``-separated, then a count) by category."""
    what: Counter[str] = Counter()
    whom: Counter[str] = Counter()
    for line in raw:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        files = [_frame_file(frame) for frame in reversed(stack.split(";"))]
        what[categorise(files, WHAT)] += int(count)
        whom[categorise(files, FOR_WHOM)] += int(count)
    return {"what": _percent(what), "for_whom": _percent(whom)}


def _percent(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {name: round(100 * n / total, 1) for name, n in counts.most_common()}


def heap_at_peak(path: Path) -> dict[str, Any]:
    """The heap at memray's high-water mark, in MB by category."""
    import memray

    reader = memray.FileReader(str(path))
    what: Counter[str] = Counter()
    whom: Counter[str] = Counter()
    for record in reader.get_high_watermark_allocation_records(merge_threads=True):
        files = [file for _, file, _ in record.stack_trace()]
        what[categorise(files, WHAT)] += record.size
        whom[categorise(files, FOR_WHOM)] += record.size
    megabytes = {"what": what, "for_whom": whom}
    return {
        "peak_mb": round(reader.metadata.peak_memory / 1e6, 1),
        **{k: {n: round(b / 1e6, 1) for n, b in v.most_common()} for k, v in megabytes.items()},
    }


def work(compare: Compare, side: Side, changes: range, *, sampled: Path | None = None) -> dict[str, Any]:
    """Start ``side``'s operator (sampled by py-spy into ``sampled``), wait until every ServiceLink is Ready,
    make the single Service ``changes`` (each to a port of its own), then a burst; stop it; return what it cost."""
    started = time.monotonic()
    operator = compare.start(side)
    spy = None
    if sampled is not None:
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(operator.popen.pid)]
        # --gil: only the thread holding the GIL, so what runs Python; threads that wait are not counted.
        command += ["--rate", "100", "--gil", "--nonblocking", "--format", "raw", "--output", str(sampled)]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not compare._ready(side):
        if operator.popen.poll() is not None:
            raise SystemExit(f"the operator stopped; log: {operator.log}")
        time.sleep(0.2)
    cold = round(time.monotonic() - started, 2)
    time.sleep(3)
    for i in changes:
        compare.single_change(side, i)
        time.sleep(0.3)
    burst = compare.burst(side, 100, 21000 + changes.start)
    figures = {
        "cold_start_seconds": cold,
        "rss_peak_mb": round(operator.rss_peak_mb(), 1),
        "cpu_seconds": round(operator.cpu_seconds(), 1),
        "burst_100": burst,
    }
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
        spy.wait(60)
    compare.stop(side)
    return figures


def profile(services: int, changes: int, workdir: Path) -> dict[str, Any]:
    """Both runs at ``services`` Services, on one control plane; the figures and where CPU and heap went.

    The first run writes every ConfigMap; the second starts on a cluster where
    they are written already, so its peak is the listing's, as on any restart.
    """
    size = sweep_size(services, DEFAULT)
    # With kube-controller-manager, unlike the comparison: a consumer's rollout (0 replicas) completes, so each
    # run's start ends with every ServiceLink Ready; and every Service has its EndpointSlice, as in a cluster.
    plane = start_control_plane(controller_manager=True)
    try:
        crd = Path(__file__).resolve().parents[1] / "crds" / "servicelink.yaml"
        kubectl = plane.assets.path("kubectl")
        subprocess.run([kubectl, "--kubeconfig", str(plane.kubeconfig), "apply", "-f", str(crd)], check=True)
        subprocess.run(
            [kubectl, "--kubeconfig", str(plane.kubeconfig), "wait", "--for=condition=Established", "crd", "--all"],
            check=True,
            capture_output=True,
        )
        # No audit log: wait_quiet finds it never grows, so a burst waits its window and the quiet time only.
        compare = Compare(plane, size, Path("/nonexistent"), workdir / "audit.log", workdir)
        compare.sides = [side for side in compare.sides if side.name == "servicelink"]
        (side,) = compare.sides
        compare.watch_all()
        print(f"creating {size.services} Services, {size.deployments} Deployments ...", file=sys.stderr, flush=True)
        compare.create()
        compare.apply_servicelinks(side)

        print("run 1: sampled by py-spy ...", file=sys.stderr, flush=True)
        samples = workdir / "py-spy.txt"
        sampled = work(compare, side, range(changes), sampled=samples)
        print("run 2: under memray ...", file=sys.stderr, flush=True)
        heap = workdir / "memray.bin"
        side.command = [sys.executable, "-m", "memray", "run", "--quiet", "--aggregate", "--output", str(heap)]
        side.command += ["-m", "servicelink.cli", "run"]
        traced = work(compare, side, range(changes, 2 * changes))
    finally:
        plane.stop()
    return {
        "measured_at": measured_at(),
        "size": size.__dict__,
        "run": sampled,
        "cpu_percent": cpu_shares(samples.read_text().splitlines()),
        "run_under_memray": traced,
        "heap_at_peak_mb": heap_at_peak(heap),
        "workdir": str(workdir),
    }


def table(results: dict[str, Any]) -> str:
    """The two breakdowns side by side: CPU per cent and heap MB at the peak, by what and for whom."""
    lines = []
    for by in ("what", "for_whom"):
        cpu, heap = results["cpu_percent"][by], results["heap_at_peak_mb"][by]
        lines.append(f"{'by ' + by.replace('_', ' '):<32} {'CPU %':>7} {'heap MB':>8}")
        for name in dict.fromkeys([*cpu, *heap]):
            lines.append(f"  {name:<30} {cpu.get(name, 0.0):>7.1f} {heap.get(name, 0.0):>8.1f}")
    run = results["run"]
    lines.append(
        f"cold start {run['cold_start_seconds']} s, peak RSS {run['rss_peak_mb']} MB, CPU {run['cpu_seconds']} s;"
        f" heap peak {results['heap_at_peak_mb']['peak_mb']} MB"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """``python -m bench --profile``: both runs, two tables, and JSON in --output."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench --profile", description=__doc__)
    parser.add_argument("--profile", action="store_true", required=True)
    parser.add_argument("--services", type=int, default=5000, help="Services (consumers: one per 5)")
    parser.add_argument("--changes", type=int, default=20, help="single Service changes per run")
    parser.add_argument("--output", type=Path, default=Path("profile-result.json"))
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="servicelink-profile-"))
    results = profile(args.services, args.changes, workdir)
    args.output.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"(figures also in {args.output}; samples and heap in {workdir})")
