"""The web page at ``/`` in real headless Chromium, against a real uvicorn server.

The server runs the app over the digits deployment (``service_deployment.py``: ITQ on small_cnn
features, 300 items) on a loopback port; the browser picks a photo with the page's file input,
waits for the result grid, adds a photo with the page's add form (a wrong token first, then
the right one) and finds it again. A screenshot of the final page is saved under pytest's
tmp dir, or ``$HASHLAB_SCREENSHOT_DIR`` when set, and its path printed.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when it can)
and the ``selenium`` package; skips, saying which is missing, without them.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')"
)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from service_deployment import N_INDEXED, TOKEN, build_deployment, png_bytes  # noqa: E402

from hashlab.codes import hamming_distance_matrix  # noqa: E402
from hashlab.service import build_service, create_app  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WAIT_SECONDS = 60  # the first upload builds the backbone; a loaded 2-core machine is slow
DEFAULT_K = 20  # the page's "nearest" field starts at 20


def find_browser() -> tuple[str, str]:
    browser = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(
            name
            for name, found in (("chromium", browser), ("chromedriver", driver))
            if found is None
        )
        pytest.skip(f"{missing} not found: apt-get install -y chromium chromium-driver")
    return browser, driver


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_deployment(tmp_path_factory.mktemp("page"))


@pytest.fixture()
def server(deployment: dict, tmp_path: Path) -> Iterator[dict]:
    """uvicorn serving a copy of the index on a free loopback port, in a thread."""
    shutil.copytree(deployment["root"] / "index", tmp_path / "index")
    shutil.copytree(deployment["root"] / "images", tmp_path / "images")
    service = build_service(
        deployment["root"] / "model", tmp_path / "index", image_store=tmp_path / "images",
        token=TOKEN,
    )  # fmt: skip
    # bind first and hand uvicorn the socket: no window for another process to take the port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(service), log_level="warning", lifespan="off")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "service": service}
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        service.index.close()


@pytest.fixture()
def browser() -> Iterator[webdriver.Chrome]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = find_browser()
    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1100",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to catch JS errors
    # an explicit driver path: selenium must not try to download one (there is no network)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, condition, message: str):
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1).until(condition, message)


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def result_cards(driver: webdriver.Chrome) -> list[dict]:
    """Each card's distance, id, whether its thumbnail loaded, and its text lines."""
    return driver.execute_script(
        """
        return [...document.querySelectorAll('#grid .card')].map((card) => {
          const head = card.querySelector('.dist').parentElement.textContent;
          const img = card.querySelector('img');
          return {
            distance: Number(/d = (\\d+)/.exec(head)[1]),
            id: Number(/id (\\d+)/.exec(head)[1]),
            thumbnail: img ? img.complete && img.naturalWidth > 0 : null,
            lines: [...card.querySelectorAll('div')].map((d) => d.textContent),
            map: card.querySelector('a[href*="openstreetmap"]')?.href ?? null,
          };
        });
        """
    )


def all_thumbnails_loaded(driver: webdriver.Chrome) -> bool:
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll('#grid .card img')];"
        "return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);"
    )


