from __future__ import annotations

import pytest

from gateway.state.redisdb import ClusterURL, parse_cluster


def test_cluster_urls_are_parsed() -> None:
    assert parse_cluster("redis://127.0.0.1:6379/0") is None
    assert parse_cluster("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == ClusterURL(
        (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    )
    assert parse_cluster("redis+cluster://u:p%40ss@h:7000/") == ClusterURL((("h", 7000),), "u", "p@ss")


@pytest.mark.parametrize(
    "url", ["redis+cluster://", "redis+cluster://h", "redis+cluster://h:x", "redis+cluster://h:7000/3"]
)
def test_malformed_cluster_urls_fail(url: str) -> None:
    with pytest.raises(ValueError, match="cluster"):
        parse_cluster(url)
