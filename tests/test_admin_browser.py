"""The admin in a real browser: headless Chromium (Debian's chromium and chromium-driver
packages) driven by Selenium against a live test server. Skipped, with the reason, where no
browser is installed; under CI=true that is a failure instead (.ci/run installs them)."""

import os
import shutil
import tempfile

import pytest

from executions.models import ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange

from .factories import ExecutionFactory, UserFactory

# A system test (real servers, processes or a browser): outside the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
PASSWORD = "correct horse battery staple"


@pytest.fixture
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
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_operator_cancels_two_running_executions(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    operator = UserFactory(
        username="operator", password=PASSWORD, is_staff=True,
        permissions=["view_execution", "change_execution", "manage_all_executions"],
    )
    first, second, untouched = ExecutionFactory.create_batch(3)
    finished = ExecutionFactory(status=ExecutionStatus.COMPLETED)

    # Log in.
    browser.get(f"{live_server.url}/admin/login/?next=/admin/executions/execution/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    # Filter running executions, from the sidebar filter.
    browser.find_element(By.LINK_TEXT, "Running").click()
    assert "status__exact=running" in browser.current_url
    shown = {cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list th.field-short_id")}
    assert shown == {str(e.pk)[:8] for e in (first, second, untouched)}
    assert str(finished.pk)[:8] not in shown

    # Select two, run "Cancel selected".
    for execution in (first, second):
        browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{execution.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_visible_text("Cancel selected executions")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()

    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text
    assert message == "2 executions cancelled."
    # Back on the running list, only the untouched one is left.
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, "th.field-short_id").text for row in rows] == [str(untouched.pk)[:8]]
    assert rows[0].find_element(By.CSS_SELECTOR, "td.field-status_badge").text == "Running"

    # Without the filter the two show as cancelled.
    browser.get(f"{live_server.url}/admin/executions/execution/?status__exact=cancelled")
    statuses = {
        row.find_element(By.CSS_SELECTOR, "th.field-short_id").text: row.find_element(
            By.CSS_SELECTOR, "td.field-status_badge"
        ).text
        for row in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    }
    assert statuses == {str(first.pk)[:8]: "Cancelled", str(second.pk)[:8]: "Cancelled"}

    # And the database has the changes and their audit records.
    assert set(Execution.objects.filter(status="cancelled")) == {first, second}
    audit = ExecutionStatusChange.objects.all()
    assert sorted((a.execution_id, a.previous_status, a.new_status, a.channel, a.actor_id) for a in audit) == sorted(
        (e.pk, "running", "cancelled", ChangeChannel.ADMIN, operator.pk) for e in (first, second)
    )
