// The web UI in a real browser (tests/integration/web.sh starts loomd, a
// long-running task LOOM_TASK and the model LOOM_MODEL with two versions):
// sign in with a token, the task list and its filter, the running task's
// chart growing from the WebSocket, pause and resume from the page, a
// classifier's headline metrics and confusion matrix, the model an auto
// forecast kept with its candidates (and the classifier's named kind),
// runs compared, a version promoted and rolled back from the page, the
// version the deployment rule of LOOM_GATED holds for approval approved
// from the page, alerts;
// then a viewer: no button that changes anything, and a forged request with
// its session answered 403; sign out.  No page may log an error or violate
// its Content-Security-Policy.  A screenshot of each page goes to
// $LOOM_WEB_SHOTS.
import {readFileSync} from "node:fs";
import {URL, ok, fail, launch, watchedPage, allow, noProblems, shot, until} from "./lib.mjs";

const TASK = process.env.LOOM_TASK;
const MODEL = process.env.LOOM_MODEL;
const RUNS = (process.env.LOOM_RUNS || "").split(",");
const CLASSIFIER = process.env.LOOM_CLASSIFIER;
const GATED = process.env.LOOM_GATED; // a model whose v2 waits for approval to canary
const AUTO = process.env.LOOM_AUTO;
const AUTO_METRICS = process.env.LOOM_AUTO_METRICS; // its metrics.json, to check the page against
const ADMIN = process.env.LOOM_ADMIN_TOKEN || "";
const VIEWER = process.env.LOOM_VIEWER_TOKEN || "";
const AUTH = ADMIN !== "";

async function signIn(page, token, who) {
	await page.goto(`${URL}/`, {waitUntil: "domcontentloaded"});
	await until(page, () => location.hash.startsWith("#/signin") && document.querySelector("#token"),
		"the sign-in page for a browser without a session");
	await shot(page, "signin");
	await page.type("#token", "loom_not_a_real_token_0000000000000000000000");
	await page.click("#signin");
	await until(page, () => document.querySelector(".problem"), "the refusal of a wrong token");
	const msg = await page.$eval(".problem", (e) => e.textContent);
	if (!/does not know this token/.test(msg))
		fail(`a wrong token: "${msg}"`);
	await page.$eval("#token", (e) => { e.value = ""; });
	await page.type("#token", token);
	await page.click("#signin");
	await until(page, () => document.querySelector("#who-user") && location.hash.startsWith("#/tasks"),
		`signed in as ${who}`);
	const role = await page.$eval("#who-role", (e) => e.textContent);
	// the token is a cookie the page's script cannot read
	const cookie = await page.evaluate(() => document.cookie);
	if (cookie.includes("loom_"))
		fail(`the session cookie is readable by script: ${cookie}`);
	ok(`signed in as ${who} (${role}) with a token; a wrong token refused; the cookie is HttpOnly`);
	return role;
}

