/* exporter-report: SVG line charts.  See chart.h. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chart.h"

/* Margins around the plot, in SVG units: room for the y tick labels and
 * the rotated axis label on the left, the x ticks and "step" below, one
 * legend row of LEGEND_ROW above per line of entries. */
#define LEFT 64
#define RIGHT 16
#define TOP 10
#define BOTTOM 44
#define LEGEND_ROW 18
#define MAX_TICKS 20

static const char *const palette[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
	"#9467bd", "#8c564b", "#e377c2", "#17becf",
};

const char *
chart_color(size_t i)
{
	return palette[i % (sizeof palette / sizeof palette[0])];
}

/* ------------------------------------------------------------------ first pass */

static int
scan_point(void *arg, const loom_metric_point *p)
{
	chart_series *s = arg;

	if (s->n == 0 || p->step < s->xmin)
		s->xmin = p->step;
	if (s->n == 0 || p->step > s->xmax)
		s->xmax = p->step;
	s->n++;
	if (!isfinite(p->value)) {
		if (s->n_bad++ == 0)
			s->first_bad_x = p->step;
		return 0;
	}
	if (!s->any_finite || p->value < s->ymin) {
		s->ymin = p->value;
		s->ymin_x = p->step;
	}
	if (!s->any_finite || p->value > s->ymax) {
		s->ymax = p->value;
		s->ymax_x = p->step;
	}
	s->any_finite = true;
	s->last = p->value;
	s->last_x = p->step;
	return 0;
}

int
chart_scan(chart_series *s, const loom_export_source *src, const char *metric)
{
	s->src = src;
	s->metric = metric;
	s->n = s->n_bad = 0;
	s->any_finite = false;
	if (src->history == NULL)
		return 0;
	return src->history(src, metric, scan_point, s);
}

/* ------------------------------------------------------------------ frame */

/* Data ranges and where the plot sits in the SVG. */
typedef struct frame {
	double x0, x1, y0, y1, ystep, xstep;
	double left, top, w, h;
} frame;

