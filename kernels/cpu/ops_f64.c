/* ops_f64.c — the double kernels (lkd_*), the ones the finite-difference
 * tests differentiate: exp and Φ from libm. */
#include "config.h"

#include <math.h>

/* Φ(x) = erfc(−x/√2)/2 */
static inline double
phi_d(double x)
{
	return 0.5 * erfc(-x * M_SQRT1_2);
}

#define REAL double
#define P(name) lkd_##name
#define GEMM cblas_dgemm
#define EXP exp
#define PHI phi_d

#include "kernels/cpu/ops_impl.h"
