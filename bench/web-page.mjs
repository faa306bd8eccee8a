// bench/web's browser half: open LOOM_URL/#/tasks/LOOM_TASK in headless
// Chromium REPS times (a fresh browser context each, so nothing is cached)
// and print, as JSON, for each load: ms from navigation start to the first
// chart drawn and to the chart of LOOM_METRIC drawn, and how many points
// that chart got.
import {launch} from "../tests/web/lib.mjs";

const URL = process.env.LOOM_URL, TASK = process.env.LOOM_TASK, METRIC = process.env.LOOM_METRIC;
const REPS = Number(process.env.REPS || 5);
const browser = await launch();
const out = [];
try {
	for (let i = 0; i < REPS; i++) {
		const ctx = await browser.createBrowserContext();
		const page = await ctx.newPage();
		await page.setViewport({width: 1280, height: 900});
		await page.goto(`${URL}/#/tasks/${TASK}`, {waitUntil: "domcontentloaded"});
		const h = await page.waitForFunction((m) => {
			const f = document.querySelector(`figure[data-metric="${m}"][data-drawn]`);
			return f && {first: Number(document.body.dataset.firstChartMs), metric: Number(f.dataset.drawnMs),
				points: Number(f.dataset.points)};
		}, {timeout: 60000, polling: 10}, METRIC);
		out.push(await h.jsonValue());
		if (i === 0 && process.env.SHOT)
			await page.screenshot({path: process.env.SHOT});
		await ctx.close();
	}
} finally {
	await browser.close();
}
console.log(JSON.stringify(out));
