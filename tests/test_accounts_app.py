"""The app with accounts (streamlit.testing.v1.AppTest, no browser): every page asks for a login first,
in both languages; a session survives a reload (its cookie) and ends at logout, and a URL never carries
it; a student's pages show only their own runs, and a run id in the URL does not open someone else's.

AppTest cannot send cookies or a client address, so `browser` stands in for ui.auth's two readers of
the request (tests/test_accounts_browser.py checks the real cookie in Chromium)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.accounts.book import AccountBook, LoginRefused
from lab.config import RunConfig
from lab.runs.store import RunStore

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from ui.auth import SESSION_COOKIE  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120
PAGES = ["app.py", *sorted(str(path.relative_to(REPO)) for path in (REPO / "pages").glob("*.py"))]
BOB_PASSWORD = "bob-s3cret-pw"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@dataclass
class Request:
    """What the next page load's request carries: the browser's cookies and the client's address."""

    cookies: dict[str, str] = field(default_factory=dict)
    address: str = "local"


REQUEST = Request()


@pytest.fixture(autouse=True)
def request_seen_by_the_app(monkeypatch) -> Request:
    import ui.auth

    REQUEST.cookies, REQUEST.address = {}, "local"
    monkeypatch.setattr(ui.auth, "request_cookies", lambda: dict(REQUEST.cookies))
    monkeypatch.setattr(ui.auth, "client_address", lambda: REQUEST.address)
    return REQUEST


@pytest.fixture
def book(runs_dir) -> AccountBook:
    book = AccountBook(runs_dir)
    book.add("alice", "teacher", "teach-3x4mple")
    book.add("bob", "student", BOB_PASSWORD)
    book.add("carol", "student", "carol-s3cret-pw")
    return book


def finished_run(store: RunStore, owner: str, name: str) -> str:
    run = store.create_run(RunConfig(name=name), owner=owner)
    store.finish(run.id, "completed", metrics={"test_accuracy": 0.9})
    return run.id


def open_page(page: str, session: str = "", **query: str) -> AppTest:
    """The page as a browser whose cookie holds `session` opens it (a reload, or a link followed)."""
    REQUEST.cookies = {SESSION_COOKIE: session} if session else {}
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    if page != "app.py":
        at.run()
        at.switch_page(page)
    return at.run()


def tables(at: AppTest) -> str:
    return "".join(element.value.to_csv() for element in at.dataframe)


def shows_only_the_login_form(at: AppTest, title: str) -> bool:
    return (
        not at.exception
        and [element.value for element in at.title] == [title]
        and len(at.text_input) == 2
        and not at.selectbox
        and not at.dataframe
    )


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_only_a_login_form_while_nobody_is_logged_in(book, page):
    assert shows_only_the_login_form(open_page(page), "Log in")


def test_the_login_form_speaks_chinese_too(book):
    at = open_page("pages/4_Runs.py", lang="zh")
    assert shows_only_the_login_form(at, "登录")
    at = log_in(at, "bob", "wrong-password")
    assert any("用户名或密码错误" in element.value for element in at.error)


def log_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="auth-name").input(name)
    at.text_input(key="auth-password").input(password)
    (submit,) = [button for button in at.button if button.proto.is_form_submitter]
    return submit.click().run()


def cookie_written(at: AppTest) -> str:
    """The session the page told the browser to keep ('' when it told it to forget it)."""
    scripts = [element.proto.body for element in at.get("html") if SESSION_COOKIE in element.proto.body]
    (script,) = scripts
    return script.split(f"document.cookie = '{SESSION_COOKIE}=")[1].split(";")[0]


def test_logging_in_survives_a_reload_and_logging_out_ends_the_session(book, runs_dir):
    bobs = finished_run(RunStore(runs_dir), "bob", "bobs-run")
    at = log_in(open_page("pages/4_Runs.py"), "bob", BOB_PASSWORD)
    assert not at.exception and at.title[0].value != "Log in"
    assert any("bob" in caption.value for caption in at.sidebar.caption)
    token = cookie_written(at)
    assert book.session(token).name == "bob"
    assert all(token not in str(value) for value in at.query_params.values())  # the address bar has none
    reloaded = open_page("pages/3_Live_run.py", session=token, run=bobs)
    assert not reloaded.exception and reloaded.title[0].value != "Log in"
    assert not reloaded.get("html")  # the browser has the cookie already
    reloaded.button(key="auth-log-out").click().run()
    assert shows_only_the_login_form(reloaded, "Log in")
    assert cookie_written(reloaded) == ""  # the browser forgets it
    assert book.session(token) is None
    assert shows_only_the_login_form(open_page("pages/4_Runs.py", session=token), "Log in")


