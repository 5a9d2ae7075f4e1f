// jobplane dashboard: plain JavaScript, no build step.
//
// Data comes from the API next to this page (relative URLs, so a path prefix in front
// of the API works). The token lives in sessionStorage; "#token=…" in the URL (what
// `jobplane dev` prints) logs in. Live updates come from GET api/admin/events, read
// with fetch() so that the token travels in the Authorization header; when the stream
// fails the page polls instead and tries the stream again later.
"use strict";

(() => {
  const PAGE_SIZE = 25;
  const LOG_PAGE = 200;
  const TOKEN_KEY = "jobplane.token";
  const POLL_MS = 2000; // polling fallback
  const REFRESH_MS = 15000; // full table refresh, whatever the stream says
  const SCHEDULES_MS = 10000;
  const PANEL_MS = 1000; // an open task and its log tail
  const LIVE_STATUSES = new Set(["pending", "running"]);
  const RETRYABLE = new Set(["failed", "cancelled", "skipped"]);

  const state = {
    token: null,
    page: 1,
    total: 0,
    filters: { status: "", type: "", queue: "", search: "" },
    tasks: new Map(), // taskId -> the row's task, for the current page
    loadSeq: 0,
    refreshTimer: null,
    pollTimer: null,
    liveAbort: null,
    liveFailures: 0,
    jobTypes: [],
    schedulesAvailable: false,
    openTask: null,
    panelTask: null,
    panelJson: null, // the open task as last rendered
    panelBusy: false,
    panelTimer: null,
    noticeTimer: null,
    finalLooks: 0,
    log: null,
    timers: [],
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // -- the API ---------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || (body && body.detail) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  function authHeaders() {
    return state.token ? { Authorization: `Bearer ${state.token}` } : {};
  }

  async function api(method, path, body) {
    const headers = authHeaders();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, { error: "unreachable", message: `cannot reach the API (${error.message})` });
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { message: text };
      }
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      if (response.status === 401) loggedOut("The API refused the token: log in again.");
      throw error;
    }
    return data;
  }

  function errorText(error) {
    return error.status ? `${error.status}: ${error.message}` : error.message;
  }

  const short = (id) => id.slice(0, 8);
  const taskPath = (id) => `api/admin/tasks/${encodeURIComponent(id)}`;

  // -- small formatting helpers ----------------------------------------------------

  function formatTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    const today = new Date().toDateString() === date.toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function formatAge(seconds) {
    if (seconds < 60) return `${Math.round(seconds)} s`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function timeCell(iso) {
    if (!iso) return "–";
    return el("time", { datetime: iso, title: iso }, formatTime(iso));
  }

  function statusBadge(status) {
    return el("span", { class: `status status-${status}` }, status);
  }

  function progressBar(task) {
    const bar = el("div", { class: "bar" });
    const label = el("span", { class: "label" });
    const node = el(
      "div",
      { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" },
      bar,
      label,
    );
    setProgress(node, task);
    return node;
  }

  function setProgress(node, task) {
    const percent = task.percent;
    node.setAttribute("aria-valuenow", String(percent));
    node.dataset.percent = String(percent);
    node.classList.toggle("done", percent >= 100);
    node.title = task.total ? `${task.progress} of ${task.total}` : `${percent}%`;
    node.querySelector(".bar").style.width = `${percent}%`;
    node.querySelector(".label").textContent = `${percent}%`;
  }

  function notice(message, isError = false, extra = null) {
    const box = $("notice");
    box.replaceChildren(message, extra || "");
    box.classList.toggle("error", isError);
    box.hidden = false;
    clearTimeout(state.noticeTimer);
    state.noticeTimer = setTimeout(() => (box.hidden = true), isError ? 15000 : 8000);
  }

  // -- logging in ------------------------------------------------------------------

  function tokenFromHash() {
    const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (!match) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    // Keep the token out of the address bar, the history and screenshots.
    history.replaceState(null, "", location.pathname + location.search);
  }

  function showLogin(message) {
    stopEverything();
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token-input").focus();
  }

  function loggedOut(message) {
    const hadToken = state.token !== null;
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    showLogin(hadToken ? message : "");
  }

  async function start() {
    tokenFromHash();
    state.token = sessionStorage.getItem(TOKEN_KEY);
    let stats;
    try {
      stats = await api("GET", "api/admin/stats");
    } catch (error) {
      if (error.status === 401) return; // loggedOut() showed the form
      $("app").hidden = false;
      notice(`Cannot load the dashboard: ${errorText(error)}`, true);
      state.timers.push(setTimeout(start, 5000));
      return;
    }
    enterApp(stats);
  }

  function enterApp(stats) {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !state.token;
    renderStats(stats);
    loadJobTypes();
    loadTasks();
    loadSchedules();
    connectLive();
    state.timers.push(setInterval(loadTasks, REFRESH_MS));
    state.timers.push(setInterval(() => state.schedulesAvailable && loadSchedules(), SCHEDULES_MS));
    const match = location.hash.match(/^#task=(.+)$/);
    if (match) openTask(decodeURIComponent(match[1]));
  }

  function stopEverything() {
    if (state.liveAbort) state.liveAbort.abort();
    state.liveAbort = null;
    stopPolling();
    for (const timer of state.timers) clearInterval(timer);
    state.timers = [];
    closePanel();
    setLive("off");
  }

  // -- header: counts by status, outbox, workers -----------------------------------

  function renderStats(stats) {
    const statuses = Object.keys(stats.counts);
    $("counts").replaceChildren(
      ...statuses.map((status) =>
        el(
          "button",
          {
            type: "button",
            class: `status-${status}`,
            "aria-pressed": String(state.filters.status === status),
            dataset: { status },
            title: `show ${status} tasks`,
            onclick: () => setFilter("status", state.filters.status === status ? "" : status),
          },
          status,
          el("span", { class: "n" }, stats.counts[status]),
        ),
      ),
    );
    const select = $("filter-status");
    for (const status of statuses) {
      if (![...select.options].some((option) => option.value === status)) {
        select.append(el("option", { value: status }, status));
      }
    }
    const outbox = stats.outbox;
    const age = outbox.oldestAgeSeconds;
    $("outbox").textContent = outbox.backlog
      ? `outbox ${outbox.backlog} · oldest ${formatAge(age)}`
      : "outbox 0";
    $("outbox").classList.toggle("warn", age !== null && age > 60);
    const workers = stats.workers;
    $("workers").textContent = `${workers.length} worker${workers.length === 1 ? "" : "s"}`;
    $("workers").title = workers.length
      ? workers
          .map((w) => `${w.worker}: ${w.running} running, heartbeat ${formatTime(w.lastHeartbeatAt)}`)
          .join("\n")
      : `no worker heartbeat in the last ${formatAge(stats.workersWindowSeconds)}`;
  }

  async function loadStats() {
    try {
      renderStats(await api("GET", "api/admin/stats"));
    } catch (error) {
      if (error.status !== 401) setLive("off");
    }
  }

  // -- the task table --------------------------------------------------------------

  function setFilter(name, value) {
    state.filters[name] = value;
    if (name === "status") $("filter-status").value = value;
    for (const button of $("counts").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(state.filters.status === button.dataset.status));
    }
    state.page = 1;
    loadTasks();
  }

  async function loadTasks() {
    const query = new URLSearchParams({ page: state.page, pageSize: PAGE_SIZE });
    for (const [name, value] of Object.entries(state.filters)) if (value) query.set(name, value);
    const seq = ++state.loadSeq;
    let page;
    try {
      page = await api("GET", `api/admin/tasks?${query}`);
    } catch (error) {
      if (error.status !== 401) notice(`Cannot list tasks: ${errorText(error)}`, true);
      return;
    }
    if (seq !== state.loadSeq) return; // a newer load answered first
    state.total = page.total;
    state.tasks = new Map(page.tasks.map((task) => [task.taskId, task]));
    $("task-rows").replaceChildren(...page.tasks.map(taskRow));
    $("tasks-empty").hidden = page.tasks.length > 0;
    const first = page.total ? (page.page - 1) * PAGE_SIZE + 1 : 0;
    const last = (page.page - 1) * PAGE_SIZE + page.tasks.length;
    $("page-info").textContent = `${first}–${last} of ${page.total}`;
    $("prev-page").disabled = state.page <= 1;
    $("next-page").disabled = last >= page.total;
  }

  function taskRow(task) {
    const row = el("tr", { dataset: { taskId: task.taskId } });
    fillRow(row, task);
    return row;
  }

  function fillRow(row, task) {
    state.tasks.set(task.taskId, task);
    row.dataset.status = task.status;
    const progress = row.querySelector(".progress");
    const link = el(
      "a",
      { href: `#task=${encodeURIComponent(task.taskId)}`, title: task.taskId },
      short(task.taskId),
    );
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openTask(task.taskId);
    });
    const cells = [
      el("td", { class: "id" }, link, el("span", { class: "sub" }, task.taskType)),
      el("td", { class: "type" }, task.taskType),
      el("td", { class: "queue" }, task.queue),
      el("td", { class: "status-cell" }, statusBadge(task.status)),
      el("td", { class: "progress-cell" }, progress || progressBar(task)),
      el("td", { class: "attempts" }, String(task.attempts)),
      el("td", { class: "created" }, timeCell(task.createdAt)),
      el("td", { class: "actions" }, actionButtons(task, true)),
    ];
    if (progress) setProgress(progress, task); // the same element, so its width animates
    row.replaceChildren(...cells);
  }

  function actionButtons(task, small) {
    const buttons = [];
    const size = small ? "small" : "";
    if (LIVE_STATUSES.has(task.status) && !task.cancelRequested) {
      buttons.push(
        el("button", { type: "button", class: `cancel ${size}`, onclick: () => cancelTask(task.taskId) }, "Cancel"),
      );
    }
    if (RETRYABLE.has(task.status)) {
      buttons.push(
        el("button", { type: "button", class: `retry ${size}`, onclick: () => retryTask(task.taskId) }, "Retry"),
      );
    }
    return buttons;
  }

  function matchesFilters(task) {
    const f = state.filters;
    return (
      (!f.status || task.status === f.status) &&
      (!f.type || task.taskType === f.type) &&
      (!f.queue || task.queue === f.queue) &&
      (!f.search || task.taskId.toLowerCase().includes(f.search.toLowerCase()))
    );
  }

  function applyTaskChanges(tasks) {
    let reload = false;
    const shown = [...state.tasks.values()];
    const oldest = shown.length ? shown[shown.length - 1].createdAt : null;
    for (const task of tasks) {
      const row = $("task-rows").querySelector(`tr[data-task-id="${CSS.escape(task.taskId)}"]`);
      if (row && matchesFilters(task)) fillRow(row, task);
      else if (row) reload = true; // it left the filtered list
      else if (state.page === 1 && matchesFilters(task)) {
        reload ||= shown.length < PAGE_SIZE || task.createdAt >= oldest;
      }
      if (task.taskId === state.openTask) refreshPanel();
    }
    if (reload) reloadSoon();
  }

  function reloadSoon() {
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      loadTasks();
    }, 700);
  }

  // -- acting on tasks -------------------------------------------------------------

  function confirmAction(text, yesLabel) {
    return new Promise((resolve) => {
      const dialog = $("confirm-dialog");
      $("confirm-text").textContent = text;
      $("confirm-yes").textContent = yesLabel;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
      dialog.showModal();
    });
  }

  async function cancelTask(id) {
    const ok = await confirmAction(
      `Cancel task ${short(id)}? A pending task is cancelled at once; a running one is interrupted within about a second.`,
      "Cancel task",
    );
    if (!ok) return;
    try {
      const task = await api("POST", `${taskPath(id)}/cancel`);
      notice(
        task.status === "cancelled"
          ? `Cancelled ${short(id)}.`
          : `Cancel requested: ${short(id)} is running and will stop within seconds.`,
      );
      taskChanged(task);
    } catch (error) {
      if (error.status !== 401) notice(`Could not cancel ${short(id)}: ${errorText(error)}`, true);
    }
  }

  async function retryTask(id) {
    const ok = await confirmAction(`Run task ${short(id)} again, as a new attempt?`, "Retry");
    if (!ok) return;
    try {
      const task = await api("POST", `${taskPath(id)}/retry`);
      notice(`Retrying ${short(id)}: it is ${task.status} again.`);
      taskChanged(task);
    } catch (error) {
      if (error.status !== 401) notice(`Could not retry ${short(id)}: ${errorText(error)}`, true);
    }
  }

  function taskChanged(task) {
    applyTaskChanges([task]);
    loadStats();
  }

  // -- submitting a job ------------------------------------------------------------

  async function loadJobTypes() {
    try {
      state.jobTypes = (await api("GET", "api/admin/job-types")).jobTypes;
    } catch {
      return;
    }
    const options = state.jobTypes.map((job) => el("option", { value: job.name }, job.name));
    $("filter-type").replaceChildren(el("option", { value: "" }, "any"), ...options.map((o) => o.cloneNode(true)));
    $("filter-type").value = state.filters.type;
    $("submit-type").replaceChildren(...options);
    describeJobType();
  }

  function describeJobType() {
    const job = state.jobTypes.find((j) => j.name === $("submit-type").value);
    if (!job) return;
    const defaults = Object.fromEntries(
      job.params.filter((p) => !p.required && p.default !== null).map((p) => [p.name, p.default]),
    );
    $("submit-params").value = JSON.stringify(defaults, null, 2);
    const required = job.params.filter((p) => p.required).map((p) => p.name);
    const lines = [job.description ? job.description.split("\n")[0] : ""];
    lines.push(`queue ${job.queue}, ${job.maxRetries} retries, time limit ${formatAge(job.timeoutSeconds)}`);
    if (required.length) lines.push(`required params: ${required.join(", ")}`);
    $("submit-type-doc").textContent = lines.filter(Boolean).join("\n");
  }

  function openSubmit() {
    $("submit-error").textContent = "";
    if (!$("submit-type").options.length) loadJobTypes();
    $("submit-dialog").showModal();
  }

  function readSubmission() {
    let params;
    try {
      params = JSON.parse($("submit-params").value || "{}");
    } catch (error) {
      throw new Error(`Params are not valid JSON: ${error.message}`);
    }
    if (params === null || typeof params !== "object" || Array.isArray(params)) {
      throw new Error('Params must be a JSON object, e.g. {"seconds": 5}');
    }
    const body = { type: $("submit-type").value, params };
    const queue = $("submit-queue").value.trim();
    const delay = $("submit-delay").value.trim();
    if (queue) body.queue = queue;
    if (delay) body.delaySeconds = Number(delay);
    return body;
  }

  async function submitJob(event) {
    event.preventDefault();
    const errorBox = $("submit-error");
    errorBox.textContent = "";
    let body;
    try {
      body = readSubmission();
    } catch (error) {
      errorBox.textContent = error.message;
      return;
    }
    $("submit-go").disabled = true;
    try {
      const task = await api("POST", "api/tasks", body);
      $("submit-dialog").close();
      const link = el("a", { href: "#", class: "open-task", dataset: { taskId: task.taskId } }, "open it");
      link.addEventListener("click", (e) => {
        e.preventDefault();
        openTask(task.taskId);
      });
      notice(`Submitted ${task.taskType} as ${task.taskId} (${task.status}). `, false, link);
      state.page = 1;
      loadTasks();
      loadStats();
    } catch (error) {
      if (error.status !== 401) errorBox.textContent = `Not submitted: ${errorText(error)}`;
    } finally {
      $("submit-go").disabled = false;
    }
  }

  // -- one task: details and its log tail ------------------------------------------

  function openTask(id) {
    state.openTask = id;
    state.panelTask = null;
    state.panelJson = null;
    state.finalLooks = 0;
    state.log = { lastId: 0, count: 0 };
    history.replaceState(null, "", `#task=${encodeURIComponent(id)}`);
    $("panel-title").textContent = `Task ${short(id)}`;
    const follow = el("input", { type: "checkbox", id: "log-follow", checked: true });
    $("panel-body").replaceChildren(
      el("div", { id: "panel-summary" }, "loading…"),
      el("div", { class: "log-head" }, el("h3", {}, "Log"), el("label", {}, follow, " follow")),
      el("pre", { id: "panel-log", class: "log" }),
    );
    $("panel").hidden = false;
    clearInterval(state.panelTimer);
    state.panelTimer = setInterval(panelTick, PANEL_MS);
    refreshPanel();
  }

  function closePanel() {
    clearInterval(state.panelTimer);
    state.panelTimer = null;
    state.openTask = null;
    $("panel").hidden = true;
    if (location.hash.startsWith("#task=")) history.replaceState(null, "", location.pathname);
  }

  function panelTick() {
    const task = state.panelTask;
    if (!task) return;
    // Keep looking while it runs, and twice more after it ends (its last log lines).
    if (LIVE_STATUSES.has(task.status) || state.finalLooks < 2) refreshPanel();
  }

  async function refreshPanel() {
    const id = state.openTask;
    if (!id || state.panelBusy) return;
    state.panelBusy = true;
    try {
      const task = await api("GET", taskPath(id));
      if (state.openTask !== id) return;
      if (!LIVE_STATUSES.has(task.status)) state.finalLooks += 1;
      state.panelTask = task;
      const json = JSON.stringify(task);
      if (json !== state.panelJson) renderPanel(task); // unchanged: keep its buttons still
      state.panelJson = json;
      await refreshLog(id);
    } catch (error) {
      if (state.openTask === id && error.status !== 401) {
        $("panel-summary").replaceChildren(el("p", { class: "error" }, errorText(error)));
      }
    } finally {
      state.panelBusy = false;
    }
  }

  function renderPanel(task) {
    const fields = [
      ["ID", el("span", { class: "mono" }, task.taskId)],
      ["Type", task.taskType],
      ["Queue", task.queue],
      ["Priority", task.priority],
      ["Attempts", `${task.attempts} (retries ${task.retryCount} of ${task.maxRetries})`],
      ["Time limit", formatAge(task.timeoutSeconds)],
      ["Worker", task.worker || "–"],
      ["Heartbeat", timeCell(task.heartbeatAt)],
      ["Created", timeCell(task.createdAt)],
      ["Run after", timeCell(task.runAfter)],
      ["Started", timeCell(task.startedAt)],
      ["Completed", timeCell(task.completedAt)],
      ["Cancelled", timeCell(task.cancelledAt)],
    ];
    if (task.cancelRequested && task.status === "running") fields.push(["Cancel", "requested"]);
    if (task.scheduleName) fields.push(["Schedule", `${task.scheduleName} @ ${task.fireTime || "run now"}`]);
    const summary = [
      el("div", {}, statusBadge(task.status)),
      el("div", { style: "margin-top:8px" }, progressBar(task)),
      el("div", { class: "buttons" }, actionButtons(task, false)),
      el("dl", {}, fields.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)])),
      el("h3", {}, "Params"),
      el("pre", { class: "params" }, JSON.stringify(task.params, null, 2)),
    ];
    if (task.result !== null && task.result !== undefined) {
      summary.push(el("h3", {}, "Result"), el("pre", { class: "result" }, JSON.stringify(task.result, null, 2)));
    }
    if (task.error) summary.push(el("h3", {}, "Error"), el("pre", { class: "task-error" }, task.error));
    $("panel-summary").replaceChildren(...summary);
    const row = $("task-rows").querySelector(`tr[data-task-id="${CSS.escape(task.taskId)}"]`);
    if (row) fillRow(row, task);
  }

  async function refreshLog(id) {
    const log = state.log;
    let page = Math.floor(log.count / LOG_PAGE) + 1;
    let data = await api("GET", `${taskPath(id)}/logs?page=${page}&pageSize=${LOG_PAGE}`);
    if (log.count === 0 && data.total > LOG_PAGE) {
      // A long log: start at its last page.
      page = Math.ceil(data.total / LOG_PAGE);
      data = await api("GET", `${taskPath(id)}/logs?page=${page}&pageSize=${LOG_PAGE}`);
      $("panel-log").append(el("div", { class: "hint" }, `… ${(page - 1) * LOG_PAGE} earlier lines`));
    }
    if (state.openTask !== id) return;
    const pre = $("panel-log");
    const fresh = data.lines.filter((line) => line.id > log.lastId);
    for (const line of fresh) {
      pre.append(
        el("div", { class: line.level }, `${formatTime(line.createdAt)}  ${line.level.padEnd(7)}  ${line.message}`),
      );
      log.lastId = line.id;
    }
    log.count = (page - 1) * LOG_PAGE + data.lines.length;
    if (!pre.childElementCount) pre.textContent = "";
    if (fresh.length && $("log-follow") && $("log-follow").checked) pre.scrollTop = pre.scrollHeight;
  }

  // -- schedules (issue 4): shown when the API has them ----------------------------

  async function loadSchedules() {
    let data;
    try {
      data = await api("GET", "api/admin/schedules");
    } catch (error) {
      state.schedulesAvailable = error.status !== 404 && state.schedulesAvailable;
      $("schedules").hidden = !state.schedulesAvailable;
      return;
    }
    state.schedulesAvailable = true;
    $("schedules").hidden = false;
    const rows = data.schedules.map((s) => {
      const last = s.lastRun;
      const lastCell = last
        ? [statusBadge(last.status), " ", timeCell(last.fireTime)]
        : "never";
      return el(
        "tr",
        { dataset: { schedule: s.name } },
        el("td", { class: "name" }, el("span", { class: "mono" }, s.name), el("span", { class: "sub" }, `${s.cron} (${s.timezone})`)),
        el("td", { class: "job" }, s.job),
        el("td", { class: "mono cron" }, s.cron),
        el("td", { class: "tz" }, s.timezone),
        el("td", {}, s.nextFireTime ? timeCell(s.nextFireTime) : "–"),
        el("td", { class: "last" }, lastCell),
        el("td", { class: "missed" }, `${s.missedCount} / ${s.skippedCount}`),
        el(
          "td",
          { class: "actions" },
          el("button", { type: "button", class: "small run-now", onclick: () => runSchedule(s.name) }, "Run now"),
        ),
      );
    });
    $("schedule-rows").replaceChildren(...rows);
  }

  async function runSchedule(name) {
    if (!(await confirmAction(`Run schedule ${name} now, outside its cron times?`, "Run now"))) return;
    try {
      const answer = await api("POST", `api/admin/schedules/${encodeURIComponent(name)}/run`);
      const id = answer && (answer.taskId || (answer.task && answer.task.taskId));
      notice(id ? `Schedule ${name} started task ${id}.` : `Schedule ${name} started.`);
      loadTasks();
      loadSchedules();
    } catch (error) {
      if (error.status !== 401) notice(`Could not run ${name}: ${errorText(error)}`, true);
    }
  }

  // -- live updates: the event stream, or polling ----------------------------------

  function setLive(mode) {
    const chip = $("live");
    chip.className = `chip live-${mode}`;
    chip.textContent = { on: "live", poll: "polling", off: "offline" }[mode];
    chip.dataset.mode = mode;
  }

  function startPolling() {
    if (state.pollTimer) return;
    setLive("poll");
    state.pollTimer = setInterval(() => {
      loadStats();
      loadTasks();
    }, POLL_MS);
  }

  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  async function connectLive() {
    if (!window.ReadableStream || !window.TextDecoder || !window.AbortController) {
      startPolling();
      return;
    }
    const controller = new AbortController();
    state.liveAbort = controller;
    const started = Date.now();
    let failed = false;
    try {
      const response = await fetch("api/admin/events", {
        headers: authHeaders(),
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.status === 401) return loggedOut("The API refused the token: log in again.");
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          failed = handleEvent(buffer.slice(0, end)) === "error" || failed;
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      failed = true;
    }
    if (controller.signal.aborted) return;
    // The server ends every stream after a while: reconnect at once. After a failure
    // (or a stream that ended at once), poll meanwhile and try again later.
    if (failed || Date.now() - started < 1000) {
      state.liveFailures += 1;
      startPolling();
      setTimeout(connectLive, Math.min(30000, 1000 * 2 ** state.liveFailures));
    } else {
      connectLive();
    }
  }

  function handleEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (!data.length) return event;
    const payload = JSON.parse(data.join("\n"));
    if (event === "stats") {
      if (state.pollTimer) stopPolling();
      state.liveFailures = 0;
      setLive("on");
      renderStats(payload);
    } else if (event === "tasks") {
      applyTaskChanges(payload.tasks);
    }
    return event;
  }

  // -- wiring ----------------------------------------------------------------------

  function debounce(fn, ms) {
    let timer;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function wire() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      start();
    });
    $("logout").addEventListener("click", () => loggedOut("Logged out."));
    $("filter-status").addEventListener("change", (e) => setFilter("status", e.target.value));
    $("filter-type").addEventListener("change", (e) => setFilter("type", e.target.value));
    const typed = debounce((name, value) => setFilter(name, value.trim()), 300);
    $("filter-queue").addEventListener("input", (e) => typed("queue", e.target.value));
    $("filter-search").addEventListener("input", (e) => typed("search", e.target.value));
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("prev-page").addEventListener("click", () => {
      state.page = Math.max(1, state.page - 1);
      loadTasks();
    });
    $("next-page").addEventListener("click", () => {
      state.page += 1;
      loadTasks();
    });
    $("open-submit").addEventListener("click", openSubmit);
    $("submit-type").addEventListener("change", describeJobType);
    $("submit-form").addEventListener("submit", submitJob);
    $("submit-cancel").addEventListener("click", () => $("submit-dialog").close());
    $("panel-close").addEventListener("click", closePanel);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("panel").hidden && !document.querySelector("dialog[open]")) closePanel();
    });
    window.addEventListener("hashchange", () => {
      if (/(?:^#|&)token=/.test(location.hash)) {
        stopEverything(); // a log-in link opened in this tab: start again with its token
        start();
        return;
      }
      const match = location.hash.match(/^#task=(.+)$/);
      if (match && decodeURIComponent(match[1]) !== state.openTask) openTask(decodeURIComponent(match[1]));
    });
  }

  wire();
  start();
})();
