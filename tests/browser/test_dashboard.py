"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The platform is ``jobplane dev`` (SQLite, in-process broker) started without a token,
so it makes one up and prints the link that logs a browser in; the tests use that link.
Playwright never downloads a browser here: it drives ``/usr/bin/chromium``
(``apt-get install chromium``; ``make test`` installs it when missing).

Every page is watched for script errors and Content-Security-Policy violations: the
dashboard and the API docs must work under the policies the API sends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    expect,
    sync_playwright,
)

from jobplane.db import engine_from_settings
from jobplane.library import workflows
from jobplane.library.workflows import Step, chain, group
from jobplane.models import utcnow
from jobplane.service import Submission
from jobplane.settings import Settings
from tests.conftest import free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
LINK = re.compile(r"dashboard: (http://\S+/#token=(\S+))")
#: Reports every Content-Security-Policy violation of a page to its console, and keeps
#: it in ``window.cspViolations`` (for a test to wait on).
REPORT_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const text = `CSP violation: ${event.violatedDirective} ${event.blockedURI}`;
  window.cspViolations.push(text);
  console.error(text);
});
"""


class DevPlatform:
    """``jobplane dev`` in a directory of its own, with the log-in link it printed."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.log_path = workdir / "dev.log"
        self._log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPLANE_")}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "jobplane.cli", "dev", "--port", str(port)],
            cwd=workdir,
            env={**env, "PYTHONPATH": str(ROOT), "JOBPLANE_JOBS": "tests.schedule_jobs"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        #: Where `jobplane dev` keeps its SQLite database (its default, in its directory).
        self.database_url = f"sqlite:///{workdir / 'jobplane.db'}"
        match = wait_until(self._link, timeout=60, what="jobplane dev to print its link")
        self.link, self.token = match.group(1), match.group(2)
        self.api = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        wait_until(self._up, timeout=30, what="jobplane dev to answer")

    def _link(self) -> re.Match[str] | None:
        assert self.popen.poll() is None, f"jobplane dev exited:\n{self.log_path.read_text()}"
        return LINK.search(self.log_path.read_text())

    def _up(self) -> bool:
        try:
            return self.api.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def submit(self, job_type: str, **params: object) -> str:
        answer = self.api.post("/api/tasks", json={"type": job_type, "params": params})
        assert answer.status_code == 201, answer.text
        task_id: str = answer.json()["taskId"]
        return task_id

    def submit_workflow(self, node: workflows.Node) -> workflows.WorkflowPlan:
        """Writes a workflow straight into the platform's database, as application code
        enqueueing one does; the platform's relay and workers run its steps."""
        settings = Settings(database_url=self.database_url)
        engine = engine_from_settings(settings)
        try:
            with engine.begin() as conn:
                written = workflows.submit(conn, node, settings, utcnow(), registered_only=False)
        finally:
            engine.dispose()
        assert written.plan is not None
        return written.plan

    def stop(self) -> None:
        self.api.close()
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._log.close()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevPlatform]:
    platform = DevPlatform(tmp_path_factory.mktemp("dev"))
    yield platform
    platform.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A fresh browser context and page, and what they report: script errors and CSP
    violations (``problems``), every request the page made (``requested``, those the
    policy blocked too), and the requests that reached the network (``sent``)."""

    def __init__(self, browser: Browser, **options: Any) -> None:
        self.context = browser.new_context(**options)
        self.context.add_init_script(REPORT_VIOLATIONS)
        self.problems: list[str] = []
        self.requested: list[Request] = []
        self.sent: list[Request] = []
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.on("console", self._on_console)
        self.page.on("request", lambda request: self.requested.append(request))
        self.page.on("requestfinished", lambda request: self.sent.append(request))

    def _on_console(self, message: ConsoleMessage) -> None:
        if "CSP violation" in message.text or "Content Security Policy" in message.text:
            self.problems.append(message.text)

    def violations(self) -> list[str]:
        """The CSP violations of the page's current document."""
        found: list[str] = self.page.evaluate("window.cspViolations")
        return found

    def close(self) -> None:
        self.context.close()