def test_a_link_with_a_session_token_in_the_url_logs_nobody_in(book, runs_dir):
    token = book.log_in("bob", BOB_PASSWORD)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.query_params["session"] = token  # a link copied from the address bar in the old days
    at.run()
    assert shows_only_the_login_form(at, "Log in")
    assert "session" not in at.query_params  # and the token leaves the address bar


def test_a_wrong_password_is_refused_and_repeated_tries_are_limited(book):
    at = open_page("app.py")
    for _ in range(5):
        at = log_in(at, "bob", "not-the-password")
        assert "Wrong user name or password" in at.error[0].value
    at = log_in(at, "bob", BOB_PASSWORD)
    assert "Too many failed logins" in at.error[0].value and at.title[0].value == "Log in"


def test_one_address_trying_many_names_waits_and_another_address_does_not(book, request_seen_by_the_app):
    from lab.accounts.book import MAX_FAILED_LOGINS_PER_ADDRESS

    for index in range(MAX_FAILED_LOGINS_PER_ADDRESS):  # a different name each time: no name's limit is hit
        with pytest.raises(LoginRefused):
            book.log_in(f"guess{index}", "not-the-password", address="203.0.113.9")
    request_seen_by_the_app.address = "203.0.113.9"
    at = log_in(open_page("app.py"), "carol", "carol-s3cret-pw")
    assert "Too many failed logins from your address" in at.error[0].value and at.title[0].value == "Log in"
    request_seen_by_the_app.address = "198.51.100.4"
    at = log_in(open_page("app.py"), "carol", "carol-s3cret-pw")
    assert not at.error and at.title[0].value != "Log in"


def test_a_student_sees_only_their_runs_and_a_url_does_not_open_another_students_run(book, runs_dir):
    store = RunStore(runs_dir)
    bobs, carols = finished_run(store, "bob", "bobs-run"), finished_run(store, "carol", "carols-run")
    token = book.log_in("bob", BOB_PASSWORD)

    live = open_page("pages/3_Live_run.py", session=token, run=carols)
    assert not live.exception
    assert live.selectbox[0].options and all(carols not in option for option in live.selectbox[0].options)
    assert any(carols in element.value for element in live.error)  # "no such run", nothing of it shown
    assert carols not in "".join(str(element.value) for element in [*live.markdown, *live.caption])

    runs_page = open_page("pages/4_Runs.py", session=token)
    assert not runs_page.exception
    shown = tables(runs_page)
    assert bobs in shown and carols not in shown

    playground = open_page("pages/5_Playground.py", session=token, run=carols)
    assert not playground.exception
    assert carols not in "".join(str(option) for box in playground.selectbox for option in box.options)

    teacher = open_page("pages/4_Runs.py", session=book.log_in("alice", "teach-3x4mple"))
    shown = tables(teacher)
    assert bobs in shown and carols in shown


def test_without_accounts_nobody_is_asked_to_log_in(runs_dir):
    run_id = finished_run(RunStore(runs_dir), "", "solo")
    at = open_page("pages/4_Runs.py")
    assert not at.exception and "Log in" not in [element.value for element in at.title]
    assert run_id in tables(at)
    assert "session" not in at.query_params


def test_a_teacher_shares_a_run_with_the_class_and_a_student_may_look_but_not_delete_it(book, runs_dir):
    store = RunStore(runs_dir)
    carols = finished_run(store, "carol", "carols-run")
    teacher = open_page("pages/4_Runs.py", session=book.log_in("alice", "teach-3x4mple"))
    teacher.selectbox[-1].set_value(carols).run()
    teacher.toggle(key=f"share-{carols}").set_value(True).run()
    assert not teacher.exception and store.get_run(carols).shared

    bob = open_page("pages/4_Runs.py", session=book.log_in("bob", BOB_PASSWORD))
    assert not bob.exception and carols in tables(bob)
    assert all(button.key != "delete-confirm" for button in bob.button)
    assert not bob.toggle  # sharing is a teacher's decision


def test_a_student_follows_a_shared_run_without_a_cancel_button(book, runs_dir):
    store = RunStore(runs_dir)
    carols = store.create_run(RunConfig(name="carols-live-run"), owner="carol").id  # queued
    store.seen_by(None).share_run(carols)
    bob = open_page("pages/3_Live_run.py", session=book.log_in("bob", BOB_PASSWORD), run=carols)
    assert not bob.exception and not bob.error
    assert "Cancel run" not in [button.label for button in bob.button]
    carol = open_page("pages/3_Live_run.py", session=book.log_in("carol", "carol-s3cret-pw"), run=carols)
    assert "Cancel run" in [button.label for button in carol.button]
    store.finish(carols, "cancelled")


