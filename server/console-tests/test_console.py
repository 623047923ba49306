"""The console the way an officer uses it, in headless Chromium."""

import json
import urllib.error
import urllib.parse
import urllib.request

import csv
import io
import re

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import ADMIN_PASSWORD, AUDITOR_PASSWORD, SHOTS

WHEN = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def login(browser, base, name, password, lang="en"):
    """Logs in; `lang` en switches from the default (zh-CN) first, None keeps the default."""
    browser.delete_all_cookies()
    if lang:
        browser.get(base + f"/console/lang?to={lang}&back=/console/login")
    browser.get(base + "/console/login")
    browser.find_element(By.NAME, "name").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser).until(lambda d: d.execute_script("return document.readyState") == "complete" and "/console/login" not in d.current_url or d.find_elements(By.CLASS_NAME, "error"))


def wait(browser):
    """Selenium's wait that polls again when an element it read went stale: a click that
    submits a form or follows a link reloads the page between finding an element and reading
    it (the default wait ignores only a missing element)."""
    return WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,))


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
    # The summary first: phones by state, each a link to the filtered fleet.
    states = {c.get_attribute("data-state"): int(c.text) for c in browser.find_elements(By.CSS_SELECTOR, "#states td.n")}
    assert sum(states.values()) == 3 and states["alert"] == 1 and states["compliant"] == 2, states
    browser.find_element(By.CSS_SELECTOR, "#states a[href='/console/fleet?state=alert']").click()
    wait(browser).until(lambda d: d.find_elements(By.ID, "fleet"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet tr")[1:]
    assert len(rows) == 1 and rows[0].get_attribute("data-device") == devices[0]
    browser.get(base + "/console/fleet")
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet tr")[1:]
    assert len(rows) == 3
    text = browser.find_element(By.ID, "fleet").text
    assert "li.na" in text and "zhang.wei" in text and "compliant" in text
    # The enforcement failure is an alert, and the same row does not also say compliant.
    first = browser.find_element(By.CSS_SELECTOR, f"#fleet tr[data-device='{devices[0]}'] td.state").text
    assert "alert" in first and "compliant" not in first, first
    shot(browser, "1-fleet")

    # Violations, filtered by rule; the chart lists rules that never fired too.
    browser.get(base + "/console/violations")
    assert "never fired" in browser.find_element(By.ID, "rule-hits").text
    all_rows = len(browser.find_elements(By.CSS_SELECTOR, "#violations tr")) - 1
    rule = browser.find_elements(By.CSS_SELECTOR, "#violations tr")[1].find_elements(By.TAG_NAME, "td")[5].text
    Select(browser.find_element(By.NAME, "rule")).select_by_value("baomi.tamper")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait(browser).until(lambda d: "rule=baomi.tamper" in d.current_url)
    filtered = browser.find_elements(By.CSS_SELECTOR, "#violations tr")[1:]
    assert 0 < len(filtered) < all_rows, (len(filtered), all_rows, rule)
    assert all("baomi.tamper" in r.text for r in filtered)
    # The holder-controlled string is shown as text and ran nothing.
    assert "<script>document.title='pwned'</script><b>bold</b>" in browser.find_element(By.ID, "violations").text
    assert browser.title != "pwned"
    assert not browser.find_elements(By.CSS_SELECTOR, "#violations b")
    shot(browser, "2-violations")

    # A device's page, from the fleet.
    browser.get(base + "/console/fleet")
    browser.find_element(By.CSS_SELECTOR, f"a[href='/console/device/{devices[1]}']").click()
    wait(browser).until(lambda d: d.find_elements(By.ID, "checkins"))
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
    wait(browser).until(lambda d: d.find_elements(By.ID, "impact-table"))
    impact = browser.find_element(By.ID, "impact-table").text
    assert devices[2] in impact and "com.tencent.mm" in impact and devices[0] not in impact, impact
    shot(browser, "5-impact")
    browser.find_element(By.ID, "publish").click()
    wait(browser).until(lambda d: d.find_elements(By.ID, "fleet"))
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


def session_cookie(base, name, password):
    """A console session for plain HTTP requests (the browser's cookie is HttpOnly)."""
    page = urllib.request.urlopen(base + "/console/login")
    login_cookie = page.headers["Set-Cookie"].split(";")[0]
    csrf = page.read().decode().split('name="csrf" value="')[1].split('"')[0]
    code, headers = post(base + "/console/login", {"name": name, "password": password, "csrf": csrf}, login_cookie)
    assert code == 303, code
    return headers["Set-Cookie"].split(";")[0]


def test_the_console_speaks_chinese_first(fleet, browser):
    """zh-CN by default: levels by their Chinese names, apps by name, Beijing time as people
    write it, a Unicode officer; the README's screenshot."""
    base = fleet["server"].base
    fleet["server"].admin("officer", "add", "陈静", "--role", "admin", stdin=ADMIN_PASSWORD + "\n")
    login(browser, base, "陈静", ADMIN_PASSWORD, lang=None)
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert browser.find_element(By.TAG_NAME, "h1").text == "概览"
    assert "陈静" in browser.find_element(By.TAG_NAME, "header").text
    # The suite the office chose in its trust root, by name (issue 24).
    suite = browser.find_element(By.ID, "suite")
    assert suite.get_attribute("data-suite") == "intl" and "国际算法" in suite.text, suite.text
    shot(browser, "zh-summary")
    browser.get(base + "/console/fleet")
    text = browser.find_element(By.ID, "fleet").text
    # (Version 2 was published by the first test: the phones on version 1 are outdated.)
    assert "策略过期" in text and "有告警" in text and "重要涉密人员" in text, text
    assert WHEN.search(text) and "T" not in WHEN.search(text).group(0)
    shot(browser, "zh-fleet")
    browser.get(base + "/console/violations")
    table = browser.find_element(By.ID, "violations").text
    assert "微信 (com.tencent.mm)" in table, table
    assert "禁止涉密人员使用微信办公" in table, "the policy's own rule description"
    browser.get(base + "/console/custody")
    assert "秘密" in browser.find_element(By.ID, "custody").text
    # The switch to English and back.
    browser.find_element(By.ID, "lang").click()
    wait(browser).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
    assert "Secret" in browser.find_element(By.ID, "custody").text
    browser.find_element(By.ID, "lang").click()
    wait(browser).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN")


def test_an_alert_is_acknowledged_then_resolved_with_notes(fleet, browser):
    base = fleet["server"].base
    login(browser, base, "chen.admin", ADMIN_PASSWORD)
    browser.get(base + "/console/alerts")
    row = browser.find_element(By.CSS_SELECTOR, "#alerts tr[data-alert]")
    alert = row.get_attribute("data-alert")
    assert row.get_attribute("data-state") == "open"
    row.find_element(By.NAME, "note").send_keys("called the holder")
    row.find_element(By.CSS_SELECTOR, "button[value=acknowledged]").click()
    wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-alert='{alert}']").get_attribute("data-state") == "acknowledged")
    assert "called the holder" in browser.find_element(By.CSS_SELECTOR, f"tr[data-alert='{alert}']").text
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-alert='{alert}']")
    row.find_element(By.NAME, "note").send_keys("camera repaired, re-enrolled")
    row.find_element(By.CSS_SELECTOR, "button[value=resolved]").click()
    wait(browser).until(lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-alert='{alert}']"))
    # Resolved: gone from the unresolved list, kept in the full one and in the audit log.
    browser.get(base + "/console/alerts?state=resolved")
    assert browser.find_element(By.CSS_SELECTOR, f"tr[data-alert='{alert}']").get_attribute("data-state") == "resolved"
    browser.get(base + "/console/audit")
    audit = browser.find_element(By.ID, "audit").text
    assert "alert_acknowledged" in audit and "alert_resolved" in audit and "camera repaired" in audit
    shot(browser, "7-alerts")


