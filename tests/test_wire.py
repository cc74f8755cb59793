"""
Tests for twistchat.wire: the IRC line grammar, parse and format.

The public parser vectors (ircdocs/parser-tests: msg-split, msg-join,
userhost-split) run as tables; hypothesis checks the round trips with
strategies written from the grammar, and that parse() raises nothing but
WireError on any input.
"""

import pickle

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from parser_tests.data import msg_join, msg_split, userhost_split

from twistchat.wire import (
    MAX_BODY,
    MAX_TAGS,
    InvalidUTF8,
    LineTooLong,
    Message,
    WireError,
    encode,
    escape_tag_value,
    format_message,
    format_tags,
    parse,
    split_source,
    text_param,
    unescape_tag_value,
)

# Large enough that the round-trip properties never meet a length limit;
# the limits have tests of their own below.
UNLIMITED = {"max_body": 10**9, "max_tags": 10**9}


def _message_from_atoms(atoms):
    """
    Build the Message a parser-tests "atoms" mapping describes.
    """
    return Message(
        command=atoms["verb"],
        params=tuple(atoms.get("params", ())),
        source=atoms.get("source"),
        tags=atoms.get("tags", {}),
    )


# --- the public vectors ------------------------------------------------------


@pytest.mark.parametrize(
    "vector", msg_split["tests"], ids=[t["input"] for t in msg_split["tests"]]
)
def test_msg_split_vector(vector):
    """
    parse() splits each msg-split.yaml line into exactly its atoms.
    """
    assert parse(vector["input"]) == _message_from_atoms(vector["atoms"])


@pytest.mark.parametrize(
    "vector", msg_split["tests"], ids=[t["input"] for t in msg_split["tests"]]
)
def test_msg_split_vector_as_bytes(vector):
    """
    parse() gives the same message for a vector's UTF-8 bytes with a CRLF.
    """
    line = vector["input"].encode("utf-8") + b"\r\n"
    assert parse(line) == _message_from_atoms(vector["atoms"])


@pytest.mark.parametrize(
    "vector", msg_join["tests"], ids=[t["desc"] for t in msg_join["tests"]]
)
def test_msg_join_vector(vector):
    """
    format_message() writes each msg-join.yaml message as one of its matches.
    """
    assert format_message(_message_from_atoms(vector["atoms"])) in vector["matches"]


@pytest.mark.parametrize(
    "vector", userhost_split["tests"], ids=[t["source"] for t in userhost_split["tests"]]
)
def test_userhost_split_vector(vector):
    """
    split_source() splits each userhost-split.yaml source into nick, user, host.
    """
    atoms = vector["atoms"]
    expected = (atoms.get("nick", ""), atoms.get("user", ""), atoms.get("host", ""))
    assert split_source(vector["source"]) == expected


# --- strategies from the grammar --------------------------------------------

# RFC 1459: no part of a line may hold NUL, CR or LF; a str with lone
# surrogates cannot be sent at all.
_LINE_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0")
_ATOM_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\0 ")

commands = st.one_of(
    st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.text(_ATOM_CHARS, min_size=1, max_size=12).filter(lambda c: c[0] not in ":@"),
)
sources = st.text(_ATOM_CHARS, min_size=1, max_size=30)
middles = st.text(_ATOM_CHARS, min_size=1, max_size=12).filter(lambda p: p[0] != ":")
trailings = st.text(_LINE_CHARS, max_size=40)
params = st.builds(
    lambda middle, last: (*middle, *last),
    st.lists(middles, max_size=14),
    st.one_of(st.just(()), trailings.map(lambda t: (t,))),
)
# <key> ::= [ <client_prefix> ] [ <vendor> '/' ] <key_name>
tag_keys = st.from_regex(r"\+?([A-Za-z0-9.-]{1,10}/)?[A-Za-z0-9-]{1,10}", fullmatch=True)
# Any value but NUL: ';', SPACE, '\', CR and LF travel escaped.
tag_values = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=20
)
tag_maps = st.dictionaries(tag_keys, tag_values, max_size=5)
messages = st.builds(
    Message,
    command=commands,
    params=params,
    source=st.none() | sources,
    tags=tag_maps,
)

