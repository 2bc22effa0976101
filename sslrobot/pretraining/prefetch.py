"""Load the next batches in a background thread while the current one trains."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetcher(Generic[T]):
    """Iterate ``source`` in a daemon thread, ``depth`` items ahead, in the same order.

    Reading windows is mostly system calls and memory copies that release the GIL, so a thread
    overlaps them with the training step at no pickling cost (unlike ``DataLoader`` worker
    processes, which copy every batch once more through shared memory). An exception in the
    thread is raised again by ``__next__``.
    """

    def __init__(self, source: Iterator[T], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        #: The end or error already handed out: asked again, it is raised again (the thread
        #: has exited, and a get() on its empty queue waited for ever).
        self._ended: object | None = None
        self._thread = threading.Thread(target=self._run, name="sslrobot-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._source:
                self._put(item)
                if self._stop.is_set():
                    return
            self._put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            self._put(error)

    def _put(self, item: object) -> None:
        """Queue ``item``, waiting for room; give up once ``close()`` was called."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        item = self._queue.get() if self._ended is None else self._ended
        if item is _DONE:
            self._ended = item
            raise StopIteration
        if isinstance(item, BaseException):
            self._ended = item
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the batch it is reading)."""
        self._stop.set()
        self._thread.join(timeout=10)
