// node run-onnx.js MODEL.onnx INPUT.json LOOM.json [TOL]
//
// Runs MODEL.onnx in ONNX Runtime (onnxruntime-node, CPU) on the windows of
// INPUT.json ({"input": [batch][context][channels]}) and compares its
// output with Loom's own predictions (LOOM.json, from loom-worker
// --predict).  An element passes when |onnx − loom| ≤ TOL · max(|loom|,
// scale), scale being the mean |loom| over the whole output (TOL 1e-4).
// Prints the largest absolute and relative differences; exits 1 when any
// element fails or the shapes differ.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
	const [model, inPath, loomPath, tolArg] = process.argv.slice(2);
	if (!loomPath) {
		console.error('usage: node run-onnx.js MODEL.onnx INPUT.json LOOM.json [TOL]');
		process.exit(2);
	}
	const tol = tolArg ? Number(tolArg) : 1e-4;
	const windows = JSON.parse(fs.readFileSync(inPath, 'utf8')).input;
	const loom = JSON.parse(fs.readFileSync(loomPath, 'utf8'));
	const B = windows.length, L = windows[0].length, C = windows[0][0].length;
	const x = new Float32Array(windows.flat(2));
	const session = await ort.InferenceSession.create(model);
	const t0 = process.hrtime.bigint();
	const result = await session.run({input: new ort.Tensor('float32', x, [B, L, C])});
	const ms = Number(process.hrtime.bigint() - t0) / 1e6;
	const out = result.output;
	const want = loom.output.flat(Infinity);

	if (JSON.stringify(out.dims) !== JSON.stringify(loom.shape)) {
		console.error(`shape: onnx [${out.dims}], loom [${loom.shape}]`);
		process.exit(1);
	}
	let scale = 0;
	for (const v of want) scale += Math.abs(v);
	scale /= want.length;
	let maxAbs = 0, maxRel = 0, bad = 0, worst = -1;
	for (let i = 0; i < want.length; i++) {
		const d = Math.abs(out.data[i] - want[i]);
		const rel = d / Math.max(Math.abs(want[i]), scale);
		if (d > maxAbs) maxAbs = d;
		if (rel > maxRel) { maxRel = rel; worst = i; }
		if (!(rel <= tol)) bad++;
	}
	console.log(`onnxruntime-node ${ort.env.versions.node}: ${B} windows, output [${out.dims}] ` +
	            `in ${ms.toFixed(1)} ms; max |diff| ${maxAbs.toExponential(3)}, ` +
	            `max relative ${maxRel.toExponential(3)} (scale ${scale.toPrecision(4)})`);
	if (bad) {
		console.error(`${bad} of ${want.length} values differ by more than ${tol} relative; ` +
		              `worst at ${worst}: onnx ${out.data[worst]}, loom ${want[worst]}`);
		process.exit(1);
	}
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
