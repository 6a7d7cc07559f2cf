"""The login in a real headless Chromium: the session lives in a cookie, a reload keeps it, the address bar
never carries it, a link with an old-style `?session=` token logs a fresh browser into nothing, and
logging out makes the browser forget the cookie.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package; skips without them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lab.accounts.book import AccountBook

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="needs Debian's chromium")
BOB_PASSWORD = "bob-s3cret-pw"
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("login-runs")
    AccountBook(runs_dir).add("bob", "student", BOB_PASSWORD)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, LAB_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port)]  # fmt: skip
    with open(runs_dir / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(base + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                assert time.monotonic() < deadline, (runs_dir / "server.log").read_text()
                time.sleep(0.5)
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
            yield base, browser, runs_dir
            browser.close()
    finally:
        process.terminate()
        process.wait(30)


def session_cookie(page) -> dict:
    return next((cookie for cookie in page.context.cookies() if cookie["name"] == "lab_session"), {})


def log_in(page, base: str) -> str:
    page.goto(base + "/Runs")
    page.get_by_label("User name").fill("bob")
    page.get_by_role("textbox", name="Password").fill(BOB_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Logged in as").wait_for()
    page.wait_for_function("() => document.cookie.includes('lab_session=')")
    return session_cookie(page)["value"]


def test_a_reload_keeps_the_login_the_url_never_carries_the_session_and_logout_forgets_it(app):
    base, browser, runs_dir = app
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    token = log_in(page, base)
    cookie = session_cookie(page)
    assert cookie["sameSite"] == "Strict" and cookie["expires"] > time.time() + 3600
    assert token not in page.url

    page.reload()
    page.get_by_text("Logged in as").wait_for()
    assert token not in page.url

    stranger = browser.new_context().new_page()  # someone handed a link in the old style
    stranger.set_default_timeout(WAIT_MS)
    stranger.goto(f"{base}/Runs?session={token}")
    stranger.get_by_label("User name").wait_for()
    assert stranger.get_by_text("Logged in as").count() == 0
    stranger.wait_for_function(f"() => !location.href.includes('{token}')")

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("User name").wait_for()
    page.wait_for_function("() => !document.cookie.includes('lab_session=')")
    page.reload()
    page.get_by_label("User name").wait_for()
    assert AccountBook(runs_dir).session(token) is None


def test_logging_out_without_a_reload_forgets_the_cookie_and_a_dead_cookies_tab_spares_a_live_one(app):
    base, browser, runs_dir = app
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    dead = log_in(page, base)
    page.get_by_role("button", name="Log out").click()  # the tab that logged in: no cookie when it connected
    page.get_by_label("User name").wait_for()
    page.wait_for_function("() => !document.cookie.includes('lab_session=')")

    context.add_cookies([{"name": "lab_session", "value": dead, "url": base, "sameSite": "Strict"}])
    stale_tab = context.new_page()
    stale_tab.set_default_timeout(WAIT_MS)
    stale_tab.goto(base + "/Runs")  # connects with the dead cookie
    stale_tab.get_by_label("User name").wait_for()
    stale_tab.wait_for_function("() => !document.cookie.includes('lab_session=')")
    live = log_in(context.new_page(), base)  # another tab logs in since
    stale_tab.get_by_label("User name").fill("nobody")  # the stale tab reruns
    stale_tab.get_by_role("textbox", name="Password").fill("not-the-password")
    stale_tab.get_by_role("button", name="Log in").click()
    stale_tab.get_by_text("Wrong user name or password").wait_for()
    stale_tab.wait_for_timeout(1500)
    assert session_cookie(stale_tab).get("value") == live
    assert AccountBook(runs_dir).session(live) is not None