# An escaped value in canonical form: only the five escapes the spec defines.
_escaped_values = st.lists(
    st.one_of(
        st.text(
            st.characters(exclude_categories=("Cs",), exclude_characters="\\; \r\n\0"),
            min_size=1,
            max_size=5,
        ),
        st.sampled_from(["\\:", "\\s", "\\\\", "\\r", "\\n"]),
    ),
    max_size=5,
).map("".join)


@st.composite
def canonical_lines(draw):
    """
    A line written the one way format_message() writes it: single spaces,
    ':' before the last parameter only where needed or free text, tags escaped
    canonically and without '=' when empty.  Built from the grammar, not
    from format_message().
    """
    parts = []
    tags = draw(st.dictionaries(tag_keys, _escaped_values, max_size=4))
    if tags:
        parts.append("@" + ";".join(f"{k}={v}" if v else k for k, v in tags.items()))
    source = draw(st.none() | sources)
    if source is not None:
        parts.append(":" + source)
    command = draw(commands)
    parts.append(command)
    middle = draw(st.lists(middles, max_size=5))
    parts.extend(middle)
    last = draw(st.none() | trailings)
    if last is not None:
        needs_colon = not last or last[0] == ":" or " " in last \
            or text_param(command, len(middle))
        parts.append(":" + last if needs_colon else last)
    elif middle and text_param(command, len(middle) - 1):
        parts[-1] = ":" + parts[-1]  # the last middle is the last parameter: free text
    return " ".join(parts)


# Lines built from the grammar's own tokens, good and bad, so that random
# input reaches every branch of the parser and not only "EMPTY".
_tokens = st.sampled_from(
    [" ", "  ", ":", "@", ";", "=", "\\", "\\s", "\\:", "a", "Zz", "123", "+", "/",
     ".", "-", "!", "\t", "é", "€", "\U0001f600", "\r", "\n", "\r\n", "\0", "\ud800"]
)
fuzzy_lines = st.lists(_tokens, max_size=40).map("".join)
limits = st.integers(min_value=-2, max_value=600)


# --- round trips -------------------------------------------------------------


@settings(deadline=None, max_examples=300)
@given(messages)
@example(Message("PRIVMSG", ("#room", ""), "n!u@h", {"time": "2024-01-01T00:00:00Z"}))
@example(Message("TAGMSG", ("#r",), None, {"+draft/react": "a; b\\c\r\n", "k": ""}))
def test_parse_format_round_trip(msg):
    """
    parse(format_message(m)) == m for any message the grammar allows.
    """
    assert parse(format_message(msg), **UNLIMITED) == msg


@settings(deadline=None)
@given(messages)
def test_parse_encode_round_trip(msg):
    """
    parse(encode(m)) == m: the bytes path with its CRLF gives the same message.
    """
    assert parse(encode(msg), **UNLIMITED) == msg


@settings(deadline=None, max_examples=300)
@given(canonical_lines())
@example("@a=b\\\\and\\nk;d=gh\\:764 :coolguy foo par1 :par 2")
@example("foo ::x")
def test_format_parse_canonical(line):
    """
    format_message(parse(x)) == x for a line already in canonical form.
    """
    assert format_message(parse(line, **UNLIMITED)) == line


@pytest.mark.parametrize(
    ("line", "normalised"),
    [
        ("foo  bar   baz", "foo bar baz"),
        ("   PING  :x y\r\n", "PING :x y"),
        ("foo bar :baz", "foo bar baz"),
        (":src AWAY ", ":src AWAY"),
        (": PING", "PING"),
        ("@h=;a=b\\1 foo", "@h;a=b1 foo"),
        ("@tag1=value1\\ COMMAND", "@tag1=value1 COMMAND"),
        ("@a=1;a=2 foo", "@a=2 foo"),
        ("@a=b;inv@lid=1;;=x foo", "@a=b foo"),
        ("@a=b  :src   foo", "@a=b :src foo"),
    ],
)
def test_format_parse_normalises(line, normalised):
    """
    format_message(parse(x)) writes a non-canonical line in canonical form.
    """
    assert format_message(parse(line)) == normalised


