"""The web UI in headless Chromium, against a live server: what a person sees and can click.

Screenshots are kept under test-artifacts/web/ for a person to look at after a CI run.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.web import (
    ARTIFACTS,
    DELETED_EXPERT,
    XSS_DESCRIPTION,
    XSS_SAMPLES,
    WebSite,
    skip_without_browser_tools,
)

skip_without_browser_tools()

from playwright.sync_api import Browser, Dialog, Page, expect

NARROW = {"width": 390, "height": 844}  # a phone


@pytest.fixture
def page(browser: Browser, web_site: WebSite) -> Iterator[Page]:
    """A fresh browser context per test (no shared cookies or history), opened on the site."""
    context = browser.new_context(base_url=web_site.url)
    yield context.new_page()
    context.close()


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under test-artifacts/web/, checked to be a real picture of the page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width == page.viewport_size["width"] and height >= page.viewport_size["height"] // 2
    assert len(data) > 10_000, f"{path} is suspiciously small for a rendered page"
    return path


def test_list_filters_and_pages(page: Page) -> None:
    page.goto("/experts?per_page=2")
    expect(page.locator(".expert-id")).to_have_text(["alice/trivia", "alice/french"])
    expect(page.locator(".pages")).to_contain_text("Page 1 of 3")
    page.get_by_role("link", name="Next →").click()
    expect(page.locator(".pages")).to_contain_text("Page 2 of 3")
    expect(page.locator(".expert-id")).to_have_text(["bob/chemistry", "carol/sentiment"])

    page.get_by_label("Owner").fill("alice")
    page.get_by_label("PEFT type").select_option("LORA")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".count")).to_have_text("2 experts match")
    expect(page.locator(".expert-id")).to_have_text(["alice/trivia", "alice/french"])
    query = parse_qs(urlsplit(page.url).query)
    assert query["per_page"] == ["2"] and "page" not in query  # a new filter starts at page 1

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Base model").select_option("tiny/other")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".count")).to_have_text("1 expert match")
    page.get_by_role("link", name="classification").click()
    expect(page.locator(".expert-id")).to_have_text(["carol/sentiment"])
    expect(page.get_by_role("textbox", name="Tag")).to_have_value("classification")


def test_list_search_and_sort(page: Page) -> None:
    page.goto("/experts?per_page=2")
    page.get_by_label("Search").fill("QUESTIONS")
    page.get_by_label("Sort").select_option(label="Recently updated")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".count")).to_have_text("2 experts match")
    expect(page.locator(".expert-id")).to_have_text(["bob/chemistry", "alice/trivia"])
    expect(page.get_by_label("Search")).to_have_value("QUESTIONS")
    expect(page.get_by_label("Sort")).to_have_value("recent")
    screenshot(page, "list-search-desktop")

    page.get_by_label("Search").fill("")
    page.get_by_label("Sort").select_option(label="Name")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".expert-id")).to_have_text(["alice/french", "alice/trivia"])
    page.get_by_role("link", name="Next →").click()  # the page links keep the sort
    expect(page.locator(".expert-id")).to_have_text(["bob/chemistry", "carol/sentiment"])
    assert parse_qs(urlsplit(page.url).query)["sort"] == ["name"]


def test_open_an_expert_and_follow_a_revision(page: Page, web_site: WebSite) -> None:
    page.goto("/experts")
    page.get_by_role("link", name="alice/trivia").click()
    expect(page.locator("h1")).to_have_text("alice / trivia")
    expect(page.locator(".card .samples li")).to_have_count(2)
    expect(page.locator("svg.size-chart rect")).to_have_count(2)
    expect(page.locator("#snippet-cli")).to_have_text(
        "pip install 'compeft-hub[torch]' peft\n"
        f"compeft-hub export alice/trivia@2 ./alice--trivia --endpoint {web_site.url}"
    )
    card = page.get_by_role("region", name="Model card")
    expect(card.get_by_role("heading", name="Trivia expert")).to_be_visible()
    expect(card.locator("table td").first).to_have_text("dev")
    expect(page.locator(".provenance")).to_contain_text("License apache-2.0")
    expect(page.locator(".provenance")).to_contain_text("Trained on squad, trivia_qa")
    expect(page.locator(".revisions .message")).to_have_text(
        "Trained on <em>twice</em> the questions;\ntagged v2."
    )
    screenshot(page, "expert-desktop")

    page.get_by_role("link", name="Revision 1").click()
    expect(page.locator("h1")).to_have_text("alice/trivia @ 1")
    first = web_site.hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    expect(page.locator(".details .sha")).to_have_text(first["blob_sha256"])
    expect(page.locator("#snippet-sdk")).to_contain_text(
        f'HubClient("{web_site.url}").load("alice/trivia@1")'
    )
    page.get_by_role("link", name="Revision 2 →").click()
    expect(page.locator(".page-head .meta")).to_contain_text("Revision 2 of 2")


def test_copy_button_copies_the_snippet(browser: Browser, web_site: WebSite) -> None:
    context = browser.new_context(base_url=web_site.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto("/experts/alice/french")
    button = page.locator("button[data-copy=snippet-cli]")
    button.click()
    expect(button).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == (
        "pip install 'compeft-hub[torch]' peft\n"
        f"compeft-hub export alice/french@1 ./alice--french --endpoint {web_site.url}"
    )
    context.close()


def test_search_from_the_home_page(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Task").fill("translate this sentence into French")
    page.get_by_label("Base model").select_option("tiny/llama")
    page.get_by_role("button", name="Search").click()
    results = page.locator(".results .item")
    expect(results.first.locator(".expert-id")).to_have_text("alice/french")
    expect(results.first.locator(".rank")).to_have_text("#1")
    expect(results.first.locator(".score")).to_contain_text("score 0.")
    for label in ("Base model", "PEFT type", "LoRA rank", "Density", "Size", "Compression"):
        expect(results.first.locator(".stats dt", has_text=label)).to_have_count(1)
    screenshot(page, "search-results-desktop")

    page.get_by_label("PEFT type").select_option("IA3")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".expert-id")).to_have_text(["bob/chemistry"])
    page.get_by_role("link", name="bob/chemistry").click()
    expect(page.locator("h1")).to_have_text("bob / chemistry")


def test_reading_and_searching_work_without_javascript(browser: Browser, web_site: WebSite) -> None:
    context = browser.new_context(base_url=web_site.url, java_script_enabled=False)
    page = context.new_page()
    page.goto("/")
    page.get_by_text("Or paste a few inputs of the task").click()  # <details>: no script needed
    page.get_by_label("Example inputs, one per line").fill("Who painted the Mona Lisa?")
    page.get_by_label("Base model").select_option("tiny/llama")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".results .expert-id").first).to_have_text("alice/trivia")
    page.locator(".results .expert-id").first.click()
    expect(page.locator("#snippet-python")).to_be_visible()
    expect(page.locator("button.copy").first).to_be_hidden()  # shown by copy.js only
    context.close()


def test_uploaded_markup_shows_as_text_and_never_runs(page: Page) -> None:
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    page.goto("/experts/mallory/markup")
    expect(page.locator(".card .description")).to_have_text(XSS_DESCRIPTION)
    expect(page.locator(".card .samples li")).to_have_text(XSS_SAMPLES)
    page.goto("/experts?tag=html")
    expect(page.locator(".item .description")).to_have_text(XSS_DESCRIPTION)
    page.goto("/?query=summarise+HTML+pages&base_model=tiny/llama")
    expect(page.locator(".item .description").first).to_have_text(XSS_DESCRIPTION)
    assert page.locator("script").count() == 1 and page.locator("img, b").count() == 0
    assert dialogs == []


def test_unknown_expert_is_a_404_page(page: Page) -> None:
    response = page.goto("/experts/alice/nothing")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator(".detail")).to_have_text("no expert alice/nothing")
    page.get_by_role("link", name="Browse all experts").click()
    expect(page.locator("h1")).to_have_text("Experts")


def test_deleted_expert_page(page: Page) -> None:
    response = page.goto(f"/experts/{DELETED_EXPERT}")
    assert response is not None and response.status == 410
    expect(page.locator("h1")).to_have_text("Deleted")
    expect(page.locator(".detail")).to_contain_text(f"{DELETED_EXPERT} was deleted on")


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("expert-narrow", "/experts/mallory/markup"),
        ("revision-narrow", "/experts/alice/trivia/revisions/2"),
        ("list-narrow", "/experts?per_page=3"),
        ("search-narrow", "/?query=answer+quiz+questions&base_model=tiny/llama"),
    ],
)
def test_pages_fit_a_narrow_screen(
    browser: Browser, web_site: WebSite, name: str, path: str
) -> None:
    context = browser.new_context(base_url=web_site.url, viewport=NARROW)
    page = context.new_page()
    page.goto(path)
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    screenshot(page, name)
    context.close()
