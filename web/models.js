// The model registry: models, a model's versions with their metrics (the
// headline ones when the registry names them), tags and aliases; promote a
// version to an alias, roll an alias back; the deployment rule, its
// decisions, and the versions waiting for approval (docs/registry.md).
import {h, fill, num, when, table, problem} from "./dom.js";
import {api, get, post, seg, canWrite} from "./api.js";

export async function modelsPage(main) {
	const r = await get("/api/v1/models");
	fill(main, h("h1", {}, "Models"),
		r.models.length ? table(["Model", "Versions", "Latest", "Aliases", "Updated"],
			r.models.map((m) => h("tr", {dataset: {model: m.name}},
				h("td", {}, h("a", {href: `#/models/${encodeURIComponent(m.name)}`}, m.name)),
				h("td", {}, num(m.versions)),
				h("td", {}, `v${m.latest_version}`),
				h("td", {}, Object.entries(m.aliases || {}).map(([a, v]) => h("span", {class: "tag alias"}, `${a} → v${v}`))),
				h("td", {}, when(m.updated_at)))), {class: "list"}) :
			h("p", {class: "muted"}, "No models yet: a completed training task registers a version of the model named after it."));
}

// The metric names to show as columns: the versions' headline lists when
// present, else every metric (val_ before test_, by name).
function columns(versions) {
	const head = [];
	for (const v of versions)
		for (const n of Array.isArray(v.headline) ? v.headline : [])
			if (!head.includes(n))
				head.push(n);
	if (head.length)
		return {names: head, headline: true};
	const all = new Set();
	for (const v of versions)
		for (const n of Object.keys(v.metrics || {}))
			all.add(n);
	return {names: [...all].sort(), headline: false};
}

// A version's tags: its own ones, and the best- tags of the metrics shown;
// the other best- tags (per class, per cell …) as a count, listed on hover.
function tagCells(tags, shown) {
	const best = tags.filter((t) => t.startsWith("best-"));
	const named = best.filter((t) => shown.includes(t.slice(5)));
	const rest = best.filter((t) => !named.includes(t));
	return [
		tags.filter((t) => !t.startsWith("best-")).map((t) => h("span", {class: "tag"}, t)),
		named.map((t) => h("span", {class: "tag best"}, t)),
		rest.length ? h("span", {class: "tag more", title: rest.join(", ")}, `+${rest.length} best-`) : null,
	];
}

// The rule in words: "holdout_accuracy, higher is better, by more than 0 →
// production, with approval".
function ruleText(r) {
	return `${r.metric} (${r.higher_is_better ? "higher" : "lower"} is better) by more than ${num(r.better_by)} → ${r.alias}` +
		(r.approval ? ", with approval" : "");
}

// The deployment rule's card: the rule, a form to set it (write access),
// and its decisions, newest first.
function deployCard(m, decisions, write, path, act) {
	const r = m.deploy;
	const metric = h("input", {id: "deploy-metric", value: r ? r.metric : "holdout_loss", size: 18, "aria-label": "metric"});
	const by = h("input", {id: "deploy-better-by", value: r ? String(r.better_by) : "0", size: 6, "aria-label": "better by",
		inputmode: "decimal"});
	const alias = h("input", {id: "deploy-alias", value: r ? r.alias : "production", size: 12, "aria-label": "alias",
		pattern: "[a-z][a-z0-9_-]*"});
	const approval = h("input", {id: "deploy-approval", type: "checkbox", checked: !!(r && r.approval)});
	return h("section", {class: "card", id: "deploy"}, h("h2", {}, "Deployment rule"),
		h("p", {id: "deploy-rule", class: r ? "" : "muted"}, r ? ruleText(r) :
			"No rule: new versions are promoted by hand."),
		write ? h("p", {class: "controls"},
			h("label", {}, "Metric ", metric), " ", h("label", {}, "better by ", by), " ",
			h("label", {}, "alias ", alias), " ", h("label", {}, approval, " approval"), " ",
			h("button", {type: "button", id: "deploy-save", onclick: () => act((x) => `rule set: ${ruleText(x)}`,
				() => api("PUT", `${path}/deploy`, {metric: metric.value.trim(), better_by: Number(by.value),
					alias: alias.value.trim(), approval: approval.checked}))}, r ? "Change rule" : "Set rule"),
			r ? [" ", h("button", {type: "button", id: "deploy-delete", onclick: () => act(() => "rule deleted",
				() => api("DELETE", `${path}/deploy`))}, "Delete rule")] : null) : null,
		decisions.length ? h("div", {class: "scroll"}, table(["When", "Version", "Alias", "Decision", "By", "Reason"],
			decisions.map((d) => h("tr", {dataset: {decision: String(d.id), action: d.action}},
				h("td", {}, when(d.at)), h("td", {}, `v${d.version}`), h("td", {}, d.alias),
				h("td", {}, h("span", {class: `badge deploy-${d.action}`}, d.action.replace("_", " "))),
				h("td", {}, d.user),
				h("td", {}, d.reason, d.approved_by ? ` (approved by ${d.approved_by})` : ""))),
			{class: "list", id: "decisions"})) :
			(r ? h("p", {class: "muted"}, "No decisions yet: the rule judges the next version.") : null));
}

