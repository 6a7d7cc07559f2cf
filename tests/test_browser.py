"""End to end in a real headless Chromium: `streamlit run app.py`, a one-click run on the tiny BERT
watched live, a second run cancelled, a reload, the playground.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (no browser download);
skips without them. Set LAB_SCREENSHOT_DIR to keep the screenshots it takes of every page at a
desktop (1400 px) and a narrow (420 px) width; it prints what it measured (time from click to the
first loss point, the live refresh interval).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="needs Debian's chromium (apt-get install chromium)"
)

# The IMDB card trains 120 steps of the tiny model (a few seconds, evaluating every 10 steps); the
# CoNLL card (WNUT-16 offline) practically never ends, so cancelling it never races its finish.
ONE_CLICK_SET = (
    "data.train_subset=200;data.eval_subset=32;train.max_length=64;train.logging_steps=2;"
    "train.eval_steps=10;imdb:train.max_steps=120;conll:train.max_steps=100000"
)
WAIT_MS = 120_000

LOSS_POINTS = """() => {
  const plot = [...document.querySelectorAll('.js-plotly-plot')]
    .find(p => p.layout && p.layout.title && String(p.layout.title.text).includes('Training loss'));
  return plot && plot.data.length ? plot.data[0].x.length : 0;
}"""
UPDATED_AT = """() => {
  const caption = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]
    .map(e => e.innerText).find(t => t.startsWith('Live:'));
  return caption ? caption.split('updated ')[1] : null;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    runs_dir = tmp_path_factory.mktemp("browser-runs")
    port = free_port()
    # One torch thread: on a busy 2-core machine, OpenMP threads that spin-wait for each other made the
    # same tiny run take 57 s instead of 14 s.
    env = dict(
        os.environ,
        LAB_RUNS_DIR=str(runs_dir),
        LAB_ONE_CLICK_MODEL=tiny_model_dir,
        LAB_ONE_CLICK_SET=ONE_CLICK_SET,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    log_path = runs_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(base + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
            assert process.poll() is None, log_path.read_text(errors="replace")
        else:
            pytest.fail("streamlit did not answer /_stcore/health in 90 s:\n" + log_path.read_text(errors="replace"))
        yield base, runs_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def screenshot(page, name: str, shots: Path) -> None:
    """The whole page at 1400 px and 420 px (Streamlit scrolls inside its main element, so the
    viewport is grown to the content's height instead of using full_page)."""
    for width in (1400, 420):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(800)
        height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
        page.set_viewport_size({"width": width, "height": min(height + 40, 8000)})
        page.wait_for_timeout(600)
        page.screenshot(path=str(shots / f"{name}-{width}.png"))
    page.set_viewport_size({"width": 1400, "height": 900})


def shown_exception(page, where: str) -> str:
    texts = page.locator("[data-testid=stException]").all_inner_texts()
    return f"{where} shows an exception: {texts[0][:1500] if texts else ''}"


def run_status(page) -> str:
    return page.locator("h3 .stMarkdownBadge").first.inner_text(timeout=WAIT_MS)


def wait_for_status(page, wanted: set[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run_status(page)
        if status in wanted:
            return status
        page.wait_for_timeout(250)
    raise AssertionError(f"status stayed {status!r}, wanted one of {wanted}")


def test_one_click_run_live_cancel_reload_playground(server, browser, tmp_path):
    base, runs_dir = server
    shots = Path(os.environ.get("LAB_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)

    page.goto(base)
    page.get_by_role("button", name="Start IMDB sentiment").wait_for()
    screenshot(page, "home", shots)

    # 1. One click: the app goes to the run's live view and the loss curve gains points while it trains.
    clicked = time.monotonic()
    page.get_by_role("button", name="Start IMDB sentiment").click()
    page.wait_for_url(re.compile(r"Live_run\?run="))
    run_id = page.url.split("run=")[1]
    page.wait_for_function(f"({LOSS_POINTS})() > 0", timeout=WAIT_MS)
    first_point_seconds = time.monotonic() - clicked
    counts, updates = [page.evaluate(LOSS_POINTS)], []
    while run_status(page) == "running" and time.monotonic() - clicked < 240:
        page.wait_for_timeout(200)
        counts.append(page.evaluate(LOSS_POINTS))
        stamp = page.evaluate(UPDATED_AT)
        if stamp and (not updates or updates[-1][1] != stamp):
            updates.append((time.monotonic(), stamp))
    assert max(counts) > counts[0], f"the loss curve never grew while the run was live: {counts}"
    if run_status(page) == "running":
        screenshot(page, "live-running", shots)

    # 2. The per-label table of the validation split, then the finished run.
    assert wait_for_status(page, {"completed", "failed"}) == "completed"
    page.locator("[data-testid=stTable]").filter(has_text="macro avg").first.wait_for()
    assert page.evaluate(LOSS_POINTS) == 61  # 120 steps logged every 2, and the first step
    screenshot(page, "live-completed", shots)

    # 3. A reload (or a shared link) shows the same run.
    page.reload()
    page.locator("[data-testid=stTable]").filter(has_text="macro avg").first.wait_for()
    assert run_id in page.url and run_status(page) == "completed"
    assert page.get_by_text("IMDB sentiment (one click)").first.is_visible()

    # 4. A second run, cancelled from its live view.
    page.goto(base)
    page.get_by_role("button", name="Start CoNLL-2003 NER").click()
    page.wait_for_url(re.compile(r"Live_run\?run="))
    second_id = page.url.split("run=")[1]
    assert second_id != run_id
    wait_for_status(page, {"running"})
    page.wait_for_function(f"({LOSS_POINTS})() > 0", timeout=WAIT_MS)
    page.get_by_role("button", name="Cancel run").click()
    assert wait_for_status(page, {"cancelled", "completed", "failed"}) == "cancelled"
    screenshot(page, "live-cancelled", shots)

    # 5. The playground on the finished run; the other pages draw without an exception.
    page.goto(f"{base}/Playground?run={run_id}")
    page.get_by_text("Prediction").first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".some(p => String(p.layout.title.text).includes('Label probabilities'))"
    )
    screenshot(page, "playground", shots)
    # 6. Two downloads on the Runs page, the second clicked a second after the first: both arrive (a
    # click used to rerun the page, and the second button's file was gone by then).
    page.goto(base + "/Runs")
    page.get_by_text("Download or delete").first.wait_for()
    downloads = []
    for label in ("config.yaml", "report.json"):
        with page.expect_download(timeout=30_000) as download:
            page.get_by_role("button", name=label).first.click()
        downloads.append(download.value)
        page.wait_for_timeout(1000)
    assert [d.failure() for d in downloads] == [None, None]
    assert all(Path(d.path()).stat().st_size > 0 for d in downloads)

    for path, name, ready in (
        ("/Runs", "runs", "Compare"),
        ("/New_run", "new-run", "Launch"),
        ("/Data", "data", "get truncated"),
    ):
        page.goto(base + path)
        page.get_by_text(ready).first.wait_for()
        page.wait_for_timeout(1000)
        assert page.locator("[data-testid=stException]").count() == 0, shown_exception(page, path)
        screenshot(page, name, shots)

    intervals = [b[0] - a[0] for a, b in zip(updates, updates[1:])]
    print(
        f"\nclick to first loss point: {first_point_seconds:.1f} s; "
        f"live refresh interval: median {statistics.median(intervals):.2f} s over {len(intervals)} refreshes"
        if intervals
        else f"\nclick to first loss point: {first_point_seconds:.1f} s"
    )


def test_a_chinese_browser_opens_the_lab_in_chinese_and_every_page_draws(server, browser, tmp_path):
    """Accept-Language zh-CN (and the browser's language): Home in Chinese, the choice kept in the URL
    across pages, and every page drawn in Chinese without an exception."""
    base, _ = server
    shots = Path(os.environ.get("LAB_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
        viewport={"width": 1400, "height": 900},
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base)
    page.get_by_role("button", name="开始：IMDB 影评情感").wait_for()
    assert page.get_by_role("heading", name="微调实验室").first.is_visible()
    page.wait_for_function("() => location.search.includes('lang=zh')")
    screenshot(page, "zh-home", shots)
    for link, name, ready in (
        ("数据", "data", "标签与长度"),
        ("新建训练", "new-run", "开始训练"),
        ("实时训练", "live", "实时训练"),
        ("训练记录", "runs", "训练记录"),
        ("试用", "playground", "试用"),
    ):
        page.get_by_role("link", name=link).first.click()
        page.get_by_text(ready).first.wait_for()
        page.wait_for_timeout(1500)
        assert page.locator("[data-testid=stException]").count() == 0, shown_exception(page, name)
        assert "lang=zh" in page.url, page.url
        screenshot(page, f"zh-{name}", shots)
    context.close()
