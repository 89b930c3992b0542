"""The web dashboard in a real browser: headless Chromium driven by Playwright, against
every real process of the Procfile (the `system_stack` of tests/conftest.py) and the fake
LLM provider, through the gateway that serves fm-dashboard/dist.

Set FM_E2E_SCREENSHOTS=1 to write the main pages to docs/screenshots/*.png.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from fm_common.devstack import Stack

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "fm-dashboard" / "dist"
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"
LAPTOP = {"width": 1280, "height": 860}
SIDE_PANEL = {"width": 360, "height": 760}
# Ingestion loads the embedding model in the worker on first use: minutes on a busy CPU.
PROCESSING_TIMEOUT_MS = 240_000
TURN_TIMEOUT_MS = 120_000

pytestmark = pytest.mark.timeout(900)


# ---- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(system_stack: Stack) -> Stack:
    if not (DIST / "index.html").is_file():
        pytest.fail(f"{DIST} is missing: scripts/bootstrap.sh builds it (npm ci, npm run build)")
    return system_stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `scripts/bootstrap.sh --test` installs chromium")
    with sync_playwright() as p:
        # Playwright gives every launch a fresh, temporary user-data dir.
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Client:
    """One browser context (one user's browser) and every request it made."""

    def __init__(self, browser: Browser, base_url: str, viewport: dict[str, int]) -> None:
        self.base_url = base_url
        self.context: BrowserContext = browser.new_context(
            base_url=base_url, viewport=viewport, accept_downloads=True
        )
        self.context.set_default_timeout(30_000)
        self.requests: list[str] = []
        self.api_calls: list[tuple[str, str, dict[str, str]]] = []
        self.console_errors: list[str] = []
        self.context.on("request", self._record)
        self.page: Page = self.context.new_page()
        self.page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )

    def _record(self, request) -> None:  # type: ignore[no-untyped-def]
        self.requests.append(request.url)
        if "/api/v1/" in request.url:
            self.api_calls.append((request.method, request.url, request.headers))

    def foreign_requests(self) -> list[str]:
        gateway = urlsplit(self.base_url).netloc
        return [
            url
            for url in self.requests
            if not url.startswith(("data:", "blob:")) and urlsplit(url).netloc != gateway
        ]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_client(browser: Browser, stack: Stack) -> Iterator:
    clients: list[Client] = []

    def make(viewport: dict[str, int] = LAPTOP) -> Client:
        c = Client(browser, stack.gateway_url, viewport)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def shot(page: Page, name: str) -> None:
    if os.environ.get("FM_E2E_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# ---- steps -------------------------------------------------------------------------


def register(page: Page, username: str) -> None:
    page.goto("/register")
    expect(page.get_by_role("heading", name="Create your FaultMaven account")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Email (optional)").fill(f"{username}@example.com")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(r"/cases$"))


def log_in(page: Page, username: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()


def upload_documents(page: Page, paths: list[Path], scope: str = "personal") -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Knowledge base").click()
    expect(page.get_by_role("heading", name="Knowledge base")).to_be_visible()
    page.get_by_label("Document type").select_option("runbook")
    page.get_by_label("Scope", exact=True).select_option(scope)
    page.get_by_label("Choose documents to upload").set_input_files([str(p) for p in paths])
    uploads = page.get_by_role("list", name="Uploads")
    for path in paths:
        row = uploads.get_by_role("listitem").filter(has_text=path.name)
        expect(row).to_have_attribute("data-phase", "processed", timeout=PROCESSING_TIMEOUT_MS)
    table = page.get_by_role("table", name="Documents")
    for path in paths:
        row = table.get_by_role("row").filter(has_text=path.stem)
        expect(row).to_contain_text("processed")
        expect(row).to_contain_text(re.compile(r"\d+ chunks"))


def create_case(page: Page, title: str) -> str:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cases").click()
    page.get_by_label("New case title").fill(title)
    page.get_by_role("button", name="New case").click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    return page.url.rsplit("/", 1)[-1]


# ---- tests -------------------------------------------------------------------------


def test_user_journey_from_registration_to_post_mortem(
    open_client, stack: Stack, shared_data: Path, tmp_path: Path
) -> None:
    """Register, upload runbooks and find them, open a case, send a turn with a log and
    see the answer stream in with a citation, confirm a state change, generate and
    download the post-mortem, log out; no request leaves for another host."""
    fake = stack.fake_llm  # type: ignore[attr-defined]
    etcd = shared_data / "runbooks" / "prometheus-operator" / "etcd"
    client = open_client()
    page = client.page
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()
    shot(page, "login")

    user = unique("ada")
    register(page, user)
    me = page.evaluate("JSON.parse(localStorage.getItem('fm.tokens'))")
    assert me["user"]["username"] == user
    assert me["refreshToken"], "the refresh token is kept for silent refresh"

    # Knowledge base: two documents at once, processed, then found by search with scores.
    upload_documents(page, [etcd / "etcdNoLeader.md", etcd / "etcdMembersDown.md"])
    page.get_by_label("Search the knowledge base").fill("etcd cluster has no leader")
    page.get_by_label("Mode").select_option("hybrid")
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.get_by_role("region", name="Search results")
    expect(results.get_by_role("link", name="etcdNoLeader").first).to_be_visible()
    expect(results).to_contain_text(re.compile(r"score \d\.\d{3}"))
    expect(results).to_contain_text("does not have a leader")
    shot(page, "knowledge-base")

    # A case, and a turn with a log attached, answered as a stream with a citation.
    title = unique("etcd outage ")
    case_id = create_case(page, title)
    log = tmp_path / "etcd.log"
    log.write_text(
        "2026-11-24T05:01:02Z etcd-0 etcdserver: no leader\n"
        "2026-11-24T05:01:03Z etcd-0 raft: lost leader, term 7\n" * 20
    )
    page.get_by_label("Message", exact=True).fill(
        "The API server hangs and etcd says no leader. Why?"
    )
    page.get_by_label("Attach files").set_input_files(str(log))
    expect(page.get_by_role("list", name="Attached files")).to_contain_text("etcd.log")
    if fake is not None:
        fake.chunk_delay("*", 0.05)  # slow enough to watch the answer being written
    streamed: list[str] = []
    with page.expect_response(
        lambda r: r.url.endswith(f"/cases/{case_id}/turns") and r.request.method == "POST",
        timeout=TURN_TIMEOUT_MS,
    ) as turn_response:
        page.get_by_role("button", name="Send").click()
    try:
        # The case's first answer (the state change below adds one of its own).
        answer = page.get_by_role("article", name="FaultMaven's answer").first
        deadline = time.monotonic() + TURN_TIMEOUT_MS / 1000
        while time.monotonic() < deadline and answer.get_attribute("aria-busy") == "true":
            streamed.append(answer.locator(".md").inner_text())
            time.sleep(0.05)
    finally:
        if fake is not None:
            fake.clear_faults()
    response = turn_response.value
    assert response.request.headers["accept"] == "text/event-stream"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.request.headers["idempotency-key"]
    partial = [s for s in streamed if s.strip()]
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=TURN_TIMEOUT_MS)
    final = answer.locator(".md").inner_text()
    assert "etcdNoLeader" in final
    assert partial, "the answer was shown while it was being written"
    assert any(len(s) < len(final) for s in partial), "text appeared before the turn ended"
    expect(page.get_by_role("article", name="Your message").last).to_contain_text("etcd.log")
    sources = answer.get_by_role("list", name="Sources")
    citation = sources.get_by_role("link").first
    expect(citation).to_have_text("etcdNoLeader")
    assert citation.get_attribute("href").startswith("/knowledge/")

    # The investigation panel reflects the turn: milestones, hypotheses, actions.
    panel = page.get_by_role("complementary", name="Investigation")
    expect(panel.get_by_role("list", name="Milestones")).to_contain_text("symptom verified")
    expect(panel.get_by_role("list", name="Hypotheses")).to_contain_text("known failure mode")
    expect(panel.get_by_role("group", name="Suggested actions")).to_contain_text(
        "Share the relevant logs"
    )
    shot(page, "case-conversation")

    # A state change is applied only once the user confirms it.
    panel.get_by_role("button", name="Mark as investigating").click()
    dialog = page.get_by_role("dialog", name="Change the case state?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Confirm").click()
    expect(panel.locator("[data-state]").first).to_have_attribute("data-state", "investigating")
    # Sent as the extension's status dropdown sends it: a turn the agent answers.
    expect(page.get_by_role("article", name="FaultMaven's answer").last).to_contain_text(
        "The case is now investigating"
    )

    # The citation opens the source passage, highlighted.
    citation.click()
    expect(page).to_have_url(re.compile(r"/knowledge/[^/?]+\?chunk="))
    mark = page.get_by_label("Cited passage")
    expect(mark).to_be_visible()
    runbook_text = (etcd / "etcdNoLeader.md").read_text()
    assert " ".join(mark.inner_text().split()) in " ".join(runbook_text.split())
    page.go_back()

    # The post-mortem: generated by the worker, rendered, downloadable as Markdown.
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    page.get_by_role("button", name="Generate post-mortem").click()
    report = page.get_by_role("article", name="Post-mortem report")
    expect(report).to_be_visible(timeout=TURN_TIMEOUT_MS)
    expect(report.get_by_role("heading", name="Post-mortem")).to_be_visible()
    report.scroll_into_view_if_needed()
    shot(page, "post-mortem")
    with page.expect_download() as dl:
        report.get_by_role("link", name="Download .md").click()
    download = dl.value
    assert download.suggested_filename.endswith(".md")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_text().startswith("# Post-mortem")

    # Rename shows in the list; the list has the state badge and finds it by search.
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Case title").fill(f"{title} (renamed)")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=f"{title} (renamed)")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cases").click()
    page.get_by_label("Search cases").fill("renamed")
    page.get_by_role("button", name="Search", exact=True).click()
    item = page.get_by_role("list", name="Cases").get_by_role("listitem")
    expect(item).to_have_count(1)
    expect(item.locator("[data-state]")).to_have_text("investigating")
    shot(page, "cases")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    providers = page.get_by_role("table", name="LLM providers")
    if fake is not None:
        expect(providers).to_contain_text("fake-openai")
    expect(page.get_by_role("table", name="Service health")).to_contain_text("agent")
    shot(page, "settings")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("You are logged out.")
    assert page.evaluate("localStorage.getItem('fm.tokens')") is None
    page.goto(f"/cases/{case_id}")
    expect(page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()

    # Logging in again finds the case where it was left.
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()
    log_in(page, user)
    expect(page.get_by_role("list", name="Cases")).to_contain_text(f"{title} (renamed)")

    assert client.foreign_requests() == []
    assert not [e for e in client.console_errors if "Content Security Policy" in e]
    # The extension's session flow: an anonymous session first, without a token, then
    # every call carries X-Session-Id.
    first = client.api_calls[0]
    assert (first[0], urlsplit(first[1]).path) == ("POST", "/api/v1/sessions")
    assert "authorization" not in first[2]
    without = [
        (m, urlsplit(u).path)
        for m, u, h in client.api_calls
        if "x-session-id" not in h
        and not urlsplit(u).path.startswith("/api/v1/sessions")
        and urlsplit(u).path != "/api/v1/auth/config"
    ]
    assert without == [], f"calls without X-Session-Id: {without}"


def _cards_answer(request) -> str:  # type: ignore[no-untyped-def]
    """The model answers with one card of each kind and proposes investigating."""
    from fm_common.testing.fake_llm import default_answer

    if "TASK: turn" not in request.text:
        answer = default_answer(request)
        return answer if isinstance(answer, str) else json.dumps(answer)
    return json.dumps(
        {
            "answer": "Checkout fails since the deploy; the pods may be crash-looping.",
            "hypotheses": [{"statement": "A bad deploy", "likelihood": 0.6}],
            "proposed_state": "investigating",
            "suggested_actions": [
                {
                    "label": "It began after the deploy",
                    "type": "DECIDE",
                    "payload": "It began after the 10:00 deploy",
                },
                {"label": "List the pods", "type": "RUN", "payload": "kubectl get pods -n shop"},
                {"label": "The ingress log of the last hour", "type": "EVIDENCE"},
            ],
        }
    )


def test_suggestion_cards_status_change_and_account_wide_sign_out(
    open_client, stack: Stack
) -> None:
    """The cards act as in the extension (DECIDE sends its message, RUN copies its
    command, Yes answers the proposal without the model), the status change goes through
    a status_transition turn, and signing out in one browser signs the account out of
    the other too."""
    fake = stack.fake_llm  # type: ignore[attr-defined]
    if fake is None:
        pytest.skip("fm_common.testing.fake_llm is not importable")
    fake.reset()
    fake.responder = _cards_answer
    client = open_client()
    client.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = client.page
    user = unique("cards")
    register(page, user)
    other = open_client()
    log_in(other.page, user)

    create_case(page, unique("checkout down "))
    page.get_by_label("Message", exact=True).fill("Checkout returns 500 for everyone")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_role("article", name="FaultMaven's answer").last
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=TURN_TIMEOUT_MS)
    panel = page.get_by_role("complementary", name="Investigation")
    cards = panel.get_by_role("group", name="Suggested actions")
    expect(cards.locator("[data-card=EVIDENCE]")).to_contain_text(
        "Needed: The ingress log of the last hour"
    )

    # RUN copies the command.
    cards.locator("[data-card=RUN]").click()
    expect(cards.locator("[data-card=RUN]")).to_contain_text("(copied)")
    assert page.evaluate("navigator.clipboard.readText()") == "kubectl get pods -n shop"

    # DECIDE sends its payload as the user's next message.
    cards.get_by_role("button", name="It began after the deploy").click()
    expect(page.get_by_role("article", name="Your message").last).to_contain_text(
        "It began after the 10:00 deploy"
    )
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=TURN_TIMEOUT_MS)
    expect(page.get_by_role("article", name="FaultMaven's answer")).to_have_count(2)
    expect(page.get_by_role("article", name="FaultMaven's answer").last).not_to_have_attribute(
        "aria-busy", "true", timeout=TURN_TIMEOUT_MS
    )
    assert "QUESTION: It began after the 10:00 deploy" in fake.requests[-1].text
    model_calls = len(fake.requests)

    # Yes under the proposal moves the case, without asking the model.
    cards.get_by_role("button", name="Yes, mark the case as investigating").click()
    expect(panel.locator("[data-state]").first).to_have_attribute(
        "data-state", "investigating", timeout=TURN_TIMEOUT_MS
    )
    expect(page.get_by_role("article", name="FaultMaven's answer").last).to_contain_text(
        "The case is now investigating"
    )

    # The status change: confirmed in the dialog, sent as a status_transition turn.
    panel.get_by_role("button", name="Mark as resolved").click()
    dialog = page.get_by_role("dialog", name="Change the case state?")
    dialog.get_by_role("button", name="Confirm").click()
    expect(panel.locator("[data-state]").first).to_have_attribute(
        "data-state", "resolved", timeout=TURN_TIMEOUT_MS
    )
    expect(page.get_by_role("article", name="FaultMaven's answer").last).to_contain_text(
        "The case is now resolved"
    )
    assert len(fake.requests) == model_calls

    # Signing out here signs the account out in the other browser too.
    expect(other.page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()
    other.page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Knowledge base"
    ).click()
    expect(other.page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()
    assert other.page.evaluate("localStorage.getItem('fm.tokens')") is None
    fake.reset()


def test_another_user_never_sees_my_cases_or_documents(
    open_client, stack: Stack, shared_data: Path
) -> None:
    runbook = shared_data / "runbooks" / "prometheus-operator" / "node" / "NodeClockSkewDetected.md"
    owner = open_client()
    register(owner.page, unique("owner"))
    upload_documents(owner.page, [runbook])
    title = unique("private case ")
    case_id = create_case(owner.page, title)
    owner.page.goto("/knowledge")
    doc_link = owner.page.get_by_role("table", name="Documents").get_by_role(
        "link", name="NodeClockSkewDetected"
    )
    doc_path = doc_link.get_attribute("href")

    other = open_client()
    register(other.page, unique("other"))
    page = other.page
    expect(page.get_by_text("No cases yet. Start one above.")).to_be_visible()
    page.get_by_label("Include archived").check()
    expect(page.get_by_text(title)).to_have_count(0)
    page.goto(f"/cases/{case_id}")
    expect(page.get_by_role("heading", name="Case not found")).to_be_visible()
    expect(page.get_by_text(title)).to_have_count(0)

    page.goto("/knowledge")
    expect(page.get_by_text("No documents yet.")).to_be_visible()
    page.get_by_label("Search the knowledge base").fill("clock skew detected on a node")
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.get_by_role("region", name="Search results")
    expect(results).to_be_visible()
    expect(results.get_by_role("link", name="NodeClockSkewDetected")).to_have_count(0)
    page.goto(doc_path)
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_text("NodeClockSkewDetected")).to_have_count(0)
    assert other.foreign_requests() == []


