// Sign in with an API token (loomctl tokens create): POST /api/v1/session
// turns it into an HttpOnly cookie, so the page's script never keeps it.
import {h, fill, problem} from "./dom.js";
import {session, signIn} from "./api.js";

export async function signinPage(main, params, query) {
	const next = query.get("next");
	const go = () => {
		location.hash = next && next.startsWith("#/") && !next.startsWith("#/signin") ? next : "#/tasks";
	};
	if (session.current && session.open) {
		go();
		return;
	}
	const msg = h("div", {class: "msg"});
	const input = h("input", {type: "password", id: "token", name: "token", autocomplete: "off",
		spellcheck: "false", placeholder: "loom_…", required: true, size: 60});
	const form = h("form", {id: "signin-form", class: "card narrow", onsubmit: async (e) => {
		e.preventDefault();
		fill(msg);
		try {
			await signIn(input.value.trim());
			input.value = "";
			go();
		} catch (err) {
			fill(msg, problem(err.status === 401 || err.status === 400 ?
				new Error("loomd does not know this token, or it has expired or been revoked. " +
					"Create one with: loomctl tokens create") : err));
		}
	}},
	h("h1", {}, "Sign in to Loom"),
	h("label", {for: "token"}, "API token"),
	input,
	h("p", {class: "muted"}, "Make one with ", h("code", {}, "loomctl tokens create"),
		". The page keeps it only as an HttpOnly cookie for this site."),
	h("button", {type: "submit", id: "signin"}, "Sign in"),
	msg);
	fill(main, form);
	input.focus();
}
