// The task list: filters (state, user), paging, and live state by polling.
import {h, fill, when, badge, table, problem} from "./dom.js";
import {get} from "./api.js";

const PAGE = 25;
const POLL_MS = 2000;
export const STATES = ["pending", "running", "paused", "completed", "failed", "cancelled"];

function progressCell(t) {
	const p = typeof t.progress === "number" ? t.progress : (t.progress && t.progress.percentage) || 0;
	return h("span", {class: "progress"}, h("progress", {max: 100, value: p}), ` ${p.toFixed(0)}%`);
}

export async function tasksPage(main, params, query) {
	const status = query.get("status") || "";
	const user = query.get("user") || "";
	const offset = Math.max(0, parseInt(query.get("offset") || "0", 10) || 0);

	const link = (o) => {
		const q = new URLSearchParams();
		if (o.status)
			q.set("status", o.status);
		if (o.user)
			q.set("user", o.user);
		if (o.offset)
			q.set("offset", String(o.offset));
		const s = q.toString();
		return `#/tasks${s ? "?" + s : ""}`;
	};
	const stateSel = h("select", {id: "filter-status", name: "status"},
		h("option", {value: ""}, "any state"),
		STATES.map((s) => h("option", {value: s, selected: s === status}, s)));
	const userIn = h("input", {id: "filter-user", name: "user", value: user, placeholder: "user", size: 12});
	const form = h("form", {class: "filters", onsubmit: (e) => {
		e.preventDefault();
		location.hash = link({status: stateSel.value, user: userIn.value.trim(), offset: 0});
	}},
	h("label", {}, "State ", stateSel), " ",
	h("label", {}, "User ", userIn), " ",
	h("button", {type: "submit"}, "Filter"));
	stateSel.addEventListener("change", () => form.requestSubmit());

	const body = h("div", {id: "task-table"});
	const pager = h("nav", {class: "pager", "aria-label": "Pages"});
	fill(main, h("h1", {}, "Training tasks"), form, body, pager);

	let timer = null, alive = true;
	const load = async () => {
		const q = new URLSearchParams({limit: String(PAGE), offset: String(offset)});
		if (status)
			q.set("status", status);
		if (user)
			q.set("user", user);
		try {
			const r = await get(`/api/v1/training/tasks?${q}`);
			if (!alive)
				return;
			fill(body, r.tasks.length ? table(["Task", "Name", "State", "Progress", "User", "Created"],
				r.tasks.map((t) => h("tr", {dataset: {task: t.task_id, status: t.status}},
					h("td", {}, h("a", {href: `#/tasks/${encodeURIComponent(t.task_id)}`}, t.task_id)),
					h("td", {}, t.name || "–"),
					h("td", {}, badge(t.status)),
					h("td", {}, progressCell(t)),
					h("td", {}, t.user || "–"),
					h("td", {}, when(t.created_at)))), {class: "list"}) :
				h("p", {class: "muted"}, status || user ? "No task matches these filters." :
					"No tasks yet. Submit one with loomctl submit JOB.conf --start."));
			const last = Math.min(r.total, offset + r.tasks.length);
			fill(pager,
				offset > 0 ? h("a", {href: link({status, user, offset: Math.max(0, offset - PAGE)}), id: "prev"}, "← Newer") : null,
				h("span", {class: "muted"}, r.total ? ` ${offset + 1}–${last} of ${r.total} ` : ""),
				last < r.total ? h("a", {href: link({status, user, offset: offset + PAGE}), id: "next"}, "Older →") : null);
		} catch (e) {
			if (alive)
				fill(body, problem(e));
		}
		if (alive)
			timer = setTimeout(load, POLL_MS);
	};
	await load();
	return () => {
		alive = false;
		clearTimeout(timer);
	};
}