def test_page_searches_by_photo_and_adds_a_photo(
    server: dict, browser: webdriver.Chrome, deployment: dict, tmp_path: Path
) -> None:
    url, images, codes = server["url"], deployment["images"], deployment["codes"]
    browser.get(url + "/")
    wait_for(browser, lambda d: f"{N_INDEXED} items" in text_of(d, "stats"), "stats never shown")
    assert "32-bit codes" in text_of(browser, "stats") and "itq on small_cnn" in text_of(
        browser, "stats"
    )

    # 1. search by photo: the (hidden) file input is what both click and drop feed
    query_item = 17
    query_file = tmp_path / "query.png"
    query_file.write_bytes(png_bytes(images[query_item]))
    browser.find_element(By.ID, "file").send_keys(str(query_file))
    wait_for(browser, lambda d: "results" in text_of(d, "message"), "no results message")
    assert text_of(browser, "message").startswith(f"{DEFAULT_K} results")
    wait_for(browser, all_thumbnails_loaded, "thumbnails never loaded")
    cards = result_cards(browser)
    distances = hamming_distance_matrix(codes[query_item : query_item + 1], codes)[0]
    expected = np.lexsort((np.arange(N_INDEXED), distances))[:DEFAULT_K]
    assert [c["id"] for c in cards] == expected.tolist()
    assert [c["distance"] for c in cards] == distances[expected].tolist()
    assert cards[0]["distance"] == 0 and query_item in [c["id"] for c in cards]
    hit = next(c for c in cards if c["id"] == query_item)
    assert f"label: {int(deployment['labels'][query_item])}" in hit["lines"]
    assert hit["map"] is not None and f"mlat={48 + query_item / 1000}" in hit["map"]
    # the preview shows the picked photo
    assert browser.execute_script("return document.getElementById('preview').naturalWidth") > 0

    # 2. add a photo through the add form: a wrong token is refused with the server's reason
    new_image = images[N_INDEXED + 3]
    new_file = tmp_path / "new.png"
    new_file.write_bytes(png_bytes(new_image))
    browser.find_element(By.CSS_SELECTOR, "details > summary").click()
    browser.find_element(By.ID, "add-file").send_keys(str(new_file))
    metadata = browser.find_element(By.ID, "add-meta")
    metadata.clear()
    metadata.send_keys('{"title": "Pont Neuf", "lat": 48.857, "lon": 2.341}')
    token = browser.find_element(By.ID, "add-token")
    token.send_keys("wrong-token")
    browser.find_element(By.ID, "add").click()
    wait_for(browser, lambda d: "not added" in text_of(d, "add-message"), "no refusal shown")
    assert "token is wrong" in text_of(browser, "add-message")
    assert httpx.get(url + "/stats").json()["items"] == N_INDEXED

    token.clear()
    token.send_keys(TOKEN)
    browser.find_element(By.ID, "add").click()
    wait_for(browser, lambda d: "added as item" in text_of(d, "add-message"), "never added")
    assert text_of(browser, "add-message").startswith(f"added as item {N_INDEXED}")
    wait_for(browser, lambda d: f"{N_INDEXED + 1} items" in text_of(d, "stats"), "stale stats")
    assert httpx.get(url + "/stats").json()["items"] == N_INDEXED + 1

    # 3. the new photo is found by searching with it, with its metadata on the card
    browser.find_element(By.ID, "file").send_keys(str(new_file))
    wait_for(
        browser,
        lambda d: any(c["id"] == N_INDEXED for c in result_cards(d)),
        "the added photo is not among the results",
    )
    wait_for(browser, all_thumbnails_loaded, "thumbnails never loaded")
    added = next(c for c in result_cards(browser) if c["id"] == N_INDEXED)
    assert added["distance"] == 0 and "title: Pont Neuf" in added["lines"]
    assert added["thumbnail"] and "mlat=48.857" in added["map"]

    # 4. a bad hex code shows the server's reason, in the error colour
    code_box = browser.find_element(By.ID, "code")
    code_box.send_keys("zz\n")
    wait_for(browser, lambda d: "hex" in text_of(d, "message"), "no error for a bad code")
    assert browser.find_element(By.ID, "message").get_attribute("class") == "error"
    # picking the same photo as last time searches again, and the line stops being an error
    code_box.clear()
    browser.find_element(By.ID, "file").send_keys(str(new_file))
    wait_for(browser, lambda d: "results" in text_of(d, "message"), "no search on the same photo")
    assert browser.find_element(By.ID, "message").get_attribute("class") == ""
    wait_for(browser, all_thumbnails_loaded, "thumbnails never loaded")

    folder = Path(os.environ.get("HASHLAB_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / "service_page.png"
    # the whole page, add form included: grow the window to the document's height
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 120, 4000))
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot of the page: {screenshot}")
    # no script error anywhere on the way (the refused add and the bad code log their 4xx)
    errors = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
    assert not errors, errors


