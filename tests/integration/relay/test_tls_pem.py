"""A relay given its TLS pair as PEM text (``SIPLINE_TLS_CERT_PEM``/``_KEY_PEM``) serves TLS with it.

The text is what ECS injects from the TLS secret (docs/relay.md, Configuration): the relay
writes it to files under its spool directory and presents that certificate to a client that
trusts only it, as it does with ``SIPLINE_TLS_CERT``/``_KEY``.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from relay.config import RelaySettings
from relay.transport.tls import client_context, ensure_self_signed
from tests.integration.relay.harness import ControlPlane, run, running, settings_for
from tests.support.ports import free_port


def test_the_relay_presents_the_certificate_given_as_text(tmp_path: Path) -> None:
    made = tmp_path / "made"
    ensure_self_signed(made / "edge.pem", made / "edge.key", ["sip.example.com"])
    spool = tmp_path / "spool"
    env = {
        "SIPLINE_SPOOL_DIR": str(spool),
        "SIPLINE_TLS_CERT_PEM": (made / "edge.pem").read_text(),
        "SIPLINE_TLS_KEY_PEM": (made / "edge.key").read_text(),
    }
    from_env = RelaySettings.from_env(env)
    expected = ssl.PEM_cert_to_DER_cert((made / "edge.pem").read_text())

    presented: list[bytes] = []

    async def scenario() -> None:
        control = ControlPlane()
        await control.start()
        try:
            settings = settings_for(
                control.url,
                spool,
                tls_port=free_port(),
                tls_cert_path=from_env.tls_cert_path,
                tls_key_path=from_env.tls_key_path,
            )
            async with running(settings) as relay:
                port = relay.service.settings.tls_port
                _, writer = await asyncio.open_connection(
                    "127.0.0.1",
                    port,
                    ssl=client_context(cafile=made / "edge.pem"),
                    server_hostname="sip.example.com",
                )
                peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                presented.append(bytes(peer))
                writer.close()
                await writer.wait_closed()
        finally:
            await control.stop()

    run(scenario)

    assert presented == [expected]
