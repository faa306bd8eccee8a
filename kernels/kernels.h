/* kernels.h — CPU math for the Transformer engine: forward and backward of
 * every op, written plainly (llm.c style), threaded with a fixed split.
 *
 * Conventions
 * - Row-major.  A linear layer's weight is [out, in] (as PyTorch stores it):
 *   y = x W^T + b.
 * - Every backward ACCUMULATES (+=) into the gradients it writes: parameter
 *   gradients and input gradients alike, so residual branches simply add.
 *   Callers zero gradient buffers before a backward pass.
 * - Each function exists for float (lk_*) and double (lkd_*), compiled from
 *   one source (kernels/cpu/ops_impl.h): the double build is what the
 *   finite-difference tests differentiate, the float build is what trains.
 * - Determinism: with the same pool (same thread count) every result is
 *   bit-identical from run to run.  Work is split into fixed contiguous
 *   chunks; every reduction runs in a fixed order; random numbers come from
 *   a counter-based generator keyed by (seed, stream, index), never from
 *   shared state, so they do not depend on scheduling.
 * - Sizes are int64_t; pointers never alias unless stated. */
#ifndef LOOM_KERNELS_H
#define LOOM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ threads */

/* A fixed-size pool of worker threads.  NULL everywhere means "the calling
 * thread only" for Loom's own loops; matrix products then run with the CBLAS
 * thread count the last pool set (a head plugin, which has no pool,
 * multiplies with the threads of the model calling it). */
typedef struct lk_pool lk_pool;

/* Create a pool that runs work on `threads` threads in total (the caller's
 * included; threads ≤ 1 gives a pool that runs everything inline).  Also
 * sets the CBLAS (OpenBLAS) thread count used for matrix products issued
 * from the calling thread.  NULL on failure. */
lk_pool *lk_pool_create(int threads);
void lk_pool_destroy(lk_pool *pool);
int lk_pool_threads(const lk_pool *pool);

/* Run fn(arg, begin, end) over [0, n) split into lk_pool_threads()
 * contiguous chunks, chunk i = [i*n/T, (i+1)*n/T), and wait for all.  The
 * split depends only on n and the thread count. */
typedef void (*lk_range_fn)(void *arg, int64_t begin, int64_t end);
void lk_parallel_for(lk_pool *pool, int64_t n, lk_range_fn fn, void *arg);

/* ------------------------------------------------------------------ random numbers */

/* A counter-based generator: the value depends only on its inputs. */
uint64_t lk_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform in [0, 1) with 24 random bits (exactly representable in float). */
float lk_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter);
/* Standard normal (Box–Muller on two uniforms of the same counter). */
double lk_rand_normal(uint64_t seed, uint64_t stream, uint64_t counter);

/* ------------------------------------------------------------------ the ops */

