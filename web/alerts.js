// Alerts: the rules (admins write them, with loomctl or the API: their
// actions may run commands) and the alerts they fired, newest first.
import {h, fill, num, when, table} from "./dom.js";
import {get} from "./api.js";

const POLL_MS = 5000;

export async function alertsPage(main) {
	const rulesBox = h("div", {id: "rules"});
	const firedBox = h("div", {id: "fired"});
	fill(main, h("h1", {}, "Alerts"),
		h("section", {class: "card"}, h("h2", {}, "Fired"), firedBox),
		h("section", {class: "card"}, h("h2", {}, "Rules"), rulesBox));
	let alive = true, timer = null;
	const load = async () => {
		const [rules, fired] = await Promise.all([
			get("/api/v1/alerts/rules").catch((e) => {
				if (e.status === 403)
					return {rules: [], hidden: true};
				throw e;
			}),
			get("/api/v1/alerts?limit=100")]);
		if (!alive)
			return;
		fill(rulesBox, rules.rules.length ? table(["Rule", "Enabled", "Condition", "Task", "Actions"],
			rules.rules.map((r) => [r.name || r.id, r.enabled === false ? "no" : "yes",
				r.condition ? [r.condition.kind, r.condition.metric ? ` ${r.condition.metric}` : "",
					r.condition.threshold !== undefined ? ` ${num(r.condition.threshold)}` : ""].join("") : "–",
				r.job || "any", (r.actions || []).map((a) => a.type).join(", ")]), {class: "list"}) :
			h("p", {class: "muted"}, rules.hidden ? "Only admins see the rules." :
				"No alert rules. An admin adds them with loomctl alerts add (docs/alerts.md)."));
		fill(firedBox, fired.alerts.length ? table(["Time", "Rule", "Task", "Message", "Value"],
			fired.alerts.map((a) => [when(a.time || a.at), a.rule || a.rule_id,
				a.task_id ? h("a", {href: `#/tasks/${encodeURIComponent(a.task_id)}`}, a.task_id) : "–",
				a.message || "", a.value !== undefined ? num(a.value) : ""]), {class: "list"}) :
			h("p", {class: "muted"}, "No alert has fired."));
		timer = setTimeout(() => load().catch(() => {}), POLL_MS);
	};
	await load();
	return () => {
		alive = false;
		clearTimeout(timer);
	};
}
