"""The login gate: when accounts exist (lab.accounts), every page shows only a login form until someone
logs in.

A session is a token from the account book; the page keeps it in this browser session and in a cookie
of the lab's own address, written by a line of JavaScript after logging in and read back by Streamlit
when a reload or a new tab connects (st.context.cookies), so a reload stays logged in. The token never
rides in the URL: a link or screenshot of the address bar hands over nothing, and an old link's
`?session=` is ignored and dropped. Logging out ends the session in the book and deletes the cookie.
Without accounts the gate is open and nobody is asked anything: the lab is one person's, as before.

Instead of local accounts, a school's OpenID Connect provider: with an `[auth]` section in
.streamlit/secrets.toml (Streamlit's `st.login`) and no local account, people log in there; the
e-mail addresses listed in `[lab] teachers` are teachers, everyone else a student.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Optional

import streamlit as st

from lab.accounts.book import SESSION_SECONDS, Account, AccountBook, LoginRefused
from lab.runs.records import STUDENT, TEACHER, Viewer
from lab.runs.store import default_runs_dir
from ui.i18n import language_switch, message, t

SESSION_COOKIE = "lab_session"
OLD_SESSION_PARAM = "session"  # where the token once rode: a link carrying one opens nothing now
_TOKEN = "auth-token"  # session_state: this browser session's token
_ACCOUNT = "auth-account"  # session_state: whose it is, checked on every run of a page
_COOKIE_WRITTEN = "auth-cookie-written"  # session_state: the token this connection's cookie was set to
_LOGGED_OUT = "auth-logged-out"  # session_state: the token just logged out of, for the browser to forget


@st.cache_resource(show_spinner=False)
def _book(runs_dir: str) -> AccountBook:
    return AccountBook(runs_dir)


def account_book() -> AccountBook:
    return _book(str(default_runs_dir().resolve()))


def current_viewer() -> Optional[Viewer]:
    """Who is looking (None: accounts are off, the one person sees every run)."""
    account: Optional[Account] = st.session_state.get(_ACCOUNT)
    return account.viewer if account is not None else None


def request_cookies() -> Mapping[str, str]:
    """The cookies the browser sent when this tab connected (a reload connects again)."""
    return st.context.cookies


def client_address() -> str:
    """Who is knocking, for the failed-login limit ('local' for 127.0.0.1, as through an SSH tunnel)."""
    return st.context.ip_address or "local"


def require_login() -> None:
    """Let the page go on for a logged-in person (or anyone while accounts are off); otherwise draw the
    login form and stop the page here."""
    book = account_book()
    if OLD_SESSION_PARAM in st.query_params:
        del st.query_params[OLD_SESSION_PARAM]
    if not book.enabled():
        st.session_state.pop(_ACCOUNT, None)
        if _school_login_configured():
            _school_login()
        return
    cookie = request_cookies().get(SESSION_COOKIE, "")
    token = st.session_state.get(_TOKEN) or cookie
    account = book.session(token)
    if account is None:
        for key in (_TOKEN, _ACCOUNT, _COOKIE_WRITTEN):
            st.session_state.pop(key, None)
        # Ended, expired, from another lab on this host, or just logged out of: the browser forgets it, but only
        # while it still holds that token (another tab may have logged in since and written a live one).
        stale = [value for value in (cookie, st.session_state.get(_LOGGED_OUT, "")) if value]
        if stale:
            _forget_cookie(stale)
        language_switch()
        _login_form(book)
        st.stop()
    st.session_state[_TOKEN], st.session_state[_ACCOUNT] = token, account
    st.session_state.pop(_LOGGED_OUT, None)
    if token not in (cookie, st.session_state.get(_COOKIE_WRITTEN)):
        _write_cookie(token)
        st.session_state[_COOKIE_WRITTEN] = token
    with st.sidebar:
        st.caption(t("auth.signed_in", name=account.name, role=t(f"auth.role.{account.role}")))
        if st.button(t("auth.log_out"), icon=":material/logout:", key="auth-log-out"):
            book.log_out(token)
            for key in (_TOKEN, _ACCOUNT, _COOKIE_WRITTEN):
                st.session_state.pop(key, None)
            # The cookie may have been written in this connection, so the request never carried it.
            st.session_state[_LOGGED_OUT] = token
            st.rerun()


def _write_cookie(token: str) -> None:
    """Have the browser keep `token` for this site, for a session's length. Set from the page's JavaScript, so
    not HttpOnly (docs/SECURITY.md); SameSite=Strict keeps other sites' pages from sending it, and over https it
    is Secure."""
    _run_script(f"document.cookie = {_cookie_text(token, SESSION_SECONDS)};")


def _forget_cookie(stale: list[str]) -> None:
    """Have the browser forget the session cookie if it still holds one of the `stale` tokens; a token another
    tab wrote since stays."""
    held = json.dumps([f"{SESSION_COOKIE}={token}" for token in stale])
    held = held.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # never ends the script
    forget = _cookie_text("", 0)
    _run_script(  # a block: the const of an earlier run's script in this page must not clash
        f"{{ const stale = {held};\n"
        "if (document.cookie.split(';').some((pair) => stale.includes(pair.trim()))) "
        f"document.cookie = {forget}; }}"
    )


def _cookie_text(token: str, seconds: int) -> str:
    cookie = f"{SESSION_COOKIE}={token}; Max-Age={seconds}; Path=/; SameSite=Strict"
    return f"'{cookie}' + (location.protocol === 'https:' ? '; Secure' : '')"


def _run_script(script: str) -> None:
    with st.sidebar:
        st.html(f"<script>{script}</script>", unsafe_allow_javascript=True)


def _login_form(book: AccountBook) -> None:
    st.title(t("auth.title"))
    st.caption(t("auth.explain"))
    with st.form("login"):
        name = st.text_input(t("auth.name"), key="auth-name")
        password = st.text_input(t("auth.password"), type="password", key="auth-password")
        submitted = st.form_submit_button(t("auth.log_in"), type="primary")
    if not submitted:
        return
    try:
        token = book.log_in(name, password, address=client_address())
    except LoginRefused as exc:
        st.error(message(exc), icon=":material/lock:")
        return
    st.session_state[_TOKEN] = token
    st.rerun()


def _school_login_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file, or one that does not parse: no school login
        return False


def _school_login() -> None:
    """Log in with the school's OpenID Connect provider (st.login); the page stops until then."""
    if not st.user.get("is_logged_in"):
        language_switch()
        st.title(t("auth.title"))
        st.caption(t("auth.explain"))
        if st.button(t("auth.school_log_in"), type="primary", icon=":material/login:"):
            st.login()
        st.stop()
    email = str(st.user.get("email") or st.user.get("sub") or "").strip().lower()
    if not email:  # '' is nobody's name: it would own the teacher's runs
        st.error(t("auth.no_email"))
        st.stop()
    teachers = {str(name).strip().lower() for name in st.secrets.get("lab", {}).get("teachers", [])}
    st.session_state[_ACCOUNT] = Account(email, TEACHER if email in teachers else STUDENT, 0.0)
    with st.sidebar:
        st.caption(t("auth.signed_in", name=email, role=t(f"auth.role.{st.session_state[_ACCOUNT].role}")))
        if st.button(t("auth.log_out"), icon=":material/logout:", key="auth-log-out"):
            st.logout()
