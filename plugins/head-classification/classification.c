/* head-classification — one class per sequence, from the flattened
 * encoder output through one linear layer to the class logits.
 *
 * Per sequence: out = classes logits; target = truth = 1 value, the class
 * index as a float; result = classes probabilities (the softmax of the
 * logits, for the samplers).  Loss: cross-entropy fused with softmax, the
 * mean over sequences.
 *
 * Metrics over a split (NaN truth skipped; the predicted class is the
 * first largest probability): accuracy; per class "precision.<name>",
 * "recall.<name>", "f1.<name>" (name from the data's class names, else the
 * index; a zero denominator gives 0, as scikit-learn's zero_division=0);
 * macro_f1, the mean F1 over the classes that occur in the truth or the
 * predictions (scikit-learn's f1_score(average="macro")); and, for at most
 * CONFUSION_MAX classes, the confusion matrix as "confusion.<true>.<pred>"
 * counts.  Headline: loss, accuracy, macro_f1; the rest are details, drawn
 * as a per-class table and a confusion matrix.
 *
 * Activations beyond the block's: the softmax of the loss (sequences ×
 * classes) and the class indices as int32 (one float each). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/head.h>

#include "kernels/kernels.h"
#include "kernels/heads/head-common.h"

#define CLASSES_MAX (1u << 20)
#define CONFUSION_MAX 32u

static int
classification_init(loom_instance *ins, const loom_host *host, void *ctx)
{
	hc_init(ctx, ins, host, LOOM_TASK_CLASSIFICATION);
	return 0;
}

static int
classification_configure(void *ctx, const loom_head_shape *shape, loom_head_layout *layout)
{
	hc_ctx *c = ctx, next;
	uint32_t k;
	int rv;

	if ((rv = hc_shape_begin(c, shape, &next)) != 0)
		return rv;
	k = shape->classes;
	if (k == 0) {
		hc_error(c, "configure: classes is 0; classification needs the classes of the label "
		            "column (data.target)");
		return LOOM_EINVAL;
	}
	if (k == 1) {
		hc_error(c, "configure: only one class; classification needs at least two (does the "
		            "label column data.target hold a single value?)");
		return LOOM_EINVAL;
	}
	if (k > CLASSES_MAX) {
		hc_error(c, "configure: %u classes, more than this head takes (%u)", k, CLASSES_MAX);
		return LOOM_EINVAL;
	}
	if (shape->class_names != NULL) {
		if ((next.class_names = calloc(k, sizeof *next.class_names)) == NULL)
			return LOOM_ENOMEM;
		next.classes = k;
		for (uint32_t i = 0; i < k; i++) {
			const char *name = shape->class_names[i];
			char index[16];
			if (name == NULL) {
				snprintf(index, sizeof index, "%u", i);
				name = index;
			}
			if ((next.class_names[i] = strdup(name)) == NULL) {
				hc_discard(c, &next);
				return LOOM_ENOMEM;
			}
		}
	}
	next.classes = k;
	if ((rv = hc_layout(c, &next, k, 1, k, 1, (size_t)next.max_sequences * (k + 1), layout)) !=
	    0) {
		hc_discard(c, &next);
		return rv;
	}
	hc_commit(c, &next);
	return 0;
}

static int
classification_forward(void *ctx, const loom_head_io *io)
{
	return hc_forward(ctx, io);
}

/* The loss's softmax [max_sequences, K] and class indices [max_sequences]. */
static float *
probs_of(const hc_ctx *c, const loom_head_io *io)
{
	return io->acts + HC_ACT_EXTRA(c);
}

static int32_t *
indices_of(const hc_ctx *c, const loom_head_io *io)
{
	return (int32_t *)(void *)(probs_of(c, io) + (size_t)c->max_sequences * c->classes);
}

/* The class index a float holds, or -1 when it is not one of 0 … k−1. */
static int32_t
class_index(uint32_t k, float t)
{
	if (!(t >= 0 && t < (float)k) || t != floorf(t))
		return -1;
	return (int32_t)t;
}

