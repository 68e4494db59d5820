"""The browse page in a real browser: headless Chromium from Debian's packages (``chromium``,
``chromium-driver``; ``make install`` sets them up through tools/provision_browser.sh) driven
by Selenium, against the similarity service under uvicorn on 127.0.0.1.

The index is exported (``export-index``, no --data: from the model's own catalogue) from a
SavedModel with the pipeline's signatures over the real ML-100K files, plus one movie whose
title is markup (``<img onerror=...>``, quotes, an ampersand): it must show as text. The
model's vectors are a rank-16 fit of the training ratings (tests/index_testkit.py) with a
retrieval space and rating terms, so the page shows both stages' scores.

The walk the issue asks for: load the page, search "Toy", open Toy Story and see its similar
movies, open a user and see their profile and recommendations; what the page shows is
compared with the service's JSON. A visitor rates movies on the page and opens "For you"
(POST /recommendations with the ratings the browser keeps). Screenshots go to
artifacts/browser/ (docs/for-you.png is made by tools/screenshot_page.py --ratings).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from index_testkit import UNTIMED_EXPORT, LoopbackServer, lowrank_factors, save_tiny_model

from data import catalogue as cat
from data.movielens_files import load_movielens
from index.export import EXIT_OK, main as export_main
from index.service import create_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "browser"
HOSTILE_ID = 1683  # ML-100K's movie ids end at 1682
HOSTILE_TITLE = '<img src=x onerror="window.pwned=1"> Tom & "Jerry"'
USER = 13  # an ML-100K user with hundreds of ratings
WAIT_S = 20
RATINGS_KEY = "movielens-ratings"  # browse.js's localStorage key
#: what the visitor rates on the page: Star Wars, Toy Story, Fargo
RATED = {50: 5, 1: 4, 100: 2}


def _browser():
    """Headless Chromium through chromedriver, both from Debian's packages (PATH), so nothing
    is downloaded: Selenium Manager is told to stay offline."""
    from selenium import webdriver

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    assert chromium and driver, ("headless Chromium is missing: `make install` runs "
                                 "tools/provision_browser.sh (apt-get install chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--lang=en-US"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


@pytest.fixture(scope="module")
def index_dir(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browse")
    data_dir = root / "ml-100k"
    shutil.copytree(shared_data / "ml-100k", data_dir)
    with open(data_dir / "u.item", "a", encoding="latin-1") as items:
        items.write(f"{HOSTILE_ID}|{HOSTILE_TITLE} (1999)|01-Jan-1999||http://example.invalid|"
                    + "|".join("0001100000000000000") + "\n")
    data = load_movielens(data_dir)
    r = data.ratings
    train = (r.user_id * 7919 + r.movie_id) % 10 != 0  # 90 % train, the rest "eval"
    catalogue = cat.build_catalogue(
        data.users, data.movies,
        {"train": (r.user_id[train], r.movie_id[train], r.rating[train]),
         "eval": (r.user_id[~train], r.movie_id[~train], r.rating[~train])}, source="ml-100k")
    user_ids, movie_ids = np.array(sorted(data.users)), np.array(sorted(data.movies))
    users, movies = lowrank_factors(np.searchsorted(user_ids, r.user_id[train]),
                                    np.searchsorted(movie_ids, r.movie_id[train]), r.rating[train],
                                    len(user_ids), len(movie_ids), rank=16)
    scale = 1.0 / max(float(np.abs(users @ movies.T).max()), 1e-6)
    two_stage = {"user_bias": np.full(len(user_ids), 3.5, np.float32),
                 "movie_bias": np.zeros(len(movie_ids), np.float32),
                 "query_vectors": users, "candidate_vectors": movies, "movie_query_vectors": movies}
    base = root / "serving" / "movielens"
    save_tiny_model(base / "1", user_ids, users * np.sqrt(scale), movie_ids, movies * np.sqrt(scale), two_stage)
    cat.write_catalogue(cat.model_catalogue_dir(base / "1"), catalogue)
    index = root / "index"
    assert export_main(["--model-base-path", str(base), "--index-dir", str(index), "--no-progress",
                        *UNTIMED_EXPORT]) == EXIT_OK
    return index


@pytest.fixture(scope="module")
def server(index_dir):
    with LoopbackServer(create_app(index_dir, poll_interval_s=0)) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


def _ready(browser, view: str):
    """Wait until the page has rendered ``view`` (browse.js sets data-view/data-state)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "view").get_attribute("data-state") == "ready"
        and d.find_element(By.ID, "view").get_attribute("data-view") == view)
    return browser.find_element(By.ID, "view")


