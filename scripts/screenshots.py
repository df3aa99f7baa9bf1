"""Screenshots of the app's Ask, Browse and Evaluate pages for the README, taken in headless Chromium.

    # the real offline model (SmolLM2-135M) with the newest adapter under adapters/, if any
    python scripts/screenshots.py
    # a quick check of the script itself with the tiny random model
    python scripts/screenshots.py --base-model tiny-random-llama --adapters-dir /tmp/none --out /tmp/shots

Starts `streamlit run app.py` on a free port, drives the pages as a user would, saves
docs/screenshots/{ask,browse,evaluate,train}{suffix}.png and stops the server.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from app_server import REPO, chrome, serve_app  # scripts/ is on sys.path when run as a script

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
    p.add_argument("--suffix", default="", help='added to each file name, e.g. "-800" for a narrow set')
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for any one step")
    return p


def app_env(args) -> dict[str, str]:
    env = {}
    if args.base_model:
        env["MCQA_APP_BASE_MODEL"] = args.base_model
    if args.adapters_dir:
        env["MCQA_ADAPTERS_DIR"] = args.adapters_dir
    return env


def main(args) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mcqa-shots-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        base = stack.enter_context(serve_app(app_env(args), work / "streamlit.log", timeout=120))
        driver = chrome(work / "profile", f"--window-size={args.width},1500")
        stack.callback(driver.quit)
        wait = WebDriverWait(driver, args.timeout)

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
            path = out / f"{name}{args.suffix}.png"
            driver.save_screenshot(str(path))
            print(f"saved {path}")

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

        # Train: the start form, the last run and the past runs with their settings and accuracy.
        driver.get(f"{base}/train")
        wait.until(lambda d: "Train an adapter" in main_text())
        idle()
        shoot("train", 2000)


if __name__ == "__main__":
    main(build_parser().parse_args())
