"""Rate budgets and locks in Redis, as several workers see them: each "worker" here has its own
Redis client and its own budget object, against a private redis-server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.clock import Clock
from engine.spec import HeaderValue, RateLimitSpec
from tests.redis_service import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def clients(redis_url):
    import redis as redis_lib

    made = [redis_lib.Redis.from_url(redis_url) for _ in range(3)]
    made[0].flushdb()
    yield made
    for client in made:
        client.close()


def budgets(clients, spec: RateLimitSpec, **kw):
    from engine.ratelimit.redis_budget import RedisBudget, budget_key

    return [RedisBudget(c, budget_key("acme", "acct-1", ""), spec, Clock(), **kw)
            for c in clients]


def send_from_threads(workers, per_thread: int, threads_per_worker: int = 2) -> list[float]:
    """Each worker's threads acquire, 'send' (10 ms), release; returns the send times."""
    sent: list[float] = []
    lock = threading.Lock()

    def sender(budget):
        for _ in range(per_thread):
            budget.acquire()
            with lock:
                sent.append(time.monotonic())
            time.sleep(0.01)
            budget.release()

    threads = [threading.Thread(target=sender, args=(b,)) for b in workers
               for _ in range(threads_per_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(sent)


def busiest_window(times: list[float], window: float) -> int:
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def test_the_limit_holds_summed_over_every_worker(clients):
    spec = RateLimitSpec(requests=5, per_seconds=0.5)
    times = send_from_threads(budgets(clients, spec), per_thread=4)
    assert len(times) == 24
    assert busiest_window(times, 0.5) <= 5
    # 24 sends at 5 per half second take at least two seconds.
    assert times[-1] - times[0] >= 2.0


def test_budgets_kept_per_process_would_exceed_it(clients):
    """The control: one in-process budget per worker lets each worker spend the whole limit."""
    from engine.ratelimit import RateBudget

    spec = RateLimitSpec(requests=5, per_seconds=0.5)
    times = send_from_threads([RateBudget(spec, Clock()) for _ in clients], per_thread=4)
    assert busiest_window(times, 0.5) > 5


def test_feedback_from_one_worker_corrects_every_worker(clients):
    feedback = {"limit": HeaderValue(("x-limit",), None, "s"),
                "window": HeaderValue(("x-window-ms",), None, "ms"),
                "remaining": HeaderValue(("x-remaining",), None, "s"),
                "reset": HeaderValue(("x-reset",), None, "s")}
    spec = RateLimitSpec(requests=100, per_seconds=10, feedback=feedback)
    first, second, third = budgets(clients, spec)
    # The vendor advertises a tighter limit than the YAML's: 2 per 400 ms.
    first.observe({"x-limit": "2", "x-window-ms": "400", "x-remaining": "1"})
    times = send_from_threads([second, third], per_thread=2, threads_per_worker=1)
    assert busiest_window(times, 0.4) <= 2
    assert times[-1] - times[0] >= 0.4
    # Nothing remains: every worker waits for the reset the vendor named.
    first.observe({"x-remaining": "0", "x-reset": "1"})
    started = time.monotonic()
    third.acquire()
    third.release()
    assert time.monotonic() - started >= 0.9
    assert third.waited_seconds >= 0.9


def test_a_full_window_the_shared_log_explains_waits_only_for_its_oldest(clients):
    """No reset named (a rolling window): a window full of the workers' own requests reopens
    as the oldest leaves; requests the log never saw count from when the vendor said so."""
    feedback = {"remaining": HeaderValue(("x-remaining",), None, "s")}
    first, second, third = budgets(clients, RateLimitSpec(requests=3, per_seconds=1.0,
                                                          feedback=feedback))
    started = time.monotonic()
    for worker in (first, second):
        worker.acquire()
        worker.release()
    time.sleep(0.4)
    second.acquire()
    second.release()
    first.observe({"x-remaining": "0"})  # the three in the log: the oldest leaves at ~1 s
    third.acquire()
    third.release()
    assert 0.85 <= time.monotonic() - started < 1.25  # not 1.4: a window from the report
    # Once the log is empty, a full window was all another client's: it counts from now.
    time.sleep(1.0)
    second.observe({"x-remaining": "0"})
    reported = time.monotonic()
    third.acquire()
    third.release()
    assert time.monotonic() - reported >= 0.9


def test_a_pause_after_a_429_holds_every_worker(clients):
    first, second, _ = budgets(clients, RateLimitSpec(requests=100, per_seconds=1))
    first.pause(0.6)
    started = time.monotonic()
    second.acquire()
    second.release()
    assert time.monotonic() - started >= 0.5


def test_concurrency_slots_are_shared_and_a_dead_holders_slot_frees_itself(clients):
    spec = RateLimitSpec(requests=100, per_seconds=1, max_concurrent=2)
    first, second, third = budgets(clients, spec, slot_lease_seconds=0.8)
    first.acquire()
    second.acquire()  # both slots taken; `first` will never release (its worker "died")
    got = threading.Event()

    def take() -> None:
        third.acquire()
        got.set()

    taker = threading.Thread(target=take)
    taker.start()
    assert not got.wait(0.3)  # no third slot
    second.release()
    assert got.wait(1.0)  # the released one
    third.release()
    taker.join()
    # `first`'s slot is held until its lease ends: then it is free for the others.
    started = time.monotonic()
    second.acquire()
    third.acquire()
    assert 0.2 <= time.monotonic() - started <= 1.5
    second.release()
    third.release()


def test_a_unit_runs_in_one_worker_at_a_time(redis_url, clients):
    from engine.distributed.settings import Settings
    from engine.distributed.shared import SharedState

    settings = Settings(redis_url=redis_url, unit_lease=0.6)
    one, other = SharedState(clients[0], settings), SharedState(clients[1], settings)
    with one.unit_lock("acme-1", "contacts") as held:
        assert held
        time.sleep(1.0)  # past the lease: renewal keeps it
        with other.unit_lock("acme-1", "contacts") as also:
            assert not also
        with other.unit_lock("acme-1", "deals") as different_unit:
            assert different_unit
    with other.unit_lock("acme-1", "contacts") as after:
        assert after


def test_a_killed_workers_unit_lock_frees_itself_after_its_lease(redis_url, clients):
    from engine.distributed.settings import Settings
    from engine.distributed.shared import SharedState

    settings = Settings(redis_url=redis_url, unit_lease=0.6)
    # What a worker killed mid-unit leaves: its lock, no longer renewed.
    clients[2].lock("crm-engine:unit:{acme-2:contacts}", timeout=0.6).acquire()
    survivor = SharedState(clients[0], settings)
    with survivor.unit_lock("acme-2", "contacts") as held:
        assert not held
    time.sleep(0.7)
    with survivor.unit_lock("acme-2", "contacts") as held:
        assert held


def test_one_refresh_at_a_time_per_connection(redis_url, clients):
    from engine.distributed.settings import Settings
    from engine.distributed.shared import SharedState

    settings = Settings(redis_url=redis_url)
    states = [SharedState(c, settings) for c in clients]
    inside, most = [0], [0]
    guard = threading.Lock()

    def refresh(state: SharedState) -> None:
        with state.refresh_lock("acme-3"):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=refresh, args=(s,)) for s in states for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def test_nothing_distributed_is_imported_by_the_embedded_default(tmp_path: Path):
    """`crm-engine sync` and `make demo` load neither Celery nor Redis."""
    import subprocess
    import sys

    code = ("import sys, engine.cli, sandbox.demo; engine.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('celery', 'redis', 'kombu') or m == 'engine.ratelimit.redis_budget' or "
            "m.startswith('engine.distributed.') and m != 'engine.distributed.commands'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
