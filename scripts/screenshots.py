"""Screenshots of the app's Ask, Browse and Evaluate pages for the README, taken in headless Chromium.

    # the real offline model (SmolLM2-135M) with the newest adapter under adapters/, if any
    python scripts/screenshots.py
    # a quick check of the script itself with the tiny random model
    python scripts/screenshots.py --base-model tiny-random-llama --adapters-dir /tmp/none --out /tmp/shots

Starts `streamlit run app.py` on a free port, drives the pages as a user would, saves
docs/screenshots/{ask,browse,evaluate}.png and stops the server.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[1]
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars")
PROBS = re.compile(r"P\(answer\): A \d")
# A short, clear held-out question (the cpu-demo adapter never trained on it).
ASK_QUESTION = {
    "question": "In Plasmodium vivax malaria, relapse is caused by:",
    "options": ("Sporozoite", "Schizont", "Hypnozoite", "Gametocyte"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="folder for the PNG files")
    p.add_argument("--base-model", default=None, help="MCQA_APP_BASE_MODEL for the app (default: smollm2-135m)")
    p.add_argument("--adapters-dir", default=None, help="MCQA_ADAPTERS_DIR for the app (default: adapters/)")
    p.add_argument("--eval-n", type=int, default=60, help="questions to evaluate when no saved report exists")
    p.add_argument("--width", type=int, default=1440)
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for any one step")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    if args.base_model:
        env["MCQA_APP_BASE_MODEL"] = args.base_model
    if args.adapters_dir:
        env["MCQA_ADAPTERS_DIR"] = args.adapters_dir
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"streamlit did not start:\n{log.read_text()[-2000:]}")


def main(args) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="mcqa-shots-"))
    proc = start_app(args, port, work / "streamlit.log")
    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={work / 'profile'}")
    options.add_argument(f"--window-size={args.width},1500")
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, args.timeout)
    base = f"http://127.0.0.1:{port}"

    def css(selector):
        return driver.find_element(By.CSS_SELECTOR, selector)

    def main_text() -> str:
        return css("[data-testid=stMain]").text

    def idle():
        """Wait until the script run ends (the status widget disappears), then let the charts draw."""
        time.sleep(0.8)
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid=stStatusWidget]"))
        time.sleep(1.5)

    def shoot(name: str, height: int):
        driver.set_window_size(args.width, height)
        time.sleep(1.0)
        driver.save_screenshot(str(out / f"{name}.png"))
        print(f"saved {out / f'{name}.png'}")

    try:
        # Ask: a held-out question, base vs fine-tuned when an adapter is loaded, and an explanation.
        driver.get(base)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-ask_question textarea"))
        idle()
        css(".st-key-ask_question textarea").send_keys(ASK_QUESTION["question"])
        for key, text in zip("abcd", ASK_QUESTION["options"]):
            box = css(f".st-key-ask_op{key} input")
            box.send_keys(text)
            box.send_keys(Keys.TAB)
        idle()
        toggle = driver.find_elements(By.CSS_SELECTOR, ".st-key-ask_compare input")
        if toggle and toggle[0].is_enabled():
            css(".st-key-ask_compare label").click()
            idle()
        css(".st-key-ask_submit button").click()
        wait.until(lambda d: PROBS.search(main_text()))
        idle()
        css(".st-key-ask_explain button").click()
        wait.until(lambda d: "Written by the model" in main_text())
        idle()
        css("h1").click()  # move the pointer off the button, so no tooltip covers the page
        shoot("ask", 1500)

        # Browse: a search, the detail view and the model's answer against MedMCQA's.
        driver.get(f"{base}/browse")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-browse_search input"))
        idle()
        search = css(".st-key-browse_search input")
        search.send_keys("vivax relapse")
        search.send_keys(Keys.ENTER)
        idle()
        css(".st-key-browse_ask_list button").click()
        wait.until(lambda d: PROBS.search(main_text()))
        idle()
        shoot("browse", 1700)

        # Evaluate: the adapter's saved report, or a run here on the first N held-out questions.
        driver.get(f"{base}/evaluate")
        wait.until(lambda d: "Evaluate" in main_text())
        idle()
        if "Report written at training end" not in main_text():
            box = css(".st-key-evaluate_n input")
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(str(args.eval_n))
            box.send_keys(Keys.TAB)
            idle()
            css(".st-key-evaluate_run button").click()
            wait.until(lambda d: "Run here on the first" in main_text())
        idle()
        shoot("evaluate", 1900)
    finally:
        driver.quit()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(build_parser().parse_args())
