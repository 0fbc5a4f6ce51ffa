"""A minimal Quix Streams app, as a Quix user would write it: one of bench/peers.py's contenders.

    python -m bench.peer_quix --bootstrap HOST:PORT --group G --state-dir DIR \
        [--guarantee at-least-once|exactly-once] TOPIC [TOPIC ...]

One streaming dataframe per input topic; each decodes the value with the project's codec
(`schemas.codec.FastavroCodec`) and keeps two figures per vendor (the message key) in Quix's
RocksDB state with its changelog topic: the vendor's event count and its placed revenue. So it does
what the stock Faust contender (bench/peer_faust.py) does: decode and two state updates per event.

Commits every second, as the vendorpulse worker and the Faust contender do (Quix's default is 5 s),
so that bench/peers.py sees the committed offsets move often enough to time 10 % to 90 % of the log.
Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
from typing import Any

from quixstreams import Application, State
from quixstreams.models.serializers import Deserializer

from schemas.codec import FastavroCodec
from schemas.events import OrderPlaced

COMMIT_INTERVAL_S = 1.0


class EventDeserializer(Deserializer):
    """Avro single-object bytes -> the project's event record."""

    def __init__(self) -> None:  # Deserializer's own takes and keeps nothing
        self.codec = FastavroCodec()

    def __call__(self, value: bytes, ctx: Any) -> Any:
        return self.codec.decode(value)


def count_and_revenue(event: Any, state: State[str, int]) -> None:
    state.set("count", state.get("count", 0) + 1)
    revenue = event.total if isinstance(event, OrderPlaced) else 0
    state.set("revenue", state.get("revenue", 0) + revenue)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--guarantee", choices=("at-least-once", "exactly-once"), default="at-least-once")
    parser.add_argument("topics", nargs="+")
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=COMMIT_INTERVAL_S,
        state_dir=args.state_dir,
        processing_guarantee=args.guarantee,
        loglevel="WARNING",
    )
    for name in args.topics:
        sdf = app.dataframe(app.topic(name, value_deserializer=EventDeserializer(), key_deserializer="str"))
        sdf.update(count_and_revenue, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