def test_admin_manages_the_global_knowledge_base(open_client, shared_data: Path) -> None:
    runbook = (
        shared_data / "runbooks" / "prometheus-operator" / "node" / "NodeNetworkReceiveErrs.md"
    )
    plain = open_client()
    register(plain.page, unique("plain"))
    plain.page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Knowledge base"
    ).click()
    upload_scope = plain.page.get_by_label("Scope", exact=True)
    expect(upload_scope.locator("option")).to_have_text(["personal (only you)"])

    admin = open_client()
    page = admin.page
    # tests/conftest.py creates the first admin with the bootstrap settings
    # (FM_AUTH_BOOTSTRAP_ADMIN_USERNAME/_PASSWORD): it logs in, nobody registers it.
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    upload_documents(page, [runbook], scope="global")
    row = (
        page.get_by_role("table", name="Documents").get_by_role("row").filter(has_text=runbook.stem)
    )
    expect(row).to_contain_text("global")
    expect(row.get_by_role("button", name=f"Delete {runbook.stem}")).to_be_visible()

    # Every user reads the global document but cannot delete it.
    plain.page.reload()
    other_row = (
        plain.page.get_by_role("table", name="Documents")
        .get_by_role("row")
        .filter(has_text=runbook.stem)
    )
    expect(other_row).to_contain_text("global")
    expect(other_row.get_by_role("button")).to_have_count(0)

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Delete {runbook.stem}").click()
    expect(row).to_have_count(0)
    plain.page.reload()
    expect(plain.page.get_by_text("No documents yet.")).to_be_visible()


