// Metric charts, drawn by dygraphs (Debian's libjs-dygraphs, served by
// loomd at /dygraphs/; docs/web.md says why this library).  A chart shows
// one series (step → value) from the metrics API, already downsampled by
// the server, and takes new points from the monitor WebSocket as they come.
// Its legend is ours, written as text: dygraphs' own builds markup from
// the series' names.
import {h, num, tick} from "./dom.js";

const REDRAW_MS = 250; // new points are drawn at most this often

export function chartsAvailable() {
	return typeof window.Dygraph === "function";
}

// dygraphs' legend plugin writes style attributes and markup built from the
// series' names: under the page's CSP (no inline styles) and our rule
// (user text only as text) it goes; the charts' readouts are ours.
if (chartsAvailable() && window.Dygraph.Plugins && Array.isArray(window.Dygraph.PLUGINS))
	window.Dygraph.PLUGINS = window.Dygraph.PLUGINS.filter((p) => p !== window.Dygraph.Plugins.Legend);

// Record, once per page load, when the first chart was drawn (ms since
// navigation start): the bench (bench/web) and the tests read it.
function markFirstDraw() {
	if (!document.body.dataset.firstChartMs)
		document.body.dataset.firstChartMs = String(Math.round(performance.now()));
}

// A chart in a new element: name, then the series' steps and values.
// Returns {element, append(step, value), set(steps, values, label)}.
export function seriesChart(name, steps, values, opts = {}) {
	const readout = h("span", {class: "readout"});
	const plot = h("div", {class: "plot"});
	const element = h("figure", {class: "chart", dataset: {metric: name}},
		h("figcaption", {}, h("span", {class: "metric-name"}, name), " ", readout),
		plot);
	const data = steps.map((s, i) => [s, values[i]]);
	let g = null, timer = null;
	const points = h("span", {class: "points"});
	element.appendChild(points);
	const count = () => {
		points.textContent = `${data.length.toLocaleString("en-US")} points shown` +
			(opts.total && opts.total > data.length ? ` of ${opts.total.toLocaleString("en-US")}` : "");
		element.dataset.points = String(data.length);
	};
	count();

	if (!chartsAvailable()) {
		plot.appendChild(h("p", {class: "muted"},
			"Charts are off: loomd could not serve dygraph.min.js (install libjs-dygraphs, or set web.dygraphs in loomd.conf)."));
		const last = data.length ? data[data.length - 1] : null;
		readout.textContent = last ? `step ${last[0]}: ${num(last[1])}` : "";
		return {element, append(s, v) { data.push([s, v]); readout.textContent = `step ${s}: ${num(v)}`; count(); }};
	}

	let dead = false;
	const draw = () => {
		timer = null;
		if (dead || !data.length)
			return;
		if (g === null) {
			g = new window.Dygraph(plot, data, {
				labels: ["step", name],
				legend: "never",
				xlabel: "step",
				strokeWidth: 1.2,
				colors: [opts.color || "#2563eb"],
				logscale: !!opts.log,
				axes: {y: {valueFormatter: num, axisLabelFormatter: (v) => tick(v), axisLabelWidth: 56}},
				highlightCallback: (e, x, pts) => {
					if (pts && pts.length)
						readout.textContent = `step ${x}: ${num(pts[0].yval)}`;
				},
				unhighlightCallback: () => { showLast(); },
				drawCallback: (graph, initial) => {
					if (initial) {
						element.dataset.drawn = "1";
						element.dataset.drawnMs = String(Math.round(performance.now()));
						markFirstDraw();
					}
				},
			});
		} else {
			g.updateOptions({file: data});
		}
		showLast();
	};
	const showLast = () => {
		const last = data[data.length - 1];
		readout.textContent = last ? `last: ${num(last[1])} at step ${last[0]}` : "";
	};
	const schedule = () => {
		if (timer === null)
			timer = setTimeout(draw, REDRAW_MS);
	};
	// the element must be in the document (sized) before dygraphs draws
	requestAnimationFrame(draw);

	return {
		element,
		append(step, value) {
			if (dead)
				return;
			if (data.length && step <= data[data.length - 1][0]) {
				// a resumed task reports steps again from its checkpoint
				while (data.length && data[data.length - 1][0] >= step)
					data.pop();
			}
			data.push([step, value]);
			if (opts.total)
				opts.total++;
			count();
			schedule();
		},
		destroy() {
			dead = true;
			if (timer !== null)
				clearTimeout(timer);
			if (g)
				g.destroy();
			g = null;
		},
	};
}

// Several runs' series of one metric on one chart: series is a list of
// {label, steps, values}.
export function overlayChart(name, series) {
	const element = h("figure", {class: "chart wide", dataset: {metric: name}},
		h("figcaption", {}, h("span", {class: "metric-name"}, name)));
	const plot = h("div", {class: "plot"});
	const legend = h("ul", {class: "legend"});
	element.append(plot, legend);
	if (!chartsAvailable()) {
		plot.appendChild(h("p", {class: "muted"}, "Charts are off: loomd could not serve dygraph.min.js."));
		return {element, destroy() {}};
	}
	// merge the series on their steps: one row per step, null where a run
	// has no point there
	const rows = new Map();
	series.forEach((s, k) => {
		s.steps.forEach((st, i) => {
			let r = rows.get(st);
			if (!r) {
				r = new Array(series.length + 1).fill(null);
				r[0] = st;
				rows.set(st, r);
			}
			r[k + 1] = s.values[i];
		});
	});
	const data = [...rows.values()].sort((a, b) => a[0] - b[0]);
	const colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"];
	series.forEach((s, k) => legend.appendChild(h("li", {class: `c${k % colors.length}`}, s.label)));
	let g = null, dead = false;
	requestAnimationFrame(() => {
		if (dead || !data.length)
			return;
		g = new window.Dygraph(plot, data, {
			labels: ["step", ...series.map((s) => s.label)],
			legend: "never",
			xlabel: "step",
			connectSeparatedPoints: true,
			colors: series.map((s, k) => colors[k % colors.length]),
			axes: {y: {valueFormatter: num, axisLabelFormatter: (v) => tick(v), axisLabelWidth: 56}},
			drawCallback: (graph, initial) => {
				if (initial) {
					element.dataset.drawn = "1";
					markFirstDraw();
				}
			},
		});
	});
	return {element, destroy() {
		dead = true;
		if (g)
			g.destroy();
		g = null;
	}};
}
