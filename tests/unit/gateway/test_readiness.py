"""Readiness that tells the truth: loading, failed (with why), degraded, ready."""

from cloudlet.errors import EngineUnavailable
from tests.unit.gateway.scripted import FakeClock, Replicas, ScriptedEngine, gateway, remote

ROUTE = {"name": "chat", "targets": ["up", "down"], "policy": "fallback"}
CHECKS = {"interval_s": 10, "unhealthy_after": 1}


async def test_a_model_whose_every_replica_is_down_is_degraded_and_the_server_ready() -> None:
    clock = FakeClock()
    dead = [ScriptedEngine("down"), ScriptedEngine("down")]
    engines = {"up": ScriptedEngine("up"), "down": Replicas("down", dead)}
    models = [remote("up"), remote("down", health_check=CHECKS)]
    gw = gateway(engines, models, [ROUTE], clock)  # type: ignore[arg-type]
    await gw.start()
    assert gw.readiness() == ("ready", True)
    dead[0].healthy = False
    await gw.check_health()
    assert gw.status()["down"] == "ready"  # one replica left
    dead[1].healthy = False
    await gw.check_health()
    assert gw.status() == {"up": "ready", "down": "degraded", "chat": "ready"}
    assert gw.readiness() == ("degraded", True)
    dead[1].healthy = True
    await gw.check_health()
    assert gw.readiness() == ("ready", True)
    await gw.close()


async def test_a_route_of_degraded_targets_is_degraded() -> None:
    clock = FakeClock()
    engines = {"up": ScriptedEngine("up"), "down": ScriptedEngine("down")}
    models = [remote(n, health_check=CHECKS) for n in ("up", "down")]
    gw = gateway(engines, models, [ROUTE], clock)  # type: ignore[arg-type]
    await gw.start()
    engines["up"].healthy = engines["down"].healthy = False
    await gw.check_health()
    assert gw.status()["chat"] == "degraded"
    await gw.close()


async def test_a_model_that_failed_to_load_makes_the_server_unready_and_says_why() -> None:
    clock = FakeClock()

    class Broken(ScriptedEngine):
        async def start(self) -> None:
            raise EngineUnavailable("model 'down': api_key refers to ${X}, which is not set")

    engines = {"up": ScriptedEngine("up"), "down": Broken("down")}
    gw = gateway(engines, [remote("up"), remote("down")], [ROUTE], clock)
    assert gw.readiness() == ("loading", False)
    await gw.start()
    assert gw.readiness() == ("failed", False)
    assert gw.status()["down"].startswith("failed: model 'down': api_key refers to ${X}")
    assert gw.status()["chat"] == "ready"
    await gw.close()
