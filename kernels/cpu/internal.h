/* internal.h — what the CPU kernels share and do not export: the Philox
 * generator (inline, so the dropout loops need no call per element), the
 * CBLAS thread-count hook, and the small-work threshold. */
#ifndef LOOM_KERNELS_CPU_INTERNAL_H
#define LOOM_KERNELS_CPU_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

/* ------------------------------------------------------------------ Philox4x32-10
 *
 * Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3"
 * (SC'11), the generator of Random123, cuRAND and PyTorch's CUDA dropout.
 * A keyed bijection of a 128-bit counter: ten rounds of two 32×32→64
 * multiplications.  Philox4x32-10 passes TestU01's BigCrush for every key
 * and counter pattern its authors tried (sequential, strided, one bit
 * flipped), with a safety margin of three rounds (seven already pass), so
 * values keyed by (seed, stream, counter) behave as independent uniforms
 * for any pattern of indices.  It is not cryptographic.
 *
 * Mapping: key = seed (low word, high word); counter = (counter low,
 * counter high, stream low, stream high).  The test checks Random123's
 * known-answer vectors. */
typedef struct {
	uint32_t w[4];
} lki_philox_out;

static inline lki_philox_out
lki_philox4x32_10(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3)
{
	lki_philox_out r;
	for (int round = 0; round < 10; round++) {
		uint64_t p0 = (uint64_t)0xD2511F53u * c0;
		uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
		uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
		uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
		c0 = hi1 ^ c1 ^ k0;
		c1 = lo1;
		c2 = hi0 ^ c3 ^ k1;
		c3 = lo0;
		k0 += 0x9E3779B9u;
		k1 += 0xBB67AE85u;
	}
	r.w[0] = c0;
	r.w[1] = c1;
	r.w[2] = c2;
	r.w[3] = c3;
	return r;
}

static inline lki_philox_out
lki_philox(uint64_t seed, uint64_t stream, uint64_t counter)
{
	return lki_philox4x32_10((uint32_t)seed, (uint32_t)(seed >> 32), (uint32_t)counter,
	                         (uint32_t)(counter >> 32), (uint32_t)stream,
	                         (uint32_t)(stream >> 32));
}

/* lk_rand_u64: words 1:0 of the block. */
static inline uint64_t
lki_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter)
{
	lki_philox_out r = lki_philox(seed, stream, counter);
	return ((uint64_t)r.w[1] << 32) | r.w[0];
}

/* lk_rand_uniform: four uniforms per Philox block, as cuRAND's
 * curand_uniform4 — counter c takes 32-bit word c mod 4 of the block at
 * counter c / 4, and its top 24 bits times 2^-24.  Consecutive counters
 * (a dropout mask) thus cost one block per four elements. */
static inline uint32_t
lki_rand_bits24(uint64_t seed, uint64_t stream, uint64_t counter)
{
	return lki_philox(seed, stream, counter >> 2).w[counter & 3] >> 8;
}

static inline float
lki_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter)
{
	return (float)lki_rand_bits24(seed, stream, counter) * 0x1p-24f;
}

/* ------------------------------------------------------------------ float math
 * exp and Φ for the float kernels, branch-free so that loops over them
 * vectorize (libm's expf and erfcf are calls, 4 and 15–40 ns each here).
 * Plain IEEE operations only: with -ffp-contract=off every build on every
 * x86-64 computes the same bits.  The double kernels use libm. */

static inline float
lki_bits_float(int32_t i)
{
	float f;
	memcpy(&f, &i, sizeof f);
	return f;
}

/* e^x, Cephes' expf (max relative error ~1.5e-7 on [-87, 88]): x = n·ln 2 + r
 * with n rounded by the 1.5·2^23 trick and ln 2 split in two (Cody–Waite),
 * e^r by a degree-7 polynomial, 2^n from the exponent bits.  Returns 0 below
 * −87.33 (where e^x < FLT_MIN) and saturates at e^88 above 88 (the kernels
 * only call it with x ≤ 0). */
