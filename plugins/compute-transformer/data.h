/* data.h — time-series data for the Transformer engine: a CSV file read
 * into columns, turned into a dataset (channels chosen by name, time order,
 * missing values refused or filled, splits in time order, normalization
 * fitted on the training rows only) and sliced into windows.
 *
 * Every error message names the file, and the row (1-based, as an editor
 * shows it, the header being line 1) and column where there is one, and says
 * what to do:
 *   seattle.csv:1: no column "tmp" (did you mean "temp"?); columns: date, temp
 *   seattle.csv:42: column "temp": the value is not a number; fix the value or set data.fill
 * A message quotes the header's column names (control, bidirectional and
 * invisible characters escaped) and never any other content of the file:
 * data.path may name a file the client could not read itself. */
#ifndef LOOM_TF_DATA_H
#define LOOM_TF_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ CSV */

/* A CSV file as columns.  Fields are kept as text; a column that parses
 * wholly as numbers (empty fields and NA/NaN/null count as missing) and holds
 * at least one number also has its values in num (missing → NAN).  Numbers
 * are read in the C locale whatever the process's LC_NUMERIC. */
typedef struct tf_table {
	char *path;
	size_t n_rows;          /* data rows, the header excluded */
	size_t n_cols;
	char **names;           /* [n_cols] */
	char ***text;           /* [n_cols][n_rows] field text, unquoted */
	double **num;           /* [n_cols][n_rows], or NULL for a text column */
	int64_t *line;          /* [n_rows] the file line each row started on */
	int64_t header_line;    /* the header's line (1 unless blank lines lead) */
	char *block;            /* private: one allocation holding every string */
	uint32_t *index;        /* private: names → column + 1, open addressing */
	size_t index_mask;      /* private: index slots − 1 */
	uint64_t index_seed;    /* private: the index's hash key */
} tf_table;

/* The most columns a header may name, and the most bytes its record may
 * take: a wider file is refused naming the count and the bound. */
#define TF_CSV_MAX_COLUMNS 65536
#define TF_CSV_MAX_HEADER_BYTES (4 << 20)

/* A stop request, asked at least every TF_CSV_POLL_BYTES of input while a
 * file is read (the worker's cancel, pause or SIGTERM): requested returns
 * true to stop, and the read returns LOOM_ECANCELED. */
typedef struct tf_stop {
	bool (*requested)(void *arg);
	void *arg;
} tf_stop;
#define TF_CSV_POLL_BYTES (1u << 20)

/* Read a CSV file (RFC 4180: quoted fields with "" escapes and embedded
 * newlines, CRLF or LF, an optional UTF-8 BOM, a header row of unique
 * non-empty names; blank lines are skipped).  A row with the wrong number of
 * fields is an error.  path must name a regular file: a path that is
 * missing, not readable, a directory, a FIFO or a device gets one message
 * and LOOM_ENOENT, so that a caller learns nothing about which paths exist.
 * Messages quote the header's column names (escaped), never other content.
 * stop may be NULL.  0, or a LOOM_E* code with *err set (free it). */
int tf_csv_read(const char *path, const tf_stop *stop, tf_table *t, char **err);
/* The same from memory (tests; name is used in messages). */
int tf_csv_parse(const char *data, size_t len, const char *name, const tf_stop *stop,
                 tf_table *t, char **err);
void tf_table_free(tf_table *t);
/* Index of a column by name, or -1. */
int tf_table_column(const tf_table *t, const char *name);

/* ------------------------------------------------------------------ datasets */

enum tf_task {
	TF_TASK_FORECAST = 1,       /* predict targets over the next horizon steps */
	TF_TASK_REGRESSION = 2,     /* predict targets at the window's last step */
	TF_TASK_CLASSIFICATION = 3, /* predict the label at the window's last step */
	TF_TASK_ANOMALY = 4,        /* reconstruct the window; labels optional */
};

enum tf_normalize {
	TF_NORM_NONE = 0,
	TF_NORM_ZSCORE = 1,         /* (x − mean) / std, std of 0 treated as 1 */
	TF_NORM_MINMAX = 2,         /* (x − min) / (max − min), range 0 as 1 */
};

