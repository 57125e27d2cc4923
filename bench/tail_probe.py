"""What makes the pre-request tail: spendplane's app with probes, for `bench/pre_request.py --probe` only.

    uvicorn --factory bench.tail_probe:app_from_env      # as graphql_api.app:app_from_env, plus GET /bench/tail

It records, between two reads of `GET /bench/tail?reset=1`:

- loop stalls: a callback re-armed every millisecond on the event loop notes how late it ran; a stall is a lag
  over STALL_MS. The loop thread's CPU time over the same interval tells a *busy* stall (the loop ran code for
  over STALL_MS: the service's own doing) from a starved one (the process waited for a CPU: the machine's load).
  A watchdog thread samples the main thread's stack while the loop is stalled, so each busy stall names the code
  that held the loop (the innermost project frames).
- garbage-collector pauses (`gc.callbacks`): count, wall and CPU milliseconds per generation.
- background work: every run of the enforcement refresh (spend, settlements, reconcile), grant transactions,
  allowance writes, budget reloads and periodic jobs, with its wall time.
- pre-request handling: each request's server time and the path it took: `memory` (held from the allowance),
  `grant` (waited for a grant transaction), `load` (read a key's owner or a window's spend), `reload` (budgets
  changed); and whether background work or a stall overlapped it.

The probes cost a few microseconds per request and one timer per millisecond; compare runs with and without
them before reading absolute figures.
"""

from __future__ import annotations

import contextvars
import gc
import json
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

from graphql_api.app import create_app
from resolvers.enforcement import Enforcer
from resolvers.enforcement.ledger import Ledger
from resolvers.platform.config import Settings
from resolvers.platform.jobs import JobRunner

STALL_MS = 5.0
TICK_S = 0.001
SLOW_REQUEST_MS = 5.0
ROOT = str(Path(__file__).resolve().parent.parent)
VENV = str(Path(ROOT) / ".venv")

_path: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("tail_probe_path", default=None)


