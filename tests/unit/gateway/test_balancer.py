from collections import Counter

from cloudlet.domain import ChatMessage, GenerationRequest, ModelId
from cloudlet.gateway.balancer import PrefixAffinity, least_outstanding, prefix_key


def test_least_outstanding_prefers_idle_replicas_and_keeps_spec_order_on_ties() -> None:
    assert least_outstanding([2, 0, 1, 0]) == [1, 3, 2, 0]


def test_same_prefix_same_replica() -> None:
    ring = PrefixAffinity(4)
    loads = [0, 0, 0, 0]
    keys = [f"system: you are agent {i}" for i in range(40)]
    first = {key: ring.order(key, loads)[0] for key in keys}
    assert all(ring.order(key, loads)[0] == first[key] for key in keys)
    assert len(set(first.values())) > 1  # different prefixes spread over replicas


def test_a_loaded_replica_passes_its_prefix_on_within_the_bound() -> None:
    ring = PrefixAffinity(2, load_factor=1.25)
    key = "a shared system prompt"
    home = ring.order(key, [0, 0])[0]
    other = 1 - home
    loads = [0, 0]
    loads[home] = 3  # bound = ceil(1.25 * 4 / 2) = 3: home + 1 would exceed it
    order = ring.order(key, loads)
    assert order == [other, home]


def test_no_replica_goes_over_the_load_bound() -> None:
    ring = PrefixAffinity(3, load_factor=1.25)
    loads = [0, 0, 0]
    for _ in range(30):  # everyone asks with the same prefix, nobody finishes
        loads[ring.order("same", loads)[0]] += 1
    assert max(loads) <= 13  # ceil(1.25 * 30 / 3): the hot prefix overflows to other replicas
    assert sorted(loads) != [0, 0, 30]


def test_prefix_key_reads_roles_and_content_up_to_a_bound() -> None:
    long = GenerationRequest(
        model=ModelId("m"),
        messages=(ChatMessage("system", "x" * 1000), ChatMessage("user", "tail")),
    )
    assert len(prefix_key(long)) == 256 and prefix_key(long).startswith("system")
    a = GenerationRequest(model=ModelId("m"), messages=(ChatMessage("user", "same"),))
    b = GenerationRequest(model=ModelId("m"), messages=(ChatMessage("system", "same"),))
    assert prefix_key(a) != prefix_key(b)
    assert Counter(prefix_key(GenerationRequest(model=ModelId("m"), prompt="p" * 300)))["p"] == 256
