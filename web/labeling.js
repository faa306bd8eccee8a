// Labeling: the projects the caller may see (#/labeling) and the review
// screen of one (#/labeling/NAME), the confirmation half of the
// incremental-learning loop (/api/v1/labeling, docs/labeling.md).
//
// The review screen leases one item at a time (POST …/next): the window
// plotted, the model's prediction, why the sampler chose it, and the
// decisions — confirm, correct, skip, flag — by button or key.  A decision's
// answer carries the next item, which is shown at once: no second request
// between two items.  Viewers and read shares see the project and no
// decision; the server refuses them anyway (403).
import {h, fill, num, when, table, problem} from "./dom.js";
import {get, post, seg, session} from "./api.js";
import {chartsAvailable} from "./chart.js"; // and its removal of dygraphs' legend plugin

const BASE = "/api/v1/labeling";
const POLL_MS = 5000;      // the project's counts and rounds
const COUNTS = ["queued", "leased", "done", "flagged", "total"];
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"];
const PAST = {confirm: "confirmed", correct: "corrected", skip: "skipped", flag: "flagged"};

const countCells = (c) => COUNTS.map((k) => h("td", {class: "n", dataset: {count: k}}, num((c || {})[k] ?? 0)));

export async function labelingPage(main) {
	const r = await get(`${BASE}/projects`);
	fill(main, h("h1", {}, "Labeling"),
		h("p", {class: "muted"}, "Windows a sampler chose from a model's predictions, for people to confirm or correct."),
		r.projects.length ? table(["Project", "Model", "Sampler", "Rounds", ...COUNTS, "Owner", "Created"],
			r.projects.map((p) => h("tr", {dataset: {project: p.name}},
				h("td", {}, h("a", {href: `#/labeling/${encodeURIComponent(p.name)}`}, p.name)),
				h("td", {}, p.model, " ", h("span", {class: "tag alias"}, p.alias || "production")),
				h("td", {}, p.sampler, h("span", {class: "muted"}, ` k = ${num(p.k)}`)),
				h("td", {class: "n"}, num(p.rounds_total ?? 0)),
				countCells(p.counts),
				h("td", {}, p.owner || "–"),
				h("td", {}, when(p.created)))), {class: "list", id: "projects"}) :
			h("p", {class: "muted", id: "no-projects"}, "No labeling projects yet. Create one with ",
				h("code", {}, "loomctl label create"), " (a model, its alias and a sampler), then start a round over new data."));
}

// May the caller decide on this project's items: an admin, its owner, or a
// user it is shared with for writing.  Comfort only: the server checks.
async function mayReview(p) {
	const me = session.current;
	if (!me || me.role === "viewer")
		return false;
	if (me.role === "admin" || p.owner === me.user)
		return true;
	try {
		const s = await get(`/api/v1/shares?kind=labeling&id=${encodeURIComponent(p.name)}`);
		return (s.shares || []).some((x) => (x.user === me.user || x.user === "*") && x.level === "write");
	} catch {
		return true; // the server answers a decision 403 if not, and the buttons go then
	}
}

// ------------------------------------------------------------------ chart
// The x values of a window: its time column as dates when every value
// reads as one, as numbers when every value is one, else the file's lines.
function xValues(win) {
	const t = Array.isArray(win.time) ? win.time : [];
	const n = win.values.length;
	if (t.length === n && n && t.every((v) => typeof v === "number" || /^-?\d+(\.\d+)?$/.test(String(v))))
		return {x: t.map(Number), dates: false, label: "time"};
	if (t.length === n && n && t.every((v) => typeof v === "string" && !Number.isNaN(Date.parse(v))))
		return {x: t.map((v) => new Date(Date.parse(v))), dates: true, label: "time"};
	return {x: win.values.map((_, i) => (win.first_line ?? 1) + i), dates: false, label: "line of the file"};
}