/* 1, 2 or 5 times a power of ten, near range / target. */
static double
nice_step(double range, int target)
{
	double raw = range / target, mag, f;

	if (!(raw > 0) || !isfinite(raw))
		return 1;
	mag = pow(10, floor(log10(raw)));
	f = raw / mag;
	return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void
frame_ranges(frame *f, const chart *c)
{
	bool first = true, finite = false;
	double ymin = 0, ymax = 1;

	for (size_t i = 0; i < c->n; i++) {
		const chart_series *s = &c->series[i];
		if (s->n == 0)
			continue;
		if (first || s->xmin < f->x0)
			f->x0 = (double)s->xmin;
		if (first || s->xmax > f->x1)
			f->x1 = (double)s->xmax;
		first = false;
		if (!s->any_finite)
			continue;
		ymin = finite && ymin < s->ymin ? ymin : s->ymin;
		ymax = finite && ymax > s->ymax ? ymax : s->ymax;
		finite = true;
	}
	if (f->x1 <= f->x0) {
		/* one step; near 2^63 a double cannot tell x from x + 1 */
		double pad = fmax(1, fabs(f->x0) * 1e-9);
		f->x0 -= pad;
		f->x1 += pad;
	}
	f->xstep = ceil(nice_step(f->x1 - f->x0, 6));
	if (ymax <= ymin) {
		double pad = ymin != 0 ? fabs(ymin) * 0.1 : 1;
		ymin -= pad;
		ymax += pad;
	}

	f->ystep = nice_step(ymax - ymin, 5);
	f->y0 = floor(ymin / f->ystep) * f->ystep;
	f->y1 = ceil(ymax / f->ystep) * f->ystep;
}

static double
px(const frame *f, double x)
{
	return f->left + (x - f->x0) / (f->x1 - f->x0) * f->w;
}

static double
py(const frame *f, double y)
{
	/* halves, so that a range from -1e308 to 1e308 does not overflow */
	return f->top + f->h - (y * 0.5 - f->y0 * 0.5) / (f->y1 * 0.5 - f->y0 * 0.5) * f->h;
}

static int
column_of(const frame *f, double x)
{
	double c = floor((x - f->x0) / (f->x1 - f->x0) * (f->w - 1) + 0.5);
	return !(c >= 0) ? 0 : c > f->w - 1 ? (int)f->w - 1 : (int)c;
}

/* ------------------------------------------------------------------ axes and legend */

static void
tick_label(html_out *o, double v, double step)
{
	if (fabs(v) < step * 1e-9)
		v = 0;
	html_rawf(o, "%.4g", v);
}

static void
draw_axes(html_out *o, const frame *f, const char *ylabel)
{
	double bottom = f->top + f->h, right = f->left + f->w;

	double xfirst = ceil(f->x0 / f->xstep) * f->xstep;

	/* ticks counted, not accumulated: near the limits of a double an added
	 * step can vanish, and a loop on the value would never end */
	html_raw(o, "<g class=\"grid\" stroke=\"#e3e3e3\" stroke-width=\"1\">");
	for (int k = 0; k <= MAX_TICKS && f->y0 + k * f->ystep <= f->y1 + f->ystep * 1e-6; k++)
		html_rawf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", f->left,
		          py(f, f->y0 + k * f->ystep), right, py(f, f->y0 + k * f->ystep));
	html_raw(o, "</g><g class=\"ticks\" font-size=\"11\" fill=\"#333\">");
	for (int k = 0; k <= MAX_TICKS && f->y0 + k * f->ystep <= f->y1 + f->ystep * 1e-6; k++) {
		double y = f->y0 + k * f->ystep;
		html_rawf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", f->left - 6,
		          py(f, y) + 4);
		tick_label(o, y, f->ystep);
		html_raw(o, "</text>");
	}
	for (int k = 0; k <= MAX_TICKS && xfirst + k * f->xstep <= f->x1; k++) {
		double x = xfirst + k * f->xstep;
		html_rawf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>",
		          px(f, x), bottom, px(f, x), bottom + 4);
		html_rawf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px(f, x),
		          bottom + 17);
		tick_label(o, x, f->xstep);
		html_raw(o, "</text>");
	}
	html_rawf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>",
	          f->left + f->w / 2, bottom + 36);
	html_rawf(o, "<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
	          f->top + f->h / 2);
	html_text(o, ylabel);
	html_raw(o, "</text></g>");
	html_rawf(o, "<path class=\"axis\" d=\"M%.1f %.1f V%.1f H%.1f\" fill=\"none\" "
	          "stroke=\"#444\"/>", f->left, f->top, bottom, right);
}

/* A legend entry's width: a short line, the label at ~6.5 units a byte. */
static double
entry_width(const chart_series *s)
{
	return 22 + 6.5 * (double)strlen(s->label) + 14;
}

/* Lays out the legend from (x, y) in rows no wider than the plot; draws it
 * when o is not NULL.  Returns the number of rows. */
static int
legend(html_out *o, const chart *c, const frame *f, double y)
{
	double x = f->left;
	int rows = 1;

	if (o)
		html_raw(o, "<g class=\"legend\" font-size=\"11\" fill=\"#222\">");
	for (size_t i = 0; i < c->n; i++) {
		const chart_series *s = &c->series[i];
		if (s->n == 0)
			continue;
		if (x > f->left && x + entry_width(s) > f->left + f->w) {
			x = f->left;
			y += LEGEND_ROW;
			rows++;
		}
		if (o) {
			html_rawf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
			          "stroke=\"%s\" stroke-width=\"3\"/>", x, y - 4, x + 16, y - 4, s->color);
			html_rawf(o, "<text x=\"%.1f\" y=\"%.1f\">", x + 22, y);
			html_text(o, s->label);
			html_raw(o, "</text>");
		}
		x += entry_width(s);
	}
	if (o)
		html_raw(o, "</g>");
	return rows;
}

/* ------------------------------------------------------------------ second pass: lines */

typedef struct pt {
	double x, y;
	uint64_t seq;            /* arrival order within the series */
} pt;

/* The points of one column kept for drawing. */
typedef struct acc {
	size_t n;
	pt first, last, min, max;
} acc;

typedef struct pen {
	html_out *o;
	const frame *f;
	int col;                 /* the column being gathered, -1 before any */
	bool down;               /* the next point continues the line */
	int sub_n;               /* points in the current subpath */
	bool any;                /* anything written into d="" yet */
	uint64_t seq;
	int gaps;                /* NaN/Inf runs seen in this column */
	acc pre, mid, post;      /* before the first gap, between, after the last */
	unsigned char *bad;      /* per column: had a NaN or infinite value */
} pen;

