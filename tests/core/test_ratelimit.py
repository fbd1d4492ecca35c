"""The one fixed-window counter (apps.core.ratelimit), on the real Redis cache of the test run."""
from __future__ import annotations

import threading

import pytest

from apps.core import ratelimit
from tests.alerts.conftest import frozen  # noqa: F401  (a controllable clock)

pytestmark = pytest.mark.usefixtures("clean_redis")


def test_hit_allows_up_to_the_limit_then_says_how_long_to_wait(frozen):
    frozen.advance(seconds=15)  # 15 s into a 60 s window
    decisions = [ratelimit.hit("k", limit=3, seconds=60) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.count for d in decisions] == [1, 2, 3, 4]
    assert decisions[-1].retry_after == 45


def test_peek_does_not_count_and_says_whether_one_more_fits(frozen):
    assert ratelimit.peek("k", limit=2, seconds=60).allowed
    ratelimit.hit("k", limit=2, seconds=60)
    assert ratelimit.peek("k", limit=2, seconds=60).allowed
    ratelimit.hit("k", limit=2, seconds=60)
    assert not ratelimit.peek("k", limit=2, seconds=60).allowed
    assert ratelimit.read("k", seconds=60) == 2


def test_a_new_window_starts_from_zero_and_clear_forgets(frozen):
    for _ in range(3):
        ratelimit.hit("k", limit=1, seconds=60)
    frozen.advance(seconds=60)
    assert ratelimit.hit("k", limit=1, seconds=60).count == 1
    ratelimit.clear("k", seconds=60)
    assert ratelimit.read("k", seconds=60) == 0


def test_add_counts_several_keys_at_once_and_gives_back(frozen):
    assert ratelimit.add({"a": 5, "b": 2}, seconds=10) == {"a": 5, "b": 2}
    assert ratelimit.add({"a": -5, "b": 1}, seconds=10) == {"a": 0, "b": 3}


def test_add_sets_every_key_to_expire_after_two_windows_even_when_redis_forgot_the_script(frozen):
    from django.core.cache import cache

    client = ratelimit._redis()
    client.script_flush()  # a restarted Redis has no scripts: the call must load it again
    many = {f"tenant-{i}": i + 1 for i in range(60)}
    assert ratelimit.add(many, seconds=10) == many
    assert ratelimit.read("tenant-59", seconds=10) == 60
    window = ratelimit.current_window(10).number
    ttls = {client.ttl(cache.make_key(f"rl:{name}:10:{window}")) for name in many}
    assert ttls and all(15 < ttl <= 20 for ttl in ttls)


def test_fails_open_when_the_cache_is_unreachable(settings, frozen):
    # Overriding CACHES resets Django's cache handlers (setting_changed), so this reaches a dead port.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    assert ratelimit.hit("k", limit=0, seconds=60).allowed
    assert ratelimit.peek("k", limit=0, seconds=60).allowed


def test_the_redis_client_is_built_once_per_thread_and_cache():
    first = ratelimit._redis()
    assert first is not None and ratelimit._redis() is first
    seen = []
    worker = threading.Thread(target=lambda: seen.append(ratelimit._redis()))
    worker.start()
    worker.join()
    assert seen[0] is not None and seen[0] is not first  # another thread's cache, its own client
