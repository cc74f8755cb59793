"""
The command table and dispatch without I/O: preconditions in one place, then the core call.
"""

from types import SimpleNamespace

import pytest

from tests.test_registry import Conn, joined, make
from twistchat.core.commands import COMMANDS, PLAIN, Context, dispatch
from twistchat.core.events import Delivery, Disconnect
from twistchat.frontends.irc import IRCProtocol
from twistchat.frontends.udp import UDPSession
from twistchat.wire import Message

LOCAL_VERBS = {"CAP", "CHATHISTORY", "REPAIR", "AUTHENTICATE", "REGISTER", "NS", "CS"}


class Local:
    """A front-end's local verbs that records each call (``("VERB", message)``)."""

    def __init__(self, *verbs: str) -> None:
        self.verbs = verbs
        self.calls = []

    def local_handler(self, verb):
        if verb not in self.verbs:
            return None

        def handler(message):
            self.calls.append((verb, message))
            return [Delivery((), Message("NOTICE", ("*", f"{verb} handled")))]
        return handler


def line(verb: str, *params: str) -> Message:
    return Message(verb, params)


def numerics(out) -> list:
    return [d.payload.command for d in out]


def unregistered(registry):
    return registry.connect(Conn(), "127.0.92.9")


def test_every_verb_has_a_handler_or_is_local():
    """Each verb of the table names a core handler, or is one of the front-ends' local verbs."""
    for verb, command in COMMANDS.items():
        assert verb == verb.upper()
        assert command.local == (command.handler is None)
        assert command.local or callable(command.handler), verb
    assert {verb for verb, c in COMMANDS.items() if c.local} == LOCAL_VERBS


def test_every_local_verb_is_served_by_some_front_end():
    """
    CAP and CHATHISTORY by the IRC front-end, REPAIR (and CAP) by the UDP one; with
    accounts (an authenticator), AUTHENTICATE, REGISTER and NS by both.
    """
    irc = {v for v in LOCAL_VERBS if _bare(IRCProtocol).local_handler(v) is not None}
    udp = {v for v in LOCAL_VERBS if _bare(UDPSession).local_handler(v) is not None}
    assert irc == {"CAP", "CHATHISTORY"} and udp == {"CAP", "REPAIR"}
    irc = {v for v in LOCAL_VERBS if _bare(IRCProtocol, True).local_handler(v) is not None}
    udp = {v for v in LOCAL_VERBS if _bare(UDPSession, True).local_handler(v) is not None}
    assert irc == {"CAP", "CHATHISTORY", "AUTHENTICATE", "REGISTER", "NS", "CS"}
    assert udp == {"CAP", "REPAIR", "NS", "CS", "AUTHENTICATE", "REGISTER"}
    assert irc | udp == LOCAL_VERBS


def _bare(cls, accounts=False):
    """
    An instance of ``cls`` made without __init__: only its local_handler is asked.

    Its factory (front-end) has an authenticator and services if ``accounts``.
    """
    bare = object.__new__(cls)
    owner = SimpleNamespace(authenticator=object() if accounts else None,
                            services=object() if accounts else None)
    if cls is IRCProtocol:
        bare.factory = owner
    else:
        bare.front = owner
    return bare


PRE_REGISTRATION = sorted(v for v, c in COMMANDS.items() if c.pre_registration)
NEEDS_REGISTRATION = sorted(v for v, c in COMMANDS.items() if not c.pre_registration)


def test_pre_registration_verbs_are_the_connection_ones():
    """Only NICK USER PASS CAP PING PONG QUIT, and SASL's and REGISTER, may come before 001."""
    assert PRE_REGISTRATION == sorted(["NICK", "USER", "PASS", "CAP", "PING", "PONG", "QUIT",
                                       "AUTHENTICATE", "REGISTER"])


@pytest.mark.parametrize("verb", NEEDS_REGISTRATION + ["FROBNICATE"])
def test_before_registration_other_verbs_get_451(verb):
    """Before 001 every verb that is not a registration verb (and any unknown verb) gets 451."""
    registry, _ = make()
    user = unregistered(registry)
    local = Local(*LOCAL_VERBS)
    out = dispatch(registry, user, line(verb, "#r", "x", "y"), PLAIN, local)
    assert numerics(out) == ["451"]
    assert local.calls == []


def test_unknown_verb_after_registration_is_421():
    """A verb the table does not have: 421 naming it."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    (out,) = dispatch(registry, alice, line("frobnicate", "x"))
    assert out.payload.command == "421" and out.payload.params[1] == "FROBNICATE"


@pytest.mark.parametrize("verb", sorted(LOCAL_VERBS))
def test_local_verb_without_a_front_end_handler_is_421(verb):
    """A local verb (REPAIR, CAP, CHATHISTORY) with local=None: 421, as for an unknown verb."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    out = dispatch(registry, alice, line(verb, "#r", "1", "100"), PLAIN, None)
    assert numerics(out) == ["421"]


def test_local_verb_the_front_end_does_not_serve_is_421():
    """A front-end with handlers, but not for this verb: 421 (REPAIR on TCP)."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    local = Local("CAP", "CHATHISTORY")
    assert numerics(dispatch(registry, alice, line("REPAIR", "#r", "1", "2"),
                             PLAIN, local)) == ["421"]
    assert local.calls == []


def test_local_handler_is_called_with_the_message():
    """A served local verb goes to the front-end's handler with the line; its answer comes back."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    local = Local("REPAIR")
    message = Message("repair", ("#r", "1", "100"), None, {"token": "t"})
    out = dispatch(registry, alice, message, PLAIN, local)
    assert local.calls == [("REPAIR", message)]
    assert [d.payload.params[1] for d in out] == ["REPAIR handled"]


