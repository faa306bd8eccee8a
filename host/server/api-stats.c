/* What the API counts (api-stats.h).
 *
 * Request counters live in an open-addressing table keyed by (route,
 * method, status), filled without a lock: a request finds its slot by
 * linear probing, claims an empty one with a compare-and-swap, and adds 1
 * with a relaxed atomic add.  Slots are never freed, and the keys are
 * bounded (routes × methods × statuses actually answered), so the table
 * does not fill in practice; if it did, the request is still counted in
 * its route's duration histogram.  Durations are one histogram per route,
 * indexed by the route's place in the module table. */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "api-stats.h"
#include "api.h"
#include "module.h"

#define MAX_ROUTES 512            /* more routes than that count as "unmatched" */
#define SLOTS 4096                /* a power of two */

static const char *const methods[] = {
	"other", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
};
#define N_METHODS (sizeof methods / sizeof *methods)

static struct {
	uint32_t key;             /* 0: free; else (route + 1) << 16 | method << 10 | status */
	uint64_t n;
} slots[SLOTS];

static loomi_histogram durations[MAX_ROUTES + 1]; /* [MAX_ROUTES]: unmatched */
static int64_t websockets;

/* The route's place in the module table (loomi_api_route's i), MAX_ROUTES
 * for none. */
static uint32_t
route_index(const struct loomi_route *route)
{
	size_t base = 0;

	if (route == NULL)
		return MAX_ROUTES;
	for (size_t m = 0; m < loomi_n_modules; m++) {
		const loomi_module *mod = loomi_modules[m];
		if (route >= mod->routes && route < mod->routes + mod->n_routes) {
			size_t i = base + (size_t)(route - mod->routes);
			return i < MAX_ROUTES ? (uint32_t)i : MAX_ROUTES;
		}
		base += mod->n_routes;
	}
	return MAX_ROUTES;
}

static uint32_t
method_index(const char *method)
{
	for (uint32_t i = 1; i < N_METHODS; i++)
		if (strcmp(methods[i], method) == 0)
			return i;
	return 0;
}

static const char *
route_name(uint32_t i)
{
	const loomi_route *r;
	return i < MAX_ROUTES && loomi_api_route(i, &r, NULL) ? r->pattern : "unmatched";
}

void
loomi_api_stats_request(const struct loomi_route *route, const char *method, int status,
                        uint64_t ns)
{
	uint32_t r = route_index(route), key, h;

	if (status < 100 || status > 599)
		status = 500; /* the pipeline never answers so; keep the label bounded */
	key = (r + 1) << 16 | method_index(method ? method : "") << 10 | (uint32_t)status;
	loomi_histogram_observe(&durations[r], loomi_duration_bounds, loomi_n_duration_bounds, ns);

	h = (key * 2654435761u) & (SLOTS - 1);
	for (uint32_t probe = 0; probe < SLOTS; probe++, h = (h + 1) & (SLOTS - 1)) {
		uint32_t seen = __atomic_load_n(&slots[h].key, __ATOMIC_ACQUIRE);
		if (seen == 0) {
			uint32_t expected = 0;
			if (__atomic_compare_exchange_n(&slots[h].key, &expected, key, false,
			                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				seen = key;
			else
				seen = expected; /* another request took it first */
		}
		if (seen == key) {
			__atomic_fetch_add(&slots[h].n, 1, __ATOMIC_RELAXED);
			return;
		}
	}
}

void
loomi_api_stats_websocket(int delta)
{
	__atomic_fetch_add(&websockets, delta, __ATOMIC_RELAXED);
}

void
loomi_api_stats_requests(void (*fn)(void *arg, const char *route, const char *method, int status,
                                    uint64_t n),
                         void *arg)
{
	for (size_t h = 0; h < SLOTS; h++) {
		uint32_t key = __atomic_load_n(&slots[h].key, __ATOMIC_ACQUIRE);
		uint64_t n = __atomic_load_n(&slots[h].n, __ATOMIC_RELAXED);
		if (key == 0 || n == 0) /* n 0: claimed, its first add still to come */
			continue;
		fn(arg, route_name((key >> 16) - 1), methods[(key >> 10) & 0x3f], (int)(key & 0x3ff),
		   n);
	}
}

void
loomi_api_stats_durations(void (*fn)(void *arg, const char *route, const loomi_histogram *h),
                          void *arg)
{
	for (uint32_t i = 0; i <= MAX_ROUTES; i++) {
		bool used = false;
		for (size_t b = 0; b <= loomi_n_duration_bounds && !used; b++)
			used = __atomic_load_n(&durations[i].counts[b], __ATOMIC_RELAXED) != 0;
		if (used)
			fn(arg, route_name(i), &durations[i]);
	}
}

int64_t
loomi_api_stats_websockets(void)
{
	return __atomic_load_n(&websockets, __ATOMIC_RELAXED);
}
