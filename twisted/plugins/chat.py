"""
The ``chat`` plugin for twistd: ``twistd -n chat``.

Thin on purpose (as Twisted's ``twisted_words.py``): it names the module that
holds ``Options`` and ``makeService``.  No ``__init__.py`` lives beside it.
"""

from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "twistchat",
    "twistchat.service",
    "A chat server: IRC over TCP and broadcast over UDP, one room registry.",
    "chat",
)
