"""The frontend in a real browser: Debian's headless chromium on the control node.

chromium loads https://<proxy>/ through nginx, trusting exactly the proxy's
certificate key (an SPKI pin, read from the server and checked against the
internal CA below), types the API key and a document into the form, submits
it, and the page shows the created document; the API then returns it.
"""

from __future__ import annotations

import json
import ssl
import uuid

from infra.app import Chromium, spki_sha256
from infra.lab import address, ca_file, group, https, proxy_base, secret

PROXY = address(group("proxy")[0])
BASE = proxy_base()


def test_frontend_creates_a_document_in_chromium() -> None:
    # The pinned key must be the one the internal CA certified.
    ctx = ssl.create_default_context(cafile=str(ca_file()))
    with ctx.wrap_socket(__import__("socket").create_connection((PROXY, 443), timeout=10), server_hostname=PROXY):
        pass
    pin = spki_sha256(PROXY)
    api_key = secret("app_api_key")
    title = f"From chromium {uuid.uuid4().hex[:10]}"

    with Chromium([f"--ignore-certificate-errors-spki-list={pin}"]) as browser:
        browser.navigate(f"{BASE}/")
        assert browser.evaluate("document.title") == "aiinfra documents"
        # /api/version answered through nginx: the header shows the release.
        version = browser.wait_for("(t => t.startsWith('v') ? t : '')(document.getElementById('version').textContent)")
        assert "release" in version
        browser.evaluate(
            f"""(() => {{
              const set = (id, value) => {{
                const el = document.getElementById(id);
                el.value = value;
                el.dispatchEvent(new Event('input', {{bubbles: true}}));
                el.dispatchEvent(new Event('change', {{bubbles: true}}));
              }};
              set('api-key', {json.dumps(api_key)});
              set('title', {json.dumps(title)});
              set('body', 'typed into the form by headless chromium');
              set('tags', 'browser, lab');
              document.getElementById('create-form').requestSubmit();
            }})()"""
        )
        status = browser.wait_for("document.getElementById('create-status').textContent", timeout=20)
        assert status.startswith("Created "), status
        doc_id = status.removeprefix("Created ").strip()
        # The list reloads after a create: the new document is on the page.
        browser.wait_for(f"[...document.querySelectorAll('#docs h3')].some(h => h.textContent === {json.dumps(title)})")

    code, _, raw = https("GET", f"{BASE}/api/documents/{doc_id}")
    assert code == 200
    doc = json.loads(raw)
    assert doc["title"] == title and doc["tags"] == ["browser", "lab"]
