"""The lifecycle shared by the per-process writer threads (impressions, group commit)."""

from __future__ import annotations

import threading

__all__ = ["QueueThread"]


class QueueThread:
    """A thread serving a queue guarded by ``_cond`` until ``stop``, which lets it drain the
    queue first. Subclasses implement ``_run`` and end it once ``_stopping`` and nothing is
    left; they queue only while ``_accepting()`` holds, decided under ``_cond``, since after a
    stop the thread may already have drained and ended."""

    thread_name = "queue"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let the thread finish what is queued, then end it (graceful shutdown)."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread.join(timeout=30)
        self._thread = None

    def _accepting(self) -> bool:
        """Call with ``_cond`` held."""
        return self._thread is not None and not self._stopping

    def _run(self) -> None:
        raise NotImplementedError