enum tf_fill {
	TF_FILL_NONE = 0,           /* a missing value is an error naming row/column */
	TF_FILL_FFILL = 1,          /* carry the last value forward (a leading gap
	                             * takes the first value) */
	TF_FILL_LINEAR = 2,         /* interpolate between neighbours in time */
	TF_FILL_ZERO = 3,
};

/* What the job spec's data and model groups say (spec.c fills it). */
typedef struct tf_data_spec {
	const char *time_column;    /* NULL: file order */
	const char *const *features;/* channel names; NULL (or n_features 0):
	                             * every numeric column but the time column
	                             * and, except for forecasting, the targets */
	size_t n_features;
	const char *const *targets; /* forecast: channels to predict (NULL: the
	                             * features); regression: channels to predict
	                             * (required, and not features); classification:
	                             * one label column; anomaly: an optional 0/1
	                             * label column */
	size_t n_targets;
	double split[3];            /* train, validation, test fractions (sum 1) */
	int normalize;              /* enum tf_normalize */
	int fill;                   /* enum tf_fill */
	int task;                   /* enum tf_task */
	int64_t context;            /* input window length (time steps) */
	int64_t horizon;            /* forecast length (forecast only) */
	int64_t stride;             /* steps between window starts */
	int64_t season;             /* seasonal-naive period; 0: infer from the
	                             * time column's spacing (hourly 24, daily 7,
	                             * weekly 52, monthly 12, quarterly 4) */
	/* An incremental run (train.init): the init version's normalization, used
	 * instead of statistics fitted on the training rows; NULL: fitted. Arrays of
	 * the dataset's n_in / n_out.  in_shift and in_scale go together, as do
	 * out_shift and out_scale; a scale must be finite and not 0, a shift
	 * finite (else LOOM_EINVAL naming the channel). */
	const double *in_shift, *in_scale, *out_shift, *out_scale;
	/* Classification: the init version's classes, in their order; a label of
	 * the data not among them is appended after them (the new ones sorted by
	 * name).  NULL: the classes found, sorted by name, as today.  The names
	 * must be distinct and not empty. */
	const char *const *classes;
	size_t n_classes;
} tf_data_spec;

/* The data of one job, in memory.  Rows are in time order. */
typedef struct tf_dataset {
	int64_t rows;
	int64_t n_in;               /* input channels */
	int64_t n_out;              /* target values per row (forecast and
	                             * regression: target channels; classification:
	                             * 1; anomaly: 0 or 1 label) */
	char **in_names;            /* [n_in] */
	char **out_names;           /* [n_out] */
	float *x;                   /* [rows, n_in] normalized inputs */
	float *y;                   /* [rows, n_out] normalized targets
	                             * (classification: the class index) */
	double *x_raw;              /* [rows, n_in] in original units */
	double *y_raw;              /* [rows, n_out] in original units */
	/* normalization: normalized = (raw − shift) / scale, per channel */
	double *in_shift, *in_scale;    /* [n_in] */
	double *out_shift, *out_scale;  /* [n_out] */
	/* classification */
	int32_t n_classes;
	char **class_names;         /* [n_classes], sorted by name; with
	                             * spec->classes, those then the new ones */
	int64_t *class_counts;      /* [n_classes] over the training split's
	                             * labelled rows (0 for a class it lacks) */
	int32_t n_new_classes;      /* labels appended to spec->classes (the
	                             * last n_new_classes of class_names) */
	int64_t unlabeled;          /* classification: rows whose label cell is
	                             * empty or NA/NaN/null; a window whose last
	                             * input row is one of them is in no split's
	                             * window list (the row still serves as
	                             * context of other windows) */
	/* splits: rows [split_begin[s], split_end[s]) for s = 0 train, 1
	 * validation, 2 test; windows whose predicted rows fall in split s */
	int64_t split_begin[3], split_end[3];
	int64_t n_windows[3];
	int64_t *window_start[3];   /* [n_windows[s]] first row of each window */
	int64_t season;             /* the period used for seasonal naive, 0: none */
	int64_t filled;             /* how many missing values were filled */
	int64_t unordered;          /* rows earlier in time than the row above
	                             * them in the file (rows were sorted; > 0
	                             * deserves a warning) */
} tf_dataset;

