"""
The front-ends: each translates one wire format into calls on the core.

test-case-name: tests.test_irc

``irc`` (TCP, the IRC client protocol) with ``ircv3`` (capabilities, labels,
batches), ``udp`` (sessions, broadcast, repair) with ``udpwire`` (its datagram
format).  A front-end frames, enforces its transport's limits, keeps its
capability view and delivers; it never reads the core's or the store's
insides, never decides a chat rule, and never knows another front-end exists
(the layer contract in setup.cfg checks the imports).
"""
