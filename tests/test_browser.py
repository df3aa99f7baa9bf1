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


def click(browser, by, selector, timeout=60):
    """Click once the element takes the click: while Streamlit reruns, a fading page or a status overlay can sit
    on top of it for a moment (selenium's "element click intercepted")."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    deadline = time.time() + timeout
    while True:
        try:
            browser.find_element(by, selector).click()
            return
        except (ElementClickInterceptedException, StaleElementReferenceException):
            if time.time() > deadline:
                raise
            time.sleep(0.25)


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
    with serve_app(_tiny_app_env(tmp_path, data_dir), tmp_path / "streamlit.log") as url:
        yield url


def _tiny_app_env(tmp_path, data_dir) -> dict[str, str]:
    return {
        "MCQA_APP_BASE_MODEL": "tiny-random-llama",
        "MCQA_APP_4BIT": "0",
        "MCQA_ADAPTERS_DIR": str(tmp_path / "adapters"),
        "MCQA_DATA_DIR": str(data_dir),
    }


@pytest.fixture()
def adapter_app_url(tmp_path, data_dir, tiny_model_path, validation_rows):
    """The app as a demo opens: one adapter on the app's base, with its report of 16 held-out rows."""
    from mcqa_core.data.medmcqa import is_heldout

    from .app_helpers import make_tiny_adapter

    rows = [r for r in validation_rows if is_heldout(r["id"])][:16]
    make_tiny_adapter(
        tmp_path / "adapters" / "cpu-demo-1204-0137", tiny_model_path, rows=rows
    )  # a name as the form gives
    with serve_app(_tiny_app_env(tmp_path, data_dir), tmp_path / "streamlit.log") as url:
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
        "Which vitamin deficiency causes scurvy? <b>not bold</b>"
    )
    for key, text in zip("abcd", ("Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")):
        box = browser.find_element(By.CSS_SELECTOR, f".st-key-ask_op{key} input")
        box.send_keys(text)
        box.send_keys(Keys.TAB)  # a text input commits its value when it loses focus
    time.sleep(0.5)
    click(browser, By.CSS_SELECTOR, ".st-key-ask_submit button")

    main = browser.find_element(By.CSS_SELECTOR, "[data-testid=stMain]")
    wait.until(lambda d: PROBS.search(main.text))
    probs = [float(p) for p in PROBS.search(main.text).groups()]
    assert len(probs) == 4 and abs(sum(probs) - 100) < 0.5
    assert re.search(r"^[A-D]\. Vitamin [ACDK]$", main.text, re.MULTILINE)  # the chosen letter and its option
    assert re.search(r"answered in \d+\.\d\d s", main.text)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart]"))  # the bar chart
    assert "Base model: tiny-random-llama" in sidebar.text  # the sidebar survives the rerun
    # The question shows in the prompt expander as typed text, never as markup.
    assert not browser.find_elements(By.XPATH, "//b[normalize-space()='not bold']")
    browser.save_screenshot(str(tmp_path / "ask.png"))
    # Started as a user starts it, the server stays quiet: no watcher tracebacks, no usage pings.
    log = (tmp_path / "streamlit.log").read_text()
    assert "Traceback" not in log and "Inotify" not in log, log[-3000:]