#define LK_DECLARE_OPS(T, P)                                                               \
	/* out[N,O] = in[N,I] · w[O,I]^T + b[O] (b may be NULL). */                        \
	void P##linear_forward(T *out, const T *in, const T *w, const T *b, int64_t n,         \
	                       int64_t in_dim, int64_t out_dim, lk_pool *pool);                \
	/* din[N,I] += dout·w; dw[O,I] += dout^T·in; db[O] += Σ_n dout.  din or db         \
	 * may be NULL (not wanted). */                                                    \
	void P##linear_backward(T *din, T *dw, T *db, const T *dout, const T *in, const T *w,  \
	                        int64_t n, int64_t in_dim, int64_t out_dim, lk_pool *pool);    \
                                                                                           \
	/* LayerNorm over the last dimension (biased variance, as PyTorch).  mean[N]        \
	 * and rstd[N] are saved for the backward pass. */                                \
	void P##layernorm_forward(T *out, T *mean, T *rstd, const T *in, const T *w,           \
	                          const T *b, int64_t n, int64_t d, double eps, lk_pool *pool); \
	void P##layernorm_backward(T *din, T *dw, T *db, const T *dout, const T *in,           \
	                           const T *w, const T *mean, const T *rstd, int64_t n,         \
	                           int64_t d, lk_pool *pool);                                  \
                                                                                           \
	/* GELU, the exact form x·Φ(x) = x/2·(1 + erf(x/√2)) (PyTorch's default). */       \
	void P##gelu_forward(T *out, const T *in, int64_t n, lk_pool *pool);                   \
	void P##gelu_backward(T *din, const T *in, const T *dout, int64_t n, lk_pool *pool);   \
                                                                                           \
	/* Dropout with probability p (0 ≤ p < 1): element i is kept iff               \
	 * lk_rand_uniform(seed, stream, i) ≥ p, and kept values are scaled by            \
	 * 1/(1-p).  p == 0 copies.  Backward regenerates the same mask. */              \
	void P##dropout_forward(T *out, const T *in, int64_t n, double p, uint64_t seed,       \
	                        uint64_t stream, lk_pool *pool);                               \
	void P##dropout_backward(T *din, const T *dout, int64_t n, double p, uint64_t seed,    \
	                         uint64_t stream, lk_pool *pool);                              \
                                                                                           \
	/* out = a + b (out may alias a or b); backward: da += dout, db += dout. */         \
	void P##residual_forward(T *out, const T *a, const T *b, int64_t n);                   \
	void P##residual_backward(T *da, T *db, const T *dout, int64_t n);                     \
                                                                                           \
	/* Multi-head scaled-dot-product self-attention without a mask.                    \
	 * qkv[B,T,3D] holds Q, K, V side by side (columns [0,D), [D,2D), [2D,3D)),        \
	 * head h using columns [h·dh, (h+1)·dh) of each, dh = D/H.  probs[B,H,T,T]          \
	 * receives softmax(Q·K^T/√dh) (before dropout) for the backward pass;              \
	 * attention dropout (p, seed, stream; the counter is the index into probs)         \
	 * is applied to the probabilities before they weigh V.  out[B,T,D] (heads          \
	 * concatenated).  Parallel over B·H. */                                            \
	void P##attention_forward(T *out, T *probs, const T *qkv, int64_t b, int64_t t,        \
	                          int64_t d, int64_t h, double p, uint64_t seed,                \
	                          uint64_t stream, lk_pool *pool);                             \
	/* dqkv[B,T,3D] += the gradient; scratch holds B·H·T·T values. */                   \
	void P##attention_backward(T *dqkv, T *scratch, const T *dout, const T *qkv,           \
	                           const T *probs, int64_t b, int64_t t, int64_t d, int64_t h,  \
	                           double p, uint64_t seed, uint64_t stream, lk_pool *pool);    \
                                                                                           \
	/* x[B,T,D] += pos[T,D]; backward: dpos[T,D] += Σ_b dx[b] (b in order). */           \
	void P##positions_forward(T *x, const T *pos, int64_t b, int64_t t, int64_t d);        \
	void P##positions_backward(T *dpos, const T *dx, int64_t b, int64_t t, int64_t d);     \
                                                                                           \
	/* Sinusoidal positions (Vaswani et al.): pos[t, 2i] = sin(t/10000^(2i/D)),         \
	 * pos[t, 2i+1] = cos(...). */                                                      \
	void P##positions_sinusoidal(T *pos, int64_t t, int64_t d);                           \
                                                                                           \
	/* Patches: x[B,L,C] (time-major series) → out[B, L/P, P·C], token j holding      \
	 * time steps [jP, (j+1)P) with element (p, c) at p·C + c.  L % P == 0. */           \
	void P##patchify(T *out, const T *x, int64_t b, int64_t l, int64_t c, int64_t p);      \
	/* Channel independence: x[B,L,C] → out[B·C, L] (sequence b·C + c). */              \
	void P##channels_split(T *out, const T *x, int64_t b, int64_t l, int64_t c);           \
	/* and back: y[B·C, H] → out[B,H,C]; its backward is the forward's layout       \
	 * applied to the gradient (channels_split with l = H). */                          \
	void P##channels_merge(T *out, const T *y, int64_t b, int64_t hz, int64_t c);          \
                                                                                           \
	/* Reversible instance normalization over time, per sequence and channel:          \
	 * mean[B,C], stdev[B,C] = sqrt(var + eps) (biased var); out = (x-mean)/stdev. */  \
	void P##revin_normalize(T *out, T *mean, T *stdev, const T *x, int64_t b, int64_t l,   \
	                        int64_t c, double eps);                                        \
	/* y[B,H,C] = yn·stdev + mean; backward: dyn += dy·stdev. */                        \
	void P##revin_denormalize(T *y, const T *yn, const T *mean, const T *stdev, int64_t b,  \
	                          int64_t hz, int64_t c);                                      \
	void P##revin_denormalize_backward(T *dyn, const T *dy, const T *stdev, int64_t b,     \
	                                   int64_t hz, int64_t c);                             \
                                                                                           \
	/* Losses: the mean over n elements is returned (accumulated in double); the        \
	 * backward writes (=, not +=) d(scale·loss)/dpred into dpred. */                    \
	double P##mse_forward(const T *pred, const T *target, int64_t n);                      \
	void P##mse_backward(T *dpred, const T *pred, const T *target, int64_t n, double scale); \
	double P##mae_forward(const T *pred, const T *target, int64_t n);                      \
	void P##mae_backward(T *dpred, const T *pred, const T *target, int64_t n, double scale); \
	/* Huber with threshold delta (PyTorch's HuberLoss). */                             \
	double P##huber_forward(const T *pred, const T *target, int64_t n, double delta);      \
	void P##huber_backward(T *dpred, const T *pred, const T *target, int64_t n,            \
	                       double delta, double scale);                                    \
	/* Cross-entropy fused with softmax over K classes for N rows; targets are         \
	 * class indices.  probs[N,K] receives the softmax; returns the mean loss.           \
	 * Backward: dlogits = scale·(probs − onehot)/N. */                                  \
	double P##crossentropy_forward(T *probs, const T *logits, const int32_t *targets,      \
	                               int64_t n, int64_t k);                                  \
	void P##crossentropy_backward(T *dlogits, const T *probs, const int32_t *targets,      \
	                              int64_t n, int64_t k, double scale);                     \
                                                                                           \
	/* AdamW (decoupled weight decay, as torch.optim.AdamW): step t ≥ 1;               \
	 * p ← p − lr·wd·p; m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;                    \
	 * p ← p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + eps). */                               \
	void P##adamw_update(T *param, const T *grad, T *m, T *v, int64_t n, double lr,        \
	                     double beta1, double beta2, double eps, double weight_decay,      \
	                     int64_t t, lk_pool *pool);                                        \
	/* Σ g² in double, in a fixed order. */                                            \
	double P##sum_squares(const T *x, int64_t n);                                          \
	/* x *= s. */                                                                       \
	void P##scale(T *x, int64_t n, double s);

LK_DECLARE_OPS(float, lk_)
LK_DECLARE_OPS(double, lkd_)

/* Clip by global norm, as torch.nn.utils.clip_grad_norm_: with
 * total = sqrt(Σ over all gradient buffers of Σ g²), scale every buffer by
 * max_norm/(total + 1e-6) when that is below 1.  Returns total. */
double lk_clip_grad_norm(float *const *grads, const int64_t *sizes, size_t n_buffers,
                         double max_norm);

/* The CBLAS sgemm rate on this machine, GFLOP/s, for an m×k·k×n product
 * repeated for about `seconds` (benchmarks report efficiency against it). */
double lk_sgemm_gflops(int64_t m, int64_t n, int64_t k, double seconds);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_KERNELS_H */