static inline float
lki_expf(float x)
{
	/* every comparison and operation unconditional (selects, not branches):
	 * under -ftrapping-math the compiler will not if-convert an operation
	 * that runs on one path only, and the loop would stay scalar */
	float xc = x > 88.0f ? 88.0f : x;
	xc = xc < -87.33654f ? -87.33654f : xc;
	float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	float r = xc - fn * 0.693359375f;
	r = r - fn * -2.12194440e-4f;
	float y = 1.9875691500e-4f;
	y = y * r + 1.3981999507e-3f;
	y = y * r + 8.3334519073e-3f;
	y = y * r + 4.1665795894e-2f;
	y = y * r + 1.6666665459e-1f;
	y = y * r + 5.0000001201e-1f;
	y = y * (r * r) + r + 1.0f;
	y = y * lki_bits_float(((int32_t)fn + 127) << 23);
	return x < -87.33654f ? 0.0f : y;
}

/* Φ(x) = erfc(−x/√2)/2, with erfc from Numerical Recipes' erfcc (Chebyshev
 * fit, relative error < 1.2e-7 for every z ≥ 0; erfc(−z) = 2 − erfc(z)),
 * accurate in both tails.  In float the rounding of z² adds a relative
 * error of about z²·6e-8 to the far negative tail, where Φ < 1e-6. */
static inline float
lki_phif(float x)
{
	float z = (x < 0 ? -x : x) * 0.70710678118654752f;
	float t = 1.0f / (1.0f + 0.5f * z);
	float p = 0.17087277f;
	p = p * t - 0.82215223f;
	p = p * t + 1.48851587f;
	p = p * t - 1.13520398f;
	p = p * t + 0.27886807f;
	p = p * t - 0.18628806f;
	p = p * t + 0.09678418f;
	p = p * t + 0.37409196f;
	p = p * t + 1.00002368f;
	p = p * t - 1.26551223f;
	float half_erfc = 0.5f * t * lki_expf(p - z * z);
	float upper = 1.0f - half_erfc;
	return x < 0 ? half_erfc : upper;
}

/* ------------------------------------------------------------------ dispatch
 * LKI_HOT marks the kernels' inner loops for GCC function multiversioning:
 * an x86-64-v4 (AVX-512) clone and an AVX2 clone beside the baseline
 * x86-64 one, picked once at load time (ifunc) from the CPU.  The clones
 * run the same IEEE operations in the same order on wider vectors
 * (-ffp-contract=off forbids contracting them into FMAs, which x86-64-v4
 * has, and nothing is reassociated), so all three give the same bits —
 * checked for GELU over every float and for every op on fixed inputs.  On
 * cores with 512-bit units the AVX-512 clone halves the time of the
 * element-wise loops (measured on this project's Zen 5 machine, per
 * element: GELU forward 2.0 → 1.0 ns, backward 3.0 → 1.4 ns, AdamW 1.2 →
 * 0.66 ns).  Define LKI_NO_CLONES to build without clones, LKI_NO_AVX512
 * to build without the AVX-512 one. */
#if !defined(LKI_NO_CLONES) && defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__clang__) && __GNUC__ >= 12 && \
    !defined(LKI_NO_AVX512)
#define LKI_HOT __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#elif __has_attribute(target_clones)
#define LKI_HOT __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef LKI_HOT
#define LKI_HOT
#endif

/* ------------------------------------------------------------------ threads */

/* Matrix products: lki_gemm_begin returns the pool to split a product over
 * — pool itself, or for NULL an ambient pool of the published thread count
 * (OpenBLAS's; NULL when that is 1) — and holds OpenBLAS at one thread;
 * lki_gemm_end(restore) publishes the count again (pool.c explains).  With
 * a CBLAS that is not OpenBLAS every product runs on the calling thread's
 * pool, or on the calling thread for NULL. */
lk_pool *lki_gemm_begin(lk_pool *pool, int *restore);
void lki_gemm_end(int restore);

/* Test hook: nonzero makes attention take its plain path (no buffers, no
 * tiles), which must give the same bits as the optimized one. */
extern int lki_attention_plain;

/* Below this many elementary operations an op runs on the calling thread:
 * waking the pool costs more than the work.  Only a size decides it, never
 * timing, and every threaded op splits its work so that each output
 * element is computed the same way whatever the chunking (see ops_impl.h),
 * so the choice does not change results. */
#define LKI_GRAIN 16384

/* A matrix product is split across the pool when m·n·k reaches this (the
 * threshold below which OpenBLAS itself runs one thread), in blocks of
 * LKI_GEMM_BLOCK rows or columns so that every block but the last keeps
 * the micro-kernels' tiles full. */
#define LKI_GEMM_GRAIN 262144
#define LKI_GEMM_BLOCK 16

#endif /* LOOM_KERNELS_CPU_INTERNAL_H */