@settings(deadline=None, max_examples=500)
@given(fuzzy_lines)
def test_parsed_line_formats_to_fixed_point(line):
    """
    Any line parse() accepts formats without error, with neither its tag
    section nor its body longer than they came, and parses back to the same
    message.
    """
    try:
        msg = parse(line, **UNLIMITED)
    except WireError:
        return
    out = format_message(msg)
    received = line.removesuffix("\n").removesuffix("\r")
    out_tags, out_body = _split_tag_section(out)
    in_tags, in_body = _split_tag_section(received)
    assert len(out_tags) <= len(in_tags)
    # Free text always gets its ':' (text_param), one byte the sender may have left out.
    colon = bool(msg.params) and text_param(msg.command, len(msg.params) - 1)
    assert len(out_body) <= len(in_body) + colon
    assert parse(out, **UNLIMITED) == msg


def _split_tag_section(line):
    """
    (tag section with '@' and space, body) of a line, in UTF-8 bytes.
    """
    data = line.encode("utf-8")
    if data.startswith(b"@"):
        end = data.index(b" ") + 1
        return data[:end], data[end:]
    return b"", data


# --- parse never raises anything but WireError --------------------------------


@settings(deadline=None, max_examples=500)
@given(st.binary(max_size=600), limits, limits)
@example(b"\xff", MAX_BODY, MAX_TAGS)
@example(b"@" + b"a" * 9000, MAX_BODY, MAX_TAGS)
def test_parse_bytes_only_raises_wire_error(data, max_body, max_tags):
    """
    parse() on arbitrary bytes returns a Message or raises WireError.
    """
    try:
        assert isinstance(parse(data, max_body=max_body, max_tags=max_tags), Message)
    except WireError:
        pass


@settings(deadline=None, max_examples=500)
@given(st.text(max_size=600), limits, limits)
def test_parse_text_only_raises_wire_error(text, max_body, max_tags):
    """
    parse() on arbitrary text returns a Message or raises WireError.
    """
    try:
        assert isinstance(parse(text, max_body=max_body, max_tags=max_tags), Message)
    except WireError:
        pass


@settings(deadline=None, max_examples=1000)
@given(fuzzy_lines, limits, limits)
def test_parse_grammar_tokens_only_raise_wire_error(line, max_body, max_tags):
    """
    parse() on lines of grammar tokens (as text, and as bytes where they
    encode) returns a Message or raises WireError.
    """
    inputs = [line]
    try:
        inputs.append(line.encode("utf-8"))
    except UnicodeEncodeError:
        inputs.append(line.encode("utf-8", "surrogatepass"))  # invalid UTF-8
    for data in inputs:
        try:
            assert isinstance(parse(data, max_body=max_body, max_tags=max_tags), Message)
        except WireError:
            pass


# --- parse: line endings, spaces, errors ------------------------------------


@pytest.mark.parametrize("ending", ["", "\r\n", "\n", "\r"])
def test_parse_strips_one_line_ending(ending):
    """
    parse() strips one trailing CRLF, LF or CR.
    """
    assert parse("PING :x y" + ending) == Message("PING", ("x y",))


@pytest.mark.parametrize("data", [b"PING", bytearray(b"PING"), memoryview(b"PING")])
def test_parse_accepts_bytes_like(data):
    """
    parse() takes bytes, bytearray and memoryview alike.
    """
    assert parse(data) == Message("PING")


def test_parse_keeps_command_case():
    """
    parse() keeps the command as received; Message.verb is upper case.
    """
    msg = parse("privmsg #room :hi")
    assert msg.command == "privmsg"
    assert msg.verb == "PRIVMSG"