def test_your_questions_upload_map_run_and_download(app_url, browser, tmp_path):
    """A 3-option CSV bank: uploaded on Evaluate, mapped (guessed columns), scored, results downloaded."""
    import csv

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bank = tmp_path / "quiz.csv"
    questions = [
        ("Which organ pumps blood?", "Heart", "Lung", "Skin", "A"),
        ("Which vitamin prevents scurvy?", "Vitamin K", "Vitamin C", "Vitamin D", "B"),
        ("Which bone is in the thigh?", "Radius", "Ulna", "Femur", "C"),
        ("Insulin is made in the", "Pancreas", "Liver", "Spleen", "A"),
        ("The largest artery is the", "Vena cava", "Aorta", "Carotid", "B"),
        ("Red cells carry", "Glucose", "Urea", "Oxygen", "C"),
    ]
    with bank.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "A", "B", "C", "answer", "subject"])
        writer.writerows([(*q, "Physiology") for q in questions])
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})

    wait = WebDriverWait(browser, 120)
    browser.get(f"{app_url}/evaluate")
    wait.until(lambda d: d.find_elements(By.XPATH, "//button[normalize-space()='Your questions']"))
    click(browser, By.XPATH, "//button[normalize-space()='Your questions']")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-bank_file input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, ".st-key-bank_file input[type=file]").send_keys(str(bank))
    main = browser.find_element(By.CSS_SELECTOR, "[data-testid=stMain]")
    wait.until(lambda d: "6 questions ready, answers as letter" in main.text)
    # the page draws as it runs: the button comes a moment after the text on a busy machine
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-bank_run button"))
    click(browser, By.CSS_SELECTOR, ".st-key-bank_run button")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-bank_download_csv button"))
    assert "Run here on 6 questions of quiz.csv" in main.text
    click(browser, By.CSS_SELECTOR, ".st-key-bank_download_csv button")
    wait.until(lambda d: (downloads / "quiz-results.csv").exists())
    time.sleep(0.5)  # let the browser finish writing
    with (downloads / "quiz-results.csv").open() as f:
        results = list(csv.DictReader(f))
    assert [r["gold"] for r in results] == [q[4] for q in questions]
    assert {r["predicted"] for r in results} <= {"A", "B", "C"} and "p_C" in results[0] and "p_D" not in results[0]
    assert all(abs(sum(float(r[f"p_{L}"]) for L in "ABC") - 1) < 1e-3 for r in results)
    assert results[0]["question"] == questions[0][0] and results[0]["options"] == "Heart | Lung | Skin"


def test_train_page_starts_a_smoke_run_and_draws_its_chart(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 180)
    browser.get(f"{app_url}/train")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-train_start button"))
    click(browser, By.CSS_SELECTOR, ".st-key-train_start button")
    main = browser.find_element(By.CSS_SELECTOR, "[data-testid=stMain]")
    wait.until(lambda d: "Done: the adapter is in the sidebar" in main.text)  # the page polls the run's files
    # loss and accuracy; the charts draw a moment after the text on a busy machine
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart]")) >= 2)
    assert re.search(r"done, step 6 of 6", main.text)
    # "Ask this adapter": the Ask page with the new adapter loaded, never a blank page while it loads
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-train_ask button"))  # after the page's rerun
    click(browser, By.CSS_SELECTOR, ".st-key-train_ask button")
    wait.until(
        lambda d: "Ask the model" in [h.text for h in d.find_elements(By.CSS_SELECTOR, "[data-testid=stMain] h1")]
    )
    wait.until(lambda d: "Adapter: smoke-" in d.find_element(By.CSS_SELECTOR, "[data-testid=stSidebar]").text)
    time.sleep(3)  # past the Train page's one-second refresh: the page must stay
    main = browser.find_element(By.CSS_SELECTOR, "[data-testid=stMain]")
    assert "Ask the model" in main.text and browser.find_elements(By.CSS_SELECTOR, ".st-key-ask_submit button")


