"""
The chat core: all chat state and every chat rule, with no Twisted and no I/O.

test-case-name: tests.test_registry

Front-ends (``twistchat.frontends``) translate their wire format into calls on
this package and deliver what it hands back; see docs/core.md for which module
owns which rule.  Time is always passed in (a ``clock`` callable), never read.
"""
