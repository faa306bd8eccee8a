// The REST API, as the pages use it: JSON in and out, the session cookie
// sent by the browser (same origin), errors as ApiError with the server's
// message.  A 401 sends the user to the sign-in page.

export class ApiError extends Error {
	constructor(status, code, message) {
		super(message || `HTTP ${status}`);
		this.status = status;
		this.code = code;
	}
}

export async function api(method, path, body) {
	const opt = {method, credentials: "same-origin", cache: "no-store", headers: {}};
	if (body !== undefined) {
		opt.headers["Content-Type"] = "application/json";
		opt.body = JSON.stringify(body);
	}
	let res;
	try {
		res = await fetch(path, opt);
	} catch (e) {
		throw new ApiError(0, "network", `loomd did not answer (${e.message}); is it running?`);
	}
	let doc = null;
	const text = await res.text();
	if (text) {
		try {
			doc = JSON.parse(text);
		} catch {
			doc = null;
		}
	}
	if (!res.ok) {
		const e = doc && doc.error ? doc.error : {};
		const err = new ApiError(res.status, e.code || "error", e.message || `${method} ${path}: HTTP ${res.status}`);
		if (res.status === 401 && !path.startsWith("/api/v1/session"))
			window.dispatchEvent(new CustomEvent("loom-unauthorized"));
		throw err;
	}
	return doc;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

// Who the page acts as: {user, role, exec, via}, or null before sign-in.
export const session = {current: null, open: false};

// Ask loomd who we are.  A loomd without authentication (no session
// route, auth = "none") serves everyone as its local admin.
export async function loadSession() {
	try {
		session.current = await get("/api/v1/session");
		// signed in by the page's cookie, or otherwise: auth = "none", the
		// Unix socket's uid behind a local proxy, a proxy's bearer token
		session.open = session.current.via !== "cookie";
	} catch (e) {
		if (e.status === 404) {
			session.current = {user: "local", role: "admin", exec: true, via: "none"};
			session.open = true;
		} else if (e.status === 401) {
			session.current = null;
		} else {
			throw e;
		}
	}
	return session.current;
}

export async function signIn(token) {
	await post("/api/v1/session", {token});
	return loadSession();
}

export async function signOut() {
	try {
		await api("DELETE", "/api/v1/session");
	} finally {
		session.current = null;
	}
}

// May the signed-in user change things (submit, pause, promote …)?  A
// viewer may not; the server checks again whatever the page shows.
export function canWrite() {
	const r = session.current && session.current.role;
	return r === "admin" || r === "user";
}

export function isAdmin() {
	return session.current && session.current.role === "admin";
}

// Path segments percent-encoded ("temps a" → "temps%20a").
export function seg(s) {
	return encodeURIComponent(String(s));
}
