/* ops_f32.c — the float kernels (lk_*), the ones that train.  exp and Φ are
 * the branch-free versions of internal.h, so the loops over them vectorize. */
#include "config.h"

#include "kernels/cpu/internal.h"

#define REAL float
#define P(name) lk_##name
#define GEMM cblas_sgemm
#define EXP lki_expf
#define PHI lki_phif

#include "kernels/cpu/ops_impl.h"
