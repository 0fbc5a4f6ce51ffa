"""A minimal stock faust-streaming app, as a Faust user would write it: one of bench/peers.py's
contenders.

    python -m bench.peer_faust --bootstrap HOST:PORT --group G --data-dir DIR [--partitions 6] TOPIC [TOPIC ...]

One agent over the input topics; it decodes each value with the project's codec
(`schemas.codec.FastavroCodec`) and makes two updates per event to RocksDB tables (changelog-backed,
co-partitioned with the input): the vendor's event count and its placed revenue. Faust's defaults
otherwise (at least once, acks per event), but commits every second as the vendorpulse worker does, so
that bench/peers.py sees the committed offsets move often enough to time 10 % to 90 % of the log.
Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import faust

from schemas.codec import FastavroCodec
from schemas.events import OrderPlaced


def create_app(bootstrap: str, group: str, data_dir: str, topics: list[str], partitions: int) -> faust.App:
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="rocksdb://",
        datadir=data_dir,
        autodiscover=False,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=partitions,  # the tables' changelogs are co-partitioned with the input
        broker_commit_interval=1.0,
    )
    source = app.topic(*topics, key_type=bytes, value_type=bytes, value_serializer="raw")
    count = app.Table("count", default=int)
    revenue = app.Table("revenue", default=int)
    codec = FastavroCodec()

    @app.agent(source)
    async def fold(stream: Any) -> None:
        async for value in stream:
            event = codec.decode(value)
            count[event.vendor_id] += 1
            revenue[event.vendor_id] += event.total if isinstance(event, OrderPlaced) else 0

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--partitions", type=int, default=6, help="the input topics' partition count")
    parser.add_argument("topics", nargs="+")
    args = parser.parse_args()
    app = create_app(args.bootstrap, args.group, args.data_dir, args.topics, args.partitions)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]  # Faust's own CLI
    app.main()


if __name__ == "__main__":
    main()
