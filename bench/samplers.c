/* bench/samplers: the sampler plugins on a pool of 1,000,000 rows (issue
 * 14's targets): least-confidence, margin, entropy and variance top-1,000
 * in ≤ 100 ms; k-center of 1,000 from a 4,096-row subsample in ≤ 1 s (and
 * ranked-batch likewise).  Each sampler is loaded as a module through the
 * host loader, as loomd loads it, and timed through its select, with the
 * input checks it always does (every probability row, every score).
 *
 * The pool: probabilities over 10 classes (a softmax of Gaussian logits
 * of scale 2), a score per row (|Gaussian|, a spread), features of
 * dimension 64 (Gaussian), strata = the most likely class; 100 fixed rows
 * (labelled) where a case says so.  Everything from a fixed seed.
 *
 *   bench/samplers [--rows N] [--reps R] [--results FILE] [--commit C]
 *
 * Prints a Markdown table of the median, min and max of R repetitions
 * (default 7) and, with --results, appends it to FILE with the machine,
 * date, commit, OPENBLAS_CORETYPE and the load average before and after.
 * `make bench-samplers` runs it and appends to bench/RESULTS.md. */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "host/core/conf.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"

#define C 10
#define DIM 64
#define K 1000
#define SUB 4096
#define NFIXED 100

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* xorshift64* and Box–Muller: the bench's own data, not the samplers' */
static uint64_t rs = 0x853c49e6748fea9bull;

static double
unif(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return ((double)((rs * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
}

static double
gauss(void)
{
	return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif());
}

typedef struct bcase {
	const char *label;   /* the table's first column */
	const char *module;
	const char *config;  /* inside the instance's config group */
	size_t k, n_fixed, subsample;
	double target_ms;    /* 0: none */
} bcase;

static const bcase cases[] = {
	{"least-confidence top-1,000", "sampler-least-confidence", "", K, 0, 0, 100},
	{"margin top-1,000", "sampler-margin", "", K, 0, 0, 100},
	{"entropy top-1,000", "sampler-entropy", "", K, 0, 0, 100},
	{"variance top-1,000", "sampler-variance", "", K, 0, 0, 100},
	{"k-center 1,000 of a 4,096 subsample", "sampler-k-center", "", K, 0, SUB, 1000},
	{"k-center 1,000 of 4,096, 100 fixed centres", "sampler-k-center", "", K, NFIXED, SUB,
	 1000},
	{"ranked-batch 1,000 of 4,096 (cold start)", "sampler-ranked-batch", "", K, 0, SUB, 1000},
	{"ranked-batch 1,000 of 4,096, 100 fixed", "sampler-ranked-batch", "", K, NFIXED, SUB,
	 1000},
	{"random 1,000", "sampler-random", "", K, 0, 0, 0},
	{"stratified 1,000 (10 strata)", "sampler-stratified", "", K, 0, 0, 0},
	{"reservoir, 1,000 slots, the pool as one call", "sampler-reservoir", "", K, 0, 0, 0},
};

static void
loadavg(char *buf, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double a = 0, b = 0, c = 0;
	if (f == NULL || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
		snprintf(buf, len, "?");
	else
		snprintf(buf, len, "%.2f %.2f %.2f", a, b, c);
	if (f != NULL)
		fclose(f);
}

static void
machine(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];
	snprintf(buf, len, "unknown CPU");
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "model name", 10) == 0) {
			char *v = strchr(line, ':');
			if (v != NULL) {
				v += 2;
				v[strcspn(v, "\n")] = '\0';
				snprintf(buf, len, "%s", v);
			}
			break;
		}
	if (f != NULL)
		fclose(f);
	size_t used = strlen(buf);
	snprintf(buf + used, len - used, ", %ld online CPUs", sysconf(_SC_NPROCESSORS_ONLN));
}

