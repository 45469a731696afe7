"""/verify's limit on guessing codes: per signed-in user, with a ceiling per address; anonymous per address.

An office behind one NAT address shared the address's 30 checks per window: one clerk's typos stopped every colleague.
Now a signed-in user's unknown codes and uploads count on their own account (JZFLOW_VERIFY_USER_FAILURES), and all
signed-in users of one address together on a higher ceiling (JZFLOW_VERIFY_ADDRESS_CEILING), so many accounts from
one address still stop there. Anonymous checks count per address as before (JZFLOW_VERIFY_ADDRESS_FAILURES).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine import documents
from tests.processes.test_parallel_approval import deployed, people  # noqa: F401 (fixtures used by name)
from tests.web.conftest import csrf_of
from tests.web.test_documents_pages import BOUNDARY, _doc, _multipart, app, client_of, finished  # noqa: F401 (fixtures used by name)

OFFICE = {"REMOTE_ADDR": "10.20.30.40"}  # the office's NAT address
ELSEWHERE = {"REMOTE_ADDR": "10.99.0.1"}


@pytest.fixture(autouse=True)
def _limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # JZFLOW_VERIFY_ADDRESS_FAILURES=4 (the app fixture): anonymous
    monkeypatch.setenv("JZFLOW_VERIFY_USER_FAILURES", "3")
    monkeypatch.setenv("JZFLOW_VERIFY_ADDRESS_CEILING", "7")
    yield


def _miss(client: FlaskClient, where: dict[str, str] = OFFICE) -> int:
    return client.get(f"/verify/{documents.new_code()}", environ_base=where).status_code


def _good(client: FlaskClient, app: Flask, finished: int, where: dict[str, str] = OFFICE) -> int:  # noqa: F811
    return client.get(f"/verify/{_doc(app, finished).verify_code}", environ_base=where).status_code


def test_colleagues_behind_one_address_each_have_their_own_checks(app: Flask, finished: int) -> None:  # noqa: F811
    """One clerk used up their checks: a colleague at the same address, and a citizen there without an account,
    still check; the clerk waits, with Retry-After, even for a good code, and from another address too."""
    clerk, colleague = client_of(app, "window_wang"), client_of(app, "leader_sun")
    for _ in range(3):
        assert _miss(clerk) == 404
    limited = clerk.get(f"/verify/{_doc(app, finished).verify_code}", environ_base=OFFICE)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "核验次数过多" in limited.get_data(as_text=True)
    assert _good(clerk, app, finished, ELSEWHERE) == 429  # counted on the account, not the address
    assert _good(colleague, app, finished) == 200
    assert _miss(colleague) == 404
    assert _good(app.test_client(), app, finished) == 200  # the address's anonymous checks are untouched


def test_a_signed_in_office_gets_more_checks_than_one_anonymous_address(
        app: Flask, finished: int) -> None:  # noqa: F811
    """Two colleagues make 3 misses each at one address: 6, more than the anonymous 4, and both are still answered."""
    users = [client_of(app, "window_wang"), client_of(app, "leader_sun")]
    for user in users:
        for _ in range(3):
            assert _miss(user) == 404
    third = client_of(app, "zhaoshang_liu")
    assert _good(third, app, finished) == 200


def test_many_accounts_from_one_address_stop_at_the_address_ceiling(app: Flask, finished: int) -> None:  # noqa: F811
    """A guesser holding many accounts signs in with each in turn: together they stop at the address's ceiling (7),
    a fresh account there included; the same accounts from another address are not stopped by it."""
    names = ["window_wang", "leader_sun", "zhaoshang_liu", "qiye_zhang"]
    misses = 0
    for name in names:
        client = client_of(app, name)
        for _ in range(3):
            status = _miss(client)
            if status == 429:
                break
            assert status == 404
            misses += 1
    assert misses == 7
    fresh = client_of(app, "qiye_li")
    assert _good(fresh, app, finished) == 429
    assert _miss(fresh) == 429
    assert _good(fresh, app, finished, ELSEWHERE) == 200


def test_uploads_by_a_signed_in_user_count_on_their_account(app: Flask, finished: int) -> None:  # noqa: F811
    """Every upload is read and hashed: a signed-in user's count on their account as their unknown codes do."""
    doc = _doc(app, finished)
    clerk = client_of(app, "window_wang")
    token = csrf_of(clerk, f"/verify/{doc.verify_code}")  # the page's own form (a good code costs nothing)
    for _ in range(3):
        sent = clerk.post(f"/verify/{doc.verify_code}", data=_multipart(token, b"%PDF-1.4 not it", "a.pdf"),
                          content_type=f"multipart/form-data; boundary={BOUNDARY}", environ_base=OFFICE)
        assert sent.status_code == 200 and "与签发文件不一致" in sent.get_data(as_text=True)
    assert _good(clerk, app, finished) == 429
    assert _good(client_of(app, "leader_sun"), app, finished) == 200


def test_anonymous_guessing_stays_limited_per_address(app: Flask, finished: int) -> None:  # noqa: F811
    """Without an account: 4 per address, whoever's cookie-less client asks (a colleague's account is no way out
    for the anonymous guesser, and the guesser's misses do not stop a signed-in colleague)."""
    for _ in range(4):
        assert _miss(app.test_client()) == 404
    assert _good(app.test_client(), app, finished) == 429
    assert _miss(app.test_client()) == 429
    assert _good(client_of(app, "window_wang"), app, finished) == 200