static int
classification_loss(void *ctx, const loom_head_io *io, double *loss)
{
	hc_ctx *c = ctx;
	float *probs;
	int32_t *idx;
	int rv;

	if ((rv = hc_check_io(c, io, HC_NEED_OUT | HC_NEED_DOUT | HC_NEED_TARGET | HC_NEED_ACTS,
	                      "loss")) != 0)
		return rv;
	probs = probs_of(c, io);
	idx = indices_of(c, io);
	for (uint32_t s = 0; s < io->sequences; s++) {
		if ((idx[s] = class_index(c->classes, io->target[s])) < 0) {
			hc_error(c, "loss: the target of sequence %u is %g, not a class index (0 to %u)", s,
			         (double)io->target[s], c->classes - 1);
			return LOOM_EINVAL;
		}
	}
	*loss = lk_crossentropy_forward(probs, io->out, idx, io->sequences, c->classes);
	lk_crossentropy_backward(io->dout, probs, idx, io->sequences, c->classes, 1.0);
	return 0;
}

static int
classification_backward(void *ctx, const loom_head_io *io)
{
	return hc_backward(ctx, io);
}

/* results = softmax(out) per row, in double. */
static int
classification_predict(void *ctx, const loom_head_io *io, float *results)
{
	const hc_ctx *c = ctx;
	uint32_t k = c->classes;
	int rv;

	if ((rv = hc_check_io(c, io, HC_NEED_OUT, "predict")) != 0)
		return rv;
	if (results == NULL && io->sequences > 0) {
		hc_error(c, "predict: results is NULL");
		return LOOM_EINVAL;
	}
	for (uint32_t s = 0; s < io->sequences; s++) {
		const float *l = io->out + (size_t)s * k;
		float *p = results + (size_t)s * k;
		double mx = -INFINITY, sum = 0;
		for (uint32_t j = 0; j < k; j++)
			mx = l[j] > mx ? l[j] : mx;
		for (uint32_t j = 0; j < k; j++)
			sum += exp((double)l[j] - mx);
		for (uint32_t j = 0; j < k; j++)
			p[j] = (float)(exp((double)l[j] - mx) / sum);
	}
	return 0;
}

/* ------------------------------------------------------------------ metrics */

typedef struct state {
	uint32_t k;
	uint64_t total;
	uint64_t *conf;      /* [k, k]: conf[true·k + predicted] */
} state;

static int
classification_metrics_new(void *ctx, void **out)
{
	hc_ctx *c = ctx;
	state *st;

	if (!c->configured) {
		hc_error(c, "metrics_new: called before configure succeeded");
		return LOOM_ESTATE;
	}
	if ((st = calloc(1, sizeof *st)) == NULL)
		return LOOM_ENOMEM;
	st->k = c->classes;
	if ((st->conf = calloc((size_t)st->k * st->k, sizeof *st->conf)) == NULL) {
		free(st);
		return LOOM_ENOMEM;
	}
	*out = st;
	return 0;
}

static int
classification_metrics_add(void *ctx, void *sp, const float *results, const float *truth,
                           uint32_t sequences)
{
	hc_ctx *c = ctx;
	state *st = sp;

	if (sequences > 0 && (results == NULL || truth == NULL)) {
		hc_error(c, "metrics_add: results or truth is NULL");
		return LOOM_EINVAL;
	}
	/* check first, so a bad batch adds nothing */
	for (uint32_t s = 0; s < sequences; s++) {
		if (!isnan(truth[s]) && class_index(st->k, truth[s]) < 0) {
			hc_error(c, "metrics_add: the truth of sequence %u is %g, not a class index (0 to "
			            "%u)",
			         s, (double)truth[s], st->k - 1);
			return LOOM_EINVAL;
		}
	}
	for (uint32_t s = 0; s < sequences; s++) {
		const float *p = results + (size_t)s * st->k;
		uint32_t best = 0;
		if (isnan(truth[s]))
			continue;
		for (uint32_t j = 1; j < st->k; j++) {
			if (p[j] > p[best] || (isnan(p[best]) && !isnan(p[j])))
				best = j;
		}
		st->conf[(size_t)class_index(st->k, truth[s]) * st->k + best]++;
		st->total++;
	}
	return 0;
}

static const char *
name_of(const hc_ctx *c, uint32_t i, char *buf, size_t len)
{
	if (c->class_names != NULL && i < c->classes)
		return c->class_names[i];
	snprintf(buf, len, "%u", i);
	return buf;
}

