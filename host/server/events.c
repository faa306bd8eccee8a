/* The observer list (events.h): per kind, the listeners of every module in
 * table order, in a fixed table written by attach before any thread that
 * emits exists.  Emitting reads it without a lock. */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>

#include "host/core/log.h"
#include "events.h"
#include "module.h"

#define MAX_LISTENERS 16

static struct {
	loomi_daemon *d;
	size_t n[LOOMI_EV_KINDS];
	loomi_listener_fn fn[LOOMI_EV_KINDS][MAX_LISTENERS];
	bool attached;
} E;

void
loomi_events_attach(loomi_daemon *d, const loomi_module *const *modules, size_t n)
{
	__atomic_store_n(&E.attached, false, __ATOMIC_RELEASE);
	E.d = d;
	for (int k = 0; k < LOOMI_EV_KINDS; k++)
		E.n[k] = 0;
	for (size_t i = 0; i < n; i++) {
		const loomi_module *m = modules[i];
		for (size_t j = 0; j < m->n_listeners; j++) {
			int k = m->listeners[j].kind;
			if (k <= 0 || k >= LOOMI_EV_KINDS || E.n[k] == MAX_LISTENERS) {
				/* a module table that cannot work: fail at start, loudly */
				LOG_ERROR("events: module %s listens to kind %d, which %s (a bug)", m->name,
				          k, k <= 0 || k >= LOOMI_EV_KINDS ? "does not exist"
				                                           : "has too many listeners");
				abort();
			}
			E.fn[k][E.n[k]++] = m->listeners[j].fn;
		}
	}
	__atomic_store_n(&E.attached, true, __ATOMIC_RELEASE);
}

void
loomi_events_detach(void)
{
	__atomic_store_n(&E.attached, false, __ATOMIC_RELEASE);
}

void
loomi_events_emit(const loomi_event *ev)
{
	int k = ev->kind;

	if (!__atomic_load_n(&E.attached, __ATOMIC_ACQUIRE) || k <= 0 || k >= LOOMI_EV_KINDS)
		return;
	for (size_t i = 0; i < E.n[k]; i++)
		E.fn[k][i](E.d, ev);
}

const char *
loomi_event_kind_name(int kind)
{
	switch (kind) {
	case LOOMI_EV_JOB_STATE: return "job.state";
	case LOOMI_EV_JOB_ATTACH: return "job.attach";
	case LOOMI_EV_JOB_POINTS: return "job.points";
	case LOOMI_EV_JOB_LOG: return "job.log";
	case LOOMI_EV_LOG_ENTRY: return "log.entry";
	case LOOMI_EV_RUN_POINTS: return "run.points";
	}
	return "?";
}