/* Build the dataset of spec from a table.  Rows are sorted by the time
 * column (stably); two rows with the same time are an error naming both
 * lines.  With a fill, a value that is not a number in a numeric channel is
 * treated as missing and filled.  Windows: a window starting at row
 * r covers inputs [r, r+context) and, for forecasting, targets
 * [r+context, r+context+horizon); it belongs to the split holding its
 * predicted rows (forecast: all of the horizon; the others: the last input
 * row) and may take its inputs from the rows before that split.  Starts
 * advance by stride, from the first window that fits in the split.  Errors
 * (LOOM_EINVAL with *err): a missing column (with a suggestion), a
 * non-numeric value in a numeric channel (row, column, the value), missing
 * values without a fill, a time value that does not parse or repeats another
 * row's, too few rows for one window in a split whose fraction is not 0 (how
 * many rows each split has and needs), a split that does not sum to 1, a
 * classification label column with one class (counting spec->classes), with
 * no labelled row, or leaving no labelled window in a split whose fraction
 * is not 0 (rows without a label are otherwise left out, see tf_dataset.
 * unlabeled), spec->classes with an empty or repeated name, the init
 * normalization with a scale of 0 or a value that is not finite;
 * LOOM_ENOMEM.  spec->in_shift/in_scale must have the dataset's n_in
 * entries and out_shift/out_scale its n_out, in channel order: the caller
 * checks the init version's channels and targets are this data's first. */
int tf_dataset_build(const tf_table *t, const tf_data_spec *spec, tf_dataset *ds, char **err);
void tf_dataset_free(tf_dataset *ds);

/* A file's rows as a trained model reads them for prediction (batch.c):
 * the channels it was trained on, by name and in its order, rows sorted by
 * the time column as tf_dataset_build sorts them (equal times refused),
 * missing values refused or filled as fill says (enum tf_fill) — the same
 * code and messages as a training run's, without targets, splits or
 * normalization.  Errors (LOOM_EINVAL with *err): no data rows, a missing
 * column (with a suggestion and the columns there are), a time that does
 * not parse or repeats, a value that is not a number, a missing value
 * without a fill (line and column); LOOM_ENOMEM. */
typedef struct tf_series {
	int64_t rows;
	int64_t n_in;
	double *x;                  /* [rows, n_in] original units, time order, filled */
	int64_t *row;               /* [rows] the table row of each (its file line:
	                             * t->line[row[i]]) */
	int time_col;               /* the time column's index, or -1 */
	int64_t filled;             /* missing values filled */
	int64_t unordered;          /* rows earlier than the row above them */
} tf_series;

int tf_series_build(const tf_table *t, const char *time_column, const char *const *channels,
                    size_t n_channels, int fill, tf_series *s, char **err);
void tf_series_free(tf_series *s);

/* Gather a batch of n windows of split s (window indices idx[n]):
 * x[n, context, n_in] inputs; y[n, target_len] where target_len is
 * horizon·n_out (forecast, [h][channel] order), n_out (regression), 1
 * (classification: class index as float) or context·n_in (anomaly: the
 * input window itself).  y may be NULL. */
void tf_dataset_batch(const tf_dataset *ds, const tf_data_spec *spec, int s, const int64_t *idx,
                      int64_t n, float *x, float *y);

/* Baselines on split s in original units, for metrics.json:
 * forecasting: repeat-last (the last input value held over the horizon) and
 * seasonal naive (the value one season before each target step; skipped
 * when season is 0 or longer than context) — MAE and MSE over all windows
 * and target channels; classification: the majority class of the training
 * split — accuracy on split s.  Fills what applies; NAN otherwise. */
typedef struct tf_baselines {
	double repeat_last_mae, repeat_last_mse;
	double seasonal_mae, seasonal_mse;
	double majority_accuracy;
	int32_t majority_class;
} tf_baselines;
void tf_dataset_baselines(const tf_dataset *ds, const tf_data_spec *spec, int s,
                          tf_baselines *out);

#endif /* LOOM_TF_DATA_H */