// One chart kept for the whole session: a new item replaces its data
// (dygraphs' updateOptions) unless its series differ.
function windowChart() {
	const readout = h("span", {class: "readout", id: "item-readout"});
	const plot = h("div", {class: "plot window-plot"});
	const legend = h("ul", {class: "legend", id: "item-legend"});
	const element = h("figure", {class: "chart", id: "item-chart"},
		h("figcaption", {}, h("span", {class: "metric-name"}, "The window"), " ", readout), plot, legend);
	let g = null, key = null;
	return {
		element,
		set(item) {
			const win = item.window || {};
			const chans = Array.isArray(win.channels) ? win.channels : [];
			const rows = Array.isArray(win.values) ? win.values : [];
			if (!chartsAvailable()) {
				fill(plot, h("p", {class: "muted"}, "Charts are off: loomd could not serve dygraph.min.js (install libjs-dygraphs, or set web.dygraphs in loomd.conf)."));
				element.dataset.drawn = "0";
				return;
			}
			if (!rows.length || !chans.length) {
				if (g)
					g.destroy();
				g = null;
				key = null;
				fill(plot, h("p", {class: "muted"}, "This item has no window to plot."));
				fill(legend);
				return;
			}
			const {x, dates, label} = xValues(win);
			const n = rows.length;
			// a forecast goes on after the window, with its uncertainty as a band
			const p = item.prediction || {};
			const fc = item.task === "forecast" && Array.isArray(p.values) && Array.isArray(p.targets) ? p : null;
			const targets = fc ? fc.targets : [];
			const band = !!(fc && Array.isArray(fc.uncertainty));
			const cell = (v, u) => v === null || v === undefined ? null : band ? [v - (u || 0), v, v + (u || 0)] : v;
			const data = rows.map((r, i) => [x[i], ...chans.map((_, c) => cell(r[c], 0)), ...targets.map(() => null)]);
			if (fc) {
				const dx = n > 1 ? x[n - 1] - x[n - 2] : 1;
				const last = dates ? x[n - 1].getTime() : x[n - 1];
				// each forecast starts from its target's last value, when the target is a channel
				targets.forEach((t, k) => {
					const c = chans.indexOf(t);
					if (c >= 0)
						data[n - 1][1 + chans.length + k] = cell(rows[n - 1][c], 0);
				});
				fc.values.forEach((hv, j) => {
					const xv = last + (j + 1) * dx;
					data.push([dates ? new Date(xv) : xv, ...chans.map(() => null),
						...targets.map((_, k) => cell(Array.isArray(hv) ? hv[k] : hv,
							band ? (Array.isArray(fc.uncertainty[j]) ? fc.uncertainty[j][k] : fc.uncertainty[j]) : 0))]);
				});
			}
			const labels = [label, ...chans, ...targets.map((t) => `forecast ${t}`)];
			const colorOf = (i) => COLORS[i % COLORS.length];
			const colors = [...chans.map((_, i) => colorOf(i)),
				...targets.map((t, k) => chans.includes(t) ? colorOf(chans.indexOf(t)) : colorOf(chans.length + k))];
			fill(legend, labels.slice(1).map((s, i) => h("li", {class: `c${COLORS.indexOf(colors[i])}`},
				i >= chans.length && band ? `${s} (± its uncertainty)` : s)));
			const want = JSON.stringify([labels, band, dates]);
			const show = (xv, pts) => {
				const at = dates ? new Date(xv).toISOString().slice(0, 10) : num(xv);
				readout.textContent = `${at}: ${pts.map((q) => `${q.name} ${num(q.yval)}`).join(", ")}`;
			};
			if (g && key === want) {
				g.updateOptions({file: data, dateWindow: null, valueRange: null});
			} else {
				if (g)
					g.destroy();
				fill(plot);
				key = want;
				const series = {};
				for (const t of targets)
					series[`forecast ${t}`] = {strokePattern: [6, 3], drawPoints: true, pointSize: 2};
				g = new window.Dygraph(plot, data, {
					labels, colors, series,
					legend: "never",
					customBars: band,
					connectSeparatedPoints: false,
					strokeWidth: 1.4,
					xlabel: label === "time" ? null : label,
					axes: {y: {valueFormatter: num, axisLabelWidth: 56}},
					highlightCallback: (e, xv, pts) => show(xv, pts || []),
					unhighlightCallback: () => { readout.textContent = ""; },
				});
			}
			readout.textContent = `${n} rows` + (fc ? `, then ${fc.values.length} forecast` : "");
			element.dataset.drawn = "1";
			element.dataset.rows = String(n);
		},
		destroy() {
			if (g)
				g.destroy();
			g = null;
		},
	};
}