static void
acc_add(acc *a, pt p)
{
	if (a->n == 0)
		a->first = a->min = a->max = p;
	if (p.y < a->min.y)
		a->min = p;
	if (p.y > a->max.y)
		a->max = p;
	a->last = p;
	a->n++;
}

static void
acc_merge(acc *into, const acc *a)
{
	if (a->n == 0)
		return;
	if (into->n == 0) {
		*into = *a;
		return;
	}
	if (a->min.y < into->min.y)
		into->min = a->min;
	if (a->max.y > into->max.y)
		into->max = a->max;
	into->last = a->last;
	into->n += a->n;
}

static void
pen_point(pen *p, pt q)
{
	html_rawf(p->o, "%s%c%.1f %.1f", p->any ? " " : "", p->down ? 'L' : 'M', px(p->f, q.x),
	          py(p->f, q.y));
	p->any = p->down = true;
	p->sub_n++;
}

/* End the current subpath; a lone point becomes a dot (round caps draw a
 * zero-length segment). */
static void
pen_lift(pen *p)
{
	if (p->down && p->sub_n == 1)
		html_raw(p->o, " h0");
	p->down = false;
	p->sub_n = 0;
}

/* The kept points of a column in the order they came, each once. */
static void
pen_acc(pen *p, const acc *a)
{
	pt v[4];
	int n = 0;

	if (a->n == 0)
		return;
	const pt cand[4] = {a->first, a->min, a->max, a->last};
	for (int i = 0; i < 4; i++) {
		int k = n;
		bool dup = false;
		for (int j = 0; j < n; j++)
			dup = dup || v[j].seq == cand[i].seq;
		if (dup)
			continue;
		while (k > 0 && v[k - 1].seq > cand[i].seq) {
			v[k] = v[k - 1];
			k--;
		}
		v[k] = cand[i];
		n++;
	}
	for (int i = 0; i < n; i++)
		pen_point(p, v[i]);
}

static void
pen_flush(pen *p)
{
	pen_acc(p, &p->pre);
	if (p->gaps > 0) {
		pen_lift(p);
		if (p->mid.n > 0) {
			pen_acc(p, &p->mid);
			pen_lift(p);
		}
		pen_acc(p, &p->post);
	}
	memset(&p->pre, 0, sizeof p->pre);
	memset(&p->mid, 0, sizeof p->mid);
	memset(&p->post, 0, sizeof p->post);
	p->gaps = 0;
}

static int
draw_point(void *arg, const loom_metric_point *pt_in)
{
	pen *p = arg;
	pt q = {(double)pt_in->step, pt_in->value, p->seq++};
	int col = column_of(p->f, q.x);

	if (col != p->col) {
		if (p->col >= 0)
			pen_flush(p);
		p->col = col;
	}
	if (!isfinite(q.y)) {
		p->bad[col] = 1;
		if (p->gaps++ > 0) {
			acc_merge(&p->mid, &p->post);
			memset(&p->post, 0, sizeof p->post);
		}
		return 0;
	}
	acc_add(p->gaps ? &p->post : &p->pre, q);
	return p->o->err;
}

static void
draw_series(html_out *o, const frame *f, const chart_series *s, unsigned char *bad)
{
	pen p = {.o = o, .f = f, .col = -1, .bad = bad};

	html_rawf(o, "<path class=\"line\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" "
	          "stroke-linejoin=\"round\" stroke-linecap=\"round\" d=\"", s->color);
	if (s->src->history(s->src, s->metric, draw_point, &p) == 0 && p.col >= 0)
		pen_flush(&p);
	pen_lift(&p);
	html_raw(o, "\"/>");
}

/* ------------------------------------------------------------------ dots for short series */

typedef struct dots {
	html_out *o;
	const frame *f;
} dots;

static int
dot(void *arg, const loom_metric_point *p)
{
	dots *d = arg;

	if (isfinite(p->value))
		html_rawf(d->o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\"/>", px(d->f, (double)p->step),
		          py(d->f, p->value));
	return d->o->err;
}