def test_expired_login_says_so_then_shows_the_login_page(open_client) -> None:
    client = open_client()
    page = client.page
    register(page, unique("expiry"))
    # The server refuses both tokens, as after a revocation or a reused refresh token.
    page.evaluate(
        """() => {
        const t = JSON.parse(localStorage.getItem('fm.tokens'));
        t.accessToken = 'not-a-token'; t.refreshToken = 'revoked-refresh-token';
        localStorage.setItem('fm.tokens', JSON.stringify(t));
    }"""
    )
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Knowledge base").click()
    expect(page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(
        "Your session has expired. Please log in again."
    )
    assert page.evaluate("localStorage.getItem('fm.tokens')") is None


def test_access_token_is_refreshed_silently_with_rotation(open_client) -> None:
    client = open_client()
    page = client.page
    user = unique("refresh")
    register(page, user)
    before = page.evaluate("JSON.parse(localStorage.getItem('fm.tokens'))")
    # Pretend the access token is about to expire: the next call refreshes it first.
    page.evaluate(
        """() => {
        const t = JSON.parse(localStorage.getItem('fm.tokens'));
        t.expiresAt = Date.now() + 1000;
        localStorage.setItem('fm.tokens', JSON.stringify(t));
    }"""
    )
    with page.expect_response(re.compile(r"/api/v1/auth/refresh$")) as refreshed:
        page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Knowledge base"
        ).click()
    assert refreshed.value.status == 200
    expect(page.get_by_role("heading", name="Knowledge base")).to_be_visible()
    expect(page.get_by_text("No documents yet.")).to_be_visible()
    after = page.evaluate("JSON.parse(localStorage.getItem('fm.tokens'))")
    assert after["refreshToken"] != before["refreshToken"], "the newest refresh token is kept"
    assert after["accessToken"] != before["accessToken"]
    assert after["expiresAt"] > before["expiresAt"] - 60_000
    # The user stays logged in across a reload.
    page.reload()
    expect(page.get_by_role("heading", name="Knowledge base")).to_be_visible()
    expect(page.get_by_text("No documents yet.")).to_be_visible()
    # The old refresh token is spent: presenting it again (as a thief would) is refused
    # and ends the whole login, which the dashboard reports as an expired session.
    reuse = httpx.post(
        f"{client.base_url}/api/v1/auth/refresh",
        json={"refresh_token": before["refreshToken"]},
        timeout=10,
    )
    assert reuse.status_code == 401
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cases").click()
    expect(page.get_by_role("heading", name="Log in to FaultMaven")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(
        "Your session has expired. Please log in again."
    )


def test_model_output_cannot_run_script(open_client, stack: Stack) -> None:
    fake = stack.fake_llm  # type: ignore[attr-defined]
    if fake is None:
        pytest.skip("the fake LLM provider is not installed")
    client = open_client()
    page = client.page
    register(page, unique("xss"))
    create_case(page, unique("xss case "))
    evil = (
        'Look: <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
        "[link](javascript:window.__pwned=3) ![remote](https://evil.example/x.png) **bold**"
    )
    fake.script(json.dumps({"answer": evil, "cited_sources": [], "suggested_actions": []}))
    page.get_by_label("Message", exact=True).fill("Render this")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_role("article", name="FaultMaven's answer").last
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=TURN_TIMEOUT_MS)
    expect(answer.locator("strong")).to_have_text("bold")
    page.get_by_role("button", name="Send").wait_for()
    assert page.evaluate("window.__pwned") is None
    assert answer.locator("script").count() == 0
    assert answer.locator("[onerror]").count() == 0
    assert answer.locator("a[href^='javascript']").count() == 0
    assert client.foreign_requests() == []