const browser = await launch();
try {
	// ------------------------------------------------------------ admin
	const ctx = await browser.createBrowserContext();
	const page = await watchedPage(ctx);
	if (AUTH) {
		allow(page, /^401 .*\/api\/v1\/session$/);
		const role = await signIn(page, ADMIN, "the admin");
		if (role !== "admin")
			fail(`the admin's role reads "${role}"`);
	} else {
		allow(page, /^404 .*\/api\/v1\/session$/); // a loomd without sign-in
		await page.goto(`${URL}/`, {waitUntil: "domcontentloaded"});
	}

	// the task list: the running task, and the state filter
	await page.goto(`${URL}/#/tasks`);
	await until(page, (t) => document.querySelector(`tr[data-task="${t}"]`), "the task list", 30000, TASK);
	const name = await page.$eval(`tr[data-task="${TASK}"] td:nth-child(2)`, (e) => e.textContent);
	if (!name.includes('<img src=x onerror="document.title=1">') || await page.$("main img"))
		fail(`a task named with markup reads "${name}" in the list, or became an element`);
	await shot(page, "tasks");
	await page.select("#filter-status", "completed");
	await until(page, () => location.hash.includes("status=completed") &&
		document.querySelectorAll("tr[data-task]").length > 0 &&
		[...document.querySelectorAll("tr[data-task]")].every((r) => r.dataset.status === "completed"),
	"the list filtered to completed tasks");
	if (await page.$(`tr[data-task="${TASK}"]`))
		fail(`${TASK}, running, is listed under completed`);
	ok("the task list shows the tasks (a name of markup as text); filtering by state lists only that state");

	// the running task: charts drawn from history, growing from the WebSocket
	await page.goto(`${URL}/#/tasks/${TASK}`);
	await until(page, () => document.querySelector("main").dataset.status === "running", "the task page, running");
	await until(page, () => document.querySelector('figure[data-metric="train_loss"][data-drawn]'),
		"the train_loss chart drawn");
	await until(page, () => document.querySelector("#live.on"), "the monitor WebSocket open");
	const n0 = await page.$eval('figure[data-metric="train_loss"]', (e) => Number(e.dataset.points));
	await until(page, (n) => Number(document.querySelector('figure[data-metric="train_loss"]').dataset.points) > n + 5,
		"the chart growing with live points", 60000, n0);
	const n1 = await page.$eval('figure[data-metric="train_loss"]', (e) => Number(e.dataset.points));
	await until(page, () => document.querySelector("#log").textContent.includes("epoch"), "the log's tail");
	if (await page.$("main img") || !(await page.$eval("main h1", (e) => e.textContent)).includes("<img"))
		fail("the task's name of markup became an element on its page");
	await shot(page, "task-running");
	ok(`the running task's chart grew from ${n0} to ${n1} points over the WebSocket; the log shows`);

	// pause and resume from the page
	await page.click("#pause");
	await until(page, () => document.querySelector("main").dataset.status === "paused" &&
		document.querySelector("#resume"), "the task paused, with a Resume button", 60000);
	if (await page.$("#pause"))
		fail("a paused task still offers Pause");
	await shot(page, "task-paused");
	const pausedAt = await page.$eval("main", (e) => Number(e.dataset.step));
	await page.click("#resume");
	await until(page, () => document.querySelector("main").dataset.status === "running" &&
		document.querySelector("#pause"), "the task running again", 60000);
	await until(page, (s) => Number(document.querySelector("main").dataset.step) > s,
		"progress after the resume", 60000, pausedAt);
	ok(`paused from the page at step ${pausedAt}, resumed, and it went on`);

	// a classifier's page: its headline metrics first, its details as tables
	await page.goto(`${URL}/#/tasks/${CLASSIFIER}`);
	await until(page, () => document.querySelector('figure[data-table="confusion"] table.confusion') &&
		document.querySelector("table.headline"), "the classifier's headline metrics and confusion matrix");
	const cm = await page.evaluate(() => {
		const t = document.querySelector('figure[data-table="confusion"] table');
		return {rows: t.querySelectorAll("tbody tr").length, cols: t.querySelectorAll("thead tr:last-child th").length - 1,
			diag: t.querySelectorAll("td.diag").length,
			headline: [...document.querySelectorAll("table.headline th")].map((e) => e.textContent),
			charts: [...document.querySelectorAll("figure.chart")].map((e) => e.dataset.metric)};
	});
	if (cm.rows < 2 || cm.rows !== cm.cols || cm.diag !== cm.rows)
		fail(`the confusion matrix is not square with its diagonal marked: ${JSON.stringify(cm)}`);
	if (!cm.headline.includes("test_accuracy"))
		fail(`the headline metrics: ${cm.headline}`);
	if (cm.charts.some((n) => n.includes(".")))
		fail(`a detail metric has a chart: ${cm.charts}`);
	// its model.kind = "transformer": the kind, and no candidates
	await until(page, () => document.querySelector("#model-choice"), "the classifier's model");
	const single = await page.evaluate(() => ({kind: document.querySelector("#model-choice").dataset.kind,
		text: document.querySelector("#model-choice").textContent, table: !!document.querySelector("#model-choice table")}));
	if (single.kind !== "transformer" || !single.text.includes("Kept: transformer") || single.table)
		fail(`the classifier's model panel: ${JSON.stringify(single)}`);
	await shot(page, "task-classifier");
	ok(`a classifier's page: headline ${cm.headline.join(", ")}; a ${cm.rows}×${cm.cols} confusion matrix; no chart of a detail; its model "${single.kind}" without candidates`);

	// a forecast of model.kind = "auto" (the default), keeping an average
	// (model.auto.ensemble = "always"): the model it kept among the
	// candidates, each with its validation loss and test MAE, the kept one
	// marked in words; the same figures as the run's tracked ones, the same
	// candidates and choice as its metrics.json
	await page.goto(`${URL}/#/tasks/${AUTO}`);
	await until(page, () => document.querySelector("#model-choice tr.kept"), "the auto forecast's model and candidates");
	const choice = await page.evaluate(() => {
		const box = document.querySelector("#model-choice");
		return {kind: box.dataset.kind, shown: !document.querySelector("#model-card").hidden,
			rows: [...box.querySelectorAll("tbody tr")].map((r) => ({name: r.dataset.candidate, key: r.dataset.key, kept: r.classList.contains("kept"),
				label: r.querySelector("th").textContent, cells: [...r.querySelectorAll("td")].map((c) => c.textContent)}))};
	});
	const run = await page.evaluate(async (t) => {
		const list = await (await fetch(`/api/v1/runs?task=${t}`)).json();
		return (await fetch(`/api/v1/runs/${list.runs[0].id}`)).json();
	}, AUTO);
	const names = choice.rows.map((r) => r.name);
	for (const want of ["transformer", "linear", "naive", "ensemble"])
		if (!names.includes(want))
			fail(`the candidates lack ${want}: ${JSON.stringify(choice)}`);
	// the averages of the best two and three: two rows, each its own series
	if (JSON.stringify(choice.rows.filter((r) => r.name === "ensemble").map((r) => r.key)) !==
		JSON.stringify(["ensemble_of_2", "ensemble_of_3"]))
		fail(`not the two averages: ${JSON.stringify(choice.rows)}`);
	const kept = choice.rows.filter((r) => r.kept);
	if (!choice.shown || kept.length !== 1 || kept[0].cells[2] !== "kept" || kept[0].name !== choice.kind ||
		choice.rows.filter((r) => r.cells[2] === "kept").length !== 1)
		fail(`not exactly one candidate marked kept, in words: ${JSON.stringify(choice)}`);
	const m = run.metrics;
	const fmt = await page.evaluate(async (v) => (await import("/dom.js")).num(v), m.test_mae);
	if (kept[0].cells[1] !== fmt)
		fail(`the kept ${choice.kind}'s test MAE reads ${kept[0].cells[1]}, the run's is ${fmt}`);
	for (const r of choice.rows)
		if (r.cells[0] === "–" || r.cells[1] === "–" || !Number.isFinite(m[`auto/${r.key}/val_loss`]))
			fail(`candidate ${r.name} shows no figures: ${JSON.stringify(r)}`);
	// the same candidates, members and choice as the run's metrics.json
	if (AUTO_METRICS) {
		const doc = JSON.parse(readFileSync(AUTO_METRICS, "utf8"));
		const label = (c) => c.detail && Array.isArray(c.detail.members) ? `${c.name} (${c.detail.members.join(" + ")})` : c.name;
		const want = doc.candidates.map(label).sort(), got = choice.rows.map((r) => r.label).sort();
		if (JSON.stringify(want) !== JSON.stringify(got))
			fail(`the candidates read ${JSON.stringify(got)}, metrics.json has ${JSON.stringify(want)}`);
		const chosen = doc.candidates.find((c) => c.chosen);
		if (label(chosen) !== kept[0].label || doc.model.kind !== choice.kind)
			fail(`the page keeps ${kept[0].label}, metrics.json ${label(chosen)} (${doc.model.kind})`);
	}
	// the candidates' figures are not charted
	if (await page.$('figure.chart[data-metric^="auto/"]'))
		fail("a candidate's figure has a chart");
	await shot(page, "task-auto");
	ok(`an auto forecast's page: kept ${kept[0].label} among ${choice.rows.map((r) => r.label).join(", ")}, one row marked "kept", as metrics.json says; its test MAE the run's`);

	// runs, compared
	await page.goto(`${URL}/#/runs`);
	await until(page, () => document.querySelectorAll("tr[data-run]").length >= 2, "the runs list");
	await shot(page, "runs");
	for (const r of RUNS)
		await page.click(`tr[data-run="${r}"] input[type=checkbox]`);
	await page.click("#compare");
	await until(page, () => location.hash.startsWith("#/compare") && document.querySelector("#compare-metrics td.best"),
		"the comparison with the best values marked");
	await until(page, () => document.querySelector(".charts figure[data-drawn]"), "the comparison's chart");
	await shot(page, "compare");
	ok(`runs ${RUNS.join(" and ")} compared: metrics with the best marked, one chart of both`);

	// the model registry: promote v1, then v2, roll back to v1
	const mpath = `${URL}/#/models/${encodeURIComponent(MODEL)}`;
	await page.goto(`${URL}/#/models`);
	await until(page, (m) => document.querySelector(`tr[data-model="${m}"]`), "the models list", 30000, MODEL);
	await shot(page, "models");
	await page.goto(mpath);
	await until(page, () => document.querySelector('button.promote[data-version="1"]'), "the versions with Promote");
	await page.click('button.promote[data-version="1"]');
	await until(page, () => document.querySelector('#aliases tr[data-alias="production"]')?.textContent.includes("v1"),
		"production → v1");
	await page.click('button.promote[data-version="2"]');
	await until(page, () => document.querySelector('#aliases tr[data-alias="production"]')?.textContent.includes("v2"),
		"production → v2");
	await page.click('button.rollback[data-alias="production"]');
	await until(page, () => document.querySelector('#aliases tr[data-alias="production"]')?.textContent.includes("v1") &&
		document.querySelector("#model-msg .ok"), "production rolled back to v1");
	const alias = await page.evaluate(async (m) =>
		(await fetch(`/api/v1/models/${encodeURIComponent(m)}/aliases/production`)).json(), MODEL);
	if (alias.version !== 1)
		fail(`the API says production is ${JSON.stringify(alias)}`);
	await shot(page, "model");
	ok("promoted v1 then v2 to production from the page, rolled back to v1; the API agrees");

	// the deployment rule: its text, its decisions, v2 pending approval, approved from the page
	await page.goto(`${URL}/#/models/${encodeURIComponent(GATED)}`);
	await until(page, () => document.querySelector('#versions tr[data-version="2"] .tag.pending') &&
		document.querySelector('button.approve[data-version="2"]'), "v2 pending approval with an Approve button");
	const rule = await page.evaluate(() => ({
		text: document.querySelector("#deploy-rule").textContent,
		actions: [...document.querySelectorAll("#decisions tr[data-action]")].map((r) => r.dataset.action),
		reason: document.querySelector('#decisions tr[data-action="pending_approval"]')?.textContent || "",
		others: document.querySelectorAll("button.approve").length}));
	if (!rule.text.includes("test_accuracy") || !rule.text.includes("→ canary, with approval") ||
		rule.actions.join() !== "pending_approval" || !rule.reason.includes("first version for the alias") ||
		rule.others !== 1)
		fail(`the deployment rule's card: ${JSON.stringify(rule)}`);
	await shot(page, "model-deploy");
	await page.click('button.approve[data-version="2"]');
	await until(page, () => document.querySelector("#model-msg .ok")?.textContent.includes("canary now points at v2") &&
		!document.querySelector(".tag.pending") && !document.querySelector("button.approve") &&
		document.querySelector('#aliases tr[data-alias="canary"]')?.textContent.includes("v2"), "v2 approved to canary");
	const canary = await page.evaluate(async (m) => {
		const a = await (await fetch(`/api/v1/models/${encodeURIComponent(m)}/aliases/canary`)).json();
		const d = await (await fetch(`/api/v1/models/${encodeURIComponent(m)}/deploy/decisions`)).json();
		return {version: a.version, actions: d.decisions.map((x) => x.action), by: d.decisions[1].approved_by};
	}, GATED);
	if (canary.version !== 2 || canary.actions.join() !== "promoted,pending_approval" || !canary.by)
		fail(`after approving: ${JSON.stringify(canary)}`);
	ok(`the deployment rule's card and decisions; v2 pending approval approved from the page (by ${canary.by}), canary → v2`);

	await page.goto(`${URL}/#/alerts`);
	await until(page, () => document.querySelector("#fired") && document.querySelector("#rules").childElementCount,
		"the alerts page");
	await shot(page, "alerts");
	ok("the alerts page");
	noProblems(page, "the admin's pages");
	ok("no page error, console error or CSP violation on the admin's pages");

	// ------------------------------------------------------------ viewer
	if (AUTH) {
		const vctx = await browser.createBrowserContext();
		const v = await watchedPage(vctx);
		allow(v, /^401 .*\/api\/v1\/session$/);
		const role = await signIn(v, VIEWER, "a viewer");
		if (role !== "viewer")
			fail(`the viewer's role reads "${role}"`);
		await v.goto(`${URL}/#/tasks/${TASK}`);
		await until(v, () => document.querySelector('figure[data-metric="train_loss"][data-drawn]'),
			"the viewer's task page with its chart");
		for (const b of ["#pause", "#resume", "#cancel"])
			if (await v.$(b))
				fail(`a viewer is offered ${b}`);
		await shot(v, "task-viewer");
		await v.goto(mpath);
		await until(v, () => document.querySelector("#versions tr[data-version]"), "the viewer's model page");
		if (await v.$("button.promote, button.rollback, #alias-name, button.approve, #deploy-save"))
			fail("a viewer is offered promote or roll back");
		await shot(v, "model-viewer");
		ok("a viewer sees the task and the model without any button that changes something");

		// what the page hides, the server refuses: the viewer's session forging a pause
		allow(v, /^403 /);
		const forged = await v.evaluate(async (t) => {
			const r = await fetch(`/api/v1/training/tasks/${t}/pause`, {method: "POST"});
			return {status: r.status, body: await r.text()};
		}, TASK);
		if (forged.status !== 403 || !forged.body.includes("forbidden"))
			fail(`a viewer's forged pause: HTTP ${forged.status} ${forged.body}`);
		const promote = await v.evaluate(async (m) => {
			const r = await fetch(`/api/v1/models/${encodeURIComponent(m)}/aliases/production`, {
				method: "POST", headers: {"Content-Type": "application/json"}, body: '{"version": 2}'});
			return r.status;
		}, MODEL);
		if (promote !== 403)
			fail(`a viewer's forged promote: HTTP ${promote}`);
		ok("the viewer's session forging a pause and a promote: 403 forbidden");

		await v.click("#signout");
		await until(v, () => location.hash.startsWith("#/signin"), "the sign-in page after signing out");
		const after = await v.evaluate(async () => (await fetch("/api/v1/session")).status);
		if (after !== 401)
			fail(`after signing out, GET /api/v1/session is ${after}`);
		ok("sign out: back to the sign-in page, the session gone (401)");
		noProblems(v, "the viewer's pages");
	}
} finally {
	await browser.close();
}
