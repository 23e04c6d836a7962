"""Which devices' streams have holes, learned from what each commit stored, and the
resend commands due for them (the pure rules are ``gaps.GapTracker``'s)."""

import logging
from collections import defaultdict
from collections.abc import Sequence

from gateway import metrics
from gateway.gaps import GapTracker, ResendRequest
from schemas import SealedEvent
from schemas.streams import device_stream
from services.eventstore import DeadLetter, EventStore

log = logging.getLogger(__name__)


class GapWatch:
    def __init__(self, tracker: GapTracker) -> None:
        self._tracker = tracker
        self._contiguous: dict[str, int] = {}
        """Per device, a seq its stored stream is known whole up to."""

    def observe(
        self,
        store: EventStore,
        events: Sequence[SealedEvent],
        rejected: Sequence[DeadLetter],
        now: float,
    ) -> None:
        """Account for a commit of ``events`` (``rejected`` the store's refusals)."""
        seqs: dict[str, list[int]] = defaultdict(list)
        for event in events:
            seqs[event.device_id].append(event.seq)
        troubled = {letter.rejection.device_id for letter in rejected}
        for device_id, device_seqs in seqs.items():
            known = self._contiguous.get(device_id)
            if (
                known is not None
                and device_id not in troubled
                and not self._tracker.has_open_gaps(device_id)
            ):
                # The common case, answered without a query: the batch extends a whole stream.
                fresh = sorted({seq for seq in device_seqs if seq > known})
                if fresh == list(range(known + 1, known + 1 + len(fresh))):
                    self._contiguous[device_id] = known + len(fresh)
                    continue
            stream = device_stream(device_id)
            through = store.contiguous_through(stream, known or 0)
            self._contiguous[device_id] = through
            gaps = store.find_gaps(stream, through)
            self._tracker.observe(device_id, [(gap.from_seq, gap.to_seq) for gap in gaps], now)
        metrics.GAPS_OPEN.set(self._tracker.open_gaps())

    def due(self, now: float) -> list[ResendRequest]:
        """Resend requests to send now; gaps out of attempts are given up (and logged)."""
        abandoned_before = self._tracker.abandoned
        requests = self._tracker.due(now)
        given_up = self._tracker.abandoned - abandoned_before
        if given_up:
            metrics.GAPS_ABANDONED.inc(given_up)
            log.error("gave up on %d gaps after every resend attempt", given_up)
        metrics.GAPS_OPEN.set(self._tracker.open_gaps())
        return requests
