"""The console the way an officer uses it, in headless Chromium."""

import json
import urllib.error
import urllib.parse
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ADMIN_PASSWORD, AUDITOR_PASSWORD, SHOTS


def login(browser, base, name, password):
    browser.delete_all_cookies()
    browser.get(base + "/console/login")
    browser.find_element(By.NAME, "name").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete" and "/console/login" not in d.current_url or d.find_elements(By.CLASS_NAME, "error"))


def shot(browser, name):
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def api(base, method, path, body=None, token=None):
    req = urllib.request.Request(base + path, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_an_admin_reads_the_fleet_filters_violations_opens_a_device_reads_custody_and_previews_impact(fleet, browser):
    base, devices = fleet["server"].base, fleet["devices"]
    login(browser, base, "chen.admin", ADMIN_PASSWORD)
    assert browser.current_url.endswith("/console/"), browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet tr")[1:]
    assert len(rows) == 3
    text = browser.find_element(By.ID, "fleet").text
    assert "li.na" in text and "zhang.wei" in text and "compliant" in text
    assert "tamper ×1" in text, "the enforcement failure shows as an alert" 
    shot(browser, "1-fleet")

    # Violations, filtered by rule; the chart lists rules that never fired too.
    browser.get(base + "/console/violations")
    assert "never fired" in browser.find_element(By.ID, "rule-hits").text
    all_rows = len(browser.find_elements(By.CSS_SELECTOR, "#violations tr")) - 1
    rule = browser.find_elements(By.CSS_SELECTOR, "#violations tr")[1].find_elements(By.TAG_NAME, "td")[4].text.split(",")[0]
    browser.find_element(By.NAME, "rule").send_keys("baomi.tamper")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    WebDriverWait(browser, 10).until(lambda d: "rule=baomi.tamper" in d.current_url)
    filtered = browser.find_elements(By.CSS_SELECTOR, "#violations tr")[1:]
    assert 0 < len(filtered) < all_rows, (len(filtered), all_rows, rule)
    assert all("baomi.tamper" in r.text for r in filtered)
    # The holder-controlled string is shown as text and ran nothing.
    assert "<script>document.title='pwned'</script><b>bold</b>" in browser.find_element(By.ID, "violations").text
    assert browser.title != "pwned"
    assert not browser.find_elements(By.CSS_SELECTOR, "#violations b")
    shot(browser, "2-violations")

    # A device's page, from the fleet.
    browser.get(base + "/console/")
    browser.find_element(By.CSS_SELECTOR, f"a[href='/console/device/{devices[1]}']").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "checkins"))
    assert devices[1] in browser.find_element(By.TAG_NAME, "h1").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#checkins tr")) > 1
    assert "camera_disabled" in browser.find_element(By.ID, "posture-changes").text
    shot(browser, "3-device")

    # Custody: the document, its holder, the phone that confirmed the camera off.
    browser.get(base + "/console/custody")
    custody = browser.find_element(By.ID, "custody").text
    assert "MIMI-2026-042" in custody and "zhang.wei" in custody and "yes, after" in custody
    shot(browser, "4-custody")

    # Impact of version 2 before publishing: zhao.min gets a clearance -> messengers blocked.
    browser.get(base + "/console/impact")
    bundle = fleet["bundle2"].read_text()
    browser.execute_script("document.getElementById('bundle').value = arguments[0]", bundle)
    browser.find_element(By.ID, "preview").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "impact-table"))
    impact = browser.find_element(By.ID, "impact-table").text
    assert devices[2] in impact and "com.tencent.mm" in impact and devices[0] not in impact, impact
    shot(browser, "5-impact")
    browser.find_element(By.ID, "publish").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "fleet"))
    assert "/ v2" in browser.find_element(By.ID, "fleet").text
    browser.get(base + "/console/audit")
    audit = browser.find_element(By.ID, "audit").text
    assert "bundle_published" in audit and "impact_preview" in audit and "chen.admin" in audit
    shot(browser, "6-audit")


def test_an_auditor_can_neither_publish_nor_mint_tokens(fleet, browser):
    base = fleet["server"].base
    login(browser, base, "wang.auditor", AUDITOR_PASSWORD)
    assert not browser.find_elements(By.CSS_SELECTOR, "a[href='/console/tokens']"), "no Enrolment link for auditors"
    browser.get(base + "/console/tokens")
    assert "needs the admin role" in browser.page_source
    status, body = api(base, "POST", "/v1/office/login", json.dumps({"name": "wang.auditor", "password": AUDITOR_PASSWORD}).encode())
    token = json.loads(body)["token"]
    assert api(base, "POST", "/v1/office/tokens", b"{}", token)[0] == 403
    assert api(base, "POST", "/v1/office/bundles", fleet["bundle2"].read_bytes(), token)[0] == 403
    assert api(base, "GET", "/v1/office/devices", token=token)[0] == 200
    assert api(base, "GET", "/v1/office/violations")[0] == 401, "violation content needs a login"


def test_a_form_without_its_csrf_token_is_refused(fleet):
    base = fleet["server"].base
    # By hand: Python's cookie jar will not send `Secure` cookies over http://127.0.0.1.
    page = urllib.request.urlopen(base + "/console/login")
    login_cookie = page.headers["Set-Cookie"].split(";")[0]
    csrf = page.read().decode().split('name="csrf" value="')[1].split('"')[0]
    creds = {"name": "chen.admin", "password": ADMIN_PASSWORD}
    code, headers = post(base + "/console/login", {**creds, "csrf": csrf}, login_cookie)
    assert code == 303
    session = headers["Set-Cookie"].split(";")[0]
    assert post(base + "/console/tokens", {"holder": "x"}, session)[0] == 403
    assert post(base + "/console/tokens", {"holder": "x", "csrf": "forged"}, session)[0] == 403
    assert post(base + "/console/logout", {}, session)[0] == 403
    # The login form is protected too (a login CSRF would sign the victim in as the attacker).
    assert post(base + "/console/login", creds, login_cookie)[0] == 403
    assert post(base + "/console/login", {**creds, "csrf": csrf}, "")[0] == 403


def test_five_wrong_passwords_slow_the_next_login_down(fleet, browser):
    base = fleet["server"].base
    fleet["server"].admin("officer", "add", "liu.target", "--role", "auditor", stdin="a long enough password\n")
    for _ in range(5):
        assert api(base, "POST", "/v1/office/login", json.dumps({"name": "liu.target", "password": "guess"}).encode())[0] == 401
    status_code, body = api(base, "POST", "/v1/office/login", json.dumps({"name": "liu.target", "password": "a long enough password"}).encode())
    assert status_code == 429, body
    login(browser, base, "liu.target", "a long enough password")
    assert "failed logins" in browser.page_source
    # The console's own headers: no scripts at all, cookies locked down.
    req = urllib.request.urlopen(base + "/console/login")
    assert "default-src 'none'" in req.headers["Content-Security-Policy"]
    cookie = req.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def post(url, fields, cookie):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    if cookie:
        req.add_header("Cookie", cookie)
    try:
        r = urllib.request.build_opener(NoRedirect()).open(req)
        return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers
