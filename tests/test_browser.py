"""The whole app in a real browser: `streamlit run app.py` on a free port, driven by headless Chromium.

Skipped (with the reason) where Chromium, its driver or selenium is missing: `scripts/setup.sh` installs them.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from scripts.app_server import CHROMEDRIVER, CHROMIUM, chrome, serve_app

PROBS = re.compile(r"P\(answer\): A (\d+\.\d)% · B (\d+\.\d)% · C (\d+\.\d)% · D (\d+\.\d)%")


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-dev.txt)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture()
def app_url(tmp_path, data_dir, tiny_model_path):
    """The app on the tiny model, served by a real `streamlit run` process."""
    (tmp_path / "adapters").mkdir()
    env = dict(MCQA_APP_BASE_MODEL="tiny-random-llama", MCQA_APP_4BIT="0",
               MCQA_ADAPTERS_DIR=str(tmp_path / "adapters"), MCQA_DATA_DIR=str(data_dir))
    with serve_app(env, tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture()
def browser():
    profile = tempfile.mkdtemp(prefix="mcqa-chromium-")
    driver = chrome(profile, "--window-size=1400,1600")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_ask_a_question_in_a_real_browser(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)  # the first page view loads the model (cached for every later one)
    browser.get(app_url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-ask_question textarea"))
    sidebar = browser.find_element(By.CSS_SELECTOR, "[data-testid=stSidebar]")
    wait.until(lambda d: "Base model: tiny-random-llama" in sidebar.text)

    browser.find_element(By.CSS_SELECTOR, ".st-key-ask_question textarea").send_keys(
        "Which vitamin deficiency causes scurvy? <b>not bold</b>")
    for key, text in zip("abcd", ("Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")):
        box = browser.find_element(By.CSS_SELECTOR, f".st-key-ask_op{key} input")
        box.send_keys(text)
        box.send_keys(Keys.TAB)  # a text input commits its value when it loses focus
    time.sleep(0.5)
    browser.find_element(By.CSS_SELECTOR, ".st-key-ask_submit button").click()

    main = browser.find_element(By.CSS_SELECTOR, "[data-testid=stMain]")
    wait.until(lambda d: PROBS.search(main.text))
    probs = [float(p) for p in PROBS.search(main.text).groups()]
    assert len(probs) == 4 and abs(sum(probs) - 100) < 0.5
    assert re.search(r"^[A-D]\. Vitamin [ACDK]$", main.text, re.M)  # the chosen letter and its option
    assert re.search(r"answered in \d+\.\d\d s", main.text)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart]"))  # the bar chart
    assert "Base model: tiny-random-llama" in sidebar.text  # the sidebar survives the rerun
    # The question shows in the prompt expander as typed text, never as markup.
    assert not browser.find_elements(By.XPATH, "//b[normalize-space()='not bold']")
    browser.save_screenshot(str(tmp_path / "ask.png"))
    # Started as a user starts it, the server stays quiet: no watcher tracebacks, no usage pings.
    log = (tmp_path / "streamlit.log").read_text()
    assert "Traceback" not in log and "Inotify" not in log, log[-3000:]