export async function modelPage(main, {name}) {
	const path = `/api/v1/models/${seg(name)}`;
	const msg = h("div", {class: "msg", id: "model-msg"});
	const body = h("div");
	fill(main, h("p", {class: "crumbs"}, h("a", {href: "#/models"}, "Models"), " / ", name),
		h("h1", {}, name), msg, body);

	const act = async (what, fn) => {
		fill(msg);
		for (const b of main.querySelectorAll("button"))
			b.disabled = true;
		try {
			const r = await fn();
			fill(msg, h("p", {class: "ok", role: "status"}, what(r)));
		} catch (e) {
			fill(msg, problem(e));
		}
		await render();
	};

	const render = async () => {
		const [m, dec] = await Promise.all([get(path), get(`${path}/deploy/decisions`)]);
		const write = canWrite();
		const aliases = Object.entries(m.aliases || {});
		const cols = columns(m.versions);
		const aliasIn = h("input", {id: "alias-name", value: "production", size: 14, "aria-label": "alias",
			pattern: "[a-z][a-z0-9_-]*"});
		fill(body,
			h("section", {class: "card"}, h("h2", {}, "Aliases"),
				aliases.length ? table(["Alias", "Version", ""], aliases.map(([a, v]) => h("tr", {dataset: {alias: a}},
					h("td", {}, a), h("td", {}, `v${v}`),
					h("td", {}, write ? h("button", {type: "button", class: "rollback", dataset: {alias: a},
						onclick: () => act((r) => `${a} rolled back to v${r.version}`,
							() => post(`${path}/aliases/${seg(a)}/rollback`))}, "Roll back") : null))), {class: "list", id: "aliases"}) :
					h("p", {class: "muted"}, "No aliases yet.", write ? " Promote a version below." : "")),
			deployCard(m, dec.decisions || [], write, path, act),
			h("section", {class: "card"}, h("h2", {}, "Versions"),
				write ? h("p", {class: "controls"}, h("label", {}, "Promote to alias ", aliasIn)) : null,
				h("p", {class: "muted"}, cols.headline ? "Headline metrics of each version." : "Metrics of each version."),
				h("div", {class: "scroll"}, table(["Version", "Task", "Created", "Aliases", "", ...cols.names, "Tags"],
					m.versions.map((v) => h("tr", {dataset: {version: String(v.version)}},
						h("td", {}, `v${v.version}`),
						h("td", {}, v.task_id ? h("a", {href: `#/tasks/${encodeURIComponent(v.task_id)}`}, v.task_id) : "–"),
						h("td", {}, when(v.created_at)),
						h("td", {}, (v.aliases || []).map((a) => h("span", {class: "tag alias"}, a)),
							v.pending_approval ? h("span", {class: "tag pending"}, "pending approval") : null),
						h("td", {}, write ? h("button", {type: "button", class: "promote", dataset: {version: String(v.version)},
							onclick: () => {
								const alias = aliasIn.value.trim();
								act((r) => `${alias} now points at v${r.version}`,
									() => post(`${path}/aliases/${seg(alias)}`, {version: v.version}));
							}}, "Promote") : null,
							write && v.pending_approval ? [" ", h("button", {type: "button", class: "approve",
								dataset: {version: String(v.version)},
								onclick: () => act((r) => `approved: ${r.move.alias} now points at v${r.move.version}`,
									() => post(`${path}/versions/${v.version}/approve`))}, "Approve")] : null),
						cols.names.map((n) => h("td", {class: "n"}, num((v.metrics || {})[n]))),
						h("td", {}, tagCells(v.tags || [], cols.names)))), {class: "list", id: "versions"}))));
	};
	await render();
}
