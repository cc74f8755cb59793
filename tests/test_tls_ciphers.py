"""
What an ``ssl:`` listener offers: Mozilla's "intermediate" profile (issue #12, item 9).

The real ``twistd -n chat`` with ``--listen ssl:...`` and an RSA certificate (with an
ECDSA one the RSA key-exchange suites could never be chosen, and refusing them would
prove nothing).  The client is Python's ``ssl`` module, limited to one version or one
suite at a time.  Each refusal has a control: the same client context completes a
handshake, in memory, with a permissive Python server using the same certificate, so
a refusal is the listener's doing, not this OpenSSL's inability to offer the suite.
"""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.serverproc import ServerProcess, free_port
from tests.tlsfiles import make_tls_files, write_dh_parameters

pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL")


@pytest.fixture(scope="module")
def rsa_server(tmp_path_factory):
    """A server whose TLS listener has an RSA key and certificate, and DHE parameters."""
    workdir = tmp_path_factory.mktemp("tls-ciphers")
    files = make_tls_files(workdir / "pki", server_key="rsa")
    dh = write_dh_parameters(workdir / "pki")
    tls_port = free_port()
    proc = ServerProcess(workdir, "--listen",
                         f"{files.listen(tls_port)}:dhParameters={dh}").start()
    proc.tls_port, proc.files, proc.dh = tls_port, files, dh
    yield proc
    proc.stop()


def _client(server, version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    """A verifying client context that speaks only ``version`` (and only ``ciphers``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(server.files.ca_cert)
    context.minimum_version = context.maximum_version = version
    # @SECLEVEL=0: this client may offer old suites and versions; the server decides.
    context.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")
    return context


def _handshake(server, context: ssl.SSLContext):
    """(version, cipher) of a handshake with the listener, or the error that ended it."""
    raw = socket.create_connection(("127.0.0.1", server.tls_port), timeout=5)
    try:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version(), tls.cipher()[0]
    except (ssl.SSLError, ConnectionError) as e:
        return e
    finally:
        raw.close()


def _permissive_handshake(server, client: ssl.SSLContext):
    """The same client against a server that accepts everything, in memory (the control)."""
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.load_cert_chain(server.files.server_cert, server.files.server_key)
    permissive.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    permissive.set_ciphers("ALL:@SECLEVEL=0")
    if getattr(server, "dh", None):
        permissive.load_dh_params(server.dh)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = permissive.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = 0
        for side in (c, s):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == 2:
            return c.version(), c.cipher()[0]
    raise AssertionError("the control handshake did not finish")


def _assert_refused(server, context: ssl.SSLContext) -> None:
    try:
        _permissive_handshake(server, context)
    except ssl.SSLError as e:
        pytest.skip(f"this OpenSSL cannot offer it at all: {e}")
    outcome = _handshake(server, context)
    assert isinstance(outcome, Exception), f"the listener accepted {outcome}"


@pytest.mark.parametrize("suite", [
    "AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "AES256-GCM-SHA384",  # RSA kx
    "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "DHE-RSA-AES256-SHA",  # CBC
])
def test_tls12_without_forward_secrecy_or_aead_is_refused(rsa_server, suite):
    """TLS 1.2 with RSA key exchange (no forward secrecy) or with CBC: no handshake."""
    _assert_refused(rsa_server, _client(rsa_server, ssl.TLSVersion.TLSv1_2, suite))


def test_tls12_ecdhe_rsa_aes_gcm_works(rsa_server):
    """TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256, Mozilla's first RSA suite: accepted."""
    context = _client(rsa_server, ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256")
    assert _handshake(rsa_server, context) == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")


def test_tls12_ecdhe_rsa_chacha20_works(rsa_server):
    """TLS 1.2 with ECDHE-RSA-CHACHA20-POLY1305 (for clients without AES hardware)."""
    context = _client(rsa_server, ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-CHACHA20-POLY1305")
    assert _handshake(rsa_server, context) == ("TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305")


def test_tls12_dhe_rsa_aes_gcm_works_with_dh_parameters(rsa_server):
    """TLS 1.2 with DHE-RSA-AES128-GCM-SHA256: offered, given ``dhParameters=``."""
    context = _client(rsa_server, ssl.TLSVersion.TLSv1_2, "DHE-RSA-AES128-GCM-SHA256")
    assert _handshake(rsa_server, context) == ("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256")


def test_tls13_works(rsa_server):
    """TLS 1.3, with OpenSSL's own suites (all AEAD with forward secrecy): accepted."""
    version, cipher = _handshake(rsa_server, _client(rsa_server, ssl.TLSVersion.TLSv1_3))
    assert version == "TLSv1.3" and cipher.startswith("TLS_"), cipher


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1],
                         ids=["TLSv1.1", "TLSv1.0"])
def test_below_tls12_is_refused(rsa_server, version):
    """TLS 1.1 and 1.0: no handshake (the minimum is TLS 1.2 whatever Twisted's default)."""
    _assert_refused(rsa_server, _client(rsa_server, version))


def test_ecdsa_certificates_still_work(tmp_path):
    """An ECDSA key (the other tests' kind) negotiates ECDHE-ECDSA on TLS 1.2."""
    files = make_tls_files(tmp_path / "pki")
    tls_port = free_port()
    server = ServerProcess(tmp_path, "--listen", files.listen(tls_port)).start()
    try:
        server.tls_port, server.files = tls_port, files
        version, cipher = _handshake(server, _client(server, ssl.TLSVersion.TLSv1_2))
        assert version == "TLSv1.2" and cipher.startswith("ECDHE-ECDSA-"), cipher
        assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    finally:
        server.stop()