def _submit(browser, field: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.ID, field)
    box.clear()
    box.send_keys(text, Keys.ENTER)


def _linked_ids(table, attribute: str) -> list[int]:
    from selenium.webdriver.common.by import By

    return [int(a.get_attribute(attribute)) for a in table.find_elements(By.CSS_SELECTOR, f"a[{attribute}]")]


def test_search_movie_and_user_in_headless_chromium(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    api = httpx.Client(base_url=server.url, timeout=10)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(server.url + "/")
    _ready(browser, "home")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "versions").get_attribute("data-model-version") == "1")
    assert "index version 1" in browser.find_element(By.ID, "versions").text

    # search "Toy": the page lists what /movies answers, Toy Story first
    _submit(browser, "search-input", "Toy")
    view = _ready(browser, "search")
    results = view.find_element(By.CSS_SELECTOR, "[data-testid=search-results]")
    expected = api.get("/movies", params={"query": "Toy", "limit": 25}).json()
    assert _linked_ids(results, "data-movie-id") == [m["movie_id"] for m in expected["results"]]
    assert expected["results"][0]["title"] == "Toy Story"
    toy_story = results.find_element(By.LINK_TEXT, "Toy Story (1995)")

    # open it: its similar movies, as /movies/1/similar ranks them
    toy_story.click()
    view = _ready(browser, "movie")
    assert view.find_element(By.CSS_SELECTOR, "[data-testid=movie-title]").text == "Toy Story (1995)"
    similar = view.find_element(By.CSS_SELECTOR, "[data-testid=similar-movies]")
    shown = _linked_ids(similar, "data-movie-id")
    assert shown == api.get("/movies/1/similar", params={"k": 10}).json()["ids"]
    assert len(shown) == 10 and 1 not in shown
    browser.save_screenshot(str(SCREENSHOTS / "browse-movie.png"))

    # a similar movie's link opens that movie (links between views)
    similar.find_element(By.CSS_SELECTOR, f"a[data-movie-id='{shown[0]}']").click()
    view = _ready(browser, "movie")
    assert view.find_element(By.CSS_SELECTOR, "[data-testid=movie-title]").text.startswith(
        api.get(f"/movies/{shown[0]}/similar", params={"k": 1}).json()["query"]["title"])

    # open a user: profile, top-rated training movies, two-stage recommendations
    _submit(browser, "user-input", str(USER))
    view = _ready(browser, "user")
    profile = api.get(f"/users/{USER}", params={"top": 10}).json()
    recs = api.get(f"/users/{USER}/recommendations", params={"k": 10}).json()
    assert recs["stages"] == "retrieval+rerank" and profile["top_rated_from"] == "train split"
    assert view.find_element(By.CSS_SELECTOR, "[data-testid=user-title]").text == f"User {USER}"
    facts = view.find_element(By.CSS_SELECTOR, "[data-testid=profile]").text
    assert profile["user"]["occupation_name"] in facts and profile["user"]["age_group"] in facts
    top = view.find_element(By.CSS_SELECTOR, "[data-testid=top-rated]")
    assert _linked_ids(top, "data-movie-id") == [m["movie_id"] for m in profile["top_rated"]]
    assert [m["rating"] for m in profile["top_rated"]] == sorted((m["rating"] for m in profile["top_rated"]),
                                                                 reverse=True)
    table = view.find_element(By.CSS_SELECTOR, "[data-testid=recommendations]")
    assert _linked_ids(table, "data-movie-id") == recs["ids"] and len(recs["ids"]) == 10
    first = table.find_elements(By.CSS_SELECTOR, "tbody tr")[0].find_elements(By.TAG_NAME, "td")
    assert float(first[2].text) == pytest.approx(recs["results"][0]["retrieval_score"], abs=1e-3)
    assert float(first[3].text) == pytest.approx(recs["results"][0]["predicted_rating"], abs=1e-2)
    assert float(view.get_attribute("data-server-ms")) > 0  # the view's Server-Timing sum
    browser.save_screenshot(str(SCREENSHOTS / "browse-user.png"))

    # a similar user's link opens that user
    other = _linked_ids(view.find_element(By.CSS_SELECTOR, "[data-testid=similar-users]"), "data-user-id")[0]
    view.find_element(By.CSS_SELECTOR, f"a[data-user-id='{other}']").click()
    view = _ready(browser, "user")
    assert view.find_element(By.CSS_SELECTOR, "[data-testid=user-title]").text == f"User {other}"


