/* linear.h — the weights of the linear and naive models (TF_FORM_LINEAR):
 * ridge regression in closed form over the windows the Transformer trains
 * on, and the naive forecasts written as the fixed linear maps they are.
 *
 * Both work in the linear form's units: the input x' [L·cin] is the window
 * after reversible normalization and the channel split (element t·cin + c
 * is step t of channel c), the output [out_dim] is what the head scores
 * (tf_model_unpredict maps targets there).  A map is linear.weight
 * [out_dim, L·cin] and linear.bias [out_dim]. */
#ifndef LOOM_TF_LINEAR_H
#define LOOM_TF_LINEAR_H

#include <stdint.h>

/* Sums of a least-squares problem, in double: Σ x·xᵀ, Σ x·yᵀ, Σ x, Σ y and
 * the count, over rows x [f] with targets y [od]. */
typedef struct tf_gram {
	int64_t f, od;
	double n;
	double *xx;     /* [f, f], lower triangle filled until tf_gram_finish */
	double *xy;     /* [f, od] */
	double *sx;     /* [f] */
	double *sy;     /* [od] */
	double *bx, *by; /* a chunk of rows, converted */
	int64_t chunk;
} tf_gram;

/* 0 or LOOM_ENOMEM. */
int tf_gram_init(tf_gram *g, int64_t f, int64_t od);
void tf_gram_free(tf_gram *g);

/* Add n rows x [n, f] with targets y [n, od]; a row with a NaN or an
 * infinity in it (a window over missing values left missing) is skipped. */
void tf_gram_add(tf_gram *g, const float *x, const float *y, int64_t n);

/* The ridge map: w [od, f] and b [od] minimizing the mean of |y − w·x − b|²
 * plus lambda·|w|², lambda = alpha times the mean variance of the features
 * (so alpha is free of the data's scale); the bias is not penalized.  With
 * ma_kernel > 1 the features are first split into a trend (a moving
 * average over time of that many steps, the ends repeated, as DLinear)
 * and the rest, each with weights of its own, and the two are folded back
 * into one map of x.  L and cin lay out x (element t·cin + c).  0, or
 * LOOM_ENOMEM, or LOOM_ERANGE when there are no rows or the system is
 * singular. */
int tf_ridge(const tf_gram *g, double alpha, int64_t ma_kernel, int64_t L, int64_t cin,
             float *w, float *b);

/* The naive forecasts. */
enum tf_naive {
	TF_NAIVE_REPEAT_LAST = 0, /* every step: the window's last value */
	TF_NAIVE_SEASONAL = 1,    /* step h: the value one season before (repeated) */
	TF_NAIVE_DRIFT = 2,       /* the last value plus the window's mean slope */
	TF_NAIVE_MEAN = 3,        /* the training targets' mean (regression) */
	TF_NAIVE_COUNT = 4,
};

const char *tf_naive_name(int method);

/* The map of a naive method for forecasts of horizon H: output h·K + k
 * (K targets, K = 1 with channel independence) from input channel
 * target_in[k] (NULL: channel 0) of cin.  TF_NAIVE_MEAN gives w = 0 and
 * b = mean[od] (mean may be NULL otherwise).  0, or LOOM_EINVAL when the
 * method does not apply (a season above L or below 1; drift with L < 2; a
 * target that is not an input). */
int tf_naive_map(int method, int64_t season, int64_t L, int64_t cin, int64_t H, int64_t K,
                 const int64_t *target_in, const double *mean, float *w, float *b);

#endif /* LOOM_TF_LINEAR_H */
