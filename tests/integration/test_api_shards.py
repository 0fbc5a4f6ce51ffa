"""Two API nodes splitting the vendors (`VENDORPULSE_API_SHARD`, docs/SCALING.md) against the session's
real Kafka: each node ingests only its partitions, serves its vendors, and names the right shard for
the others (HTTP 421, WebSocket close 4021)."""

from __future__ import annotations

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.auth import make_token
from schemas.topics import Topics, partition_for
from tests.fakes import snapshot
from tests.integration.test_api_live import produce, recv_type, running_api, settings_for, ws_url

pytestmark = pytest.mark.integration


def vendor_of_shard(shard: int, count: int, partitions: int = 6) -> str:
    return next(
        v for n in range(1000) if partition_for((v := f"vendor-{n}").encode(), partitions) % count == shard
    )


async def test_two_shards_split_the_vendors_between_them(kafka_bootstrap: str, topics: Topics) -> None:
    mine, theirs = vendor_of_shard(0, 2), vendor_of_shard(1, 2)
    await produce(kafka_bootstrap, topics.metrics, [(mine, snapshot(mine, 3)), (theirs, snapshot(theirs, 5))])
    node0 = settings_for(kafka_bootstrap, topics, api_shard="0/2", instance_id="api-0")
    node1 = settings_for(kafka_bootstrap, topics, api_shard="1/2", instance_id="api-1")
    admin = make_token(None, admin=True, settings=node0)
    async with running_api(node0) as port0, running_api(node1) as port1:
        for port, own, other, shard in ((port0, mine, theirs, "1/2"), (port1, theirs, mine, "0/2")):
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                headers = {"Authorization": f"Bearer {admin}"}
                ok = await http.get(f"/api/v1/analytics/vendors/{own}/metrics", headers=headers)
                assert ok.status_code == 200
                assert ok.json()["vendorId"] == own
                wrong = await http.get(f"/api/v1/analytics/vendors/{other}/metrics", headers=headers)
                assert wrong.status_code == 421
                assert f"shard {shard}" in wrong.json()["detail"]
                status = (await http.get("/api/v1/analytics/websocket/status", headers=headers)).json()
                assert status["vendorsWithSnapshots"] == 1  # only its own partitions were ingested
            async with connect(ws_url(port, make_token(other, settings=node0), other), proxy=None) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await recv_type(ws, "analytics_update")
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4021
            assert f"shard {shard}" in closed.value.rcvd.reason

        async with connect(ws_url(port0, make_token(mine, settings=node0), mine), proxy=None) as ws:
            assert (await recv_type(ws, "analytics_update"))["data"]["version"] == 3
            await produce(kafka_bootstrap, topics.metrics, [(mine, snapshot(mine, 4))])
            assert (await recv_type(ws, "metrics_update"))["data"]["version"] == 4
