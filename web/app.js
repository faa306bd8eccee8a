// The Loom web UI: one page, routed by the URL's hash (#/tasks,
// #/tasks/task-3, #/runs, #/compare?ids=…, #/models/NAME, #/labeling/NAME,
// #/alerts, #/signin).  Every page is a function (main, params) that fills
// main and may return a function that stops what it started (polling, a
// WebSocket).
import {h, fill, problem} from "./dom.js";
import {session, loadSession, signOut} from "./api.js";
import {signinPage} from "./signin.js";
import {tasksPage} from "./tasks.js";
import {taskPage} from "./task.js";
import {runsPage, comparePage} from "./runs.js";
import {modelsPage, modelPage} from "./models.js";
import {alertsPage} from "./alerts.js";
import {labelingPage, labelingProjectPage} from "./labeling.js";

// The sections in the navigation.  Datasets (a later issue) join here as
// a {href, label, match} entry, with its routes below.
const SECTIONS = [
	{href: "#/tasks", label: "Tasks", match: /^tasks/},
	{href: "#/runs", label: "Runs", match: /^(runs|compare)/},
	{href: "#/models", label: "Models", match: /^models/},
	{href: "#/labeling", label: "Labeling", match: /^labeling/},
	{href: "#/alerts", label: "Alerts", match: /^alerts/},
];

// pattern → page; {name} segments become params (decoded)
const ROUTES = [
	["signin", signinPage],
	["tasks", tasksPage],
	["tasks/{id}", taskPage],
	["runs", runsPage],
	["compare", comparePage],
	["models", modelsPage],
	["models/{name}", modelPage],
	["labeling", labelingPage],
	["labeling/{name}", labelingProjectPage],
	["alerts", alertsPage],
];

const main = document.getElementById("main");
let stop = null;

function parseHash() {
	const raw = location.hash.replace(/^#\/?/, "");
	const q = raw.indexOf("?");
	const path = q < 0 ? raw : raw.slice(0, q);
	const query = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
	return {path, query};
}

function findRoute(path) {
	const parts = path.split("/").filter(Boolean);
	for (const [pattern, page] of ROUTES) {
		const pp = pattern.split("/");
		if (pp.length !== parts.length)
			continue;
		const params = {};
		let ok = true;
		pp.forEach((p, i) => {
			if (p.startsWith("{"))
				params[p.slice(1, -1)] = decodeURIComponent(parts[i]);
			else if (p !== parts[i])
				ok = false;
		});
		if (ok)
			return {page, params};
	}
	return null;
}

function renderNav(path) {
	const nav = document.getElementById("nav");
	fill(nav, session.current ? SECTIONS.map((s) =>
		h("a", {href: s.href, class: s.match.test(path) ? "here" : null,
			"aria-current": s.match.test(path) ? "page" : null}, s.label)) : []);
	const who = document.getElementById("who");
	if (!session.current) {
		fill(who);
		return;
	}
	const c = session.current;
	fill(who,
		h("span", {class: "user", id: "who-user"}, c.user),
		" ",
		h("span", {class: `role role-${c.role}`, id: "who-role"}, c.role),
		session.open ? h("span", {class: "muted"}, c.via === "none" ? " (no sign-in on this loomd)" :
			c.via === "socket" ? " (by the Unix socket)" : "") :
			h("button", {type: "button", id: "signout", class: "link", onclick: async () => {
				await signOut().catch(() => {});
				location.hash = "#/signin";
			}}, "Sign out"));
}

async function route() {
	if (stop) {
		try {
			stop();
		} catch {
			// a page's cleanup never blocks the next page
		}
		stop = null;
	}
	let {path, query} = parseHash();
	if (path === "")
		path = "tasks";
	if (!session.current && path !== "signin") {
		location.replace(`#/signin?next=${encodeURIComponent(location.hash || "#/tasks")}`);
		return;
	}
	renderNav(path);
	const r = findRoute(path);
	document.body.dataset.page = r ? path.split("/")[0] : "unknown";
	if (!r) {
		fill(main, h("h1", {}, "Not found"), h("p", {}, "There is no page here. ",
			h("a", {href: "#/tasks"}, "See the tasks.")));
		return;
	}
	try {
		stop = await r.page(main, r.params, query, {refreshSession: renderNav.bind(null, path)}) || null;
	} catch (e) {
		fill(main, problem(e));
	}
}

window.addEventListener("hashchange", route);
window.addEventListener("loom-unauthorized", () => {
	session.current = null;
	if (!location.hash.startsWith("#/signin"))
		location.hash = `#/signin?next=${encodeURIComponent(location.hash)}`;
});

(async () => {
	try {
		await loadSession();
	} catch (e) {
		fill(main, problem(e));
		return;
	}
	route();
})();
