// The model a task kept, and for model.kind = "auto" the candidates it
// compared: each one's validation loss and test MAE with the kept one
// marked in words.  The page has no metrics.json; it reads the run's
// tracked final metrics, which the compute plugin names
// auto/NAME/val_loss, auto/NAME/test_mae … (docs/engine.md), and the
// spec's model.kind from the run's parameters.
import {h, num} from "./dom.js";

// Candidates in the order auto considers them: the simpler first, so a
// tie in the kept one's figures goes to the simpler, as auto's own does.
const ORDER = ["naive", "linear", "transformer", "ensemble"];
const rank = (n) => {
	const i = ORDER.indexOf(n);
	return i < 0 ? ORDER.length : i;
};

// [{name, key, fig: {val_loss, test_mae, …}, members}] from the run's
// metrics, the simpler first.  The averages of the best two and three are
// auto/ensemble_of_2/… and auto/ensemble_of_3/… (name "ensemble", key
// the series' name); an average of k is of the k best single models on
// validation (ties to the simpler, as auto orders them).
export function candidatesOf(metrics) {
	const by = {};
	for (const [k, v] of Object.entries(metrics || {})) {
		const m = /^auto\/([^/]+)\/(.+)$/.exec(k);
		if (m && typeof v === "number")
			(by[m[1]] ||= {})[m[2]] = v;
	}
	const average = (n) => /^ensemble(_of_\d+)?$/.test(n);
	const nameOf = (n) => (average(n) ? "ensemble" : n);
	const names = Object.keys(by).sort((a, b) => rank(nameOf(a)) - rank(nameOf(b)) || a.localeCompare(b));
	const singles = names.filter((n) => !average(n));
	const fin = (n) => Number.isFinite(by[n].val_loss);
	const best = [...singles].sort((a, b) => (fin(b) - fin(a)) || (by[a].val_loss - by[b].val_loss) || (rank(a) - rank(b)));
	return names.map((n) => {
		const k = average(n) ? Number(n.slice("ensemble_of_".length)) : 0;
		return {name: nameOf(n), key: n, fig: by[n], members: k >= 2 ? best.slice(0, k) : null};
	});
}

// The index of the candidate whose test figures are the run's own
// (test_mae, test_loss …: the kept model is the one evaluated on the test
// split), the first (simplest) of equals; -1 when none is.  A run without
// test figures: the lowest validation loss, ties to the earlier (simpler)
// one, which is auto's rule unless model.auto.ensemble is "always".
export function keptOf(cands, metrics, always) {
	const tested = cands.some((c) => Object.keys(c.fig).some((k) => k.startsWith("test_")));
	if (!tested) {
		let best = -1;
		cands.forEach((c, i) => {
			if (Number.isFinite(c.fig.val_loss) && (best < 0 || c.fig.val_loss < cands[best].fig.val_loss))
				best = i;
		});
		return always ? -1 : best;
	}
	return cands.findIndex((c) => {
		const tests = Object.entries(c.fig).filter(([k]) => k.startsWith("test_"));
		return tests.length > 0 && tests.every(([k, v]) => typeof metrics[k] === "number" && metrics[k] === v);
	});
}

// The panel, or null when the run says nothing of its model (a run of
// another compute plugin, or from before model kinds).
export function modelChoice(metrics, params) {
	const asked = params && params.model && typeof params.model.kind === "string" ? params.model.kind : null;
	const cands = candidatesOf(metrics);
	if (!cands.length) {
		if (!asked)
			return null;
		return h("div", {id: "model-choice", dataset: {kind: asked}},
			h("p", {}, "Kept: ", h("strong", {class: "kind"}, asked),
				h("span", {class: "muted"}, " (model.kind named it; no other model was compared)")));
	}
	const always = Boolean(params && params.model && params.model.auto && params.model.auto.ensemble === "always");
	const k = keptOf(cands, metrics, always);
	const kept = k >= 0 ? cands[k].name : null;
	const rows = cands.map((c, i) => h("tr", {class: i === k ? "kept" : null, dataset: {candidate: c.name, key: c.key}},
		h("th", {}, c.name, c.members ? h("small", {class: "muted"}, ` (${c.members.join(" + ")})`) : null),
		h("td", {class: "n"}, num(c.fig.val_loss)),
		h("td", {class: "n"}, num(c.fig.test_mae)),
		h("td", {class: "kept-mark"}, i === k ? "kept" : "")));
	const averages = cands.filter((c) => c.name === "ensemble").length;
	return h("div", {id: "model-choice", dataset: {kind: kept || ""}},
		h("p", {}, "Kept: ", kept ? h("strong", {class: "kind"}, kept) : h("span", {class: "muted"}, "not known"),
			h("span", {class: "muted"}, kept
				? ` (model.kind "${asked || "auto"}": ${always ? "model.auto.ensemble \"always\" keeps the better-validating average" : "chosen on the validation split"} among ${cands.length} candidates)`
				: " (no candidate's test figures are the run's own; the task's HTML report says which was kept)")),
		h("table", {class: "kv candidates"},
			h("thead", {}, h("tr", {}, h("th", {}, "candidate"), h("th", {}, "validation loss"),
				h("th", {}, "test MAE"), h("th", {}, ""))),
			h("tbody", {}, rows)),
		averages ? h("p", {class: "muted"},
			"ensemble (a + b): the equal-weight average of those models, the best on validation.") : null);
}