def test_refused_uploads_say_why(open_client, tmp_path: Path) -> None:
    client = open_client()
    page = client.page
    register(page, unique("refused"))
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    binary = tmp_path / "tool.exe"
    binary.write_bytes(b"MZ\x90\x00" + bytes(range(256)) * 4)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Knowledge base").click()
    page.get_by_label("Choose documents to upload").set_input_files([str(empty), str(binary)])
    uploads = page.get_by_role("list", name="Uploads")
    for name in ("empty.md", "tool.exe"):
        row = uploads.get_by_role("listitem").filter(has_text=name)
        expect(row).to_have_attribute("data-phase", "failed")
        status = row.get_by_role("status")
        expect(status).to_contain_text(re.compile(r"failed: [A-Z][^{}<>]{8,}"))
        expect(status).not_to_contain_text("Traceback")
    expect(page.get_by_text("No documents yet.")).to_be_visible()


def test_pasted_logs_and_dropped_files_reach_the_agent(
    open_client, stack: Stack, tmp_path: Path
) -> None:
    fake = stack.fake_llm  # type: ignore[attr-defined]
    client = open_client()
    page = client.page
    register(page, unique("paste"))
    case_id = create_case(page, unique("paste case "))
    page.get_by_role("button", name="Paste logs").click()
    marker = f"kernel: nvme0n1 I/O error sector {uuid.uuid4().int % 10**9}"
    page.get_by_label("Pasted logs").fill(f"{marker}\n{marker}\n")
    # Drop a file on the message form, as a user drags one from the desktop.
    page.evaluate(
        """() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["disk full on /var\\n"], "dmesg.log", {type: "text/plain"}));
        const form = document.querySelector("form[aria-label='New turn']");
        form.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }"""
    )
    expect(page.get_by_role("list", name="Attached files")).to_contain_text("dmesg.log")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_role("article", name="FaultMaven's answer").last
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=TURN_TIMEOUT_MS)
    expect(answer.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("article", name="Your message").last).to_contain_text("dmesg.log")
    # Both reached the case: the dropped file is stored as evidence of this case ...
    tokens = page.evaluate("JSON.parse(localStorage.getItem('fm.tokens'))")
    files = httpx.get(
        f"{client.base_url}/api/v1/cases/{case_id}/uploaded-files",
        headers={"Authorization": f"Bearer {tokens['accessToken']}"},
        timeout=10,
    ).json()
    names = [f["filename"] for f in files["files"]]
    assert "dmesg.log" in names
    assert len(names) == 2, f"the pasted log is stored as evidence too: {names}"
    # ... and the pasted lines were part of what the model was asked.
    if fake is not None:
        assert "nvme0n1 I/O error" in fake.all_text()
    # The investigation panel lists the evidence, and each file downloads.
    evidence = page.get_by_role("list", name="Evidence files")
    expect(evidence).to_contain_text("dmesg.log")
    with page.expect_download() as dl:
        evidence.get_by_role("button", name="Download dmesg.log").click()
    assert dl.value.suggested_filename == "dmesg.log"
    saved = tmp_path / "dmesg.log"
    dl.value.save_as(saved)
    assert saved.read_text() == "disk full on /var\n"