static void
draw_dots(html_out *o, const frame *f, const chart_series *s)
{
	dots d = {o, f};

	html_rawf(o, "<g class=\"dots\" fill=\"%s\">", s->color);
	s->src->history(s->src, s->metric, dot, &d);
	html_raw(o, "</g>");
}

/* Short red marks under the plot where values were NaN or infinite. */
static void
draw_bad(html_out *o, const frame *f, const unsigned char *bad)
{
	bool any = false;

	for (int i = 0; i < (int)f->w; i++) {
		if (!bad[i])
			continue;
		if (!any)
			html_raw(o, "<path class=\"nonfinite\" stroke=\"#b00000\" stroke-width=\"2\" d=\"");
		html_rawf(o, "%sM%.1f %.1f v-8", any ? " " : "",
		          f->left + (f->w > 1 ? i * f->w / (f->w - 1) : 0), f->top + f->h);
		any = true;
	}
	if (any)
		html_raw(o, "\"/>");
}

/* ------------------------------------------------------------------ caption */

static void
caption(html_out *o, const chart *c)
{
	html_raw(o, "<figcaption><ul>");
	for (size_t i = 0; i < c->n; i++) {
		const chart_series *s = &c->series[i];
		if (s->n == 0)
			continue;
		html_rawf(o, "<li><span class=\"swatch\" style=\"color:%s\">■</span> ", s->color);
		html_elem(o, "b", NULL, s->label);
		if (s->xmin == s->xmax)
			html_rawf(o, ": %zu point%s at step %lld", s->n, s->n == 1 ? "" : "s",
			          (long long)s->xmin);
		else
			html_rawf(o, ": %zu points, steps %lld–%lld", s->n, (long long)s->xmin,
			          (long long)s->xmax);
		if (s->any_finite) {
			html_raw(o, "; last ");
			html_number(o, s->last);
			html_rawf(o, " (step %lld); lowest ", (long long)s->last_x);
			html_number(o, s->ymin);
			html_rawf(o, " (step %lld); highest ", (long long)s->ymin_x);
			html_number(o, s->ymax);
			html_rawf(o, " (step %lld)", (long long)s->ymax_x);
		}
		if (s->n_bad > 0)
			html_rawf(o, "; <span class=\"warn\">%zu NaN or infinite value%s (first at step "
			          "%lld), drawn as gaps and marked in red under the plot</span>",
			          s->n_bad, s->n_bad == 1 ? "" : "s", (long long)s->first_bad_x);
		html_raw(o, "</li>");
	}
	html_raw(o, "</ul></figcaption>");
}

/* ------------------------------------------------------------------ the chart */

void
chart_draw(html_out *o, const chart *c)
{
	frame f = {0};
	size_t drawn = 0;
	unsigned char *bad;
	int rows;

	for (size_t i = 0; i < c->n; i++)
		drawn += c->series[i].n > 0;
	if (drawn == 0) {
		html_raw(o, "<p class=\"missing\">No points to draw for ");
		html_text(o, c->title);
		html_raw(o, ".</p>");
		return;
	}
	f.left = LEFT;
	f.w = c->width;
	f.h = c->height;
	frame_ranges(&f, c);
	rows = legend(NULL, c, &f, 0);
	f.top = TOP + rows * LEGEND_ROW;
	if ((bad = calloc((size_t)c->width, 1)) == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
		return;
	}

	html_rawf(o, "<figure class=\"chart\"><svg viewBox=\"0 0 %d %.0f\" role=\"img\" "
	          "font-family=\"sans-serif\"><title>", LEFT + c->width + RIGHT,
	          f.top + f.h + BOTTOM);
	html_text(o, c->title);
	html_raw(o, "</title>");
	draw_axes(o, &f, c->ylabel);
	legend(o, c, &f, TOP + 12);
	for (size_t i = 0; i < c->n; i++) {
		const chart_series *s = &c->series[i];
		if (s->n == 0)
			continue;
		draw_series(o, &f, s, bad);
		if (s->n <= CHART_MARKERS_MAX)
			draw_dots(o, &f, s);
	}
	draw_bad(o, &f, bad);
	html_raw(o, "</svg>");
	caption(o, c);
	html_raw(o, "</figure>");
	free(bad);
}
