// The labeling-confirmation page in a real browser
// (tests/integration/labeling-web.sh starts loomd with a labeling project
// LOOM_PROJECT whose first round is open, owned by alice and shared with
// bob for writing, with carol and vera for reading; vera is a viewer):
// - the project list shows the project and its counts;
// - alice and bob, each in a browser context of their own, start reviewing
//   and decide LOOM_DECISIONS items in turn with the keyboard: alice
//   confirms (Enter or c) and flags one with a note, bob corrects to
//   another class by its digit key (once by clicking the class), some are
//   skipped; each decision's answer brings the next item, shown without a
//   second request; the two never hold the same item at once; then alice
//   confirms what is left to her until the page says why there is none;
// - the time from each decision's key press to the next item drawn (the
//   page's data-decision-ms) is printed as p50/p99, never asserted;
// - carol (a read share) and vera (a viewer) see the project without a
//   decision button, and their forged requests are answered 403;
// - no page error, console error or CSP violation.
// What each page decided is written to LOOM_LABELING_OUT (JSON) for the
// shell test to compare with what loomd stored.  Screenshots:
// $LOOM_WEB_SHOTS/labeling-*.png.
import {writeFileSync} from "node:fs";
import {URL, ok, fail, launch, watchedPage, allow, noProblems, shot, until} from "./lib.mjs";

const PROJECT = process.env.LOOM_PROJECT || "weather-review";
const DECISIONS = Number(process.env.LOOM_DECISIONS || 24);
const OUT = process.env.LOOM_LABELING_OUT;
const TOKENS = {
	alice: process.env.LOOM_ALICE_TOKEN,
	bob: process.env.LOOM_BOB_TOKEN,
	carol: process.env.LOOM_CAROL_TOKEN,
	vera: process.env.LOOM_VIEWER_TOKEN,
};
for (const [who, t] of Object.entries(TOKENS))
	if (!t)
		fail(`no token for ${who} (LOOM_${who === "vera" ? "VIEWER" : who.toUpperCase()}_TOKEN)`);
const projectUrl = `${URL}/#/labeling/${encodeURIComponent(PROJECT)}`;

async function signIn(browser, who) {
	const ctx = await browser.createBrowserContext();
	const page = await watchedPage(ctx);
	allow(page, /^401 .*\/api\/v1\/session$/);
	await page.goto(`${URL}/`, {waitUntil: "domcontentloaded"});
	await until(page, () => document.querySelector("#token"), `the sign-in page for ${who}`);
	await page.type("#token", TOKENS[who]);
	await page.click("#signin");
	await until(page, () => document.querySelector("#who-user"), `${who} signed in`);
	const user = await page.$eval("#who-user", (e) => e.textContent);
	if (user !== who)
		fail(`signed in with ${who}'s token, the page says ${user}`);
	return page;
}

// What the review screen shows now.
const state = (page) => page.evaluate(() => {
	const r = document.querySelector("#review");
	return {
		item: r.dataset.item ? Number(r.dataset.item) : null,
		predicted: r.dataset.predicted,
		task: r.dataset.task,
		decisions: Number(r.dataset.decisions),
		ms: Number(r.dataset.decisionMs),
		net: Number(r.dataset.decisionNetMs),
		classes: [...document.querySelectorAll("#classes button.choice")].map((b) => b.dataset.class),
		empty: r.dataset.empty === "1",
		why: document.querySelector("#why-none")?.textContent || null,
		problem: document.querySelector("#review .problem")?.textContent || null,
		counter: document.querySelector("#session-count").textContent,
		focus: document.activeElement ? document.activeElement.id || document.activeElement.tagName : null,
	};
});

const quantile = (xs, q) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