def test_page_filters_by_site_and_date_pages_and_explains_text_search(
    server: dict, browser: webdriver.Chrome, deployment: dict
) -> None:
    """The site / date fields build the filter the server applies; paging; text message."""
    from hashlab.codes import codes_to_hex

    url, images = server["url"], deployment["images"]
    surveyed = [("A12", "2024-03-01"), ("A12", "2025-01-10"), ("B7", "2024-06-01")]
    added = []
    for position, (site, date) in enumerate(surveyed):
        response = httpx.post(
            url + "/items",
            files={"image": ("s.png", png_bytes(images[N_INDEXED + 6 + position]), "image/png")},
            data={"metadata": f'{{"site": "{site}", "date": "{date}"}}'},
            headers={"X-Token": TOKEN},
            timeout=120,
        )
        assert response.status_code == 201, response.text
        added.append(response.json())
    browser.get(url + "/")
    wait_for(browser, lambda d: f"{N_INDEXED + 3} items" in text_of(d, "stats"), "no stats")
    # an image-only model: the page says text search needs a text side, and so does a try
    assert "text side" in text_of(browser, "text-note")
    text_box = browser.find_element(By.ID, "text")
    text_box.send_keys("street lamp\n")
    wait_for(browser, lambda d: "text side" in text_of(d, "message"), "no text-search message")
    assert browser.find_element(By.ID, "message").get_attribute("class") == "error"
    text_box.clear()

    # site A12 in 2024: only the first surveyed photo, whatever the query
    browser.find_element(By.ID, "site").send_keys("A12")
    browser.execute_script(
        "document.getElementById('date-from').value = '2024-01-01';"
        "document.getElementById('date-to').value = '2024-12-31';"
    )
    code_box = browser.find_element(By.ID, "code")
    code_box.send_keys(added[1]["code"] + "\n")
    wait_for(browser, lambda d: "matching" in text_of(d, "message"), "no filtered results")
    message = text_of(browser, "message")
    assert "site == 'A12' and date >= '2024-01-01' and date <= '2024-12-31'" in message
    assert [c["id"] for c in result_cards(browser)] == [added[0]["id"]]
    assert "site: A12" in result_cards(browser)[0]["lines"]

    # no filter: 20 per page, "next" shows ranks 21-40 of the brute-force ranking
    browser.find_element(By.ID, "site").clear()
    browser.execute_script(
        "document.getElementById('date-from').value = '';"
        "document.getElementById('date-to').value = '';"
    )
    code_box.clear()
    query_hex = codes_to_hex(deployment["codes"][17:18])[0]
    code_box.send_keys(query_hex + "\n")
    wait_for(browser, lambda d: "(1–20 of" in text_of(d, "message"), "no first page")
    first_page = [c["id"] for c in result_cards(browser)]
    browser.find_element(By.ID, "next").click()
    wait_for(browser, lambda d: "(21–40 of" in text_of(d, "message"), "no second page")
    second_page = [c["id"] for c in result_cards(browser)]
    body = httpx.post(url + "/search", json={"code": query_hex, "k": 40}).json()
    assert first_page + second_page == [h["id"] for h in body["results"]]
    assert browser.find_element(By.ID, "prev").is_enabled()

    # batch: a zip with two photos and a text file; progress reaches the end, refusal listed
    import zipfile

    archive = Path(server["service"].index.path).parent / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.png", png_bytes(images[N_INDEXED + 12]))
        zipped.writestr("b.png", png_bytes(images[N_INDEXED + 13]))
        zipped.writestr("notes.txt", b"not a photo")
    browser.find_element(By.CSS_SELECTOR, "#batch > summary").click()
    browser.find_element(By.ID, "batch-file").send_keys(str(archive))
    batch_meta = browser.find_element(By.ID, "batch-meta")
    batch_meta.clear()
    batch_meta.send_keys('{"site": "C3"}')
    browser.find_element(By.CSS_SELECTOR, "details:not(#batch) > summary").click()
    browser.find_element(By.ID, "add-token").send_keys(TOKEN)
    browser.find_element(By.ID, "batch-go").click()
    wait_for(browser, lambda d: text_of(d, "batch-message").startswith("done"), "batch not done")
    assert "3 of 3 files · 2 added · 1 refused" in text_of(browser, "batch-message")
    assert "notes.txt: not an image file" in text_of(browser, "batch-refused")
    progress = browser.execute_script(
        "const p = document.getElementById('batch-progress'); return [p.value, p.max];"
    )
    assert progress == [3, 3]
    assert httpx.get(url + "/stats").json()["items"] == N_INDEXED + 5
    errors = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
    assert not errors, errors