def test_cap_before_registration_reaches_the_local_handler():
    """CAP is usable before 001: the front-end's handler gets it."""
    registry, _ = make()
    user = unregistered(registry)
    local = Local("CAP")
    dispatch(registry, user, line("CAP", "LS", "302"), PLAIN, local)
    assert [verb for verb, _ in local.calls] == ["CAP"]


TOO_FEW = [("JOIN", ()), ("PART", ()), ("KICK", ("#r",)), ("INVITE", ("bob",)),
           ("MODE", ()), ("TOPIC", ()), ("TAGMSG", ()), ("WHOIS", ()), ("ISON", ()),
           ("USERHOST", ())]


@pytest.mark.parametrize(("verb", "params"), TOO_FEW, ids=[v for v, _ in TOO_FEW])
def test_too_few_params_is_461(verb, params):
    """Fewer parameters than the table's min_params: 461 naming the verb; nothing is run."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    before = registry.latest("#r")
    (out,) = dispatch(registry, alice, line(verb, *params))
    assert out.payload.command == "461" and out.payload.params[1] == verb
    assert registry.latest("#r") == before


def test_enough_params_run_the_handler():
    """JOIN #r: the core joins the user (JOIN event, NAMES)."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    out = dispatch(registry, alice, line("JOIN", "#r"))
    assert out[0].payload.message.command == "JOIN"
    assert registry.can_read(alice, "#r")


def test_join_with_several_rooms_and_keys():
    """JOIN #a,#b key: one join per room, keys taken in order."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#b")
    registry.mode(alice, "#b", "+k", ["kb"])
    bob, _ = joined(registry, "bob")
    dispatch(registry, bob, line("JOIN", "#b,#c", "kb"))
    assert {key for key, _ in registry.rooms_of(bob)} == {"#b", "#c"}


def test_quit_with_reason_gives_a_disconnect():
    """QUIT :reason -> a Disconnect to the user, "Quit: reason" and the reason for peers."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    (out,) = dispatch(registry, alice, line("QUIT", "gone fishing"))
    assert out.to == (alice,)
    assert out.payload == Disconnect("Quit: gone fishing", "gone fishing")


def test_quit_without_reason_is_client_quit():
    """QUIT alone -> Disconnect("Client Quit"); also before registration."""
    registry, _ = make()
    user = unregistered(registry)
    (out,) = dispatch(registry, user, line("QUIT"))
    assert out.payload == Disconnect("Client Quit")


def test_ping_gives_pong():
    """PING token -> PONG server token, from the server, also before registration."""
    registry, _ = make()
    for user in (joined(registry, "alice")[0], unregistered(registry)):
        (out,) = dispatch(registry, user, line("PING", "abc"))
        assert out.to == (user,)
        assert out.payload == Message("PONG", ("srv", "abc"), "srv")


def test_ping_without_origin_is_409():
    """PING with no parameter: 409."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    assert numerics(dispatch(registry, alice, line("PING"))) == ["409"]


def test_pong_is_silent():
    """PONG answers nothing."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    assert dispatch(registry, alice, line("PONG", "x")) == []


@pytest.mark.parametrize(("verb", "params"), [("USER", ("a", "0", "*", "A")), ("PASS", ("p",)),
                                              ("USER", ()), ("PASS", ())])
def test_user_and_pass_after_registration_are_462(verb, params):
    """USER or PASS once registered: 462, even with too few parameters."""
    registry, _ = make()
    alice, _ = joined(registry, "alice")
    assert numerics(dispatch(registry, alice, line(verb, *params))) == ["462"]


@pytest.mark.parametrize(("verb", "params"), [("USER", ("a", "0", "*")), ("PASS", ())])
def test_user_and_pass_with_too_few_params_before_registration_are_461(verb, params):
    """USER with fewer than four parameters, PASS with none: 461 before registration."""
    registry, _ = make()
    user = unregistered(registry)
    (out,) = dispatch(registry, user, line(verb, *params))
    assert out.payload.command == "461" and out.payload.params[1] == verb


def test_nick_and_user_through_dispatch_register():
    """NICK then USER dispatched before registration: the welcome burst."""
    registry, _ = make()
    user = unregistered(registry)
    assert dispatch(registry, user, line("NICK", "dan")) == []
    out = dispatch(registry, user, line("USER", "dan", "0", "*", "Dan"))
    assert numerics(out)[0] == "001" and user.registered


def test_nick_after_registration_changes_nick():
    """NICK once registered goes to change_nick: the user is found under the new nick."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    dispatch(registry, alice, line("NICK", "alicia"))
    assert registry.find_user("alicia") is alice and registry.find_user("alice") is None


def test_commands_are_case_insensitive():
    """privmsg and PRIVMSG are the same verb."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    out = dispatch(registry, alice, line("privmsg", "#r", "hi"))
    assert out[0].payload.message.params == ("#r", "hi")


def test_echo_context_sends_the_sender_its_own_line():
    """Context(echo=True) reaches the registry: the sender is not skipped."""
    registry, _ = make()
    alice, _ = joined(registry, "alice", "#r")
    (plain,) = dispatch(registry, alice, line("PRIVMSG", "#r", "a"))
    (echoed,) = dispatch(registry, alice, line("PRIVMSG", "#r", "b"), Context(echo=True))
    assert plain.skip is alice and echoed.skip is None
