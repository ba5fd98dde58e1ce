"""The web pages as HTML over HTTP: escaping, statuses, error pages, headers, no outside resources.

The browser tests (test_web_browser.py) check what a person sees; these check what the server
sends, which is where escaping and status codes are decided.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.adapter_files import lora_adapter
from registry.api.web.rendering import SECURITY_HEADERS
from tests.fixtures.registry import Hub, auth
from tests.fixtures.web import DELETED_EXPERT, LIVE_EXPERTS, REVISION_MESSAGE, WebSite

PAGES = [
    "/",
    "/?query=trivia&base_model=tiny/llama",
    "/experts",
    "/experts/alice/trivia",
    "/experts/alice/trivia/revisions/1",
]


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Pages do not read blobs: the local folder is enough for the `hub` tests here."""
    return (tmp_path / "blobs").as_uri()


def page(site: WebSite, path: str, status: int = 200) -> str:
    response = site.hub.client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def shown_experts(html: str) -> list[str]:
    """The expert ids a list or search page links to, in order."""
    return re.findall(r'class="expert-id" href="[^"]+">([^<]+)</a>', html)


@pytest.mark.parametrize(
    "path",
    [
        "/experts/mallory/markup",
        "/experts/mallory/markup/revisions/1",
        "/experts?owner=mallory",
        "/?query=summarise+HTML+pages&base_model=tiny/llama",
    ],
)
def test_uploaded_markup_is_escaped(web_site: WebSite, path: str) -> None:
    html = page(web_site, path)
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>HTML" not in html
    assert "&lt;script&gt;alert(&#34;description&#34;)&lt;/script&gt;" in html
    if "/experts/mallory" in path:
        assert "&lt;img src=x onerror=&#34;alert(&#39;sample&#39;)&#34;&gt;" in html
        assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in html
    assert len(re.findall(r"<script\b", html)) == 1  # the site's own copy.js, nothing else


def test_search_query_is_echoed_escaped(web_site: WebSite) -> None:
    html = page(web_site, '/?query=<script>alert("q")</script>&base_model=tiny/llama')
    assert '<textarea id="query" name="query" rows="2"' in html
    assert "&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt;</textarea>" in html


@pytest.mark.parametrize("path", PAGES)
def test_pages_load_nothing_from_other_sites(web_site: WebSite, path: str) -> None:
    html = page(web_site, path)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    linked = re.findall(r'(?:src|href|action)="([^"]+)"', html)
    assert linked and all(url.startswith(("http://testserver/", "/")) for url in linked), linked


@pytest.mark.parametrize("path", [*PAGES, "/experts/nobody/nothing"])
def test_pages_carry_the_security_headers(web_site: WebSite, path: str) -> None:
    response = web_site.hub.client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_static_assets_are_served(web_site: WebSite) -> None:
    css = web_site.hub.client.get("/static/hub.css")
    script = web_site.hub.client.get("/static/copy.js")
    assert css.status_code == script.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "@media" in css.text and "navigator.clipboard" in script.text


def test_list_shows_live_experts_only(web_site: WebSite) -> None:
    html = page(web_site, "/experts")
    assert shown_experts(html) == LIVE_EXPERTS
    assert f"{len(LIVE_EXPERTS)} experts" in html


def test_list_filters_are_the_api_filters(web_site: WebSite) -> None:
    for query in (
        "owner=alice",
        "base_model=tiny/other",
        "peft_type=ia3",
        "tag=en",
        "q=ANSWER",
        "sort=recent",
        "q=en&sort=name&owner=alice",
    ):
        html = page(web_site, f"/experts?{query}")
        api = web_site.hub.client.get(f"/api/v1/experts?{query}").json()
        ids = shown_experts(html)
        assert ids == [item["id"] for item in api["items"]], query


def test_list_query_is_echoed_escaped_and_sort_kept(web_site: WebSite) -> None:
    html = page(web_site, '/experts?q="><script>alert(1)</script>&sort=name')
    assert 'name="q" value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert '<option value="name" selected>Name</option>' in html
    assert len(re.findall(r"<script\b", html)) == 1  # copy.js only


