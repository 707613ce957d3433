"""The agent's bounded local buffer of samples not yet accepted by the server.

Samples wait here until a post succeeds. When the buffer is full the oldest sample goes and
is counted in ``dropped``; the count is reported to the server with the next post and on
``GET /health``. Nothing is lost while an outage is shorter than ``capacity`` intervals.
"""

from __future__ import annotations

from collections import deque

from bramble.services.agent.sampler import Sample


class SampleBuffer:
    """A FIFO of at most ``capacity`` samples that counts what it had to drop."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._samples: deque[Sample] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: Sample) -> None:
        if len(self._samples) >= self.capacity:
            self._samples.popleft()
            self.dropped += 1
        self._samples.append(sample)

    def peek(self, limit: int) -> list[Sample]:
        """The oldest ``limit`` samples, left in the buffer."""
        return [self._samples[i] for i in range(min(limit, len(self._samples)))]

    def commit(self, sent: list[Sample]) -> None:
        """Remove ``sent`` (a ``peek`` result) now that the server accepted them.

        Samples dropped meanwhile (the buffer overflowed during the post) are not removed
        twice: only the leading samples that are still the sent ones go.
        """
        wanted = {id(s) for s in sent}
        while self._samples and id(self._samples[0]) in wanted:
            self._samples.popleft()
