"""
TLS from the default install (issue #12, item 10).

``pip install .`` then ``--listen ssl:...`` used to fail with ``No module named
'OpenSSL'``: pyOpenSSL and service_identity were an extra.  They are requirements
now; and if OpenSSL still cannot be imported, the one error line names the fix.
"""

from __future__ import annotations

import email.parser
import re
import subprocess
import zipfile

from tests.serverproc import build_wheel, free_port, source_env, twistd_path
from tests.tlsfiles import make_tls_files


def _unconditional_requirements(metadata: str) -> set:
    """Normalised names of a wheel's Requires-Dist lines that need no extra (or marker)."""
    message = email.parser.Parser().parsestr(metadata)
    return {re.split(r"[\s<>=!~;\[(]", line, maxsplit=1)[0].lower().replace("_", "-")
            for line in message.get_all("Requires-Dist") or [] if ";" not in line}


def test_the_wheel_requires_pyopenssl_and_service_identity(tmp_path):
    """The wheel's Requires-Dist names pyOpenSSL and service_identity with no extra marker."""
    wheel = zipfile.ZipFile(build_wheel(tmp_path))
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = _unconditional_requirements(wheel.read(metadata).decode())
    for name in ("pyopenssl", "service-identity", "twisted"):  # not only with an extra
        assert name in requires, f"{name} is not required by default: {sorted(requires)}"


def test_without_openssl_the_error_names_the_fix(tmp_path):
    """OpenSSL not importable: exit status 1, one line that says to install pyOpenSSL."""
    # A module named OpenSSL that fails to import, ahead of the real one on the path.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "OpenSSL.py").write_text(
        'raise ModuleNotFoundError("No module named \'OpenSSL\'", name="OpenSSL")\n')
    files = make_tls_files(tmp_path / "pki")
    description = files.listen(free_port())
    env = source_env()
    env["PYTHONPATH"] = f"{shadow}:{env['PYTHONPATH']}"
    out = subprocess.run([twistd_path(), "-n", "--pidfile=", "chat", "--interface=127.0.0.1",
                          f"--port={free_port()}", "--listen", description],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if "cannot listen" in line]
    assert len(lines) == 1, text
    assert lines[0].startswith(f"twistd chat: cannot listen on {description}: "), lines
    assert "pip install" in lines[0] and "pyOpenSSL" in lines[0], lines