@pytest.mark.parametrize("line", ["", "\r\n", "\n", "   ", "  \r\n", b"", b" \r\n"])
def test_parse_empty(line):
    """
    An empty or all-space line is WireError EMPTY.
    """
    with pytest.raises(WireError) as info:
        parse(line)
    assert info.value.reason == "EMPTY"


@pytest.mark.parametrize(
    "line",
    ["PRIVMSG #a :x\0y", "PRIVMSG #a :x\ry", "PRIVMSG #a :x\ny", "PING\r\n\r\n",
     "PING\n\r\n", "@a=\0 PING", b"PING\x00"],
)
def test_parse_bad_char(line):
    """
    NUL, CR or LF inside the line (after the one line ending) is WireError
    BAD_CHAR.
    """
    with pytest.raises(WireError) as info:
        parse(line)
    assert info.value.reason == "BAD_CHAR"


@pytest.mark.parametrize("line", [":src", ":src ", ":src   ", "@a=b", "@a=b ", "@a=b :src", ":"])
def test_parse_no_command(line):
    """
    A line with tags or a source but no command is WireError NO_COMMAND.
    """
    with pytest.raises(WireError) as info:
        parse(line)
    assert info.value.reason == "NO_COMMAND"


@pytest.mark.parametrize("line", [":src :PRIVMSG #a", "@a=b @PING", "@a :s @PING", " @a=b PING"])
def test_parse_bad_command(line):
    """
    A command starting with ':' or '@' is WireError BAD_COMMAND.
    """
    with pytest.raises(WireError) as info:
        parse(line)
    assert info.value.reason == "BAD_COMMAND"


def test_parse_empty_tag_section():
    """
    '@' straight followed by a space (no tag at all) is WireError BAD_TAGS.
    """
    with pytest.raises(WireError) as info:
        parse("@ PING")
    assert info.value.reason == "BAD_TAGS"


def test_parse_drops_invalid_tag_keys():
    """
    Tags with an invalid key are dropped and the message kept (message-tags:
    "MUST NOT perform any validation that would reject the message").
    """
    msg = parse("@+ok/a-1=x;b@d=y;=z;+;a/=w;ok2 PING")
    assert msg.tags == {"+ok/a-1": "x", "ok2": ""}


def test_parse_empty_source_is_none():
    """
    An empty source (':' then a space) is read as no source.
    """
    assert parse(": PING x") == Message("PING", ("x",))


def test_parse_tab_is_not_a_separator():
    """
    Only SPACE separates atoms; a tab belongs to the atom.
    """
    assert parse("foo b\tar\tbaz") == Message("foo", ("b\tar\tbaz",))


# --- limits --------------------------------------------------------------------


def _body(size, fill="x"):
    """
    A PRIVMSG line of exactly `size` UTF-8 bytes, padded with `fill`.
    """
    head = "PRIVMSG #room :"
    width = len(fill.encode("utf-8"))
    count, rest = divmod(size - len(head), width)
    line = head + fill * count + "x" * rest
    assert len(line.encode("utf-8")) == size
    return line


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_body_of_510_bytes_accepted(as_bytes):
    """
    A body of exactly 510 bytes (512 with CRLF) parses with the defaults.
    """
    line = _body(510) + "\r\n"
    msg = parse(line.encode() if as_bytes else line)
    assert len(msg.params[1]) == 510 - len("PRIVMSG #room :")


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_body_of_511_bytes_too_long(as_bytes):
    """
    A body of 511 bytes is LineTooLong, reason LINE_TOO_LONG.
    """
    line = _body(511)
    with pytest.raises(LineTooLong) as info:
        parse(line.encode() if as_bytes else line)
    assert info.value.reason == "LINE_TOO_LONG"
    assert isinstance(info.value, WireError)


