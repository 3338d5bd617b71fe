from cloudlet.gateway.breaker import CircuitBreaker
from tests.unit.gateway.scripted import FakeClock


def test_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(3, 30.0, clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # the streak is broken
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed" and breaker.acquire()
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.available() and not breaker.acquire()


def test_half_open_lets_one_trial_through_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 30.0, clock)
    breaker.failure()
    clock.now += 29.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half-open" and breaker.available()
    assert breaker.acquire()
    assert not breaker.acquire()  # one trial at a time
    breaker.success()
    assert breaker.state == "closed" and breaker.acquire() and breaker.acquire()


def test_a_failed_trial_opens_it_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.failure()
    clock.now += 10
    assert breaker.acquire()
    breaker.failure()
    assert breaker.state == "open"
    clock.now += 9
    assert breaker.state == "open"
    clock.now += 1
    assert breaker.state == "half-open"


def test_a_released_trial_can_be_taken_again() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.failure()
    clock.now += 10
    assert breaker.acquire()
    breaker.release()  # e.g. the trial was refused for load, which says nothing of health
    assert breaker.acquire()
