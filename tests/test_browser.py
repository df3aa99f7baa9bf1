"""The whole app in a real browser: `streamlit run app.py` on a free port, driven by headless Chromium.

Skipped (with the reason) where Chromium, its driver or selenium is missing: `scripts/setup.sh` installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1600")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout} s:\n{log.read_text()[-2000:]}")


@pytest.fixture()
def app_url(tmp_path, data_dir, tiny_model_path):
    """The app on the tiny model, served by a real `streamlit run` process."""
    port = free_port()
    (tmp_path / "adapters").mkdir()
    env = dict(os.environ, MCQA_APP_BASE_MODEL="tiny-random-llama", MCQA_APP_4BIT="0",
               MCQA_ADAPTERS_DIR=str(tmp_path / "adapters"), MCQA_DATA_DIR=str(data_dir))
    log = tmp_path / "streamlit.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mcqa-chromium-")
    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
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