def test_cases_archive_delete_and_filters(open_client) -> None:
    client = open_client()
    page = client.page
    register(page, unique("lists"))
    keep = unique("keep ")
    archived = unique("archive me ")
    doomed = unique("delete me ")
    for title in (keep, archived, doomed):
        create_case(page, title)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Cases").click()
    cases = page.get_by_role("list", name="Cases")
    expect(cases.get_by_role("listitem")).to_have_count(3)

    cases.get_by_role("link", name=re.compile(archived)).click()
    page.get_by_role("button", name="Archive").click()
    expect(page).to_have_url(re.compile(r"/cases$"))
    expect(cases.get_by_role("listitem")).to_have_count(2)
    expect(cases).not_to_contain_text(archived)
    page.get_by_label("Include archived").check()
    expect(cases.get_by_role("listitem")).to_have_count(3)
    expect(cases.get_by_role("listitem").filter(has_text=archived)).to_contain_text("archived")

    cases.get_by_role("link", name=re.compile(doomed)).click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/cases"))
    page.get_by_label("Include archived").check()
    expect(cases.get_by_role("listitem")).to_have_count(2)
    expect(cases).not_to_contain_text(doomed)

    page.get_by_label("State", exact=True).select_option("closed")
    expect(page.get_by_text("No case matches these filters.")).to_be_visible()
    page.get_by_label("State", exact=True).select_option("inquiry")
    expect(cases.get_by_role("listitem")).to_have_count(2)
    page.get_by_label("Search cases").fill(keep)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(cases.get_by_role("listitem")).to_have_count(1)
    expect(cases).to_contain_text(keep)


