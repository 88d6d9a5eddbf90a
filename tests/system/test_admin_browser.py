"""The admin and the API docs in a real browser: headless Chromium (Debian's chromium and
chromium-driver packages) driven by Selenium against a live test server, in a window 1400 px
wide. Skipped, with the reason, where no browser is installed; under CI=true that is a failure
instead (.ci/run installs them)."""

import json
import os
import re
import shutil
import tempfile
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from executions.models import ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange
from executions.services import execution_change_status

from ..factories import ExecutionFactory, UserFactory

# A system test (real servers, processes or a browser): outside the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
PASSWORD = "correct horse battery staple"
WINDOW_WIDTH = 1400
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


def short_id(execution) -> str:
    """The id as the list shows it: its first 8 and last 4 characters."""
    text = str(execution.pk)
    return f"{text[:8]}…{text[-4:]}"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "no headless browser: install Debian's chromium and chromium-driver packages"
        if os.environ.get("CI") == "true":
            pytest.fail(f"Under CI=true the browser test must run, but there is {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="executions-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW_WIDTH},1000",
    ):
        options.add_argument(flag)
    # Every request the pages make, to tell this server's from another host's.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in_as_operator(browser, live_server):
    """An operator, logged in, on the list of executions."""
    from selenium.webdriver.common.by import By

    operator = UserFactory(
        username="operator",
        password=PASSWORD,
        is_staff=True,
        permissions=["view_execution", "change_execution", "manage_all_executions"],
    )
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/executions/execution/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    browser.find_element(By.CSS_SELECTOR, "#changelist")  # logged in: the next page may be asked for
    return operator


def test_operator_cancels_two_running_executions(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    first, second, untouched = ExecutionFactory.create_batch(3)
    finished = ExecutionFactory(status=ExecutionStatus.COMPLETED)
    operator = log_in_as_operator(browser, live_server)

    # Filter running executions, from the sidebar filter.
    browser.find_element(By.LINK_TEXT, "Running").click()
    assert "status__exact=running" in browser.current_url
    shown = {cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list th.field-short_id")}
    assert shown == {short_id(e) for e in (first, second, untouched)}
    assert short_id(finished) not in shown

    # Select two, run "Cancel selected".
    for execution in (first, second):
        browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{execution.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_visible_text("Cancel selected executions")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()

    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text
    assert message == "Cancelled 2 executions."
    # Back on the running list, only the untouched one is left.
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, "th.field-short_id").text for row in rows] == [
        short_id(untouched)
    ]
    assert rows[0].find_element(By.CSS_SELECTOR, "td.field-status_badge").text == "Running"

    # Without the filter the two show as cancelled.
    browser.get(f"{live_server.url}/admin/executions/execution/?status__exact=cancelled")
    statuses = {
        row.find_element(By.CSS_SELECTOR, "th.field-short_id").text: row.find_element(
            By.CSS_SELECTOR, "td.field-status_badge"
        ).text
        for row in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    }
    assert statuses == {short_id(first): "Cancelled", short_id(second): "Cancelled"}

    # And the database has the changes and their audit records.
    assert set(Execution.objects.filter(status="cancelled")) == {first, second}
    audit = ExecutionStatusChange.objects.all()
    assert sorted(
        (a.execution_id, a.previous_status, a.new_status, a.channel, a.actor_id) for a in audit
    ) == sorted((e.pk, "running", "cancelled", ChangeChannel.ADMIN, operator.pk) for e in (first, second))


def test_the_list_fits_the_window_with_its_title_and_times_in_utc(browser, live_server):
    from selenium.webdriver.common.by import By

    worker = UserFactory(username="nightly-worker-of-the-reporting-team")
    now = timezone.now()
    for shard in range(3):
        ExecutionFactory(
            name=f"nightly-report-for-shard-{shard}",
            created_by=worker,
            created_at=now - timedelta(hours=2),
            last_heartbeat_at=now - timedelta(minutes=1),
        )
    log_in_as_operator(browser, live_server)
    assert browser.execute_script("return window.innerWidth") == WINDOW_WIDTH

    assert browser.find_element(By.CSS_SELECTOR, "#content h1").text == "Executions"
    assert browser.title.startswith("Executions | ")

    # Every column is on screen: the table ends inside its box (no scrolling sideways), left
    # of the filters, inside the window.
    table, box, filters = (
        browser.find_element(By.CSS_SELECTOR, selector).rect
        for selector in ("#result_list", "#changelist .results", "#changelist-filter")
    )
    assert table["x"] + table["width"] <= box["x"] + box["width"]
    assert table["x"] + table["width"] <= filters["x"] <= WINDOW_WIDTH
    assert browser.execute_script(
        "const box = document.querySelector('#changelist .results');"
        " return box.scrollWidth <= box.clientWidth"
    )
    last_header = browser.find_elements(By.CSS_SELECTOR, "#result_list thead th")[-1]
    assert last_header.text == "AGE / DURATION" and last_header.is_displayed()

    # Times with seconds and their zone, on one line.
    for cell in browser.find_elements(By.CSS_SELECTOR, "td.field-created, td.field-last_heartbeat"):
        assert UTC_TIME.match(cell.text), cell.text

    # "View site" leads to the API docs, not to a 404.
    browser.find_element(By.CSS_SELECTOR, "#user-tools a[href='/api/docs/']").click()
    assert browser.title == "Executions API"


def test_an_execution_page_shows_its_audit_trail_once_without_a_history_button(browser, live_server):
    from selenium.webdriver.common.by import By

    execution = ExecutionFactory(name="nightly-report")
    execution_change_status(
        execution_id=execution.pk,
        status="failed",
        channel=ChangeChannel.API,
        error_info={"reason": "disk full"},
    )
    log_in_as_operator(browser, live_server)

    browser.get(f"{live_server.url}/admin/executions/execution/{execution.pk}/change/")

    assert not browser.find_elements(By.CSS_SELECTOR, "a.historylink")
    for label in ("Created at", "Updated at", "Finished at"):
        value = browser.find_element(By.XPATH, f"//label[text()='{label}:']/following-sibling::div").text
        assert UTC_TIME.match(value), (label, value)
    audit = browser.find_element(By.CSS_SELECTOR, "#status_changes-group")
    rows = audit.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 1
    # One line of cells, no heading line naming the record above it.
    cells = rows[0].find_elements(By.CSS_SELECTOR, "td")
    assert [cell.text for cell in cells][1:5] == ["Running", "Failed", "API", "system"]
    assert UTC_TIME.match(cells[0].text)
    assert rows[0].text.splitlines()[0].startswith(cells[0].text)
    assert "->" not in audit.text


def requests_to_other_hosts(browser, live_server):
    """What the pages since the last call asked of another host: {url: how it ended}."""
    here = urlsplit(live_server.url).netloc
    asked, answered, ended = {}, set(), {}
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            asked[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.responseReceived":
            answered.add(params["requestId"])
        elif message["method"] == "Network.loadingFailed":
            ended[params["requestId"]] = (
                f"blocked: {params['blockedReason']}"
                if params.get("blockedReason")
                else (params["errorText"])
            )
    local = [url for url in asked.values() if urlsplit(url).netloc == here]
    assert any(url.endswith("/api/schema/") for url in local), "the log shows the page's own requests"
    return {
        url: "answered" if request in answered else ended.get(request, "pending")
        for request, url in asked.items()
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != here
    }


def test_the_api_docs_make_no_request_to_another_host(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("performance")  # what came before

    browser.get(f"{live_server.url}/api/redoc/")
    WebDriverWait(browser, 30).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "a[href='https://redocly.com/redoc/']")
    )
    assert "Executions API" in browser.find_element(By.CSS_SELECTOR, "h1").text
    # ReDoc's sidebar asks Redocly's CDN for their logo: the page's policy refuses it before
    # it leaves the browser, and ReDoc drops the image.
    WebDriverWait(browser, 10).until(
        lambda b: not b.find_elements(By.CSS_SELECTOR, "img[alt='redocly logo']")
    )
    assert set(requests_to_other_hosts(browser, live_server).values()) <= {"blocked: csp"}

    browser.get(f"{live_server.url}/api/docs/")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    assert requests_to_other_hosts(browser, live_server) == {}

    # And the icon a browser asks for by itself.
    status, content_type = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch('/favicon.ico').then(r => done([r.status, r.headers.get('Content-Type')]));"
    )
    assert (status, content_type) == (200, "image/svg+xml")