# Ask is the default page: its link is the app's root (Streamlit gives the default page no path of its own).
@pytest.mark.parametrize(
    "path, title",
    [
        ("", "Ask the model"),
        ("browse", "Browse MedMCQA validation"),
        ("evaluate", "Evaluate"),
        ("train", "Train an adapter"),
    ],
)
def test_a_direct_link_on_a_fresh_server_shows_the_page_with_its_sidebar(app_url, browser, path, title):
    """The first request a new server gets is the link: Streamlit may serve it from pages/ without app.py (see
    app_ui/navigation.py), and the page must still come with the router's sidebar and page list."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(f"{app_url}/{path}")
    wait.until(lambda d: title in [h.text for h in d.find_elements(By.CSS_SELECTOR, "[data-testid=stMain] h1")])
    sidebar = browser.find_element(By.CSS_SELECTOR, "[data-testid=stSidebar]")
    wait.until(lambda d: "Base model: tiny-random-llama" in sidebar.text)
    nav = browser.find_element(By.CSS_SELECTOR, "[data-testid=stSidebarNav]")
    links = [a.text.splitlines()[-1] for a in nav.find_elements(By.TAG_NAME, "a")]  # after each link's icon
    assert links == ["Ask", "Browse", "Evaluate", "Train"]
    assert "Page not found" not in browser.find_element(By.TAG_NAME, "body").text


# Text that an ellipsis or a clipping box cuts, and charts or tables wider than the box that holds them.
_CUT = """
const out = [];
const main = document.querySelector('[data-testid=stMain]');
// Streamlit cuts labels with an ellipsis on their box; the sidebar's model picker included.
for (const e of document.querySelectorAll('[data-testid=stMain] *, [data-testid=stSidebar] *')) {
  if (!e.offsetParent || !e.innerText || !e.innerText.trim()) continue;
  if (getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1)
    out.push('cut text: ' + e.innerText.slice(0, 60));
}
// The sidebar's choices are read whole (a select box of question texts on a page may be cut: its detail follows).
for (const e of document.querySelectorAll('[data-testid=stSidebar] input[role=combobox]'))
  if (e.scrollWidth > e.clientWidth + 1) out.push('cut choice: ' + e.value.slice(0, 60));
// A chart cannot scroll: wider than its box is clipped. A table may scroll sideways (its short columns come
// first), but its frame stays inside the page.
const framed = '[data-testid=stVegaLiteChart], [data-testid=stDataFrame], [data-testid=stTable]';
for (const c of main.querySelectorAll(framed)) {
  const box = c.getBoundingClientRect(), page = main.getBoundingClientRect();
  if (box.right > page.right + 1) out.push(c.dataset.testid + ' beyond the page: ' + Math.round(box.right));
  for (const inner of c.querySelectorAll('canvas, svg')) {
    const r = inner.getBoundingClientRect();
    if (c.dataset.testid === 'stVegaLiteChart' && r.width > 0 && r.right > box.right + 1)
      out.push('chart clipped: ' + Math.round(r.width) + ' > ' + Math.round(box.width));
  }
}
// A button as wide as its label (Streamlit cuts a label that does not fit its column with an ellipsis).
for (const b of main.querySelectorAll('button [data-testid=stMarkdownContainer]'))
  if (b.offsetParent && b.scrollWidth > b.clientWidth + 1) out.push('cut button: ' + b.innerText.slice(0, 60));