def test_empty_filters_match_everything(web_site: WebSite) -> None:
    html = page(web_site, "/experts?owner=&base_model=&peft_type=&tag=&q=")
    assert f"{len(LIVE_EXPERTS)} experts" in html


def test_filters_matching_nothing_say_so(web_site: WebSite) -> None:
    html = page(web_site, "/experts?owner=nobody")
    assert "No experts match these filters" in html


def test_page_past_the_end_links_back(web_site: WebSite) -> None:
    html = page(web_site, "/experts?per_page=2&page=9")
    assert "Nothing on page 9" in html and "There are 3 pages" in html
    assert 'href="http://testserver/experts?per_page=2&amp;page=1"' in html


def test_expert_page_shows_card_revisions_and_snippets(web_site: WebSite) -> None:
    html = page(web_site, "/experts/alice/trivia")
    api = web_site.hub.client.get("/api/v1/experts/alice/trivia").json()
    for revision in api["revisions"]:
        assert revision["blob_sha256"] in html
    assert "What is the capital of Peru?" in html
    # The snippets a peft user needs come first: install, export a folder, load it with peft.
    install = "pip install &#39;compeft-hub[torch]&#39; peft"
    export = "compeft-hub export alice/trivia@2 ./alice--trivia --endpoint http://testserver"
    load = "PeftModel.from_pretrained(base, &#34;./alice--trivia&#34;)"
    sdk = "HubClient(&#34;http://testserver&#34;).load(&#34;alice/trivia@2&#34;)"
    assert html.index(install) < html.index(export) < html.index(load) < html.index(sdk)
    assert "AutoModelForCausalLM.from_pretrained(&#34;tiny/llama&#34;)" in html
    assert html.count('<rect class="bar-') == 2
    latest = api["revisions"][-1]
    detail = web_site.hub.client.get("/api/v1/experts/alice/trivia/revisions/latest").json()
    assert f"{detail['compression_ratio_fp16']:.1f}× vs fp16" in html
    assert (
        f"({detail['compression_ratio']:.1f}× than the uploaded {detail['original_dtype']} file)"
        in html
    )
    assert latest["revision"] == detail["revision"]
    # Each revision's message under it, escaped; revision 1 has none.
    message = (
        '<p class="message">Trained on &lt;em&gt;twice&lt;/em&gt; the questions;\ntagged v2.</p>'
    )
    assert html.count('<p class="message">') == 1 and message in html
    assert detail["message"] == REVISION_MESSAGE


def test_revision_page_pins_its_revision(web_site: WebSite) -> None:
    html = page(web_site, "/experts/alice/trivia/revisions/1")
    api = web_site.hub.client.get("/api/v1/experts/alice/trivia/revisions/1").json()
    assert api["blob_sha256"] in html and "Revision 1 of 2" in html
    assert "load(&#34;alice/trivia@1&#34;)" in html
    assert 'href="http://testserver/api/v1/experts/alice/trivia/revisions/1/blob"' in html
    fidelity = api["fidelity"]
    assert f"cosine to the uploaded update {fidelity['cosine']['mean']:.3f}" in html
    assert f"relative error {fidelity['relative_error']['mean']:.3f}" in html
    assert f"{api['factorisation']}; default alphas: {api['scale']}" in html
    assert '<p class="message">' not in html  # revision 1 has no message
    latest = page(web_site, "/experts/alice/trivia/revisions/2")
    assert '<p class="message">Trained on &lt;em&gt;twice&lt;/em&gt;' in latest


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/experts/alice/nothing", 404, "no expert alice/nothing"),
        ("/experts/alice/trivia/revisions/9", 404, "alice/trivia has no revision 9 (latest: 2)"),
        ("/experts/alice/trivia/revisions/first", 400, "invalid revision &#39;first&#39;"),
        ("/experts/al..ice/trivia", 400, "invalid owner &#39;al..ice&#39;"),
        ("/experts?page=0", 422, "query.page: Input should be greater than or equal to 1"),
        ("/experts?per_page=500", 422, "query.per_page"),
        ("/experts?sort=newest", 422, "query.sort: Input should be &#39;created&#39;"),
        ("/?query=trivia&k=0", 422, "query.k"),
    ],
)
def test_errors_are_html_pages_with_the_api_status(
    web_site: WebSite, path: str, status: int, message: str
) -> None:
    html = page(web_site, path, status)
    assert f'data-status="{status}"' in html and message in html


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("query=trivia&base_model=tiny/nothing", 404, "no experts for base model"),
        ("query=trivia", 422, "base_model"),
        ("query=" + "x" * 2001 + "&base_model=tiny/llama", 422, "query"),
    ],
)
def test_bad_search_shows_the_form_again_with_the_reason(
    web_site: WebSite, query: str, status: int, message: str
) -> None:
    html = page(web_site, f"/?{query}", status)
    assert '<form method="get"' in html
    assert re.search(rf'role="alert" data-status="{status}">[^<]*{message}', html)


