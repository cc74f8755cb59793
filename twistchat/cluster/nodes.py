"""
Which nodes are alive: a heartbeat key per node, and reaping the ones that stopped.

test-case-name: tests.test_cluster_e2e

Every node writes ``<prefix>node:<boot>`` with a time to live of ``timeout``
seconds, every ``timeout / 3`` seconds, and keeps its boot id in the set
``<prefix>nodes``.  Once a second each node looks at the others: a node whose key
has expired stopped (kill -9, a crash, cut off from Redis), so the looker
appends "node <boot> is dead" to the stream (:meth:`Replica.declare_dead`) and
every node's fold quits that node's users and frees their nicks.  Several nodes
may say it; the fold acts on the first.

A node that was cut off longer than the timeout finds its own key gone when it
writes the next heartbeat (``SET ... XX`` answers nil): it declares itself dead,
so its users quit everywhere, and the fold closes its connections and gives it a
new boot id (twistchat/cluster/fold.py): it does not come back with stale
members or nicks.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from twistchat.cluster.fold import Replica
from twistchat.cluster.stream import InputStream

__all__ = ["ClusterService"]

_log = Logger(namespace="twistchat.cluster")


class ClusterService(service.Service):
    """
    The node's part of the cluster: the stream read and folded, heartbeats, reaping.

    Started before the listeners (twistd starts services in order; the fold of
    what the stream already holds runs as it is read), stopped after every user's
    QUIT was appended (``stop_grace`` seconds at most).
    """

    def __init__(self, replica: Replica, stream: InputStream, name: str, reactor: Any,
                 timeout: float = 3.0, stop_grace: float = 2.0) -> None:
        self.replica = replica
        self.stream = stream
        self.node_name = name
        self.reactor = reactor
        self.timeout = timeout
        self.stop_grace = stop_grace
        self._beat: task.LoopingCall | None = None
        self._look: task.LoopingCall | None = None
        self._beat_boot: bytes | None = None
        self.ready: defer.Deferred = defer.Deferred()

    @property
    def _ms(self) -> str:
        return str(int(self.timeout * 1000))

    def _key(self, boot: bytes) -> bytes:
        return f"{self.stream.prefix}node:".encode() + boot

    def startService(self) -> None:
        super().startService()
        d = defer.ensureDeferred(self.stream.start(self.replica.apply))

        def started(_: Any) -> None:
            assert self.stream.epoch is not None
            self.replica.log.use_epoch(self.stream.epoch.decode())
            self._beat = task.LoopingCall(self._heartbeat)
            self._beat.clock = self.reactor
            self._beat.start(self.timeout / 3).addErrback(self._loop_failed)
            self._look = task.LoopingCall(self._reap_the_dead)
            self._look.clock = self.reactor
            self._look.start(min(1.0, self.timeout / 3), now=False).addErrback(
                self._loop_failed)
            _log.info("cluster: node {name} ({boot}) on redis://{host}:{port}/{db}",
                      name=self.node_name, boot=self.replica.boot, host=self.stream.host,
                      port=self.stream.port, db=self.stream.db)
            self.ready.callback(None)

        def failed(failure: Any) -> None:
            _log.error("twistd chat: --cluster: {error}", error=failure.getErrorMessage())
            self.ready.errback(failure)
            if self.reactor.running:
                self.reactor.stop()

        d.addCallbacks(started, failed)

    def _loop_failed(self, failure: Any) -> None:
        _log.failure("cluster timer failed", failure)

    async def _heartbeat(self) -> None:
        writer = self.stream.writer
        boot = self.replica.boot
        try:
            if self._beat_boot != boot:
                await writer.execute_command("SET", self._key(boot), self.node_name.encode(),
                                             "PX", self._ms, "NX")
                await writer.execute_command("SADD", f"{self.stream.prefix}nodes", boot)
                self._beat_boot = boot
                return
            answer = await writer.execute_command("SET", self._key(boot),
                                                  self.node_name.encode(), "PX", self._ms, "XX")
        except Exception:  # noqa: BLE001 - Redis away: the next beat tries again
            return
        if answer is None:
            # Our key expired while we could not reach Redis: the others may have let our
            # users go already; make sure they do, and start over.
            _log.warn("cluster: node {name} was cut off longer than {t} s; its users quit",
                      name=self.node_name, t=self.timeout)
            await self.replica.declare_dead(boot)

    async def _reap_the_dead(self) -> None:
        writer = self.stream.writer
        try:
            boots = await writer.execute_command("SMEMBERS", f"{self.stream.prefix}nodes")
            for boot in boots or []:
                if boot == self.replica.boot:
                    continue
                if not await writer.execute_command("EXISTS", self._key(boot)):
                    await self.replica.declare_dead(boot)
                    await writer.execute_command("SREM", f"{self.stream.prefix}nodes", boot)
            await self.stream.check_epoch()
        except Exception:  # noqa: BLE001 - Redis away: look again next time
            return

    async def _stop(self) -> None:
        for loop in (self._beat, self._look):
            if loop is not None and loop.running:
                loop.stop()
        deadline = self.reactor.seconds() + self.stop_grace
        while self.stream.pending and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, 0.02, lambda: None)
        try:
            # A clean stop: the others need not wait for the timeout to know.
            await self.stream.writer.execute_command("DEL", self._key(self.replica.boot))
        except Exception:  # noqa: BLE001
            pass
        await self.stream.stop()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.ensureDeferred(self._stop())
