"""speaker.lazyimport: OpenSSL stays out of the idle speaker until a feature needs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(code: str) -> dict[str, object]:
    """``code`` in a fresh interpreter (a test process has long imported ssl); its last
    line prints a JSON object."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_the_daemon_imports_without_openssl() -> None:
    got = run("""
        import json, sys
        import speaker.cli, speaker.daemon, speaker.metrics, speaker.bgp.session
        from speaker import lazyimport
        print(json.dumps({
            "deferred": [n for n in lazyimport.DEFERRED if lazyimport.deferred(n)],
            "native": [n for n in ("_ssl", "_hashlib") if n in sys.modules],
        }))
    """)
    assert got == {"deferred": ["ssl", "hmac", "hashlib"], "native": []}


def test_first_use_imports_the_real_module_for_every_holder() -> None:
    got = run("""
        import json, sys
        import speaker, trio, trio._ssl
        held = trio._ssl._stdlib_ssl           # trio's `import ssl as _stdlib_ssl`
        was = type(held).__name__
        import ssl, hmac, hashlib
        digest = hmac.new(b"k", b"m", hashlib.sha256).hexdigest()
        print(json.dumps({
            "was": was,
            "same_class": held.SSLError is sys.modules["ssl"].SSLError,
            "real": type(sys.modules["ssl"]).__name__,
            "digest": digest,
            "context": type(held.create_default_context()).__name__,
        }))
    """)
    digest = got.pop("digest")
    assert got == {"was": "_Deferred", "same_class": True, "real": "module",
                   "context": "SSLContext"}  # fmt: skip
    import hashlib
    import hmac

    assert digest == hmac.new(b"k", b"m", hashlib.sha256).hexdigest()


def test_load_for_imports_what_a_config_uses() -> None:
    got = run("""
        import json
        from speaker import lazyimport
        from speaker.bfd.profile import BfdProfile
        lazyimport.load_for_bfd([BfdProfile(name="plain")])
        plain = lazyimport.deferred("hashlib")
        lazyimport.load_for_bfd([BfdProfile(name="echo", echo_mode=True)])
        print(json.dumps({"plain": plain, "echo": lazyimport.deferred("hashlib"),
                          "hmac": lazyimport.deferred("hmac"),
                          "ssl": lazyimport.deferred("ssl")}))
    """)
    assert got == {"plain": True, "echo": False, "hmac": False, "ssl": True}