def elsewhere(requests: list[Request]) -> list[str]:
    """The URLs among ``requests`` that were for anywhere but this machine's API."""
    return [r.url for r in requests if not r.url.startswith(("http://127.0.0.1:", "blob:"))]


@pytest.fixture
def page(browser: Browser, dev: DevPlatform) -> Iterator[Page]:
    """A fresh browser session, logged in through the link ``jobplane dev`` printed; it
    must end without a script error or a CSP violation."""
    seen = Watched(browser, viewport={"width": 1280, "height": 900})
    seen.page.goto(dev.link)
    expect(seen.page.locator("#app")).to_be_visible()
    expect(seen.page.locator("#live")).to_have_text("live")
    yield seen.page
    problems = seen.problems + seen.violations()
    seen.close()
    assert not problems, f"JavaScript errors or CSP violations: {problems}"


def row(page: Page, task_id: str) -> str:
    return f'#task-rows tr[data-task-id="{task_id}"]'


def test_the_printed_link_logs_in_and_keeps_the_token_out_of_the_address_bar(
    browser: Browser, dev: DevPlatform
) -> None:
    seen = Watched(browser)
    page = seen.page
    # Given the page opened without a token: it asks for one
    page.goto(dev.url)
    expect(page.locator("#login")).to_be_visible()
    # When a wrong token is given, it says so and stays on the form
    page.fill("#token-input", "wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("refused")
    # When the right one is given, the dashboard shows
    page.fill("#token-input", dev.token)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#counts button[data-status=pending]")).to_be_visible()
    # And the printed link logs in too, then leaves no token in the address bar
    page.goto(dev.link)
    expect(page.locator("#app")).to_be_visible()
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('jobplane.token')") == dev.token
    assert seen.problems + seen.violations() == []
    seen.close()


def test_a_submitted_job_s_progress_bar_reaches_100_without_a_reload(page: Page) -> None:
    page.evaluate("window.notReloaded = true")
    # When demo.sleep with 10 steps is submitted through the form
    page.click("#open-submit")
    page.select_option("#submit-type", "demo.sleep")
    page.fill("#submit-params", '{"seconds": 5, "steps": 10}')
    page.click("#submit-go")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Submitted demo.sleep")
    task_id = page.locator("#notice .open-task").get_attribute("data-task-id")
    assert task_id
    bar = page.locator(f"{row(page, task_id)} .progress")

    # Then its progress bar moves part-way, then reaches 100 %, and it completes
    page.wait_for_function(
        "sel => { const p = document.querySelector(sel); "
        "return p && +p.dataset.percent > 0 && +p.dataset.percent < 100; }",
        arg=f"{row(page, task_id)} .progress",
        timeout=20_000,
    )
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=20_000)
    expect(page.locator(f"{row(page, task_id)} .status")).to_have_text("completed")
    # Without the page having been reloaded
    assert page.evaluate("window.notReloaded") is True

    # And its page shows its params, result and log tail
    page.click(f"{row(page, task_id)} td.id a")
    panel = page.locator("#panel")
    expect(panel.locator(".params")).to_contain_text('"steps": 10')
    expect(panel.locator(".result")).to_contain_text('"slept": 5')
    expect(panel.locator("#panel-log")).to_contain_text("step 10 of 10 done")

    ARTIFACTS.mkdir(exist_ok=True)
    page.click("#panel-close")
    page.locator("#tasks").screenshot(path=str(ARTIFACTS / "dashboard-tasks.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_a_running_job_is_cancelled_from_its_row(page: Page, dev: DevPlatform) -> None:
    # Given a demo.sleep of 60 s that the page shows running
    task_id = dev.submit("demo.sleep", seconds=60, steps=60)
    status = page.locator(f"{row(page, task_id)} .status")
    expect(status).to_have_text("running", timeout=20_000)
    # When its Cancel button is clicked and the confirmation accepted
    page.click(f"{row(page, task_id)} button.cancel")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text(f"Cancel task {task_id[:8]}")
    page.click("#confirm-yes")
    # Then the page says so, and the row turns cancelled without a reload
    expect(page.locator("#notice")).to_contain_text(task_id[:8])
    expect(status).to_have_text("cancelled", timeout=20_000)
    assert dev.api.get(f"/api/tasks/{task_id}").json()["status"] == "cancelled"


def test_an_action_the_api_refuses_shows_its_message(page: Page, dev: DevPlatform) -> None:
    # Given a task the page lists as completed
    task_id = dev.submit("demo.noop")
    expect(page.locator(f"{row(page, task_id)} .status")).to_have_text("completed")
    # When a bad submission is tried, the API's message shows in the form
    page.click("#open-submit")
    page.select_option("#submit-type", "demo.sleep")
    page.fill("#submit-params", '{"nope": 1}')
    page.click("#submit-go")
    expect(page.locator("#submit-error")).to_contain_text("Not submitted: 422")
    page.fill("#submit-params", "{not json")
    page.click("#submit-go")
    expect(page.locator("#submit-error")).to_contain_text("not valid JSON")
    page.click("#submit-cancel")


def test_a_schedule_runs_now(page: Page, dev: DevPlatform) -> None:
    # Given the schedules table (the test's job modules declare schedules)
    schedule = page.locator("#schedule-rows tr").first
    expect(schedule).to_be_visible()
    name = schedule.get_attribute("data-schedule")
    # When its Run now is confirmed
    schedule.locator("button.run-now").click()
    page.click("#confirm-yes")
    # Then a task of that schedule starts
    expect(page.locator("#notice")).to_contain_text(f"Schedule {name} started")
    runs = dev.api.get("/api/admin/schedules").json()["schedules"]
    assert next(s for s in runs if s["name"] == name)["lastRun"] is not None


def step(job_type: str, **options: Any) -> Step:
    """A workflow step of ``job_type``; ``options`` are its params, and ``max_retries``."""
    retries = options.pop("max_retries", None)
    return Step(Submission(job_type, params=options, max_retries=retries))


def workflow_row(workflow_id: str) -> str:
    return f'#workflow-rows tr[data-workflow-id="{workflow_id}"]'


def wf_step(task_id: str) -> str:
    return f'#wf-panel [data-step="{task_id}"]'


def test_a_workflow_shows_its_steps_in_order_and_opens_their_tasks(
    page: Page, dev: DevPlatform
) -> None:
    # Given a workflow: a step, then a group of two (one of them long) and a step after it
    plan = dev.submit_workflow(
        chain(
            step("demo.echo", text="first"),
            group(step("demo.sleep", seconds=30), step("demo.echo", n=2)).then(
                step("demo.echo", text="after")
            ),
        )
    )
    first, slow, quick, after = (task.id for task in plan.tasks)
    page.reload()
    # Then the workflows list shows it running, with its steps counted
    listed = page.locator(workflow_row(plan.workflow_id))
    expect(listed.locator(".status")).to_have_text("running", timeout=15_000)
    expect(listed.locator("td.steps")).to_contain_text("2 of 4 completed", timeout=15_000)
    expect(listed.locator(".progress")).to_be_visible()

    # When it is opened, its steps follow its shape: the chain numbered, the group's
    # two members side by side, the step after the group last, still waiting on it
    listed.locator("td.id a").click()
    panel = page.locator("#wf-panel")
    expect(panel).to_be_visible()
    tree = panel.locator(".wf-tree > .wf-chain")
    expect(tree.locator(":scope > li")).to_have_count(2)
    expect(tree.locator(":scope > li").first.locator(".wf-step")).to_have_attribute(
        "data-step", first
    )
    group_node = tree.locator(":scope > li").nth(1).locator(".wf-group")
    members = group_node.locator(".wf-members > li .wf-step")
    expect(members).to_have_count(2)
    assert [m.get_attribute("data-step") for m in members.all()] == [slow, quick]
    expect(group_node.locator(".wf-then .wf-step")).to_have_attribute("data-step", after)
    expect(page.locator(f"{wf_step(first)} .status")).to_have_text("completed")
    expect(page.locator(f"{wf_step(slow)} .status")).to_have_text("running", timeout=15_000)
    expect(page.locator(f"{wf_step(quick)} .status")).to_have_text("completed")
    expect(page.locator(f"{wf_step(after)} .status")).to_have_text("waiting")
    expect(page.locator(f"{wf_step(slow)} .wf-step-link")).to_have_text("demo.sleep")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-workflow.png"))

    # When a step is opened from the keyboard, its task's panel lies over the workflow's
    page.locator(f"{wf_step(slow)} .wf-step-link").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#panel")).to_be_visible()
    expect(page.locator("#panel-title")).to_have_text(f"Task {slow[:8]}")
    # And it links back to its workflow (the task JSON's workflowId)
    page.locator("#panel a.workflow-link").click()
    expect(page.locator("#panel")).to_be_hidden()
    expect(panel).to_be_visible()
    # And Escape closes the task's panel first, then the workflow's
    page.locator(f"{wf_step(slow)} .wf-step-link").click()
    expect(page.locator("#panel")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#panel")).to_be_hidden()
    expect(panel).to_be_visible()

    # When it is cancelled from its panel
    panel.locator("button.wf-cancel").click()
    expect(page.locator("#confirm-text")).to_contain_text(f"Cancel workflow {plan.workflow_id[:8]}")
    page.click("#confirm-yes")
    # Then the page says so, and the panel shows it and its unfinished steps cancelled
    expect(page.locator("#notice")).to_contain_text(f"Cancelled workflow {plan.workflow_id[:8]}")
    expect(panel.locator("#wf-panel-body > div > .status")).to_have_text("cancelled")
    expect(page.locator(f"{wf_step(after)} .status")).to_have_text("cancelled")
    expect(page.locator(f"{wf_step(slow)} .status")).to_have_text("cancelled", timeout=15_000)
    expect(listed.locator(".status")).to_have_text("cancelled", timeout=15_000)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


def test_a_workflow_action_the_api_refuses_shows_its_message(page: Page, dev: DevPlatform) -> None:
    # Given a workflow whose first step fails (no retries), so that it fails
    plan = dev.submit_workflow(
        chain(step("demo.fail", times=1, max_retries=0), step("demo.sleep", seconds=30))
    )
    page.reload()
    page.select_option("#wf-filter-status", "failed")
    listed = page.locator(workflow_row(plan.workflow_id))
    expect(listed.locator(".status")).to_have_text("failed", timeout=15_000)
    expect(page.locator("#workflow-rows tr:not([data-status=failed])")).to_have_count(0)
    listed.locator("td.id a").click()
    panel = page.locator("#wf-panel")
    expect(panel.locator(".task-error")).to_be_visible()
    # When Retry is asked for, but someone else retries it before it is confirmed
    panel.locator("button.wf-retry").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    retried = dev.api.post(f"/api/admin/workflows/{plan.workflow_id}/retry")
    assert retried.status_code == 200, retried.text
    page.click("#confirm-yes")
    # Then the API's refusal (409) shows, with its message
    notice = page.locator("#notice")
    expect(notice).to_contain_text(f"Could not retry workflow {plan.workflow_id[:8]}: 409")
    expect(notice).to_contain_text("only a failed or cancelled workflow can be retried")
    # And the panel catches up: running again, so it can be cancelled (and is)
    expect(panel.locator("#wf-panel-body > div > .status")).to_have_text("running")
    panel.locator("button.wf-cancel").click()
    page.click("#confirm-yes")
    expect(panel.locator("#wf-panel-body > div > .status")).to_have_text("cancelled")
    # (and nothing of it runs on into the next test)
    sleeper = page.locator(f"{wf_step(plan.tasks[1].id)} .status")
    expect(sleeper).to_have_text("cancelled", timeout=15_000)


def test_the_dashboard_fits_a_phone_screen(browser: Browser, dev: DevPlatform) -> None:
    seen = Watched(browser, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = seen.page
    page.goto(dev.link)
    expect(page.locator("#task-rows tr").first).to_be_visible()
    if dev.api.get("/api/admin/workflows").status_code == 200:
        expect(page.locator("#workflows")).to_be_visible()  # measured with it
    # Nothing is wider than the screen; the table keeps its status and progress
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(page.locator("#task-rows tr .progress").first).to_be_visible()
    expect(page.locator("#open-submit")).to_be_visible()
    # Cancel / Retry reachable: every row's buttons measured at once, as a live change
    # may redraw a row between two measures
    rights = page.evaluate(
        "[...document.querySelectorAll('#task-rows button, #workflow-rows button')]"
        ".map((button) => button.getBoundingClientRect().right)"
    )
    assert all(right <= 390 for right in rights), rights
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    assert seen.problems + seen.violations() == []
    seen.close()


def test_the_dashboard_works_under_a_policy_that_blocks_inline_scripts(
    browser: Browser, dev: DevPlatform
) -> None:
    # Given the dashboard, logged in, with its task panel open (progress bar and all)
    seen = Watched(browser)
    page = seen.page
    with page.expect_response(dev.url + "/") as first:
        page.goto(dev.link)
    assert "script-src 'self';" in first.value.headers["content-security-policy"]
    task_id = dev.submit("demo.echo", text="csp")
    page.click(f"{row(page, task_id)} td.id a")
    expect(page.locator("#panel .progress")).to_be_visible()
    assert seen.problems + seen.violations() == []
    # When a script is slipped into the page, as an injection would
    ran = page.evaluate(
        """() => { const s = document.createElement("script");
        s.textContent = "window.injected = true"; document.head.append(s);
        return window.injected === true; }"""
    )
    # Then it does not run, and the browser reports the policy it broke
    assert ran is False
    page.wait_for_function("() => window.cspViolations.length > 0")
    assert seen.violations()[0].startswith("CSP violation: script-src")
    seen.close()


def test_the_docs_render_swagger_ui_from_local_files_and_call_the_api(
    browser: Browser, dev: DevPlatform
) -> None:
    # Given /docs
    seen = Watched(browser, viewport={"width": 1280, "height": 900})
    page = seen.page
    page.goto(f"{dev.url}/docs")

    # Then Swagger UI shows the API
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("jobplane")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    # And a call tried from it, with the token given to Authorize, is answered
    page.click("button.authorize")
    page.fill(".auth-container input", dev.token)
    page.click(".auth-btn-wrapper button.authorize")
    page.click("button.btn-done")
    stats = page.locator(".opblock", has=page.locator(".opblock-summary-path", has_text="/stats"))
    stats.first.locator(".opblock-summary").click()
    stats.first.locator("button.try-out__btn").click()
    with page.expect_response(f"{dev.url}/api/admin/stats") as called:
        stats.first.locator("button.execute").click()
    assert called.value.status == 200
    # And nothing was asked of any other host, and nothing broke the page's policy
    assert elsewhere(seen.requested) == []
    assert seen.problems + seen.violations() == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs.png"))
    seen.close()


def test_redoc_renders_from_local_files(browser: Browser, dev: DevPlatform) -> None:
    # Given /redoc
    seen = Watched(browser)
    page = seen.page
    page.goto(f"{dev.url}/redoc")
    # Then ReDoc shows the API, with no request reaching another host
    expect(page.locator("h1")).to_contain_text("jobplane")
    expect(page.get_by_role("heading", name="Submit Task")).to_be_visible()
    assert elsewhere(seen.sent) == []
    # And the one thing it would fetch from elsewhere, its vendor's logo, is blocked
    page.wait_for_function("() => window.cspViolations.length > 0")
    assert seen.violations() == ["CSP violation: img-src https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert all("logo-mini.svg" in problem for problem in seen.problems), seen.problems
    seen.close()