def test_with_a_school_login_configured_and_no_local_account_pages_ask_for_it(runs_dir):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.secrets["auth"] = {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "test-only-secret",
        "client_id": "lab",
        "client_secret": "test-only",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
    at.run()
    assert not at.exception and [element.value for element in at.title] == ["Log in"]
    assert [button.label for button in at.button] == ["Log in with your school account"]


def test_the_class_board_shows_every_students_run_ranked_in_both_languages(book, runs_dir):
    from lab.accounts.assignments import Assignment, publish, student_config

    assignment = publish(runs_dir, Assignment("week 3", RunConfig(), ["peft.r"], max_steps=40, teacher="alice"))
    store = RunStore(runs_dir)
    for owner, rank, accuracy in (("bob", "4", 0.71), ("carol", "16", 0.83)):
        run = store.create_run(student_config(assignment, {"peft.r": rank}, owner), group=assignment.group, owner=owner)
        store.finish(run.id, "completed", metrics={"accuracy": accuracy})
    bob_token = book.log_in("bob", BOB_PASSWORD)
    for lang, title in (("en", "Class board"), ("zh", "班级看板")):
        at = open_page("pages/9_Class_board.py", session=bob_token, lang=lang)
        assert not at.exception and at.title[0].value == title
        (board,) = at.dataframe
        assert board.value["student"].tolist() == ["carol", "bob"]
        assert at.get("plotly_chart")
        assert "board-publish" not in [button.key for button in at.button]  # publishing is a teacher's
    teacher = open_page("pages/9_Class_board.py", session=book.log_in("alice", "teach-3x4mple"))
    assert not teacher.exception and "board-publish" in [button.key for button in teacher.button]


def test_a_closed_assignment_takes_no_runs_and_the_projector_mode_draws_a_readable_table(book, runs_dir):
    from lab.accounts.assignments import Assignment, close, publish

    publish(runs_dir, Assignment("week 4", RunConfig(), ["train.learning_rate"], max_steps=40, teacher="alice"))
    bob = open_page("pages/9_Class_board.py", session=book.log_in("bob", BOB_PASSWORD))
    assert not bob.exception and bob.number_input(key="board-set-week 4-train.learning_rate").label == "Learning rate"
    close(runs_dir, "week 4")
    bob = open_page("pages/9_Class_board.py", session=book.log_in("bob", BOB_PASSWORD), lang="zh")
    assert not bob.exception and "board-launch" not in [button.key for button in bob.button]
    assert any("已关闭" in caption.value for caption in bob.caption)
    store = RunStore(runs_dir)
    run = store.create_run(RunConfig(name="r"), group="assignment week 4", owner="carol")
    store.finish(run.id, "completed", metrics={"accuracy": 0.8})
    teacher = open_page("pages/9_Class_board.py", session=book.log_in("alice", "teach-3x4mple"))
    teacher.toggle(key="board-large").set_value(True).run()
    assert not teacher.exception and not teacher.dataframe  # the canvas table ignores the large type
    (table,) = teacher.table
    assert table.value.columns.tolist()[:4] == ["#", "Student", "Status", "Method"]


def tokens_the_browser_forgets(at: AppTest) -> list[str]:
    """The session values whose cookie the page's script deletes (only while the browser still holds one of
    them); [] when no script deletes any."""
    import json

    scripts = [element.proto.body for element in at.get("html") if "const stale = " in element.proto.body]
    if not scripts:
        return []
    (script,) = scripts
    held = json.loads(script.split("const stale = ")[1].split(";\n")[0])
    return [value.removeprefix(f"{SESSION_COOKIE}=") for value in held]


def test_a_tab_with_a_dead_cookie_deletes_only_that_cookie_not_one_another_tab_wrote_since(book):
    dead = book.log_in("bob", BOB_PASSWORD)
    book.log_out(dead)
    at = open_page("pages/4_Runs.py", session=dead)
    at.text_input(key="auth-name").input("carol").run()  # any rerun, after another tab has logged in
    assert shows_only_the_login_form(at, "Log in")
    assert tokens_the_browser_forgets(at) == [dead]  # a live cookie from another tab stays
    assert not [element for element in at.get("html") if "document.cookie = " in element.proto.body.split("if (")[0]]


def test_logging_out_in_the_tab_that_logged_in_makes_the_browser_forget_the_cookie(book):
    at = log_in(open_page("pages/4_Runs.py"), "bob", BOB_PASSWORD)  # no cookie when this tab connected
    token = cookie_written(at)
    at.button(key="auth-log-out").click().run()
    assert shows_only_the_login_form(at, "Log in")
    assert tokens_the_browser_forgets(at) == [token]
    assert book.session(token) is None
    at = log_in(at, "carol", "carol-s3cret-pw")  # a new login in the same tab forgets nothing
    assert not tokens_the_browser_forgets(at) and cookie_written(at) not in ("", token)
