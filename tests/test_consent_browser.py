"""The consent page in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromium-driver (never a downloaded browser). It shows the client's name and where it
sends the user; deny reaches the client as access_denied; allow goes through Entra and back,
the browser cookie surviving Entra's cross-site redirect and the page's CSP allowing the way."""

from __future__ import annotations

import base64
import hashlib
import shutil
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from shared.oauth import pkce
from signin_support import gateway_app, start_sign_in  # noqa: F401 - fixtures

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class RedirectCatcher:
    """The client's loopback redirect URI: records what arrives."""

    def __init__(self) -> None:
        self.arrived: list[dict[str, str]] = []
        self.event = threading.Event()
        self.app = Starlette(routes=[Route("/callback", self._callback)])

    async def _callback(self, request: Request) -> HTMLResponse:
        self.arrived.append(dict(request.query_params))
        self.event.set()
        return HTMLResponse("<p id='done'>The client got its answer.</p>")


def spki_hash(pem_path) -> str:
    """Chromium's --ignore-certificate-errors-spki-list form: base64 SHA-256 of the leaf's public key."""
    leaf = x509.load_pem_x509_certificates(open(pem_path, "rb").read())[0]
    der = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def browser(emulator_pki):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-sync", "--disable-extensions",
                 "--window-size=1000,900",
                 # trust the Entra emulator's test certificate, and nothing else
                 f"--ignore-certificate-errors-spki-list={spki_hash(emulator_pki.server_cert_file)}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


async def _consent_url(setup, catcher_url: str) -> tuple[str, str]:
    async with httpx.AsyncClient() as http:
        client_id = (await http.post(f"{setup.base}/oauth/docs/register", json={
            "redirect_uris": [catcher_url], "client_name": "Browser Test Client"})).json()["client_id"]
    verifier = pkce.new_verifier()
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": catcher_url, "state": "st-1",
                       "code_challenge": pkce.s256(verifier), "code_challenge_method": "S256"})
    return f"{setup.base}/oauth/docs/authorize?{query}", verifier


async def test_the_consent_page_names_client_and_redirect_host_and_deny_works(browser, start_sign_in, start_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    setup = start_sign_in()
    catcher = RedirectCatcher()
    catcher_url = f"{start_server(catcher.app, lifespan='off').base_url}/callback"
    url, _ = await _consent_url(setup, catcher_url)
    browser.get(url)
    assert browser.find_element(By.ID, "client-name").text == "Browser Test Client"
    assert browser.find_element(By.ID, "redirect-host").text == urlsplit(catcher_url).netloc
    assert "not verified" in browser.find_element(By.ID, "client-identity").text
    assert browser.find_element(By.ID, "resource").text == setup.url("docs")
    browser.save_screenshot(str(tmp_path / "consent.png"))
    browser.find_element(By.ID, "deny").click()
    WebDriverWait(browser, 20).until(expected_conditions.presence_of_element_located((By.ID, "done")))
    assert catcher.arrived == [{"error": "access_denied", "error_description": "the user denied the request",
                                "state": "st-1", "iss": f"{setup.base}/oauth/docs"}]
    assert not setup.entra.authorize_requests


async def test_allow_goes_through_entra_and_back_with_the_browser_cookie(browser, start_sign_in, start_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    setup = start_sign_in()
    catcher = RedirectCatcher()
    catcher_url = f"{start_server(catcher.app, lifespan='off').base_url}/callback"
    url, verifier = await _consent_url(setup, catcher_url)
    browser.get(url)
    browser.find_element(By.ID, "approve").click()
    WebDriverWait(browser, 20).until(expected_conditions.presence_of_element_located((By.ID, "done")))
    (answer,) = catcher.arrived
    assert answer["state"] == "st-1" and "code" in answer and "error" not in answer
    assert [r.outcome for r in setup.entra.authorize_requests] == ["code"]
    client_id = parse_qs(urlsplit(url).query)["client_id"][0]
    async with httpx.AsyncClient() as http:
        tokens = await http.post(f"{setup.base}/oauth/docs/token", data={
            "grant_type": "authorization_code", "code": answer["code"], "client_id": client_id,
            "redirect_uri": catcher_url, "code_verifier": verifier})
    assert tokens.status_code == 200 and tokens.json()["token_type"] == "Bearer"