// ------------------------------------------------------------------ prediction
// What the model said, as the reviewer weighs it, and the choices a
// correction picks from (classification: the classes in the listed order;
// anomaly: normal or anomalous).  Returns {element, choices, values}.
function predictionPanel(item, onPick) {
	const p = item.prediction || {};
	const u = (a, i) => Array.isArray(a) && a[i] !== null && a[i] !== undefined ? ` ± ${num(a[i])}` : "";
	const choiceList = (names, probs, chosen) => h("ol", {class: "choices", id: "classes"},
		names.map((c, i) => h("li", {class: c === chosen ? "predicted" : null, dataset: {class: c}},
			h("button", {type: "button", class: "choice", dataset: {class: c, index: String(i)},
				title: i < 9 ? `correct to ${c} (key ${i + 1})` : `correct to ${c}`,
				onclick: (e) => onPick(i, e.timeStamp)},
			h("kbd", {}, i < 9 ? String(i + 1) : " "),
			h("span", {class: "cls"}, c),
			probs ? h("meter", {min: 0, max: 1, value: probs[i]}) : null,
			probs ? h("span", {class: "p"}, num(probs[i])) : null,
			c === chosen ? h("span", {class: "tag predicted-tag"}, "predicted") : null))));
	switch (item.task) {
	case "classification": {
		const classes = Array.isArray(p.classes) ? p.classes : [];
		return {element: h("div", {class: "prediction", dataset: {predicted: p.label}},
			h("p", {}, "Predicted: ", h("strong", {id: "predicted"}, p.label)),
			choiceList(classes, Array.isArray(p.probs) ? p.probs : null, p.label)), choices: classes};
	}
	case "anomaly": {
		const names = ["normal", "anomalous"];
		return {element: h("div", {class: "prediction", dataset: {predicted: p.anomalous ? "anomalous" : "normal"}},
			h("p", {}, "Anomaly score ", h("strong", {}, num(p.score)), " against threshold ", num(p.threshold), ": ",
				h("strong", {id: "predicted"}, p.anomalous ? "anomalous" : "normal")),
			h("meter", {class: "score", min: 0, max: Math.max(p.score || 0, (p.threshold || 0) * 2, 1e-9),
				value: p.score || 0, high: p.threshold}),
			choiceList(names, null, p.anomalous ? "anomalous" : "normal")), choices: names};
	}
	case "regression": {
		const targets = Array.isArray(p.targets) ? p.targets : [];
		const values = Array.isArray(p.values) ? p.values : [];
		return {element: h("div", {class: "prediction"},
			table(["Target", "Predicted"], targets.map((t, i) => [t, `${num(values[i])}${u(p.uncertainty, i)}`]),
				{class: "kv", id: "predicted-values"})), values};
	}
	case "forecast": {
		const targets = Array.isArray(p.targets) ? p.targets : [];
		const values = Array.isArray(p.values) ? p.values : [];
		const rows = values.slice(0, 24).map((hv, j) => [`+${j + 1}`,
			...targets.map((_, k) => `${num(Array.isArray(hv) ? hv[k] : hv)}${u(Array.isArray(p.uncertainty) ? p.uncertainty[j] : null, k)}`)]);
		return {element: h("div", {class: "prediction"},
			h("p", {class: "muted"}, `A forecast of ${values.length} steps, drawn after the window`,
				Array.isArray(p.uncertainty) ? " with its uncertainty band." : "."),
			h("div", {class: "scroll forecast-table"}, table(["Step", ...targets], rows, {class: "kv", id: "predicted-values"})),
			values.length > 24 ? h("p", {class: "muted"}, `… and ${values.length - 24} more steps.`) : null),
		values: values.flat()};
	}
	default:
		return {element: h("p", {class: "muted"}, `A prediction of a kind this page does not draw (${item.task}).`)};
	}
}

