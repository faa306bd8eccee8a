// Building the DOM without markup strings: every text that may come from
// a user (task names, metric names, log lines, messages) goes in as a text
// node, never through innerHTML, so nothing a user typed can become markup
// or script.  The page's Content-Security-Policy forbids inline code too.

// h("a", {href: "#/tasks", class: "x", onclick: fn}, "text", child, [more])
export function h(tag, attrs, ...children) {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false)
			continue;
		if (k.startsWith("on") && typeof v === "function")
			e.addEventListener(k.slice(2), v);
		else if (k === "class")
			e.className = v;
		else if (k === "dataset")
			Object.assign(e.dataset, v);
		else if (k === "value" || k === "checked" || k === "disabled" || k === "max")
			e[k] = v;
		else
			e.setAttribute(k, v === true ? "" : String(v));
	}
	add(e, children);
	return e;
}

function add(e, children) {
	for (const c of children) {
		if (c === undefined || c === null || c === false)
			continue;
		if (Array.isArray(c))
			add(e, c);
		else if (c instanceof Node)
			e.appendChild(c);
		else
			e.appendChild(document.createTextNode(String(c)));
	}
}

// Replace an element's children.
export function fill(e, ...children) {
	e.replaceChildren();
	add(e, children);
	return e;
}

// A number as people read it: 4 significant digits, no exponent for
// ordinary magnitudes.
export function num(v) {
	if (v === null || v === undefined)
		return "–";
	if (typeof v !== "number")
		return String(v);
	if (!Number.isFinite(v))
		return String(v);
	if (Number.isInteger(v))
		return v.toLocaleString("en-US");
	const a = Math.abs(v);
	if (a !== 0 && (a < 1e-3 || a >= 1e6))
		return v.toExponential(3);
	return v.toPrecision(4);
}

// A number for an axis label: 3 significant digits, trailing zeros off.
export function tick(v) {
	if (typeof v !== "number" || !Number.isFinite(v))
		return String(v);
	const a = Math.abs(v);
	if (a !== 0 && (a < 1e-3 || a >= 1e6))
		return v.toExponential(1);
	return String(parseFloat(v.toPrecision(3)));
}

export function bytes(n) {
	if (!n)
		return "–";
	const u = ["B", "KiB", "MiB", "GiB", "TiB"];
	let i = 0;
	while (n >= 1024 && i < u.length - 1) {
		n /= 1024;
		i++;
	}
	return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

// "2026-12-07T07:36:18.426Z" → "2026-12-07 07:36:18"
export function when(iso) {
	return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "") : "–";
}

export function badge(status) {
	return h("span", {class: `badge st-${String(status).replace(/[^a-z]/g, "")}`}, status);
}

// A table: head is a list of column titles, rows a list of lists of cells
// (text or nodes).
export function table(head, rows, attrs) {
	return h("table", attrs || {},
		h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
		h("tbody", {}, rows.map((r) => r instanceof Node ? r : h("tr", {}, r.map((c) => h("td", {}, c))))));
}

// An error message box.
export function problem(err) {
	return h("p", {class: "problem", role: "alert"}, err && err.message ? err.message : String(err));
}
