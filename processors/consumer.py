"""Faust's aiokafka consumer with a cheaper hand-off of each fetched record to the streams.

Faust's `Consumer._drain_messages` hands every record to the streams with
`await self.wait_first(callback(message), self.suspend_flow.wait())`: mode's `wait_first` wraps each
of the two, plus the service's stopped and crashed events, in a new task, waits for the first, and
cancels the other three. Measured on this machine that is tens of microseconds a record
(`bench/processor.py` compares both in one run), for a callback that almost always completes at once:
it waits only while the flow is suspended (a rebalance) or a stream's buffer is full.

`DirectDrainConsumer` awaits the callback directly while the flow runs and skips records fetched
while it is suspended, as `wait_first` would have. The one difference: a callback that blocks on a
full stream buffer is not abandoned when the flow is suspended meanwhile; it delivers its record once
the buffer has room (a rebalance clears the buffers), and the stream skips it as read in a stale
generation. Either way the record is read again after the rebalance's seek, and the worker holds every
record against the next offset it must fold (`processors.positions`), so nothing is lost.

It also seeks without a race (`request_seek`). Faust's `Consumer.seek` sets the partition's read offset
while the loop may be half-way through records fetched before the seek; the loop then sets the read
offset past them again, and drops every re-read record below it (seen: a seek back to 213 undone by a
fetched batch ending at 829). A requested seek is made by the loop itself, between two fetches, and
records of that partition fetched before it are skipped (the seek reads them again). Everything else
in the loop is Faust 0.15's, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP, AppT
from mode import Service

from processors.exceptions import TransportError


class DirectDrainConsumer(Consumer):
    _pending_seeks: dict[TP, int] | None = None

    def request_seek(self, tp: TP, offset: int) -> None:
        """Read `tp` again from `offset`, from the next fetch on."""
        if self._pending_seeks is None:
            self._pending_seeks = {}
        self._pending_seeks[tp] = offset

    async def _seek_requested(self) -> None:
        seeks, self._pending_seeks = self._pending_seeks or {}, None
        assigned = self.assignment()
        for tp, offset in seeks.items():
            if tp not in assigned:
                continue  # moved away meanwhile: its next owner starts from the stored watermark
            await self._seek(tp, offset)
            self._read_offset[tp] = offset

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover  (the worker runs it)
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if self._pending_seeks:
                    await self._seek_requested()
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        if self._pending_seeks and tp in self._pending_seeks:
                            continue  # fetched before a requested seek, which reads it again
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if not suspended():  # the only change: no wait_first
                                await callback(message)
                            set_read_offset(tp, offset)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            unset_flag(flag_consumer_fetching)


def use_direct_drain(app: AppT) -> None:
    """Make `app` create a `DirectDrainConsumer`; call before anything touches `app.consumer`."""
    transport = app.transport
    if not isinstance(transport, AIOKafkaTransport):
        raise TransportError(
            f"the direct-drain consumer needs Faust's aiokafka transport, not {type(transport).__name__}; "
            "set VENDORPULSE_DIRECT_DRAIN=false"
        )
    transport.Consumer = DirectDrainConsumer  # type: ignore[misc]  # Faust reads the class from here