const browser = await launch();
try {
	const pages = {alice: await signIn(browser, "alice"), bob: await signIn(browser, "bob")};
	const A = pages.alice;

	// the list of projects, with the round's items queued
	await A.goto(`${URL}/#/labeling`);
	await until(A, (p) => document.querySelector(`tr[data-project="${p}"]`), "the project in the labeling list", 30000, PROJECT);
	const listed = await A.$eval(`tr[data-project="${PROJECT}"]`, (tr) => Object.fromEntries(
		[...tr.querySelectorAll("td[data-count]")].map((td) => [td.dataset.count, Number(td.textContent.replace(/,/g, ""))])));
	if (!(listed.queued >= DECISIONS) || listed.total !== listed.queued + listed.leased + listed.done + listed.flagged)
		fail(`the list's counts: ${JSON.stringify(listed)} (want at least ${DECISIONS} queued)`);
	if (!(await A.$eval("#nav a.here", (a) => a.textContent)).includes("Labeling"))
		fail("the navigation does not mark Labeling");
	await shot(A, "labeling-list");
	ok(`the labeling list shows ${PROJECT}: ${JSON.stringify(listed)}`);

	// both start: each gets an item of their own
	for (const who of ["alice", "bob"]) {
		const p = pages[who];
		await p.bringToFront();
		await p.goto(projectUrl);
		await until(p, () => document.querySelector("#start"), `${who}'s Start button`);
		await p.click("#start");
		await until(p, () => document.querySelector("#review").dataset.item &&
			document.querySelector("#item-chart").dataset.drawn === "1", `${who}'s first item, plotted`);
	}
	const first = {alice: await state(A), bob: await state(pages.bob)};
	if (first.alice.item === first.bob.item)
		fail(`alice and bob were both given item ${first.alice.item}`);
	if (first.alice.task !== "classification" || first.alice.classes.length < 2 ||
		!first.alice.classes.includes(first.alice.predicted))
		fail(`alice's item: ${JSON.stringify(first.alice)}`);
	const head = await A.evaluate(() => ({head: document.querySelector("#item-head").textContent,
		why: document.querySelector("#item-why").textContent, lease: document.querySelector("#lease").textContent,
		predicted: document.querySelectorAll("#classes li.predicted").length,
		legend: [...document.querySelectorAll("#item-legend li")].map((l) => l.textContent)}));
	if (!/rank \d+/.test(head.head) || !/round 1/.test(head.head) || !/margin/.test(head.why) ||
		!/lease: \d+:\d\d left/.test(head.lease) || head.predicted !== 1 || head.legend.length < 2)
		fail(`the item's head, why, lease, marked class or legend: ${JSON.stringify(head)}`);
	await shot(A, "labeling-item");
	ok(`alice has item ${first.alice.item}, bob item ${first.bob.item}: plotted (${head.legend.join(", ")}), ` +
		`"${head.why}", ${head.lease}, the predicted class marked`);

	// the decisions, in turn
	const log = [];
	let clicked = false, flagged = false;
	for (let i = 0; i < DECISIONS; i++) {
		const who = i % 2 ? "bob" : "alice";
		const p = pages[who];
		await p.bringToFront();
		const s = await state(p);
		if (s.item === null)
			fail(`${who} has no item to decide (decision ${i + 1}): ${s.why || s.problem}`);
		let action, label = null, how;
		if (i % 7 === 5) {
			action = "skip";
			how = "s";
			await p.keyboard.press("s");
		} else if (who === "alice" && !flagged && i >= 4) {
			action = "flag";
			how = "f, a note, Enter";
			flagged = true;
			await p.keyboard.press("f");
			await until(p, () => document.activeElement && document.activeElement.id === "flag-note", "the flag's note, focused");
			await p.keyboard.type("the wind reads high for a sunny day");
			await p.keyboard.press("Enter");
		} else if (who === "alice") {
			action = "confirm";
			label = s.predicted;
			how = i % 4 === 0 ? "Enter" : "c";
			await p.keyboard.press(how);
		} else {
			action = "correct";
			const idx = s.classes.findIndex((c, k) => c !== s.predicted && k < 9);
			label = s.classes[idx];
			if (!clicked) {
				how = "a click";
				clicked = true;
				await p.click(`#classes button.choice[data-class="${label}"]`);
			} else {
				how = String(idx + 1);
				await p.keyboard.press(how);
			}
		}
		await until(p, (n) => Number(document.querySelector("#review").dataset.decisions) === n,
			`${who}'s decision ${i + 1} (${action} of item ${s.item} by ${how})`, 30000, s.decisions + 1);
		const after = await state(p);
		if (after.problem)
			fail(`${who}'s ${action} of item ${s.item}: ${after.problem}`);
		if (!new RegExp(`^${after.decisions} decided in this session`).test(after.counter))
			fail(`${who}'s counter reads "${after.counter}" after ${after.decisions} decisions`);
		log.push({phase: "turns", user: who, item: s.item, action, label, key: how, ms: after.ms, net: after.net,
			next: after.item});
		if (after.empty)
			fail(`${who} has no item left after ${i + 1} decisions: "${after.why}"`);
		if (after.focus !== "review")
			fail(`after ${who}'s ${action} the keyboard focus is on ${after.focus}, not the review`);
		const other = await state(pages[who === "alice" ? "bob" : "alice"]);
		if (other.item === after.item)
			fail(`after decision ${i + 1} alice and bob both hold item ${after.item}`);
	}
	if (log.length < DECISIONS)
		fail(`only ${log.length} of ${DECISIONS} decisions were made`);


	const by = (a) => log.filter((d) => d.action === a).length;
	ok(`${log.length} decisions in turn through the page by keyboard (and one click): ${by("confirm")} confirmed, ` +
		`${by("correct")} corrected, ${by("skip")} skipped, ${by("flag")} flagged; the next item shown from each answer`);
	await shot(pages.bob, "labeling-after");

	// alice confirms what is left to her, until the page says why there is
	// no more: what bob holds and what she skipped are not hers
	let why = null;
	for (let n = 0; n < 200 && why === null; n++) {
		await A.bringToFront();
		const s = await state(A);
		if (s.item === null)
			fail(`alice has no item and no why: ${JSON.stringify(s)}`);
		await A.keyboard.press("c");
		await until(A, (k) => Number(document.querySelector("#review").dataset.decisions) === k,
			`alice's confirmation of item ${s.item}`, 30000, s.decisions + 1);
		const after = await state(A);
		log.push({phase: "rest", user: "alice", item: s.item, action: "confirm", label: s.predicted, key: "c",
			ms: after.ms, net: after.net, next: after.item});
		if (after.empty)
			why = after.why;
	}
	if (!/no items left to review/.test(why || ""))
		fail(`when alice has confirmed what is left, the page says "${why}"`);
	if (await A.$eval("#item", (e) => !e.hidden))
		fail("with no item left, the item is still shown");
	await shot(A, "labeling-none-left");
	ok(`alice confirmed the rest until the page said why there is none: "${why}"`);

	const ms = log.map((d) => d.ms), net = log.map((d) => d.net);
	const held = {alice: (await state(A)).item, bob: (await state(pages.bob)).item};
	if (ms.some((v) => !Number.isFinite(v)))
		fail(`a decision without its time: ${JSON.stringify(ms)}`);
	console.log(`# key press to the next item drawn over ${ms.length} decisions: p50 ${quantile(ms, 0.5).toFixed(1)} ms, ` +
		`p99 ${quantile(ms, 0.99).toFixed(1)} ms (the decision's request alone: p50 ${quantile(net, 0.5).toFixed(1)} ms, ` +
		`p99 ${quantile(net, 0.99).toFixed(1)} ms); not asserted, bench/labeling-page records it`);
	if (OUT)
		writeFileSync(OUT, JSON.stringify({decisions: log, held}, null, 1));
	noProblems(A, "alice's pages");
	noProblems(pages.bob, "bob's pages");
	ok("no page error, console error or CSP violation on alice's and bob's pages");

	// a read share and a viewer: the project, no decision; forged ones 403
	for (const who of ["carol", "vera"]) {
		const p = await signIn(browser, who);
		await p.goto(projectUrl);
		await until(p, () => document.querySelector("#read-only") && document.querySelector("#project-counts li"),
			`${who}'s read-only project page`);
		for (const sel of ["#start", "#confirm", "#skip", "#flag", "button.choice"])
			if (await p.$(sel) && await p.$eval(sel, (e) => !e.closest("[hidden]")))
				fail(`${who} is offered ${sel}`);
		await shot(p, `labeling-${who === "vera" ? "viewer" : "read-share"}`);
		allow(p, /^403 /);
		const forged = await p.evaluate(async (name, id) => {
			const a = await fetch(`/api/v1/labeling/projects/${encodeURIComponent(name)}/next`, {method: "POST"});
			const b = await fetch(`/api/v1/labeling/items/${id}/decision`, {method: "POST",
				headers: {"Content-Type": "application/json"}, body: '{"action": "confirm"}'});
			return [a.status, b.status];
		}, PROJECT, held.bob);
		if (forged[0] !== 403 || forged[1] !== 403)
			fail(`${who}'s forged next and decision: HTTP ${forged.join(", ")}`);
		noProblems(p, `${who}'s page`);
		ok(`${who} sees the project without a decision button; a forged lease and decision: 403`);
	}
} finally {
	await browser.close();
}
