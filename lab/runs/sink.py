"""Buffered writing of a run's events into the store."""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from lab.errors import LabError
from lab.events import EvalEvent, Event, EventSink, LearningRateFoundEvent, ResultEvent, StatusEvent
from lab.runs.store import RunStore

log = logging.getLogger(__name__)
LOG_EVERY_SECONDS = 60.0


class StoreSink:
    """Buffers events and writes them from a background thread every `flush_seconds`, at once for
    status / eval / result events, so the training loop never waits on SQLite for a step event."""

    _URGENT = (StatusEvent, EvalEvent, ResultEvent)

    def __init__(self, store: RunStore, run_id: str, flush_seconds: float = 0.5) -> None:
        self.store, self.run_id, self.flush_seconds = store, run_id, flush_seconds
        self._buffer: list[Event] = []
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.Lock()  # keeps batches in emission order
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name=f"lab-sink-{run_id}", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, LearningRateFoundEvent):
            record_found_learning_rate(self.store, self.run_id, event.learning_rate, event.head_learning_rate)
        with self._buffer_lock:
            self._buffer.append(event)
        if isinstance(event, self._URGENT):
            self._wake.set()

    def flush(self) -> None:
        with self._write_lock:
            with self._buffer_lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return
            try:
                self.store.append_events(self.run_id, batch)
            except Exception:
                with self._buffer_lock:  # keep them for the next try rather than lose them
                    self._buffer[:0] = batch
                raise

    def _flush_loop(self) -> None:
        last_said = -LOG_EVERY_SECONDS
        while not self._closed.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # kept in the buffer; said once a minute, not every half second
                if time.monotonic() - last_said >= LOG_EVERY_SECONDS:
                    log.warning("Could not write events of run %s; retrying: %s", self.run_id, exc)
                    last_said = time.monotonic()

    def close(self) -> None:
        """Stop the background thread and write what is left."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        self.flush()


def record_found_learning_rate(store: RunStore, run_id: str, rate: float, head_rate: Optional[float] = None) -> None:
    """`learning_rate: auto` found `rate` (and the head's `head_rate` beside it): the run's stored config holds the
    numbers from now on, so a resume and the standalone script use them and never test again. A config that cannot
    be written is said in the log (a resume would then test again, and find the same rate: the test is seeded)."""
    path = store.run_dir(run_id) / "config.yaml"
    try:
        config = store.load_config(run_id)
        config.train.learning_rate = rate
        if head_rate is not None:
            config.train.head_learning_rate = head_rate
        written = path.with_name("config.yaml.tmp")
        config.save(written)
        written.replace(path)
    except (OSError, LabError) as exc:
        log.warning("Could not record the learning rate %g found for run %s in %s: %s", rate, run_id, path, exc)


def tee(*sinks: EventSink) -> EventSink:
    def send(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return send
