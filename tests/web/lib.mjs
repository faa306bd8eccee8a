// Shared by the browser tests (tests/web/*.mjs, run by
// tests/integration/web.sh) and bench/web: Debian's chromium, headless,
// driven by puppeteer-core from tests/node; console errors, page errors and
// Content-Security-Policy violations collected so a test can fail on them;
// screenshots under $LOOM_WEB_SHOTS.
import {createRequire} from "node:module";
import {mkdirSync} from "node:fs";
import {join} from "node:path";

const modules = process.env.LOOM_NODE_MODULES;
if (!modules)
	throw new Error("LOOM_NODE_MODULES is not set (tests/node/node_modules)");
const require = createRequire(join(modules, "x.js"));
const puppeteer = require("puppeteer-core");

export const URL = process.env.LOOM_URL;
export const SHOTS = process.env.LOOM_WEB_SHOTS;

export function ok(msg) {
	console.log(`ok - ${msg}`);
}

export function fail(msg) {
	throw new Error(msg);
}

export async function launch() {
	return puppeteer.launch({
		executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
		headless: true,
		args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--no-default-browser-check"],
	});
}

// A page that records what went wrong in it: problems(page) lists them.
// A 401 or 404 a page expects (the session before signing in) is no
// problem; say which with allow(page, /regexp/).
const recorded = new WeakMap();
export async function watchedPage(context) {
	const page = await context.newPage();
	const list = [];
	recorded.set(page, {list, allow: []});
	await page.setViewport({width: 1280, height: 900});
	page.on("pageerror", (e) => list.push(`page error: ${e.message}`));
	page.on("console", (m) => {
		// a failed load is reported by the response handler below, which
		// knows the expected ones
		if (m.type() === "error" && !m.text().startsWith("Failed to load resource"))
			list.push(`console error: ${m.text()}`);
	});
	page.on("response", (r) => {
		const rec = recorded.get(page);
		if (r.status() >= 400 && !rec.allow.some((re) => re.test(`${r.status()} ${r.url()}`)))
			list.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
	});
	return page;
}

export function allow(page, re) {
	recorded.get(page).allow.push(re);
}

export function problems(page) {
	return recorded.get(page).list;
}

export function noProblems(page, where) {
	const p = problems(page);
	if (p.length)
		fail(`${where}: ${p.join("; ")}`);
}

export async function shot(page, name) {
	if (!SHOTS)
		return;
	mkdirSync(SHOTS, {recursive: true});
	await page.screenshot({path: join(SHOTS, `${name}.png`), fullPage: true});
}

// Deadlines stretch under valgrind (tests/integration/web.sh sets it).
const SCALE = Number(process.env.LOOM_WEB_TIMEOUT_SCALE || 1);

// Wait until fn (run in the page) returns a truthy value; returns it.
export async function until(page, fn, what, timeoutMs = 30000, ...args) {
	timeoutMs *= SCALE;
	try {
		const h = await page.waitForFunction(fn, {timeout: timeoutMs, polling: 100}, ...args);
		return await h.jsonValue();
	} catch (e) {
		fail(`${what}: not seen within ${timeoutMs / 1000}s (${e.message.split("\n")[0]})`);
	}
}