def test_titles_are_text_never_markup(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/#/search?q=" + "Jerry")
    view = _ready(browser, "search")
    view.find_element(By.CSS_SELECTOR, f"a[data-movie-id='{HOSTILE_ID}']").click()
    view = _ready(browser, "movie")
    assert view.find_element(By.CSS_SELECTOR, "[data-testid=movie-title]").text == f"{HOSTILE_TITLE} (1999)"
    assert not view.find_elements(By.TAG_NAME, "img")
    assert browser.execute_script("return window.pwned") is None


def test_unknown_user_and_bad_search_show_the_services_error(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/#/user/999999")
    view = _ready(browser, "user")
    assert "user 999999 is not in the index" in view.find_element(By.CSS_SELECTOR, "[data-testid=error]").text
    browser.get(server.url + "/#/search?q=" + "x" * 300)  # over the endpoint's 200 characters: 422
    view = _ready(browser, "search")
    assert "at most 200 characters" in view.find_element(By.CSS_SELECTOR, "[data-testid=error]").text


def test_api_docs_render_from_the_service_alone_under_its_csp(server, browser):
    """/docs in a real browser: Swagger UI (the service's own copy, no CDN) lists every path of
    /openapi.json, and the page's Content-Security-Policy refuses nothing it asks for."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # recorded from the first script on (DevTools-injected scripts are outside the page's CSP)
    listener = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
        "e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")})
    try:
        browser.get(server.url + "/docs")
        WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
        shown = {e.get_attribute("data-path") or e.text.replace("\u200b", "")
                 for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert shown == set(httpx.get(server.url + "/openapi.json").json()["paths"])
        assert browser.execute_script("return window.cspViolations") == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / "api-docs.png"))
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", listener)


#: records the page's Content-Security-Policy refusals from its first script on
CSP_RECORDER = ("window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
                "e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")


def _label(m: dict) -> str:
    """A movie's title as the page shows it (browse.js ``label``)."""
    return f"{m['title']} ({m['year']})" if m.get("year") else m["title"]


def _rate(scope, movie_id: int, stars: int) -> None:
    from selenium.webdriver.common.by import By

    scope.find_element(By.CSS_SELECTOR, f"[data-rate-for='{movie_id}'] button[data-rate='{stars}']").click()


def _stored(browser) -> dict | None:
    text = browser.execute_script(f"return window.localStorage.getItem('{RATINGS_KEY}')")
    return None if text is None else json.loads(text)


def _open_movie_from_search(browser, query: str, movie_id: int):
    from selenium.webdriver.common.by import By

    _submit(browser, "search-input", query)
    view = _ready(browser, "search")
    view.find_element(By.CSS_SELECTOR, f"[data-testid=search-results] a[data-movie-id='{movie_id}']").click()
    return _ready(browser, "movie")


def _shown_for_you(view) -> list[tuple[int, str, str]]:
    """(movie id, title, its "because" line) per row of the For-you table."""
    from selenium.webdriver.common.by import By

    rows = []
    for row in view.find_elements(By.CSS_SELECTOR, "[data-testid=for-you] tbody tr"):
        link = row.find_element(By.CSS_SELECTOR, "a[data-movie-id]")
        because = row.find_elements(By.CSS_SELECTOR, "[data-testid=because]")
        rows.append((int(link.get_attribute("data-movie-id")), link.text, because[0].text if because else ""))
    return rows


def _visitor_list(api: httpx.Client, ratings: dict[int, int]) -> dict:
    answer = api.post("/recommendations", json={
        "ratings": [{"movie_id": m, "rating": r} for m, r in sorted(ratings.items())], "k": 10, "because": 3})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rate_movies_and_get_for_you_recommendations(server, browser):
    """Rate three movies on the page (a movie view, a search result), open "For you": the list
    is POST /recommendations' for the same ratings, each result naming rated movies; rating
    while it is open refreshes it; "Clear my ratings" empties it and localStorage. The page's
    CSP refuses nothing on the way."""
    api = httpx.Client(base_url=server.url, timeout=30)
    listener = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_RECORDER})
    try:
        browser.get("about:blank")  # then a new document, whatever the last test left open
        browser.get(server.url + "/")
        browser.execute_script("window.localStorage.clear()")
        browser.get(server.url + "/#/for-you")  # same document: a hash route
        _rate_and_see_for_you(browser, api)
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", listener)