@pytest.mark.parametrize("fill", ["é", "€", "\U0001f600"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_body_length_counts_utf8_bytes(fill, as_bytes):
    """
    The body limit counts UTF-8 bytes, not characters.
    """
    ok, over = _body(510, fill), _body(511, fill)
    assert len(over) < 510  # far fewer characters than bytes
    parse(ok.encode() if as_bytes else ok)
    with pytest.raises(LineTooLong):
        parse(over.encode() if as_bytes else over)


def test_max_body_argument():
    """
    max_body sets the limit, CRLF included: max_body=20 allows 18 bytes.
    """
    parse(_body(18), max_body=20)
    with pytest.raises(LineTooLong):
        parse(_body(19), max_body=20)


def _tagged(section_size, fill="v"):
    """
    'PING' with a tag section ('@', data, ' ') of exactly section_size bytes.
    """
    width = len(fill.encode("utf-8"))
    count, rest = divmod(section_size - len("@k= "), width)
    line = "@k=" + fill * count + "v" * rest + " PING"
    assert len(line.encode("utf-8")) - len("PING") == section_size
    return line


@pytest.mark.parametrize("fill", ["v", "é", "€"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_tag_section_at_max_tags_accepted(fill, as_bytes):
    """
    A tag section of exactly MAX_TAGS bytes ('@' and space included) parses,
    beside a body of the full 510 bytes.
    """
    line = _tagged(MAX_TAGS, fill)[: -len("PING")] + _body(510)
    msg = parse(line.encode() if as_bytes else line)
    assert len(msg.tags["k"].encode("utf-8")) == MAX_TAGS - len("@k= ")


@pytest.mark.parametrize("fill", ["v", "é", "€"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_tag_section_over_max_tags_too_long(fill, as_bytes):
    """
    A tag section one byte over MAX_TAGS is LineTooLong, reason TAGS_TOO_LONG.
    """
    line = _tagged(MAX_TAGS + 1, fill)
    with pytest.raises(LineTooLong) as info:
        parse(line.encode() if as_bytes else line)
    assert info.value.reason == "TAGS_TOO_LONG"


def test_max_tags_argument():
    """
    max_tags sets the tag section limit; a tag section without a command
    that is too long is reported as too long.
    """
    parse(_tagged(10), max_tags=10)
    with pytest.raises(LineTooLong):
        parse(_tagged(11), max_tags=10)
    with pytest.raises(LineTooLong) as info:
        parse("@" + "k" * 20, max_tags=10)
    assert info.value.reason == "TAGS_TOO_LONG"


# --- UTF-8 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"PRIVMSG #a :\xff", b"PRIVMSG #a :caf\xc3", b"\xc0\xafPING", b"PING :\xed\xa0\x80",
     b"@k=\xfe PING"],
)
def test_invalid_utf8(data):
    """
    Bytes that are not strict UTF-8 raise InvalidUTF8, reason INVALID_UTF8.
    """
    with pytest.raises(InvalidUTF8) as info:
        parse(data)
    assert info.value.reason == "INVALID_UTF8"
    assert isinstance(info.value, WireError)
    assert isinstance(info.value, ValueError)


def test_text_with_lone_surrogate_is_invalid_utf8():
    """
    Text holding a lone surrogate (not encodable as UTF-8) is InvalidUTF8.
    """
    with pytest.raises(InvalidUTF8):
        parse("PRIVMSG #a :\ud800")


def test_wire_error_reason_and_sentence():
    """
    WireError carries a reason code and reads as a sentence; it pickles.
    """
    error = WireError("EMPTY")
    assert error.reason == "EMPTY"
    assert str(error) == "The line is empty."
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, str(copy)) == (error.reason, str(error))
    assert LineTooLong().reason == "LINE_TOO_LONG"
    assert InvalidUTF8().reason == "INVALID_UTF8"


# --- format ---------------------------------------------------------------------


@pytest.mark.parametrize("middle", ["", "a b", ":a"])
def test_format_bad_middle_param(middle):
    """
    A middle param that is empty, has a space or starts with ':' is our bug:
    ValueError, not WireError.
    """
    with pytest.raises(ValueError) as info:
        format_message(Message("PRIVMSG", (middle, "text")))
    assert not isinstance(info.value, WireError)


@pytest.mark.parametrize("bad", ["\r", "\n", "\0"])
@pytest.mark.parametrize("where", ["command", "middle", "last", "source", "tag"])
def test_format_refuses_line_breaks(bad, where):
    """
    CR, LF or NUL in a command, param or source (or NUL in a tag value) is
    ValueError; CR and LF in tag values travel escaped instead.
    """
    fields = {"command": "PING", "params": ("a", "b"), "source": "s", "tags": {}}
    if where == "command":
        fields["command"] = "PI" + bad + "NG"
    elif where == "middle":
        fields["params"] = ("a" + bad, "b")
    elif where == "last":
        fields["params"] = ("a", "b" + bad)
    elif where == "source":
        fields["source"] = "s" + bad
    else:
        fields["tags"] = {"k": "v" + bad}
    msg = Message(**fields)
    if where == "tag" and bad != "\0":
        assert parse(format_message(msg)) == msg
        return
    with pytest.raises(ValueError) as info:
        format_message(msg)
    assert not isinstance(info.value, WireError)
    with pytest.raises(ValueError):
        encode(msg)


@pytest.mark.parametrize(
    "key", ["", "+", "a b", "a=b", "a;b", "a/", "/a", "a/b/c", "é", "a_b", "++a", "a+"]
)
def test_format_invalid_tag_key(key):
    """
    A tag key outside the grammar is ValueError.
    """
    with pytest.raises(ValueError):
        format_message(Message("PING", tags={key: "v"}))


@pytest.mark.parametrize("command", ["", ":PING", "@PING", "PI NG"])
def test_format_invalid_command(command):
    """
    A command that is empty, has a space or starts with ':' or '@' is
    ValueError.
    """
    with pytest.raises(ValueError):
        format_message(Message(command))


@pytest.mark.parametrize("source", ["", "a b"])
def test_format_invalid_source(source):
    """
    A source that is empty (use None) or has a space is ValueError.
    """
    with pytest.raises(ValueError):
        format_message(Message("PING", source=source))


@pytest.mark.parametrize(
    ("params", "line"),
    [
        ((), "PING"),
        (("x",), "PING x"),
        (("",), "PING :"),
        (("a b",), "PING :a b"),
        ((":)",), "PING ::)"),
        (("#r", "a:b"), "PING #r a:b"),
    ],
)
def test_format_colon_only_when_needed(params, line):
    """
    The last param gets ':' only when empty, holding a space or starting
    with ':'.
    """
    assert format_message(Message("PING", params)) == line


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (Message("PRIVMSG", ("#c", "hello")), "PRIVMSG #c :hello"),
        (Message("NOTICE", ("bob", "hi")), "NOTICE bob :hi"),
        (Message("TOPIC", ("#c", "news")), "TOPIC #c :news"),
        (Message("PART", ("#c", "bye")), "PART #c :bye"),
        (Message("PART", ("#c",)), "PART #c"),  # no reason: the room is no text
        (Message("QUIT", ("gone",)), "QUIT :gone"),
        (Message("KICK", ("#c", "bob", "spam")), "KICK #c bob :spam"),
        (Message("KICK", ("#c", "bob")), "KICK #c bob"),
        (Message("AWAY", ("lunch",)), "AWAY :lunch"),
        (Message("ERROR", ("bye",)), "ERROR :bye"),
        (Message("401", ("alice", "bob", "No such nick/channel")),
         "401 alice bob :No such nick/channel"),
        (Message("303", ("alice", "bob")), "303 alice :bob"),
        (Message("001", ("alice",)), "001 alice"),  # the nick alone is no text
        (Message("324", ("alice", "#c", "+nt")), "324 alice #c +nt"),  # a value
        (Message("329", ("alice", "#c", "1700000000")), "329 alice #c 1700000000"),
        (Message("FAIL", ("CHATHISTORY", "INVALID_TARGET", "x")),
         "FAIL CHATHISTORY INVALID_TARGET :x"),
        (Message("JOIN", ("#c",)), "JOIN #c"),
        (Message("MODE", ("#c", "+o", "bob")), "MODE #c +o bob"),
        (Message("NICK", ("bob",)), "NICK bob"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.command,
)
def test_free_text_always_gets_its_colon(message, line):
    """
    The text parameter of PRIVMSG, NOTICE, TOPIC, PART, QUIT, KICK... and a
    numeric's text are written after ':' even when one word; values are not.
    """
    assert format_message(message) == line
    assert parse(line) == message


def test_text_param_knows_numerics_by_their_last_parameter():
    """Numerics: text from the parameter after the nick on; the value numerics never."""
    assert text_param("433", 2) and not text_param("433", 0)
    assert not text_param("221", 1)
    assert not text_param("PING", 0)


def test_format_tags():
    """
    format_tags() writes 'a=b;c' in the mapping's order, bare keys for
    empty values, and '' for no tags.
    """
    assert format_tags({}) == ""
    assert format_tags({"a": "b", "c": "", "+x.org/y": "1 2"}) == "a=b;c;+x.org/y=1\\s2"


def test_encode():
    """
    encode() is format_message() in UTF-8 plus CRLF, with or without tags.
    """
    plain = Message("PRIVMSG", ("#r", "héllo wörld"), "n!u@h")
    tagged = Message("PRIVMSG", ("#r", "hi"), "n!u@h", {"time": "t", "+a": "x;y"})
    assert encode(plain) == ":n!u@h PRIVMSG #r :héllo wörld\r\n".encode()
    assert encode(tagged) == b"@time=t;+a=x\\:y :n!u@h PRIVMSG #r :hi\r\n"
    for msg in (plain, tagged):
        assert encode(msg) == format_message(msg).encode("utf-8") + b"\r\n"


# --- tag escaping --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (";", "\\:"),
        (" ", "\\s"),
        ("\\", "\\\\"),
        ("\r", "\\r"),
        ("\n", "\\n"),
        ("raw+:=,escaped; \\", "raw+:=,escaped\\:\\s\\\\"),
        ("", ""),
    ],
)
def test_escape_tag_value(raw, escaped):
    """
    escape_tag_value() and unescape_tag_value() follow the spec's table.
    """
    assert escape_tag_value(raw) == escaped
    assert unescape_tag_value(escaped) == raw


@pytest.mark.parametrize(
    ("escaped", "raw"),
    [("test\\", "test"), ("\\b", "b"), ("a\\", "a"), ("\\", ""), ("\\\\\\", "\\"), ("\\é", "é")],
)
def test_unescape_lenient(escaped, raw):
    """
    A lone trailing backslash is dropped; an unknown escape \\x gives x.
    """
    assert unescape_tag_value(escaped) == raw


@given(st.text())
def test_escape_round_trip(value):
    """
    unescape_tag_value(escape_tag_value(v)) == v, and the escaped form has
    no ';', space, CR or LF.
    """
    escaped = escape_tag_value(value)
    assert not set(escaped) & {";", " ", "\r", "\n"}
    assert unescape_tag_value(escaped) == value


# --- Message ----------------------------------------------------------------------


def test_message_params_become_tuple():
    """
    Message keeps params as a tuple, whatever iterable it was given.
    """
    msg = Message("PRIVMSG", ["#r", "hi"])
    assert msg.params == ("#r", "hi")
    assert msg == parse("PRIVMSG #r hi")


def test_message_hash_ignores_tags():
    """
    Messages are hashable; tags take part in equality but not in the hash.
    """
    a = Message("PING", ("x",), tags={"a": "1"})
    b = Message("PING", ("x",), tags={"a": "2"})
    assert hash(a) == hash(b)
    assert a != b
    assert a == Message("PING", ("x",), tags={"a": "1"})
