"""HTTP routes (contract §6): the snapshot, the admin status and test broadcast, health and metrics."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from api.auth import AdminClaims, CurrentClaims
from api.broadcast import Broadcaster
from api.exceptions import BroadcastError
from api.kafka import Feed
from api.session import Services

PREFIX = "/api/v1/analytics"


def services_of(request: Request) -> Services:
    services = request.app.state.services
    assert isinstance(services, Services)
    return services


def feed_of(request: Request) -> Feed | None:
    feed = request.app.state.feed
    assert feed is None or isinstance(feed, Feed)
    return feed


def broadcaster_of(request: Request) -> Broadcaster:
    broadcaster = request.app.state.broadcaster
    assert isinstance(broadcaster, Broadcaster)
    return broadcaster


Svc = Annotated[Services, Depends(services_of)]
FeedDep = Annotated[Feed | None, Depends(feed_of)]
BroadcasterDep = Annotated[Broadcaster, Depends(broadcaster_of)]


class BroadcastRequest(BaseModel):
    message: str = Field(min_length=1, max_length=1000)
    vendor_id: str | None = Field(default=None, min_length=1, max_length=200)


class BroadcastReceipt(BaseModel):
    broadcastId: str  # noqa: N815 - JSON field names follow the contract's camelCase
    topic: str
    partition: int
    offset: int


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


router = APIRouter()

_SNAPSHOT_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "the vendor's latest snapshot (contract §5), zero-filled when it has no events"},
    401: {"description": "missing, invalid or expired token"},
    403: {"description": "the token may not read this vendor"},
    421: {"description": "this API node serves another shard of the vendors (docs/SCALING.md)"},
    503: {"description": "snapshots are still being rebuilt from Kafka after a start"},
}


@router.get(f"{PREFIX}/vendors/{{vendor_id}}/metrics", responses=_SNAPSHOT_DOC, tags=["analytics"])
async def vendor_metrics(vendor_id: str, claims: CurrentClaims, services: Svc, feed: FeedDep) -> Response:
    """The latest metrics snapshot of one vendor."""
    if not claims.may_read(vendor_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token may not read that vendor")
    if feed is not None and not feed.owns(vendor_id):
        raise HTTPException(
            status.HTTP_421_MISDIRECTED_REQUEST,
            f"vendor served by shard {feed.owner(vendor_id)}; this node is shard {feed.shard}",
        )
    if not services.hub.caught_up:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "rebuilding snapshots", headers={"Retry-After": "1"}
        )
    return Response(services.hub.latest(vendor_id)[1], media_type="application/json")


@router.get(f"{PREFIX}/websocket/status", tags=["admin"])
async def websocket_status(_: AdminClaims, services: Svc, feed: FeedDep) -> dict[str, Any]:
    """Connections in total and per vendor, uptime, messages sent, send latency, consumer lag."""
    hub, telemetry = services.hub, services.telemetry
    return {
        "instance": services.settings.instance_id,
        "shard": str(services.settings.shard),
        "uptimeSeconds": round(telemetry.uptime_seconds(), 3),
        "ready": feed.ready if feed is not None else hub.caught_up,
        "kafkaReachable": feed.kafka_reachable if feed is not None else None,
        "connections": {
            "total": hub.total(),
            "perVendor": {v: len(c) for v, c in sorted(hub.connections.items())},
        },
        "messagesSent": telemetry.messages_sent,
        "sendLatencyMs": telemetry.latency_ms(),
        "consumerLag": dict(feed.lag) if feed is not None else {},
        "vendorsWithSnapshots": len(hub.snapshots),
    }


@router.post(
    f"{PREFIX}/websocket/test-broadcast",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["admin"],
    response_model=BroadcastReceipt,
)
async def test_broadcast(
    claims: AdminClaims, broadcaster: BroadcasterDep, request: Annotated[BroadcastRequest, Body()]
) -> dict[str, Any]:
    """Send a message through Kafka to the WebSocket clients of every API instance (one vendor's, or all)."""
    try:
        return await broadcaster.send(request.message, request.vendor_id, claims.subject)
    except BroadcastError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {"description": "not ready"}})
async def readyz(services: Svc, feed: FeedDep, request: Request) -> Response:
    """Kafka reachable, partitions assigned, snapshots rebuilt (and the schema registry answers, if any)."""
    ready = feed.ready if feed is not None else services.hub.caught_up
    body: dict[str, Any] = {}
    if feed is not None:
        body |= {
            "kafkaReachable": feed.kafka_reachable,
            "assigned": feed.assigned,
            "rebuilt": services.hub.caught_up,
            "waitingForTopics": feed.waiting_for,
        }
    if (probe := request.app.state.registry_probe) is not None:
        body["schemaRegistryReachable"] = reachable = await probe.reachable()
        if not reachable:
            ready = False
            body["schemaRegistry"] = f"{probe.url} does not answer ({probe.error}): the worker waits for it"
    return _json({"status": "ready" if ready else "not ready", **body}, 200 if ready else 503)


@router.get("/metrics", tags=["ops"])
async def metrics(services: Svc) -> Response:
    """Prometheus exposition."""
    return Response(services.telemetry.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
