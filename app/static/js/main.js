// @ts-check
// The jobplane dashboard, plain ES modules and no build step: this module connects the
// others where one must act on another's news without importing it (an import cycle),
// then starts the page.

import { whenTokenRefused } from "./api.js";
import { wireFilters } from "./filters.js";
import { loggedOut, start, wireSession } from "./session.js";
import { loadStats } from "./stats.js";
import { wireSubmit } from "./submit.js";
import { whenTaskChanged } from "./task-actions.js";
import { whenTaskRead, whenWorkflowLinked, wirePanel } from "./task-panel.js";
import { applyTaskChanges, showFirstPage, showTask, wireTasks } from "./tasks.js";
import { whenWorkflowChanged } from "./workflow-actions.js";
import { openWorkflow, showWorkflow, wireWorkflowPanel } from "./workflow-panel.js";
import { loadWorkflows, wireWorkflows, workflowTasksChanged } from "./workflows.js";

// Any request the API answers 401: back to the form.
whenTokenRefused(() => loggedOut("The API refused the token: log in again."));
// Cancel or Retry changed a task: its row (or the list), the counts and its workflow
// catch up.
whenTaskChanged((task) => {
  applyTaskChanges([task]);
  workflowTasksChanged([task]);
  loadStats();
});
// The open task was read afresh: so is its row.
whenTaskRead(showTask);
// Cancel or Retry changed a workflow (or was refused: the page was behind): its panel
// and the list catch up.
whenWorkflowChanged((id, workflow) => {
  showWorkflow(id, workflow);
  loadWorkflows();
});
// A step's task panel links to its workflow.
whenWorkflowLinked(openWorkflow);

wireSession();
wireFilters(showFirstPage);
wireTasks();
wirePanel();
wireWorkflows();
wireWorkflowPanel();
wireSubmit();
start();