def _rate_and_see_for_you(browser, api: httpx.Client) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    view = _ready(browser, "for-you")
    assert view.find_elements(By.CSS_SELECTOR, "[data-testid=no-ratings]")

    # Star Wars: searched, opened, rated in its movie view; the rating is marked there
    view = _open_movie_from_search(browser, "Star Wars", 50)
    _rate(view, 50, RATED[50])
    stars = view.find_elements(By.CSS_SELECTOR, "[data-rate-for='50'] button[data-rate]")
    assert [b.get_attribute("aria-pressed") for b in stars] == ["false"] * 4 + ["true"]
    assert all("on" in b.get_attribute("class").split() for b in stars)
    assert stars[0].get_attribute("aria-label") == "Rate Star Wars (1977) 1 of 5"
    assert stars[0].tag_name == "button"

    # Toy Story: rated straight from the search results
    _submit(browser, "search-input", "Toy")
    view = _ready(browser, "search")
    _rate(view.find_element(By.CSS_SELECTOR, "[data-testid=search-results]"), 1, RATED[1])
    marked = view.find_element(By.CSS_SELECTOR, "[data-rate-for='1']")
    assert marked.get_attribute("data-rating") == str(RATED[1])
    assert len(marked.find_elements(By.CSS_SELECTOR, "button.on")) == RATED[1]

    # Fargo: opened from a search, rated 2
    view = _open_movie_from_search(browser, "Fargo", 100)
    _rate(view, 100, RATED[100])
    assert _stored(browser) == {str(m): r for m, r in RATED.items()}
    assert browser.find_element(By.ID, "rated-count").text == "(3 rated)"

    # For you: the service's list for the same three ratings, in its order, each explained
    browser.find_element(By.ID, "for-you-link").click()
    view = _ready(browser, "for-you")
    expected = _visitor_list(api, RATED)
    assert expected["history_count"] == 3 and len(expected["results"]) == 10
    shown = _shown_for_you(view)
    assert [(i, title) for i, title, _ in shown] == [(r["movie_id"], _label(r)) for r in expected["results"]]
    assert [i for i, _, _ in shown] == expected["ids"] and not set(expected["ids"]) & set(RATED)
    rated = [api.get(f"/movies/{i}/similar", params={"k": 1}).json()["query"] for i in RATED]
    rated_titles = {m["title"] for m in rated} | {_label(m) for m in rated}  # `because` may carry a year
    for (_, _, line), result in zip(shown, expected["results"]):
        assert {b["movie_id"] for b in result["because"]} <= set(RATED)
        assert {_label(b) for b in result["because"]} <= rated_titles
        assert line == ("because you rated " + ", ".join(_label(b) for b in result["because"])
                        if result["because"] else "")
    assert all(line for _, _, line in shown) and any("Star Wars" in line for _, _, line in shown)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "for-you.png"))

    # rating a recommended movie while For you is open asks for the list again
    first = expected["ids"][0]
    _rate(view, first, 3)
    view = _ready(browser, "for-you")
    again = _visitor_list(api, {**RATED, first: 3})
    assert [i for i, _, _ in _shown_for_you(view)] == again["ids"] and first not in again["ids"]

    # Clear my ratings: the no-ratings hint, nothing left in localStorage
    view.find_element(By.CSS_SELECTOR, "[data-testid=clear-ratings]").click()
    view = _ready(browser, "for-you")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=no-ratings]"))
    assert "rate" in view.find_element(By.CSS_SELECTOR, "[data-testid=no-ratings]").text.lower()
    assert not view.find_elements(By.CSS_SELECTOR, "[data-testid=for-you]")
    assert _stored(browser) is None and browser.execute_script("return window.localStorage.length") == 0
    assert browser.find_element(By.ID, "rated-count").text == ""
    assert browser.execute_script("return window.cspViolations") == []  # one document: hash routes


def test_for_you_shows_the_services_error_as_text(server, browser):
    """A stored rating the service refuses (a movie id the index lacks): its 422 detail as text."""
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    browser.execute_script(f"window.localStorage.setItem('{RATINGS_KEY}', JSON.stringify({{'999999': 4}}))")
    browser.get(server.url + "/#/for-you")
    view = _ready(browser, "for-you")
    error = view.find_element(By.CSS_SELECTOR, "[data-testid=error]")
    detail = httpx.post(server.url + "/recommendations", json={"ratings": [{"movie_id": 999999, "rating": 4}]})
    assert detail.status_code == 422 and error.text == detail.json()["detail"]
    assert "999999" in error.text
    view.find_element(By.CSS_SELECTOR, "[data-testid=clear-ratings]").click()
    _ready(browser, "for-you")
    assert browser.execute_script("return window.localStorage.length") == 0