static int
report(loom_value_fn fn, void *arg, const char *what, const char *a, const char *b,
       double value)
{
	char name[256];
	if (b != NULL)
		snprintf(name, sizeof name, "%s.%s.%s", what, a, b);
	else
		snprintf(name, sizeof name, "%s.%s", what, a);
	return fn(arg, name, value);
}

static int
classification_metrics_report(void *ctx, const void *sp, loom_value_fn fn, void *arg)
{
	const hc_ctx *c = ctx;
	const state *st = sp;
	uint32_t k = st->k, present = 0;
	uint64_t correct = 0;
	double f1_sum = 0;
	char b1[16], b2[16];
	int rv;

	for (uint32_t i = 0; i < k; i++)
		correct += st->conf[(size_t)i * k + i];
	if ((rv = fn(arg, "accuracy", st->total ? (double)correct / (double)st->total : NAN)) != 0)
		return rv;
	for (uint32_t i = 0; i < k; i++) {
		uint64_t tp = st->conf[(size_t)i * k + i], row = 0, col = 0;
		double precision, recall, f1;
		const char *name = name_of(c, i, b1, sizeof b1);
		for (uint32_t j = 0; j < k; j++) {
			row += st->conf[(size_t)i * k + j];
			col += st->conf[(size_t)j * k + i];
		}
		precision = col ? (double)tp / (double)col : 0.0;
		recall = row ? (double)tp / (double)row : 0.0;
		f1 = row + col ? 2.0 * (double)tp / (double)(row + col) : 0.0;
		if (row + col > 0) {
			f1_sum += f1;
			present++;
		}
		if ((rv = report(fn, arg, "precision", name, NULL, precision)) != 0 ||
		    (rv = report(fn, arg, "recall", name, NULL, recall)) != 0 ||
		    (rv = report(fn, arg, "f1", name, NULL, f1)) != 0)
			return rv;
	}
	if ((rv = fn(arg, "macro_f1", present ? f1_sum / present : NAN)) != 0)
		return rv;
	if (k > CONFUSION_MAX)
		return 0;
	for (uint32_t i = 0; i < k; i++) {
		for (uint32_t j = 0; j < k; j++) {
			if ((rv = report(fn, arg, "confusion", name_of(c, i, b1, sizeof b1),
			                 name_of(c, j, b2, sizeof b2),
			                 (double)st->conf[(size_t)i * k + j])) != 0)
				return rv;
		}
	}
	return 0;
}

static void
classification_metrics_free(void *ctx, void *sp)
{
	state *st = sp;
	(void)ctx;
	if (st == NULL)
		return;
	free(st->conf);
	free(st);
}

/* How a person reads them: loss, accuracy and macro-F1 first; the per-class
 * figures and the confusion matrix as tables. */
static const char *const headline[] = {"loss", "accuracy", "macro_f1", NULL};
static const char *const per_class_columns[] = {"precision", "recall", "f1", NULL};
static const loom_metric_table tables[] = {
	{.name = "per_class", .title = "Per class", .cell = "{column}.{row}",
	 .columns = per_class_columns, .row_header = "class"},
	{.name = "confusion", .title = "Confusion matrix", .cell = "confusion.{row}.{column}",
	 .row_header = "true", .column_header = "predicted"},
	{.name = NULL},
};

static const loom_head_ops ops = {
	.size = sizeof(loom_head_ops),
	.task = LOOM_TASK_CLASSIFICATION,
	.configure = classification_configure,
	.forward = classification_forward,
	.loss = classification_loss,
	.backward = classification_backward,
	.predict = classification_predict,
	.metrics_new = classification_metrics_new,
	.metrics_add = classification_metrics_add,
	.metrics_report = classification_metrics_report,
	.metrics_free = classification_metrics_free,
	.headline = headline,
	.tables = tables,
};

LOOM_PLUGIN_DEFINE(head_classification,
                   .kind = LOOM_KIND_HEAD,
                   .name = "head-classification",
                   .version = "1.0.0",
                   .description = "classification head: class logits, softmax probabilities",
                   .ctx_size = sizeof(hc_ctx),
                   .init = classification_init,
                   .fini = hc_fini,
                   .ops = &ops)
