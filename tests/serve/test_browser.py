"""The web page in headless Chromium (Debian's chromium and chromedriver, no browser download): load it, search
the index, upload an image, see its caption; ask about it and classify it."""

import shutil

import pytest
from serve_helpers import free_port, start

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                                       "chromium-driver; .ci/run installs them)")


@pytest.fixture(scope="module")
def server(index_dir, tmp_path_factory):
    log = open(tmp_path_factory.mktemp("serve") / "server.log", "w+")
    url, proc = start(["--index", str(index_dir), "--threads", "1", "--log-level", "warning"], free_port(), log)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def test_search_upload_caption_ask_classify(server, browser, models, shapes_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from clipblip.tasks.caption import caption

    wait = WebDriverWait(browser, 30)
    text = lambda css: browser.find_element(By.CSS_SELECTOR, css).text  # noqa: E731
    browser.get(server)
    wait.until(lambda b: "6 images indexed" in text("#health"))

    browser.find_element(By.ID, "query").send_keys("a large blue circle")
    browser.find_element(By.ID, "search-btn").click()
    # every hit shown with its image loaded from /image/{id}
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results figure.hit img[src^='blob:']")) == 6)
    loaded = browser.execute_script("return [...document.querySelectorAll('#results img')]"
                                    ".every(i => i.complete && i.naturalWidth === 64)")
    assert loaded

    image = sorted(shapes_dir.glob("*.png"))[3]
    browser.find_element(By.ID, "file").send_keys(str(image))
    wait.until(lambda b: text("#caption") not in ("", "…"))
    assert text("#caption") == caption(models.blip, [image])[0]

    browser.find_element(By.ID, "question").send_keys("how many objects are there?")
    browser.find_element(By.ID, "ask-btn").click()
    wait.until(lambda b: text("#answer") != "")
    browser.find_element(By.ID, "labels").send_keys("circle, square, triangle")
    browser.find_element(By.ID, "classify-btn").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#classes li")) == 3)
    assert not browser.find_element(By.ID, "error").is_displayed()

    # a file that is not an image: the server's message is shown, and the page goes on working
    notes = shapes_dir.parent / "notes.txt"
    notes.write_text("not an image")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    wait.until(lambda b: b.find_element(By.ID, "error").is_displayed())
    assert "not an image" in text("#error")