def test_custody_history_is_kept_after_the_return(fleet, browser):
    base, server, office = fleet["server"].base, fleet["server"], fleet["office"]
    server.admin("custody", "post", office.custody("R-2", "zhang.wei", "MIMI-2026-042", "return"))
    login(browser, base, "chen.admin", ADMIN_PASSWORD)
    browser.get(base + "/console/custody")
    row = browser.find_element(By.CSS_SELECTOR, "#custody tr[data-document='MIMI-2026-042']")
    returned = row.find_element(By.CSS_SELECTOR, "td.returned").text
    assert WHEN.search(returned), returned
    assert "yes, after" in row.find_element(By.CSS_SELECTOR, "td.camera").text
    browser.get(base + "/console/custody?open=1")
    assert not browser.find_elements(By.CSS_SELECTOR, "#custody tr[data-document]")
    shot(browser, "4-custody-history")


def test_at_a_province_scale_the_lists_page_sort_filter_and_export(office_at_scale, browser):
    from conftest import SCALE_DEVICES, SCALE_VIOLATIONS
    base = office_at_scale.base
    login(browser, base, "陈静", ADMIN_PASSWORD, lang=None)
    counts = {c.get_attribute("data-state"): int(c.text) for c in browser.find_elements(By.CSS_SELECTOR, "#states td.n")}
    assert sum(counts.values()) == SCALE_DEVICES, counts
    shot(browser, "zh-summary-at-scale")
    # The fleet: a page of 100, the next page, no phone twice.
    browser.get(base + "/console/fleet")
    first = [r.get_attribute("data-device") for r in browser.find_elements(By.CSS_SELECTOR, "#fleet tr[data-device]")]
    assert len(first) == 100 and str(SCALE_DEVICES) in browser.find_element(By.ID, "count").text
    browser.find_element(By.ID, "next-page").click()
    wait(browser).until(lambda d: "after=" in d.current_url)
    second = [r.get_attribute("data-device") for r in browser.find_elements(By.CSS_SELECTOR, "#fleet tr[data-device]")]
    assert len(second) == 100 and not set(first) & set(second) and second[0] > first[-1]
    # Sorted by last check-in, filtered by state, searched by holder.
    browser.get(base + "/console/fleet")
    Select(browser.find_element(By.NAME, "sort")).select_by_value("check_in")
    Select(browser.find_element(By.NAME, "state")).select_by_value("stale")
    browser.find_element(By.ID, "filter").click()
    wait(browser).until(lambda d: "state=stale" in d.current_url)
    states = {r.get_attribute("data-state") for r in browser.find_elements(By.CSS_SELECTOR, "#fleet td.state span[data-state]")}
    assert states == {"stale"}, states
    assert str(counts["stale"]) in browser.find_element(By.ID, "count").text
    browser.get(base + "/console/fleet?q=holder-000021")
    assert [r.get_attribute("data-device") for r in browser.find_elements(By.CSS_SELECTOR, "#fleet tr[data-device]")] == ["seed-0000042", "seed-0000043"]
    # Violations: the count is every one of them, the pages go deep.
    browser.get(base + "/console/violations")
    assert str(SCALE_VIOLATIONS) in browser.find_element(By.ID, "count").text
    seen = set()
    for _ in range(5):
        rows = browser.find_elements(By.CSS_SELECTOR, "#violations tr[data-seq]")
        keys = {(r.find_elements(By.TAG_NAME, "td")[2].text, r.get_attribute("data-seq")) for r in rows}
        assert len(rows) == 100 and not keys & seen
        seen |= keys
        browser.find_element(By.ID, "next-page").click()
    # Each filter: severity, verdict, rule, holder, event time, dates.
    browser.get(base + "/console/violations")
    Select(browser.find_element(By.NAME, "severity")).select_by_value("critical")
    Select(browser.find_element(By.NAME, "verdict")).select_by_value("deny")
    Select(browser.find_element(By.NAME, "rule")).select_by_value("no-capture-during-custody")
    browser.find_element(By.NAME, "holder").send_keys("holder-0001")
    Select(browser.find_element(By.NAME, "time")).select_by_value("event")
    browser.find_element(By.ID, "filter").click()
    wait(browser).until(lambda d: "severity=critical" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#violations tr[data-seq]")
    assert rows and all(r.find_element(By.CSS_SELECTOR, "td[data-severity]").get_attribute("data-severity") == "critical" for r in rows)
    assert all("holder-0001" in r.find_elements(By.TAG_NAME, "td")[3].text for r in rows)
    assert all("no-capture-during-custody" in r.find_elements(By.TAG_NAME, "td")[5].text for r in rows)
    shown = int(re.search(r"\d+", browser.find_element(By.ID, "count").text).group(0))
    from datetime import datetime, timedelta, timezone
    beijing = timezone(timedelta(hours=8))
    day = (datetime.now(beijing) - timedelta(days=2)).strftime("%Y-%m-%d")
    browser.get(base + f"/console/violations?from={day}&to={day}")
    assert browser.find_element(By.NAME, "from").get_attribute("value") == day
    for r in browser.find_elements(By.CSS_SELECTOR, "#violations tr[data-seq]"):
        assert r.find_elements(By.TAG_NAME, "td")[0].text.startswith(day)
    shot(browser, "zh-violations-at-scale")
    # The export opens in a CSV reader, with the list's filters.
    cookie = session_cookie(base, "陈静", ADMIN_PASSWORD)
    req = urllib.request.Request(base + "/console/export/violations.csv?severity=critical&verdict=deny&rule=no-capture-during-custody&holder=holder-0001&time=event")
    req.add_header("Cookie", cookie)
    with urllib.request.urlopen(req) as r:
        text = r.read().decode("utf-8-sig")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert len(exported) == shown and all(x["severity"] == "critical" for x in exported), (len(exported), shown)
    req = urllib.request.Request(base + "/console/export/devices.csv")
    req.add_header("Cookie", cookie)
    with urllib.request.urlopen(req) as r:
        assert len(list(csv.DictReader(io.StringIO(r.read().decode("utf-8-sig"))))) == SCALE_DEVICES
