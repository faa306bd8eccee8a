// A task: its state and progress, live metric charts (history from the
// metrics API, downsampled by the server; new points from the monitor
// WebSocket), final metrics, the model it kept (and the candidates
// model.kind = "auto" compared), resources, the tail of its log, and
// pause, resume and cancel for those who may.
import {h, fill, num, bytes, when, badge, table, problem} from "./dom.js";
import {get, post, seg, canWrite} from "./api.js";
import {seriesChart} from "./chart.js";
import {modelChoice} from "./choice.js";

const MAX_POINTS = 2000;  // per series from the server (it keeps the extremes)
const MAX_CHARTS = 8;
const POLL_MS = 3000;     // the task itself (resources), beside the WebSocket
const LOG_POLL_MS = 2000;
const LOG_LINES = 300;

const ACTIVE = new Set(["pending", "running", "paused"]);

// Which actions a state allows (the server checks again).
function actions(status) {
	const a = [];
	if (status === "running")
		a.push("pause");
	if (status === "paused")
		a.push("resume");
	if (ACTIVE.has(status))
		a.push("cancel");
	return a;
}

// Metrics in the order people read them: the headline ones (when the run
// declares them), the same figures of the other splits (val_accuracy for a
// headline test_accuracy), then losses, then the rest by name.
const stem = (n) => n.replace(/^(train|val|test)_/, "");
function ordered(names, headline) {
	const head = Array.isArray(headline) ? headline : [];
	const stems = head.map(stem);
	const rank = (n) => {
		const i = head.indexOf(n);
		if (i >= 0)
			return i;
		const k = stems.indexOf(stem(n));
		if (k >= 0)
			return 100 + k;
		if (/(^|_)loss$/.test(n))
			return 1000 + (n.startsWith("train") ? 0 : n.startsWith("val") ? 1 : 2);
		return n.includes(".") ? 3000 : 2000;
	};
	return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

// Series worth a chart: more than one point, not a final (test_) figure,
// not a detail (a class's figure, a confusion cell: a name with a '.',
// shown in the detail tables), not a candidate of model.kind = "auto"
// (auto/NAME/…: the Model card).
const charted = (n) => !n.startsWith("test_") && !n.includes(".") && !n.startsWith("auto/");
const chartable = (m) => m.points > 1 && charted(m.name);

// A detail table (the run's "details"): cells name metrics; a confusion
// matrix reads true classes down, predicted across, its diagonal marked.
function detailTable(t, metrics) {
	const confusion = t.row_header && t.column_header;
	return h("figure", {class: "detail", dataset: {table: t.name}},
		h("figcaption", {}, t.title || t.name),
		h("table", {class: `kv detail${confusion ? " confusion" : ""}`},
			h("thead", {},
				confusion ? h("tr", {}, h("th"), h("th", {colspan: t.columns.length}, t.column_header)) : null,
				h("tr", {}, h("th", {}, t.row_header || ""), t.columns.map((c) => h("th", {}, c)))),
			h("tbody", {}, t.rows.map((r, i) => h("tr", {},
				h("th", {}, r),
				(t.cells[i] || []).map((name, j) => h("td", {class: confusion && i === j ? "n diag" : "n",
					title: name || null}, name && name in metrics ? num(metrics[name]) : "–")))))));
}

export async function taskPage(main, {id}) {
	// the task and the list of its metrics at once: one round trip less
	// before the first chart
	const early = get(`/api/v1/training/tasks/${seg(id)}/metrics`);
	early.catch(() => {}); // read (and its error handled) in loadCharts
	let task = await get(`/api/v1/training/tasks/${seg(id)}`);
	const base = `/api/v1/training/tasks/${seg(task.task_id)}`;
	let alive = true, ws = null, wsRetry = null, pollTimer = null, logTimer = null;
	let headline = null, details = [], runId = null, params = null;
	const charts = new Map();

	const title = h("h1", {}, task.name || task.task_id);
	const stateEl = h("span", {id: "task-state"});
	const controls = h("div", {class: "controls", id: "controls"});
	const actionMsg = h("div", {class: "msg"});
	const progress = h("progress", {id: "task-progress", max: 100, value: 0});
	const progressText = h("span", {id: "progress-text"});
	const why = h("p", {class: "muted", id: "task-why"});
	const chartBox = h("div", {class: "charts", id: "charts"});
	const chartNote = h("p", {class: "muted"});
	const metricsBox = h("div", {id: "final-metrics"});
	const modelBox = h("div", {id: "model"});
	const modelCard = h("section", {class: "card", id: "model-card", hidden: true}, h("h2", {}, "Model"), modelBox);
	const resourcesBox = h("div", {id: "resources"});
	const logBox = h("pre", {class: "log", id: "log", tabindex: "0"});
	const live = h("span", {class: "live", id: "live"});

	fill(main,
		h("p", {class: "crumbs"}, h("a", {href: "#/tasks"}, "Tasks"), " / ", task.task_id),
		h("div", {class: "head"}, title, stateEl, live),
		h("p", {class: "meta", id: "task-meta"}),
		controls, actionMsg,
		h("section", {class: "card"}, h("h2", {}, "Progress"),
			h("div", {class: "progress-line"}, progress, " ", progressText), why),
		h("section", {class: "card"}, h("h2", {}, "Metrics"), chartNote, chartBox, metricsBox),
		modelCard,
		h("div", {class: "two"},
			h("section", {class: "card"}, h("h2", {}, "Resources"), resourcesBox),
			h("section", {class: "card"}, h("h2", {}, "Log"), logBox)));

	// ---------------------------------------------------------------- state
	const renderProgress = (p) => {
		if (!p)
			return;
		const pct = typeof p.percentage === "number" ? p.percentage : 0;
		progress.value = pct;
		const parts = [];
		if (p.total_steps)
			parts.push(`step ${num(p.current_step ?? p.step ?? 0)} of ${num(p.total_steps)}`);
		if (p.epochs)
			parts.push(`epoch ${p.epoch ?? 0} of ${p.epochs}`);
		parts.push(`${pct.toFixed(1)}%`);
		progressText.textContent = parts.join(" · ");
		main.dataset.step = String(p.current_step ?? p.step ?? 0);
	};

	let shown = null; // the buttons on the page, rebuilt only when they change
	const renderControls = (force) => {
		const want = canWrite() ? actions(task.status) : []; // a viewer sees none
		if (!force && shown === want.join())
			return;
		shown = want.join();
		fill(controls);
		for (const a of want) {
			const b = h("button", {type: "button", id: a, class: a === "cancel" ? "danger" : null,
				onclick: async () => {
					if (a === "cancel" && !confirm(`Cancel ${task.task_id}? This cannot be undone.`))
						return;
					for (const x of controls.querySelectorAll("button"))
						x.disabled = true;
					fill(actionMsg);
					try {
						await post(`${base}/${a}`);
						await refresh();
					} catch (e) {
						fill(actionMsg, problem(e));
						renderControls(true);
					}
				}}, a[0].toUpperCase() + a.slice(1));
			controls.appendChild(b);
		}
	};

	const renderResources = () => {
		const req = task.resource_requirements || {}, use = task.resource_usage || {};
		fill(resourcesBox, table(["", "asked", "used"], [
			["CPU (cores)", num(req.cpu), num(use.cpu)],
			["Memory", req.memory ? bytes(req.memory) : "any", bytes(use.memory)],
			["GPUs", num(req.gpu), num(use.gpu)],
			["CPU time", "", use.cpu_time_s !== undefined ? `${num(use.cpu_time_s)} s` : "–"],
			["Peak RSS", "", bytes(use.max_rss)],
		], {class: "kv"}));
	};

	const renderFinal = () => {
		const m = task.metrics || {};
		const names = ordered(Object.keys(m), headline);
		if (!names.length) {
			fill(metricsBox, h("p", {class: "muted"}, "No metrics reported yet."));
			return;
		}
		const head = Array.isArray(headline) ? names.filter((n) => headline.includes(n)) : [];
		const rows = (list) => list.map((n) => h("tr", {dataset: {metric: n}}, h("th", {}, n), h("td", {}, num(m[n]))));
		const all = h("table", {class: "kv metrics"}, h("tbody", {}, rows(head.length ? names.filter((n) => !head.includes(n)) : names)));
		const tables = details.map((t) => detailTable(t, m));
		fill(metricsBox,
			h("h3", {}, "Latest values"),
			head.length ? h("table", {class: "kv metrics headline"}, h("tbody", {}, rows(head))) : null,
			head.length ? h("details", {}, h("summary", {}, `All metrics (${names.length - head.length} more)`), all) : all,
			tables);
	};

	// The model kept, once the run's final metrics and parameters are in.
	const renderModel = () => {
		const panel = modelChoice(task.metrics || {}, params);
		modelCard.hidden = !panel;
		fill(modelBox, panel);
	};

	const render = () => {
		title.textContent = task.name || task.task_id;
		fill(stateEl, badge(task.status));
		main.dataset.status = task.status;
		fill(main.querySelector("#task-meta"), `${task.task_id} · by ${task.user || "–"} · created ${when(task.created_at)}`,
			task.started_at ? ` · started ${when(task.started_at)}` : "",
			task.finished_at ? ` · finished ${when(task.finished_at)}` : "",
			task.attempts > 1 ? ` · attempt ${task.attempts}` : "");
		renderProgress(task.progress);
		why.textContent = task.error ? `Error: ${task.error}` : task.waiting_reason ? `Waiting: ${task.waiting_reason}` : "";
		renderControls();
		renderResources();
		renderFinal();
		renderModel();
	};

	const refresh = async () => {
		task = await get(base);
		if (alive)
			render();
	};

	// ---------------------------------------------------------------- charts
	// a chart goes into its slot (the order of the metrics), or at the end
	const addChart = (name, steps, values, total, slot) => {
		if (charts.has(name) || charts.size >= MAX_CHARTS)
			return;
		const c = seriesChart(name, steps, values, {total});
		charts.set(name, c);
		if (slot)
			slot.replaceWith(c.element);
		else
			chartBox.appendChild(c.element);
	};

	// History: the list of the run's metrics, then each series at once (each
	// chart drawn as its series comes), and the run's headline metrics, which
	// only reorder the charts and the table.
	const loadCharts = async () => {
		let list;
		try {
			list = await early;
		} catch (e) {
			if (e.status === 404) {
				chartNote.textContent = "No metrics yet: the charts start with the task's first points.";
				return;
			}
			throw e;
		}
		const names = ordered(list.metrics.filter(chartable).map((m) => m.name), null).slice(0, MAX_CHARTS);
		chartNote.textContent = names.length ? "" : "No series to chart yet.";
		const slots = names.map((n) => chartBox.appendChild(h("div", {class: "chart slot", dataset: {metric: n}})));
		runId = list.run_id;
		const run = loadRun();
		await Promise.all(names.map(async (n, i) => {
			try {
				const s = await get(`${base}/metrics?name=${encodeURIComponent(n)}&max_points=${MAX_POINTS}`);
				if (alive)
					addChart(n, s.steps, s.values, s.total, slots[i]);
			} catch (e) {
				slots[i].replaceWith(problem(e));
			}
		}));
		await run;
		if (!alive || !headline)
			return;
		for (const n of ordered([...charts.keys()], headline))
			chartBox.appendChild(charts.get(n).element);
	};

	// The run's headline metrics (their order) and detail tables (per
	// class, a confusion matrix), when its head declares them.
	const loadRun = async () => {
		if (!runId)
			return;
		try {
			const r = await get(`/api/v1/runs/${seg(runId)}`);
			headline = Array.isArray(r.headline) && r.headline.length ? r.headline : null;
			details = Array.isArray(r.details) ? r.details : [];
			params = r.params && typeof r.params === "object" ? r.params : null;
			task.metrics = Object.assign({}, r.metrics || {}, task.metrics || {});
		} catch {
			// the charts and the table do without
		}
		if (alive) {
			renderFinal();
			renderModel();
		}
	};

	// ---------------------------------------------------------------- live
	let lastStep = task.progress && typeof task.progress.current_step === "number" ? task.progress.current_step : null;
	const onMessage = (m) => {
		if (!alive)
			return;
		switch (m.type) {
		case "snapshot":
			Object.assign(task, m);
			render();
			break;
		case "progress":
			if (typeof m.step === "number")
				lastStep = m.step;
			renderProgress({current_step: m.step, total_steps: m.total_steps, epoch: m.epoch,
				epochs: m.epochs, percentage: m.percentage});
			break;
		case "metrics": {
			// an event without a step (a figure not tied to one) is drawn at
			// the latest step the progress reported
			const step = typeof m.step === "number" ? m.step : lastStep;
			for (const [k, v] of Object.entries(m.metrics || {})) {
				if (typeof v !== "number")
					continue;
				(task.metrics ||= {})[k] = v;
				if (step === null)
					continue;
				const c = charts.get(k);
				if (c)
					c.append(step, v);
				else if (charted(k))
					addChart(k, [step], [v], 1);
			}
			break;
		}
		case "state":
			task.status = m.status;
			render();
			refresh().then(() => ACTIVE.has(task.status) ? null : loadRun()).catch(() => {});
			break;
		}
	};

	const connect = () => {
		if (!alive)
			return;
		const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${base}/monitor`;
		ws = new WebSocket(url);
		ws.addEventListener("open", () => {
			live.textContent = "live";
			live.className = "live on";
			ws.send(JSON.stringify({action: "subscribe", metrics: []}));
		});
		ws.addEventListener("message", (ev) => {
			try {
				onMessage(JSON.parse(ev.data));
			} catch {
				// a message we do not understand is skipped
			}
		});
		ws.addEventListener("close", () => {
			live.textContent = "";
			live.className = "live";
			if (alive && ACTIVE.has(task.status))
				wsRetry = setTimeout(connect, 2000);
		});
	};

	// ---------------------------------------------------------------- log
	let lastLog = 0;
	const lines = [];
	const logLine = (e) => `${when(e.time)} ${e.level.padEnd(5)} ${e.message}`;
	const loadLog = async () => {
		try {
			const q = lastLog ? `after=${lastLog}&order=asc&limit=500` : `order=desc&limit=${LOG_LINES}`;
			const r = await get(`${base}/logs?${q}`);
			const got = lastLog ? r.logs : r.logs.slice().reverse();
			for (const e of got) {
				lines.push(logLine(e));
				lastLog = Math.max(lastLog, e.id);
			}
			if (lines.length > LOG_LINES)
				lines.splice(0, lines.length - LOG_LINES);
			if (got.length || !logBox.textContent) {
				const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
				logBox.textContent = lines.length ? lines.join("\n") : "(no log lines yet)";
				if (atEnd)
					logBox.scrollTop = logBox.scrollHeight;
			}
		} catch (e) {
			logBox.textContent = e.message;
		}
		if (alive && (ACTIVE.has(task.status) || !lastLog))
			logTimer = setTimeout(loadLog, LOG_POLL_MS);
	};

	const poll = async () => {
		try {
			await refresh();
		} catch {
			// the next poll tries again
		}
		if (alive && ACTIVE.has(task.status))
			pollTimer = setTimeout(poll, POLL_MS);
	};

	render();
	try {
		await loadCharts();
	} catch (e) {
		chartBox.appendChild(problem(e));
	}
	if (ACTIVE.has(task.status)) {
		connect();
		pollTimer = setTimeout(poll, POLL_MS);
	}
	loadLog();

	return () => {
		alive = false;
		clearTimeout(wsRetry);
		clearTimeout(pollTimer);
		clearTimeout(logTimer);
		if (ws)
			ws.close();
		for (const c of charts.values())
			c.destroy && c.destroy();
	};
}