// "[1.5, 2, 3]" or "1.5, 2 3" → numbers; an error names what is wrong.
function parseNumbers(text, want) {
	const parts = text.split(/[\s,;[\]]+/).filter(Boolean);
	const bad = parts.find((s) => !Number.isFinite(Number(s)));
	if (bad !== undefined)
		throw new Error(`The corrected value "${bad}" is not a number: give ${want} numbers separated by commas.`);
	if (parts.length !== want)
		throw new Error(`The correction has ${parts.length} numbers; the prediction has ${want}: give one for each.`);
	return parts.map(Number);
}

const clock = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;

// ------------------------------------------------------------------ review
export async function labelingProjectPage(main, {name}) {
	const path = `${BASE}/projects/${seg(name)}`;
	let project = await get(path);
	const reviewer = await mayReview(project);

	let alive = true, pollTimer = null, leaseTimer = null;
	let item = null, panel = null, busy = false, started = false;
	let leaseEnd = 0;
	const tally = {confirm: 0, correct: 0, skip: 0, flag: 0};
	let decided = 0;

	const meta = h("p", {class: "meta", id: "project-meta"});
	const counts = h("div", {id: "project-counts"});
	const rounds = h("div", {id: "rounds"});
	const msg = h("div", {class: "msg", id: "review-msg"});
	const counter = h("p", {class: "session-count", id: "session-count"});
	const lastLine = h("p", {class: "muted", id: "last-decision"});

	// the item: its head, the why, the chart, the prediction, the decisions
	const itemHead = h("p", {class: "item-head", id: "item-head"});
	const lease = h("span", {class: "lease", id: "lease"});
	const whyLine = h("p", {class: "why", id: "item-why"});
	const chart = windowChart();
	const predBox = h("div", {id: "prediction"});
	const noteIn = h("input", {id: "flag-note", type: "text", size: 50, placeholder: "what is wrong with this window?",
		"aria-label": "note for the flag", autocomplete: "off"});
	const noteForm = h("form", {class: "controls note", id: "flag-form", hidden: true, onsubmit: (e) => {
		e.preventDefault();
		decide("flag", undefined, noteIn.value.trim(), e.timeStamp);
	}}, h("label", {for: "flag-note"}, "Flag: "), noteIn,
	h("button", {type: "submit", id: "flag-submit", class: "danger"}, "Flag it"),
	h("span", {class: "muted"}, " Enter flags, Esc cancels"));
	noteIn.addEventListener("keydown", (e) => {
		if (e.key === "Escape") {
			e.preventDefault();
			noteForm.hidden = true;
			focusReview();
		}
	});
	const valueIn = h("input", {id: "correct-value", type: "text", size: 40, autocomplete: "off",
		"aria-label": "the corrected values, separated by commas"});
	const valueForm = h("form", {class: "controls", id: "correct-form", hidden: true, onsubmit: (e) => {
		e.preventDefault();
		let label;
		try {
			label = parseNumbers(valueIn.value, panel.values.length);
		} catch (err) {
			fill(msg, problem(err));
			return;
		}
		decide("correct", label, undefined, e.timeStamp);
	}}, h("label", {for: "correct-value"}, "Correct to "), valueIn,
	h("button", {type: "submit", id: "correct"}, "Correct"), h("span", {class: "muted"}, " e edits, Enter saves"));
	const button = (id, text, key, fn, cls) => h("button", {type: "button", id, class: cls || null,
		title: key ? `key ${key}` : null, onclick: (e) => fn(e.timeStamp)}, text, key ? h("kbd", {}, key) : null);
	const decisions = h("div", {class: "controls decide", id: "decide"},
		button("confirm", "Confirm ", "Enter", (t) => decide("confirm", undefined, undefined, t)),
		button("skip", "Skip ", "s", (t) => decide("skip", undefined, undefined, t), "plain"),
		button("flag", "Flag… ", "f", () => askNote(), "danger"),
		button("release", "Put back", null, () => release(), "plain"));
	const help = h("p", {class: "muted keys"}, "Keys: Enter or c confirms · 1–9 correct to that class · e edits a value · s skips · f flags.");
	const itemBox = h("div", {id: "item", hidden: true},
		h("div", {class: "head"}, itemHead, lease), whyLine,
		h("div", {class: "review-grid"}, chart.element, h("div", {class: "card-inner"}, h("h3", {}, "The model's prediction"), predBox)),
		decisions, valueForm, noteForm, help);
	const empty = h("div", {id: "review-empty"});
	const startBtn = h("button", {type: "button", id: "start", onclick: () => start()}, "Start reviewing");
	const startBox = h("div", {class: "controls", id: "start-box"}, startBtn,
		h("span", {class: "muted"}, " Leases the most informative item left; a lease keeps it yours for ",
			clock(project.lease_seconds || 600), "."));
	const review = h("section", {class: "card review", id: "review", tabindex: "-1", dataset: {decisions: "0"}},
		h("h2", {}, "Review"), msg, counter, lastLine,
		reviewer ? startBox :
			h("p", {class: "muted", id: "read-only"},
				"You may read this project; confirming and correcting are for its owner, admins and those it is shared with for writing."),
		empty, itemBox);

	fill(main, h("p", {class: "crumbs"}, h("a", {href: "#/labeling"}, "Labeling"), " / ", name),
		h("h1", {}, name), meta, counts, review,
		h("section", {class: "card"}, h("h2", {}, "Rounds"), rounds));

	// ------------------------------------------------------------ project
	const renderProject = () => {
		fill(meta, `model ${project.model} `, h("span", {class: "tag alias"}, project.alias || "production"),
			` · sampler ${project.sampler}, k = ${num(project.k)} · leases of ${clock(project.lease_seconds || 0)}`,
			` · owner ${project.owner || "–"} · created ${when(project.created)}`);
		const c = project.counts || {};
		fill(counts, h("ul", {class: "counts"}, COUNTS.map((k) =>
			h("li", {dataset: {count: k}}, h("strong", {}, num(c[k] ?? 0)), ` ${k}`))));
		const list = Array.isArray(project.rounds) ? project.rounds : [];
		fill(rounds, list.length ? h("div", {class: "scroll"}, table(["Round", "State", "Task", "Model version", "Data", "Sampler", "k", "Seed", ...COUNTS, "Created"],
			list.map((r) => h("tr", {dataset: {round: String(r.number), state: r.state}},
				h("td", {}, String(r.number)),
				h("td", {}, h("span", {class: `badge st-${String(r.state).replace(/[^a-z]/g, "")}`}, r.state),
					r.error ? h("div", {class: "problem"}, r.error) : null),
				h("td", {}, r.task ? h("a", {href: `#/tasks/${encodeURIComponent(r.task)}`}, r.task) : "–"),
				h("td", {}, r.model_version ? `v${r.model_version}` : "–"),
				h("td", {class: "path"}, r.data || "–"),
				h("td", {}, r.sampler || project.sampler),
				h("td", {class: "n"}, num(r.k)),
				h("td", {class: "n"}, r.seed ?? "–"),
				countCells(r.counts),
				h("td", {}, when(r.created)))), {class: "list"})) :
			h("p", {class: "muted"}, "No rounds yet: a round scores new data with the model (",
				h("code", {}, `loomctl label round ${name} FILE`), ") and queues the sampler's choice."));
	};
	renderProject();

	const poll = async () => {
		pollTimer = null;
		if (!alive)
			return;
		if (!busy) {
			try {
				project = await get(path);
				if (alive)
					renderProject();
			} catch {
				// shown again at the next poll; the review goes on
			}
		}
		if (alive)
			pollTimer = setTimeout(poll, POLL_MS);
	};
	pollTimer = setTimeout(poll, POLL_MS);

	// ------------------------------------------------------------ review
	function focusReview() {
		const a = document.activeElement;
		if (!a || a === document.body || !review.contains(a) || a.closest("[hidden]") || a === startBtn)
			review.focus({preventScroll: true});
	}

	const renderCounter = () => {
		const parts = Object.entries(tally).filter(([, v]) => v).map(([k, v]) => `${v} ${PAST[k]}`);
		counter.textContent = decided ? `${decided} decided in this session (${parts.join(", ")}).` : "";
		review.dataset.decisions = String(decided);
	};

	const tickLease = () => {
		if (!item || !item.lease) {
			lease.textContent = "";
			return;
		}
		const left = Math.max(0, Math.round((leaseEnd - performance.now()) / 1000));
		lease.textContent = left ? `lease: ${clock(left)} left` : "the lease has run out: another reviewer may get this item";
		lease.classList.toggle("late", left < 60);
	};

	const roundK = (n) => {
		const r = (project.rounds || []).find((x) => x.number === n);
		return r ? r.k : null;
	};

	// Show an item (or, without one, why there is none).
	const show = (it, why) => {
		item = it;
		noteForm.hidden = true;
		noteIn.value = "";
		if (!it) {
			itemBox.hidden = true;
			delete review.dataset.item;
			fill(empty, h("p", {class: "why-none", id: "why-none"}, why || "Nothing to review now."),
				h("button", {type: "button", id: "again", class: "plain", onclick: () => next()}, "Look again"));
			review.dataset.empty = "1";
			tickLease();
			return;
		}
		delete review.dataset.empty;
		fill(empty);
		itemBox.hidden = false;
		const k = roundK(it.round);
		fill(itemHead, h("strong", {}, `Item ${it.id}`),
			` · round ${it.round} · rank ${it.rank}${k ? ` of ${k}` : ""} · ${it.model} v${it.version} · ${it.task}`,
			it.window && it.window.first_line ? ` · lines ${it.window.first_line}–${it.window.last_line}` : "");
		fill(whyLine, h("span", {class: "tag"}, it.sampler), " score ", h("strong", {}, num(it.score)), ": ", it.why || "–");
		leaseEnd = performance.now() + 1000 * ((it.lease && it.lease.seconds_left) || 0);
		tickLease();
		panel = predictionPanel(it, (i, t) => pick(i, t));
		fill(predBox, panel.element);
		const numeric = Array.isArray(panel.values);
		valueForm.hidden = !numeric;
		if (numeric)
			valueIn.value = panel.values.map((v) => typeof v === "number" ? String(parseFloat(v.toPrecision(6))) : "").join(", ");
		review.dataset.item = String(it.id);
		review.dataset.task = it.task;
		review.dataset.predicted = it.prediction && it.prediction.label !== undefined ? String(it.prediction.label) : "";
		chart.set(it);
		focusReview();
	};

	const next = async () => {
		if (busy)
			return;
		busy = true;
		fill(msg);
		try {
			const r = await post(`${path}/next`);
			if (alive)
				show(r.item, r.why);
		} catch (e) {
			if (e.status === 403)
				readOnly(e);
			else
				fill(msg, problem(e));
		} finally {
			busy = false;
		}
	};

	const start = async () => {
		started = true;
		startBox.hidden = true;
		await next();
		if (!leaseTimer)
			leaseTimer = setInterval(tickLease, 1000);
	};

	// the server says this caller may not review: no buttons
	const readOnly = (e) => {
		fill(msg, problem(e));
		startBox.remove();
		itemBox.hidden = true;
		item = null;
		started = false;
	};

	// decide(action, label, note, t0): t0 is the key press or click (the
	// event's timeStamp); the time to the next item drawn goes in
	// #review's data-decision-ms (the test and bench/labeling-page read it).
	async function decide(action, label, note, t0) {
		if (!item || busy)
			return;
		busy = true;
		const at = typeof t0 === "number" ? t0 : performance.now();
		const was = item;
		const body = {action};
		if (label !== undefined)
			body.label = label;
		if (note)
			body.note = note;
		fill(msg);
		let r;
		try {
			r = await post(`${BASE}/items/${seg(was.id)}/decision`, body);
		} catch (e) {
			busy = false;
			if (e.status === 403) {
				readOnly(e);
			} else if (e.status === 409) {
				fill(msg, h("p", {class: "problem", role: "alert"}, `Item ${was.id} is no longer yours: ${e.message} `,
					h("button", {type: "button", id: "next-after-conflict", onclick: () => next()}, "Next item")));
			} else {
				fill(msg, problem(e));
			}
			return;
		}
		const net = performance.now() - at;
		tally[action]++;
		decided++;
		const d = (r.item && r.item.decision) || {action, label};
		fill(lastLine, `Item ${was.id}: ${PAST[action] || action}`,
			d.label !== undefined && d.label !== null ? ` ${typeof d.label === "object" ? JSON.stringify(d.label) : d.label}` : "",
			d.note ? ` (“${d.note}”)` : "");
		if (!alive)
			return;
		// the counts soon after, not between two items
		if (pollTimer)
			clearTimeout(pollTimer);
		pollTimer = setTimeout(poll, 1000);
		if (!r.next) {
			// the counts say what the reviewers left
			clearTimeout(pollTimer);
			pollTimer = setTimeout(poll, 0);
		}
		if (r.next || r.why) {
			show(r.next, r.why);
			busy = false;
		} else {
			busy = false;
			await next(); // only to learn why there is none
		}
		requestAnimationFrame(() => {
			review.dataset.decisionMs = (performance.now() - at).toFixed(1);
			review.dataset.decisionNetMs = net.toFixed(1);
			renderCounter();
		});
	}

	// the i-th choice: the predicted one is a confirmation
	function pick(i, t0) {
		if (!item || !panel || !panel.choices || i >= panel.choices.length)
			return;
		const c = panel.choices[i];
		if (item.task === "anomaly") {
			const a = c === "anomalous";
			if (a === !!item.prediction.anomalous)
				decide("confirm", undefined, undefined, t0);
			else
				decide("correct", {anomalous: a}, undefined, t0);
			return;
		}
		if (c === item.prediction.label)
			decide("confirm", undefined, undefined, t0);
		else
			decide("correct", c, undefined, t0);
	}

	function askNote() {
		if (!item)
			return;
		noteForm.hidden = false;
		noteIn.focus();
	}

	async function release() {
		if (!item || busy)
			return;
		busy = true;
		try {
			await post(`${BASE}/items/${seg(item.id)}/release`);
			fill(lastLine, `Item ${item.id}: put back.`);
			show(null, `Item ${item.id} is back in the queue.`);
		} catch (e) {
			fill(msg, problem(e));
		} finally {
			busy = false;
		}
	}

	const onKey = (e) => {
		if (!started || !item || busy || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey)
			return;
		const t = e.target;
		// a field takes its own keys; a button focused by Tab its Enter and space
		if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable))
			return;
		if (t && t.tagName === "BUTTON" && (e.key === "Enter" || e.key === " "))
			return;
		let act = null;
		if (e.key === "Enter" || e.key === "c")
			act = () => decide("confirm", undefined, undefined, e.timeStamp);
		else if (e.key === "s")
			act = () => decide("skip", undefined, undefined, e.timeStamp);
		else if (e.key === "f")
			act = askNote;
		else if (e.key === "e" && !valueForm.hidden)
			act = () => { valueIn.focus(); valueIn.select(); };
		else if (/^[1-9]$/.test(e.key) && panel && panel.choices && Number(e.key) <= panel.choices.length)
			act = () => pick(Number(e.key) - 1, e.timeStamp);
		if (!act)
			return;
		e.preventDefault();
		act();
	};
	document.addEventListener("keydown", onKey);

	return () => {
		alive = false;
		document.removeEventListener("keydown", onKey);
		if (pollTimer)
			clearTimeout(pollTimer);
		if (leaseTimer)
			clearInterval(leaseTimer);
		chart.destroy();
	};
}
