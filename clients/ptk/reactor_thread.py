"""
The Twisted reactor in a daemon thread, beside the prompt_toolkit UI.

test-case-name: tests.test_ptk_app

STYLE.md section 4 ("Threads"), after ptpython's concurrency notes: the UI
owns the main thread, where signals arrive; the reactor runs in a daemon
thread without signal handlers.  The UI reaches the network only through
:meth:`ReactorThread.call` (``reactor.callFromThread``); the network reaches
the UI only through :meth:`UIBridge.post` (the prompt_toolkit loop's
``call_soon_threadsafe``, then ``app.invalidate()``).  Nothing blocks the UI
thread on the network, except :meth:`ReactorThread.call_blocking` at start-up
and the bounded join when quitting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from twisted.internet import threads
from twisted.logger import Logger

__all__ = ["ReactorThread", "UIBridge"]


class ReactorThread:
    """Runs ``reactor`` in a daemon thread; calls cross with callFromThread."""

    def __init__(self, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.thread: threading.Thread | None = None

    def start(self) -> ReactorThread:
        """Start the reactor thread (once)."""
        if self.thread is None:
            self.thread = threading.Thread(
                target=self.reactor.run, kwargs={"installSignalHandlers": False},
                name="twisted-reactor", daemon=True)
            self.thread.start()
        return self

    def call(self, fn: Callable, *args, **kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` in the reactor thread, soon; never blocks."""
        self.reactor.callFromThread(fn, *args, **kwargs)

    def call_blocking(self, fn: Callable, *args, **kwargs):
        """Run ``fn`` in the reactor thread and wait for its (Deferred) result."""
        return threads.blockingCallFromThread(self.reactor, fn, *args, **kwargs)

    def stop(self, before: Callable | None = None, timeout: float = 3.0) -> bool:
        """
        Run ``before()`` (may return a Deferred: a clean QUIT), stop the reactor, join.

        Bounded: the reactor is stopped after ``timeout`` - 0.5 s even if
        ``before`` never finishes, and the join waits at most ``timeout``.
        True if the thread ended.
        """
        if self.thread is None:
            return True
        reactor = self.reactor

        def shutdown():
            from twisted.internet import defer

            stopped: list[bool] = []

            def stop(_=None):
                if not stopped and reactor.running:
                    stopped.append(True)
                    reactor.stop()

            reactor.callLater(max(timeout - 0.5, 0.1), stop)
            d = defer.maybeDeferred(before) if before is not None else defer.succeed(None)
            d.addBoth(stop)

        try:
            reactor.callFromThread(shutdown)
        except Exception:
            return False
        self.thread.join(timeout)
        return not self.thread.is_alive()


class UIBridge:
    """Posts calls from the reactor thread into the prompt_toolkit loop, then redraws."""

    _log = Logger()

    def __init__(self, app) -> None:
        self.app = app
        self.loop = None

    def attach(self, loop) -> None:
        """The asyncio loop the application runs in (set from ``pre_run``)."""
        self.loop = loop

    def post(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` in the UI thread, then invalidate the app (thread-safe)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def run():
            try:
                fn(*args)
            except Exception:
                # A bug of ours on one event must not stop the screen (prompt_toolkit
                # would print the traceback over it): log it (--log) and go on.
                self._log.failure("UI failed on {args!r}", args=args)
            finally:
                self.app.invalidate()

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:
            pass  # the loop closed while quitting: nothing left to show