int
main(int argc, char **argv)
{
	size_t rows = 1000000, reps = 7;
	const char *results = NULL, *commit = "unknown", *plugdir = BENCH_PLUGIN_DIR;
	static const struct option opts[] = {
		{"rows", required_argument, NULL, 'n'}, {"reps", required_argument, NULL, 'r'},
		{"results", required_argument, NULL, 'o'}, {"commit", required_argument, NULL, 'c'},
		{"plugins", required_argument, NULL, 'p'}, {NULL, 0, NULL, 0},
	};
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'n': rows = strtoull(optarg, NULL, 10); break;
		case 'r': reps = strtoull(optarg, NULL, 10); break;
		case 'o': results = optarg; break;
		case 'c': commit = optarg; break;
		case 'p': plugdir = optarg; break;
		default:
			fprintf(stderr, "usage: %s [--rows N] [--reps R] [--results FILE] [--commit C] "
			                "[--plugins DIR]\n", argv[0]);
			return 2;
		}
	}
	if (rows < SUB + NFIXED || reps == 0) {
		fprintf(stderr, "samplers: --rows must be at least %d and --reps at least 1\n",
		        SUB + NFIXED);
		return 2;
	}

	char load0[64], load1[64], cpu[256];
	loadavg(load0, sizeof load0);
	machine(cpu, sizeof cpu);

	/* the pool */
	fprintf(stderr, "samplers: building a pool of %zu rows …\n", rows);
	float *probs = malloc(rows * C * sizeof *probs), *scores = malloc(rows * sizeof *scores);
	float *feat = malloc(rows * DIM * sizeof *feat);
	int32_t *strata = malloc(rows * sizeof *strata);
	size_t *fixed = malloc(NFIXED * sizeof *fixed);
	if (probs == NULL || scores == NULL || feat == NULL || strata == NULL || fixed == NULL) {
		fprintf(stderr, "samplers: out of memory for %zu rows\n", rows);
		return 1;
	}
	for (size_t i = 0; i < rows; i++) {
		double z[C], mx = -INFINITY, s = 0;
		int arg = 0;
		for (int j = 0; j < C; j++) {
			z[j] = 2 * gauss();
			if (z[j] > mx) {
				mx = z[j];
				arg = j;
			}
		}
		for (int j = 0; j < C; j++)
			s += (z[j] = exp(z[j] - mx));
		for (int j = 0; j < C; j++)
			probs[i * C + j] = (float)(z[j] / s);
		strata[i] = arg;
		scores[i] = (float)fabs(gauss());
		for (int j = 0; j < DIM; j++)
			feat[i * DIM + j] = (float)gauss();
	}
	for (size_t i = 0; i < NFIXED; i++)
		fixed[i] = i * (rows / NFIXED);

	loomi_log_setup(LOOM_LOG_WARN, 0, NULL, NULL);
	char tmpl[] = "/tmp/loom-bench-samplers.XXXXXX";
	if (mkdtemp(tmpl) == NULL) {
		perror("samplers: mkdtemp");
		return 1;
	}
	const char *dirs[1] = {plugdir};
	loomi_plugins reg;
	if (loomi_plugins_init(&reg, dirs, 1, tmpl) != 0) {
		fprintf(stderr, "samplers: cannot set up the plugin loader\n");
		return 1;
	}

	const size_t ncases = sizeof cases / sizeof cases[0];
	double med[sizeof cases / sizeof cases[0]], lo[sizeof med / sizeof med[0]],
	    hi[sizeof med / sizeof med[0]];
	size_t *index = malloc(K * sizeof *index);
	double *score = malloc(K * sizeof *score), *t = malloc(reps * sizeof *t);
	int64_t *slot = malloc(K * sizeof *slot);
	int failed = 0;

	for (size_t ci = 0; ci < ncases; ci++) {
		const bcase *bc = &cases[ci];
		char inst[32], *text, *err = NULL;
		loomi_doc doc;
		loomi_strv errs = {0};
		loomi_plugin_conf pc;
		loom_instance *ins;

		snprintf(inst, sizeof inst, "s%zu", ci);
		text = loomi_strfmt("plugins = ( { instance = \"%s\"; module = \"%s\"; config = { %s "
		                    "}; } );\n",
		                    inst, bc->module, bc->config);
		if (loomi_doc_load_string(&doc, text, "bench", &errs) != 0) {
			fprintf(stderr, "samplers: %s\n", loomi_strv_join(&errs, "; "));
			return 1;
		}
		free(text);
		const json_t *group = json_array_get(json_object_get(doc.root, "plugins"), 0);
		pc.instance = inst;
		pc.module = (char *)bc->module;
		pc.config = json_object_get(group, "config");
		pc.node = group;
		if (loomi_instance_create(&reg, &doc, &pc, &ins, &errs) != 0 ||
		    loomi_instance_start(ins, &err) != 0) {
			fprintf(stderr, "samplers: cannot start %s from %s: %s\n", bc->module, plugdir,
			        err ? err : loomi_strv_join(&errs, "; "));
			return 1;
		}
		const loom_sampler_ops *ops = ins->desc->ops;

		for (size_t r = 0; r < reps; r++) {
			loom_sample_pool pool = {.size = sizeof pool, .n = rows, .n_classes = C,
			                         .probs = probs, .strata = strata, .dim = DIM,
			                         .features = feat, .scores = scores};
			loom_sample_request req = {.size = sizeof req, .k = bc->k, .seed = 1 + r,
			                           .n_fixed = bc->n_fixed, .fixed = fixed,
			                           .subsample = bc->subsample};
			loom_sample_result res = {.index = index, .score = score, .slot = slot};
			double t0 = now_ms();
			int rv = ops->select(ins->ctx, &pool, &req, &res);
			t[r] = now_ms() - t0;
			if (rv != 0) {
				fprintf(stderr, "samplers: %s: %s\n", bc->label,
				        res.error ? res.error : "failed");
				return 1;
			}
			if (res.n != bc->k && strcmp(bc->module, "sampler-reservoir") != 0) {
				fprintf(stderr, "samplers: %s chose %zu rows, not %zu\n", bc->label, res.n,
				        bc->k);
				return 1;
			}
		}
		qsort(t, reps, sizeof *t, cmp_double);
		med[ci] = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
		lo[ci] = t[0];
		hi[ci] = t[reps - 1];
		fprintf(stderr, "samplers: %-48s %9.2f ms\n", bc->label, med[ci]);
		loomi_doc_free(&doc);
		loomi_strv_free(&errs);
	}
	loadavg(load1, sizeof load1);

	/* the table */
	char *table = NULL;
	size_t tlen = 0;
	FILE *mem = open_memstream(&table, &tlen);
	fprintf(mem, "| sampler (pool of %zu rows) | k | median ms | min ms | max ms | target |\n",
	        rows);
	fprintf(mem, "|---|---:|---:|---:|---:|---|\n");
	for (size_t ci = 0; ci < ncases; ci++) {
		char target[48] = "—";
		if (cases[ci].target_ms > 0) {
			bool ok = med[ci] <= cases[ci].target_ms;
			failed += !ok;
			snprintf(target, sizeof target, "≤ %.0f ms %s", cases[ci].target_ms,
			         ok ? "✓" : "✗");
		}
		fprintf(mem, "| %s | %zu | %.2f | %.2f | %.2f | %s |\n", cases[ci].label, cases[ci].k,
		        med[ci], lo[ci], hi[ci], target);
	}
	fclose(mem);
	fputs(table, stdout);

	if (results != NULL) {
		FILE *f = fopen(results, "a");
		char date[32];
		time_t now = time(NULL);
		const char *core = getenv("OPENBLAS_CORETYPE");
		strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
		if (f == NULL) {
			perror(results);
			return 1;
		}
		fprintf(f,
		        "\n## Samplers (bench/samplers, issue 14)\n\n"
		        "%s; %s; commit %s; OPENBLAS_CORETYPE %s (the samplers use no BLAS); load "
		        "average %s before, %s after — a shared machine, so timings are noisy.  "
		        "Median of %zu runs; each sampler loaded as a module through the host "
		        "loader; a pool of %zu rows: 10-class probabilities, a score, 64-dimensional "
		        "features; every run checks its whole input (each probability row or "
		        "score) before choosing.\n\n%s",
		        cpu, date, commit, core ? core : "unset", load0, load1, reps, rows, table);
		fclose(f);
	}
	free(table);
	loomi_plugins_fini(&reg);
	rmdir(tmpl);
	free(probs);
	free(scores);
	free(feat);
	free(strata);
	free(fixed);
	free(index);
	free(score);
	free(slot);
	free(t);
	return failed ? 3 : 0;
}