def test_the_monitors_list_shows_each_state_in_colour_and_a_strip_of_the_last_runs(browser, live_server):
    from django.contrib.auth.models import Permission
    from selenium.webdriver.common.by import By

    from executions.monitors.services import monitors_mark_missed
    from executions.services import execution_create

    from ..factories import monitor_for

    owner = UserFactory(username="cron-owner")
    nightly = monitor_for(owner, name="nightly")
    statuses = ["completed", "failed", "completed", "cancelled", "completed"] * 5  # 25 runs
    for status in statuses:
        run = execution_create(name="nightly", created_by=owner, monitor=nightly)
        execution_change_status(execution_id=run.id, status=status, channel=ChangeChannel.API)
    missed = monitor_for(owner, name="forgotten", schedule="every 1m", grace_seconds=0)
    monitors_mark_missed(now=missed.late_after)
    operator = log_in_as_operator(browser, live_server)
    operator.user_permissions.add(*Permission.objects.filter(codename__in=["view_monitor", "change_monitor"]))
    browser.get(f"{live_server.url}/admin/executions/monitor/")

    rows = {
        row.find_element(By.CSS_SELECTOR, "th.field-name").text: row
        for row in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    }
    assert set(rows) == {"nightly", "forgotten"}
    state = rows["forgotten"].find_element(By.CSS_SELECTOR, "td.field-state_badge strong")
    assert state.text == "Down (missed)"
    assert state.value_of_css_property("color") == "rgba(198, 40, 40, 1)"  # red
    assert rows["nightly"].find_element(By.CSS_SELECTOR, "td.field-state_badge").text == "Up"

    marks = rows["nightly"].find_elements(By.CSS_SELECTOR, "td.field-last_runs .monitor-run")
    assert [mark.get_attribute("class").split("-")[-1] for mark in marks] == statuses[-20:]
    # Each mark is a visible coloured block: a failed run is red, a completed one green.
    sizes = {(mark.size["width"], mark.size["height"]) for mark in marks}
    assert sizes == {(8, 16)}
    colours = {
        mark.get_attribute("class").split("-")[-1]: mark.value_of_css_property("background-color")
        for mark in marks
    }
    assert colours["failed"] == "rgba(198, 40, 40, 1)"
    assert colours["completed"] == "rgba(46, 125, 50, 1)"
    # Oldest on the left: the marks run left to right in the order the runs started.
    lefts = [mark.location["x"] for mark in marks]
    assert lefts == sorted(lefts)
    assert rows["forgotten"].find_element(By.CSS_SELECTOR, "td.field-last_runs").text == "no runs yet"
    # The whole list fits the window.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WINDOW_WIDTH