def test_narrow_side_panel_keeps_every_page_usable(open_client) -> None:
    client = open_client(SIDE_PANEL)
    page = client.page
    register(page, unique("narrow"))
    create_case(page, "Disk full on the build agents")
    page.get_by_label("Message", exact=True).fill("The build agents run out of disk. Why?")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_role("article", name="FaultMaven's answer").last
    expect(answer).not_to_have_attribute("aria-busy", "true", timeout=TURN_TIMEOUT_MS)
    toggle = page.get_by_role("button", name="Show investigation")
    expect(toggle).to_be_visible()
    expect(page.get_by_role("complementary", name="Investigation")).to_be_hidden()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= SIDE_PANEL["width"], f"the page scrolls sideways ({width}px)"
    shot(page, "side-panel")
    toggle.click()
    expect(page.get_by_role("complementary", name="Investigation")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= SIDE_PANEL["width"], f"the page scrolls sideways ({width}px)"
    shot(page, "side-panel-investigation")
    for name in ("Knowledge base", "Settings", "Cases"):
        page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= SIDE_PANEL["width"], f"{name} scrolls sideways ({width}px)"
    # Keyboard: the first Tab reaches the skip link, which leads into the page.
    page.reload()
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.tagName + ':' + document.activeElement.id")
    assert focused == "INPUT:new-case-title"
