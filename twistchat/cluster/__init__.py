"""
Several ``twistd chat`` nodes on one Redis (issue #15; docs/cluster.md).

test-case-name: tests.test_cluster

The nodes replicate the core: every input that changes chat state (a connection,
a command line, a CAP hold or release, a quit) is appended to one Redis stream,
and every node folds that stream, in its one order, through the same core
(:class:`~twistchat.core.registry.Registry`).  Same inputs in the same order give
the same rooms, nicks, sequence numbers and msgids everywhere; each node then
delivers only to its own connections.

- :mod:`twistchat.cluster.stream`: the Redis stream of inputs (append, read in
  order, reconnect, bounded queue);
- :mod:`twistchat.cluster.fold`: entries to core calls, on every node;
- :mod:`twistchat.cluster.nodes`: heartbeats, and reaping nodes that died.
"""