class Probe:
    def __init__(self) -> None:
        self.main_thread = threading.get_ident()
        self.reset()
        self.heartbeat = time.perf_counter()
        self.sampled_for: float | None = None
        self.samples: list[list[str]] = []
        self.skip_next = False
        self.gc_started: tuple[float, float] | None = None
        self.cpu = time.thread_time()
        self.started = False
        self.enforcer: Any = None
        gc.callbacks.append(self._gc)

    def reset(self) -> None:
        self.since = time.perf_counter()
        self.stalls: list[dict[str, Any]] = []
        self.gc_pauses: list[tuple[float, float, float, int]] = []  # start, wall ms, CPU ms, generation
        self.intervals: list[tuple[str, float, float]] = []  # name, start, end
        self.requests: list[tuple[float, float, tuple[str, ...]]] = []  # start, end, path
        self.ticks = 0

    # ------------------------------------------------------------------------------------------ the loop's lag

    def start(self, loop: Any) -> None:
        if self.started:
            return
        self.started = True
        self.loop = loop
        self.expected = time.perf_counter() + TICK_S
        loop.call_later(TICK_S, self._tick)
        threading.Thread(target=self._watch, name="tail-probe", daemon=True).start()

    def _tick(self) -> None:
        now = time.perf_counter()
        cpu = time.thread_time()
        lag = (now - self.expected) * 1000
        self.ticks += 1
        samples = self.samples if self.sampled_for == self.heartbeat else []
        if lag > STALL_MS and not self.skip_next:
            self.stalls.append(
                {"start": self.expected, "ms": lag, "cpu_ms": (cpu - self.cpu) * 1000, "samples": samples}
            )
        self.skip_next = False
        self.cpu = cpu
        self.heartbeat = now
        self.samples = []
        self.expected = now + TICK_S
        self.loop.call_later(TICK_S, self._tick)

    def _watch(self) -> None:
        while True:
            time.sleep(TICK_S)
            beat = self.heartbeat
            if (time.perf_counter() - beat) * 1000 > STALL_MS:
                frame = sys._current_frames().get(self.main_thread)
                if frame is not None:
                    if self.sampled_for != beat:
                        self.samples, self.sampled_for = [], beat
                    try:  # the frames are those of a running thread: a sample may catch one half-made
                        self.samples.append(_summary(frame))
                    except (AttributeError, TypeError):
                        continue

    # ------------------------------------------------------------------------------------------ the collector

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc_started = (time.perf_counter(), time.thread_time())
        elif self.gc_started is not None:
            (wall, cpu), now = self.gc_started, time.perf_counter()
            ms, cpu_ms = (now - wall) * 1000, (time.thread_time() - cpu) * 1000
            self.gc_pauses.append((wall, ms, cpu_ms, info["generation"]))
            self.gc_started = None

    # ------------------------------------------------------------------------------------------ the report

    def report(self) -> dict[str, Any]:
        end = time.perf_counter()
        seconds = end - self.since
        per_10s = 10 / seconds if seconds > 0 else 0
        intervals = self.intervals

        def overlapping(start: float, stop: float) -> list[str]:
            return sorted({name for name, a, b in intervals if a < stop and b > start})

        stalls = []
        causes: Counter[str] = Counter()
        busy = [s for s in self.stalls if s["cpu_ms"] > STALL_MS]
        places: Counter[str] = Counter()
        for stall in busy:
            start, stop = stall["start"], stall["start"] + stall["ms"] / 1000
            gc_ms = sum(cpu for s, ms, cpu, _ in self.gc_pauses if s < stop and s + ms / 1000 > start)
            kinds = Counter(_kind(stack) for stack in stall["samples"])
            cause = "gc" if gc_ms > stall["cpu_ms"] / 2 else kinds.most_common(1)[0][0] if kinds else "unsampled"
            causes[cause] += 1
            if cause not in ("gc", "requests", "unsampled"):
                places.update({stack[0] for stack in stall["samples"] if _kind(stack) == cause})
            stalls.append(
                {
                    "ms": round(stall["ms"], 2),
                    "cpu_ms": round(stall["cpu_ms"], 2),
                    "gc_cpu_ms": round(gc_ms, 2),
                    "cause": cause,
                    "during": overlapping(start, stop),
                    "samples": stall["samples"][:6],
                }
            )
        by_gen: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for _, ms, cpu, generation in self.gc_pauses:
            by_gen[generation].append((ms, cpu))
        work: dict[str, list[float]] = defaultdict(list)
        for name, a, b in intervals:
            work[name].append((b - a) * 1000)
        paths: Counter[str] = Counter()
        slow_paths: Counter[str] = Counter()
        slow_during: Counter[str] = Counter()
        for start, stop, path in self.requests:
            label = "+".join(path) or "memory"
            paths[label] += 1
            if (stop - start) * 1000 > SLOW_REQUEST_MS:
                slow_paths[label] += 1
                for name in overlapping(start, stop) or ["nothing"]:
                    slow_during[name] += 1
        enforcer = self.enforcer
        return {
            "seconds": round(seconds, 2),
            "code": str(Path(sys.modules[Enforcer.__module__].__file__ or "").parent.parent),
            "gc_since_start": [stats["collections"] for stats in gc.get_stats()],
            "gc_thresholds": gc.get_threshold(),
            "objects": {
                "tracked_gen2": len(gc.get_objects(2)),
                "frozen": gc.get_freeze_count(),
                "open_holds": len(enforcer.ledger.reservations) if enforcer is not None else None,
                "accounts": len(enforcer.ledger.accounts) if enforcer is not None else None,
            },
            "loop_ticks": self.ticks,
            "stalls_over_5ms": len(self.stalls),
            "stalls_over_5ms_per_10s": round(len(self.stalls) * per_10s, 2),
            "stall_ms_max": round(max((s["ms"] for s in self.stalls), default=0), 2),
            "busy_stalls_over_5ms": len(busy),
            "busy_stalls_over_5ms_per_10s": round(len(busy) * per_10s, 2),
            "busy_stall_cpu_ms_total": round(sum(s["cpu_ms"] for s in busy), 1),
            "busy_stall_cpu_ms_max": round(max((s["cpu_ms"] for s in busy), default=0), 2),
            "busy_stall_causes": dict(causes.most_common()),
            "busy_stall_places": dict(places.most_common(20)),
            "busy_stalls": sorted(stalls, key=lambda s: -s["cpu_ms"])[:40],
            "gc": {
                str(g): {
                    "count": len(v),
                    "ms_total": round(sum(ms for ms, _ in v), 1),
                    "cpu_ms_total": round(sum(cpu for _, cpu in v), 1),
                    "cpu_ms_max": round(max(cpu for _, cpu in v), 2),
                    "over_5ms_cpu": sum(cpu > STALL_MS for _, cpu in v),
                }
                for g, v in sorted(by_gen.items())
            },
            "background": {
                k: {"count": len(v), "ms_total": round(sum(v), 1), "ms_max": round(max(v), 2)}
                for k, v in sorted(work.items())
            },
            "requests": {
                "count": len(self.requests),
                "by_path": dict(paths.most_common()),
                f"over_{SLOW_REQUEST_MS:g}ms_by_path": dict(slow_paths.most_common()),
                f"over_{SLOW_REQUEST_MS:g}ms_during": dict(slow_during.most_common()),
            },
        }