// A code block wraps its long lines: nothing to scroll sideways, nothing past the page's edge.
for (const c of main.querySelectorAll('[data-testid=stCode]')) {
  const pre = c.querySelector('pre');
  if (!c.checkVisibility() || !pre) continue;  // not inside a closed expander
  if (pre.scrollWidth > pre.clientWidth + 1 || c.getBoundingClientRect().right > main.getBoundingClientRect().right + 1)
    out.push('code wider than its box: ' + pre.innerText.slice(0, 40));
}
// A row of columns holds its input boxes in one line, whatever their labels wrap to.
for (const row of main.querySelectorAll('[data-testid=stHorizontalBlock]')) {
  const tops = [];
  for (const col of row.querySelectorAll(':scope > [data-testid=stColumn]')) {
    const box = col.querySelector('[data-testid=stNumberInputContainer], [data-testid=stTextInputRootElement], '
      + '[data-testid=stSelectbox] [role=group]');
    if (box && box.offsetParent) tops.push(box.getBoundingClientRect().top);
  }
  if (tops.length > 1 && Math.max(...tops) - Math.min(...tops) > 2)
    out.push('input boxes out of line: ' + row.innerText.split('\\n').slice(0, 3).join(' | '));
}
// An input's hint ("Press Enter to apply") covers neither the value typed, nor the +/- buttons, nor another widget.
const apart = (a, b) => a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
for (const hint of main.querySelectorAll('[data-testid=InputInstructions]')) {
  if (!hint.offsetParent || !hint.innerText.trim()) continue;
  const h = hint.getBoundingClientRect(), widget = hint.closest('[data-testid=stElementContainer]');
  const input = widget && widget.querySelector('input');
  if (input) {
    const st = getComputedStyle(input), ctx = document.createElement('canvas').getContext('2d');
    ctx.font = st.font;
    const r = input.getBoundingClientRect(), left = r.left + parseFloat(st.paddingLeft);
    const typed = {left, right: left + ctx.measureText(input.value).width, top: r.top, bottom: r.bottom};
    if (!apart(h, typed)) out.push('hint over the value: ' + input.value);
  }
  for (const other of main.querySelectorAll('button, [data-testid=stElementContainer]')) {
    if (!other.offsetParent || other.contains(hint) || hint.contains(other)) continue;
    if (!apart(h, other.getBoundingClientRect()))
      out.push('hint over ' + (other.innerText || other.getAttribute('aria-label') || other.tagName).slice(0, 40));
  }
}
return [...new Set(out)];
"""


@pytest.mark.parametrize("width", [800, 1000, 1400])
def test_no_label_is_cut_and_no_chart_overflows(adapter_app_url, tmp_path, width):
    """Every page at a laptop's half screen, between, and at a full one, with an adapter whose report shows base and
    adapter side by side: Ask's exact prompt open, Browse's page number being typed, Evaluate's own-questions panel
    too; screenshots of each page land in the test's folder."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    bank = tmp_path / "quiz.csv"
    bank.write_text("question,A,B,C,answer\n" + "".join(f"Question {i}?,Heart,Lung,Skin,A\n" for i in range(4)))
    profile = tempfile.mkdtemp(prefix="mcqa-chromium-")
    browser = chrome(profile, f"--window-size={width},1400")
    try:
        wait = WebDriverWait(browser, 120)
        problems = {}

        def check(name: str) -> None:
            time.sleep(2)  # charts size themselves after they draw
            browser.save_screenshot(str(tmp_path / f"{name}-{width}.png"))
            if found := browser.execute_script(_CUT):
                problems[name] = found

        for page, ready in (
            ("", ".st-key-ask_submit button"),
            ("browse", ".st-key-browse_open_in_ask_list button"),
            ("evaluate", "[data-testid=stMetric]"),
            ("train", ".st-key-train_start button"),
        ):
            browser.get(f"{adapter_app_url}/{page}")
            wait.until(lambda d, ready=ready: d.find_elements(By.CSS_SELECTOR, ready))
            if page == "":
                click(browser, By.CSS_SELECTOR, ".st-key-ask_random button")
                time.sleep(1)
                click(browser, By.CSS_SELECTOR, ".st-key-ask_submit button")
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart]"))
                click(browser, By.XPATH, "//summary[contains(., 'Exact prompt sent to the model')]")
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=stExpander] [data-testid=stCode]"))
                prompt = browser.find_element(By.CSS_SELECTOR, "[data-testid=stExpander] [data-testid=stCode]")
                browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", prompt)  # in the screenshot
            if page == "browse":  # a page number typed, not yet applied: its hint shows where the input has room
                box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".st-key-browse_page input"))
                box.click()
                box.send_keys(Keys.CONTROL, "a")
                box.send_keys("210")
            if page == "evaluate":
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart]")) >= 2)
            check(page or "ask")
        browser.get(f"{adapter_app_url}/evaluate")  # the panel for the user's own questions, ready to run
        wait.until(lambda d: d.find_elements(By.XPATH, "//button[normalize-space()='Your questions']"))
        click(browser, By.XPATH, "//button[normalize-space()='Your questions']")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-bank_file input[type=file]"))
        browser.find_element(By.CSS_SELECTOR, ".st-key-bank_file input[type=file]").send_keys(str(bank))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-bank_run button"))
        check("evaluate-bank")
        assert not problems, problems
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
