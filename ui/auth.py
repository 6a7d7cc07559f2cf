"""The login gate: when accounts exist (lab.accounts), every page shows only a login form until someone
logs in.

A session is a token from the account book; the page keeps it in this browser session and in the URL
(`?session=...`), so a reload stays logged in; logging out ends it in the book. Without accounts the
gate is open and nobody is asked anything: the lab is one person's, as before.

Instead of local accounts, a school's OpenID Connect provider: with an `[auth]` section in
.streamlit/secrets.toml (Streamlit's `st.login`) and no local account, people log in there; the
e-mail addresses listed in `[lab] teachers` are teachers, everyone else a student.
"""

from __future__ import annotations

from typing import Optional

import streamlit as st

from lab.accounts.book import Account, AccountBook, LoginRefused
from lab.runs.records import STUDENT, TEACHER, Viewer
from lab.runs.store import default_runs_dir
from ui.i18n import language_switch, message, t

SESSION_PARAM = "session"
_TOKEN = "auth-token"  # session_state: this browser session's token
_ACCOUNT = "auth-account"  # session_state: whose it is, checked on every run of a page


@st.cache_resource(show_spinner=False)
def _book(runs_dir: str) -> AccountBook:
    return AccountBook(runs_dir)


def account_book() -> AccountBook:
    return _book(str(default_runs_dir().resolve()))


def current_viewer() -> Optional[Viewer]:
    """Who is looking (None: accounts are off, the one person sees every run)."""
    account: Optional[Account] = st.session_state.get(_ACCOUNT)
    return account.viewer if account is not None else None


def require_login() -> None:
    """Let the page go on for a logged-in person (or anyone while accounts are off); otherwise draw the
    login form and stop the page here."""
    book = account_book()
    if not book.enabled():
        st.session_state.pop(_ACCOUNT, None)
        if _school_login_configured():
            _school_login()
        return
    token = st.session_state.get(_TOKEN) or st.query_params.get(SESSION_PARAM, "")
    account = book.session(token)
    if account is None:
        st.session_state.pop(_TOKEN, None)
        st.session_state.pop(_ACCOUNT, None)
        if SESSION_PARAM in st.query_params:
            del st.query_params[SESSION_PARAM]
        language_switch()
        _login_form(book)
        st.stop()
    st.session_state[_TOKEN], st.session_state[_ACCOUNT] = token, account
    if st.query_params.get(SESSION_PARAM) != token:
        st.query_params[SESSION_PARAM] = token  # a reload of this URL finds the session again
    with st.sidebar:
        st.caption(t("auth.signed_in", name=account.name, role=t(f"auth.role.{account.role}")))
        if st.button(t("auth.log_out"), icon=":material/logout:", key="auth-log-out"):
            book.log_out(token)
            st.session_state.pop(_TOKEN, None)
            st.session_state.pop(_ACCOUNT, None)
            del st.query_params[SESSION_PARAM]
            st.rerun()


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
        token = book.log_in(name, password)
    except LoginRefused as exc:
        st.error(message(exc), icon=":material/lock:")
        return
    st.session_state[_TOKEN] = token
    st.query_params[SESSION_PARAM] = token
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