def test_search_without_text_shows_just_the_form(web_site: WebSite) -> None:
    html = page(web_site, "/?query=+&examples=%0A&base_model=tiny/llama")
    assert (
        '<form method="get"' in html and "Best matches" not in html and 'role="alert"' not in html
    )


def test_search_by_pasted_examples(web_site: WebSite) -> None:
    examples = "Where is the museum?%0A%0AI would like the bill, please."
    html = page(web_site, f"/?examples={examples}&base_model=tiny/llama")
    ids = shown_experts(html)
    assert ids[0] == "alice/french"


def test_deleted_expert_page_says_when(web_site: WebSite) -> None:
    html = page(web_site, f"/experts/{DELETED_EXPERT}", 410)
    assert re.search(rf"{DELETED_EXPERT} was deleted on \d{{4}}-\d\d-\d\d at \d\d:\d\d UTC", html)
    page(web_site, f"/experts/{DELETED_EXPERT}/revisions/1", 410)


def test_a_name_taken_again_after_deletion_is_live(hub: Hub) -> None:
    """Runs on every database: the deletion lookup must not shadow a live expert of that name."""
    token = hub.token("erin")
    assert hub.upload("erin/reused", lora_adapter(seed=1), token=token).status_code == 201
    assert hub.client.delete("/api/v1/experts/erin/reused", headers=auth(token)).status_code == 204
    assert hub.client.get("/experts/erin/reused").status_code == 410
    assert hub.upload("erin/reused", lora_adapter(seed=2), token=token).status_code == 201
    assert hub.client.get("/experts/erin/reused").status_code == 200
    assert hub.client.get("/experts/erin/reused/revisions/1").status_code == 404  # never reused
    renumbered = hub.client.get("/experts/erin/reused/revisions/2")
    assert renumbered.status_code == 200
    assert "← Revision 1" not in renumbered.text  # no link to the deleted expert's revision


def test_filter_menus_offer_what_live_experts_use(hub: Hub) -> None:
    """Runs on every database: menus list the latest revisions' values, deleted experts left out."""
    token = hub.token("erin")
    hub.upload("erin/a", lora_adapter(seed=1, base_model_name_or_path="m/one"), token=token)
    hub.upload("erin/b", lora_adapter(seed=2, base_model_name_or_path="m/two"), token=token)
    hub.upload("erin/a", lora_adapter(seed=3, base_model_name_or_path="m/three"), token=token)
    hub.client.delete("/api/v1/experts/erin/b", headers=auth(token))
    html = hub.client.get("/experts").text
    assert re.findall(r"<option(?: selected)?>([^<]+)</option>", html) == ["m/three", "LORA"]


def test_empty_hub_explains_how_to_upload(hub: Hub) -> None:
    for path in ("/", "/experts"):
        html = hub.client.get(path).text
        assert "No experts yet" in html and "compeft-hub upload" in html
