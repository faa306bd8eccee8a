// Runs: the list, with boxes to pick runs to compare; the comparison:
// parameters (differences marked), final metrics (the best marked) and one
// metric's series of every run on one chart.
import {h, fill, num, when, badge, table, problem} from "./dom.js";
import {get, seg} from "./api.js";
import {overlayChart} from "./chart.js";

const PAGE = 50;

export async function runsPage(main, params, query) {
	const offset = Math.max(0, parseInt(query.get("offset") || "0", 10) || 0);
	const r = await get(`/api/v1/runs?limit=${PAGE}&offset=${offset}`);
	const picked = new Set();
	const compare = h("button", {type: "button", id: "compare", disabled: true, onclick: () => {
		location.hash = `#/compare?ids=${[...picked].map(encodeURIComponent).join(",")}`;
	}}, "Compare selected");
	const rows = r.runs.map((run) => h("tr", {dataset: {run: run.id}},
		h("td", {}, h("input", {type: "checkbox", "aria-label": `compare ${run.id}`, value: run.id,
			onchange: (e) => {
				if (e.target.checked)
					picked.add(run.id);
				else
					picked.delete(run.id);
				compare.disabled = picked.size < 2;
			}})),
		h("td", {}, run.id),
		h("td", {}, run.name || "–"),
		h("td", {}, run.task_id ? h("a", {href: `#/tasks/${encodeURIComponent(run.task_id)}`}, run.task_id) : "script"),
		h("td", {}, badge(run.state)),
		h("td", {}, run.user || "–"),
		h("td", {}, when(run.started_at))));
	fill(main, h("h1", {}, "Runs"),
		h("p", {class: "muted"}, "One run per task attempt, or made by a script. Pick two or more to compare."),
		h("div", {class: "controls"}, compare),
		rows.length ? table(["", "Run", "Name", "Task", "State", "User", "Started"], rows, {class: "list"}) :
			h("p", {class: "muted"}, "No runs yet."),
		h("nav", {class: "pager"},
			offset > 0 ? h("a", {href: `#/runs?offset=${Math.max(0, offset - PAGE)}`}, "← Newer") : null,
			r.runs.length === PAGE ? h("a", {href: `#/runs?offset=${offset + PAGE}`}, " Older →") : null));
}

// every value the same: no run is best
const alike = (values) => values.every((v) => JSON.stringify(v) === JSON.stringify(values[0]));

const show = (v) => v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : num(v);

export async function comparePage(main, params, query) {
	const ids = (query.get("ids") || "").split(",").filter(Boolean);
	if (ids.length < 2) {
		fill(main, h("h1", {}, "Compare runs"), h("p", {}, "Pick two or more runs on the ", h("a", {href: "#/runs"}, "runs page"), "."));
		return;
	}
	const c = await get(`/api/v1/runs/compare?ids=${ids.map(encodeURIComponent).join(",")}`);
	const runIds = c.runs.map((r) => r.id);
	// a function: a node can sit in one table only
	const headRow = () => ["", ...c.runs.map((r) => h("span", {}, r.id, h("br"), h("small", {}, r.name || "")))];
	const headline = Array.isArray(c.headline) ? c.headline : null;
	const metrics = headline ? c.metrics.filter((m) => headline.includes(m.name)) : c.metrics;
	const mrows = metrics.map((m) => h("tr", {dataset: {metric: m.name}}, h("th", {}, m.name,
		m.better ? h("small", {class: "muted"}, ` (${m.better} is better)`) : null),
	m.values.map((v, i) => h("td", {class: c.runs[i].id === m.best && !alike(m.values) ? "best" : null}, num(v)))));
	const differ = c.params.filter((p) => p.differs);
	const same = c.params.filter((p) => !p.differs);
	const prow = (p) => h("tr", {class: p.differs ? "differs" : null}, h("th", {}, p.key), p.values.map((v) => h("td", {}, show(v))));

	// a metric's series of every run on one chart
	// (not a final test_ figure, nor a figure of one of auto's candidates,
	// auto/NAME/…)
	const seriesNames = c.metrics.map((m) => m.name).filter((n) => !n.startsWith("test_") && !n.startsWith("auto/"));
	const pick = h("select", {id: "overlay-metric"}, seriesNames.map((n) => h("option", {value: n}, n)));
	const chartBox = h("div", {class: "charts"});
	let chart = null;
	const drawOverlay = async () => {
		const name = pick.value;
		if (!name)
			return;
		try {
			const got = await Promise.all(runIds.map((id) =>
				get(`/api/v1/runs/${seg(id)}/metrics?name=${encodeURIComponent(name)}&max_points=2000`)
					.catch(() => ({steps: [], values: []}))));
			if (chart)
				chart.destroy();
			chart = overlayChart(name, got.map((s, i) => ({label: runIds[i], steps: s.steps, values: s.values})));
			fill(chartBox, chart.element);
		} catch (e) {
			fill(chartBox, problem(e));
		}
	};
	pick.addEventListener("change", drawOverlay);
	const lossy = seriesNames.find((n) => /(^|_)loss$/.test(n));
	if (lossy)
		pick.value = lossy;

	fill(main,
		h("p", {class: "crumbs"}, h("a", {href: "#/runs"}, "Runs"), " / compare"),
		h("h1", {}, `Comparing ${c.runs.length} runs`),
		h("section", {class: "card"}, h("h2", {}, "Metrics"),
			h("p", {class: "muted"}, headline ? "The headline metrics; the best value of each is marked." : "Final values; the best of each is marked."),
			table(headRow(), mrows, {class: "compare", id: "compare-metrics"})),
		h("section", {class: "card"}, h("h2", {}, "Series"), h("label", {}, "Metric ", pick), chartBox),
		h("section", {class: "card"}, h("h2", {}, "Parameters"),
			differ.length ? table(headRow(), differ.map(prow), {class: "compare", id: "compare-params"}) :
				h("p", {class: "muted"}, "The runs have the same parameters."),
			same.length ? h("details", {}, h("summary", {}, `${same.length} parameters alike`), table(headRow(), same.map(prow), {class: "compare"})) : null));
	drawOverlay();
	return () => {
		if (chart)
			chart.destroy();
	};
}