#: A sampled stack is background work when one of these functions is on it (else request handling, or other).
BACKGROUND = {
    "__init__.py:run_background": "background: enforcement refresh",
    "__init__.py:watch_changes": "background: budget reload",
    "ledger.py:_grant_queued": "grant transaction",
    "jobs.py:run": "background: job",
    "feeds.py:run": "background: feed",
    "__init__.py:_store_alert": "background: alert",
}


def _kind(stack: list[str]) -> str:
    functions = {":".join(where.split(":")[:2]) for where in stack if not where.startswith("innermost ")}
    for function, kind in BACKGROUND.items():
        if function in functions:
            return kind
    if len(stack) == 1 and "runners.py:run" in stack[0]:
        return "loop (C code: I/O, or waiting for the GIL)"
    return "requests"


def _summary(frame: FrameType) -> list[str]:
    """The innermost project frames (at most 12), then the innermost frame of all, as file:function:line."""
    project: list[str] = []
    innermost = None
    current: FrameType | None = frame
    while current is not None:
        code = current.f_code
        where = f"{Path(code.co_filename).name}:{code.co_name}:{current.f_lineno}"
        if innermost is None:
            innermost = where
        if code.co_filename.startswith(ROOT) and not code.co_filename.startswith(VENV) and "tail_probe" not in where:
            project.append(where)
            if len(project) == 12:
                break
        current = current.f_back
    return [*project, f"innermost {innermost}"]


PROBE = Probe()


def _timed(name: str, function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            PROBE.intervals.append((name, start, time.perf_counter()))

    return wrapper


def _tagged(tag: str, function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        path = _path.get()
        if path is not None:
            path.add(tag)
        return await function(*args, **kwargs)

    return wrapper


def _job(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await function(self, name, *args, **kwargs)
        finally:
            PROBE.intervals.append((f"job {name}", start, time.perf_counter()))

    return wrapper


Enforcer.refresh_spend = _timed("refresh spend", Enforcer.refresh_spend)  # type: ignore[method-assign,assignment]
Enforcer.apply_settlements = _timed("apply settlements", Enforcer.apply_settlements)  # type: ignore[method-assign,assignment]
Enforcer.reload_budgets = _timed("reload budgets", Enforcer.reload_budgets)  # type: ignore[method-assign,assignment]
Ledger.reconcile = _timed("reconcile", Ledger.reconcile)  # type: ignore[method-assign,assignment]
Ledger._persist = _timed("persist allowances", Ledger._persist)  # type: ignore[method-assign,assignment]
Ledger._grant_batch = _timed("grant transaction", Ledger._grant_batch)  # type: ignore[method-assign,assignment]
Ledger.reserve = _tagged("grant", Ledger.reserve)  # type: ignore[method-assign,assignment]
Enforcer._resolve = _tagged("load", Enforcer._resolve)  # type: ignore[method-assign,assignment]
Enforcer._checks = _tagged("load", Enforcer._checks)  # type: ignore[method-assign,assignment]
Enforcer._current = _tagged("reload", Enforcer._current)  # type: ignore[method-assign,assignment]
JobRunner.run = _job(JobRunner.run)  # type: ignore[method-assign,assignment]


class Probed:
    """The app, with GET /bench/tail (the report; `?reset=1` starts a new window) and each pre-request timed."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import asyncio

        PROBE.start(asyncio.get_running_loop())
        if scope["path"] == "/bench/tail":
            if b"reset=1" in scope.get("query_string", b""):
                body = b"{}"
                PROBE.reset()
                PROBE.skip_next = True
            else:
                body = json.dumps(PROBE.report()).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["path"] != "/webhook/pre-request":
            await self.app(scope, receive, send)
            return
        runtime = scope.get("state", {}).get("runtime")
        if runtime is not None:
            PROBE.enforcer = runtime.enforcer
        path: set[str] = set()
        token = _path.set(path)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            PROBE.requests.append((start, time.perf_counter(), tuple(sorted(path))))
            _path.reset(token)


def app_from_env() -> Probed:
    return Probed(create_app(Settings.from_env()))
