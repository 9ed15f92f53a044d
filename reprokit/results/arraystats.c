/* One pass over a run of float32 or float64 elements: min, max, and the sum and sum of
 * squares of (x - shift) in float64. Loaded with ctypes by reprokit/results/native.py (a plain
 * C function, no Python API: the same library serves any Python version, and ctypes releases
 * the GIL while it runs). Built at install by hatch_build.py; without it numpy does the same
 * in four passes and a float64 copy (reprokit/results/arraypass.py).
 *
 * The sums are exact IEEE arithmetic in a fixed order (no fast-math, no contraction into
 * fused multiply-adds): every machine, with or without AVX2, gets the same bits. Sixteen
 * partial sums over blocks of SUB elements, then the blocks summed in turn: the rounding
 * error stays near 10^-14 of the sums for a run of 2^17 elements.
 *
 * NaN elements are left out of min and max (a comparison with NaN is false) but make the
 * sums NaN, and an infinite element makes them infinite or NaN: the caller takes any
 * non-finite output as "summarise this run with numpy instead", which counts them.
 */
#include <stdint.h>
#include <string.h>

#define SUB 1024 /* elements summed into the partial sums before they are added up */

typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));
typedef double d4 __attribute__((vector_size(32)));
typedef int64_t i8 __attribute__((vector_size(32)));

#if defined(REPROKIT_CLONES)
#define VARIANTS __attribute__((target_clones("avx2", "default")))
#else
#define VARIANTS
#endif

static inline f4 min_f4(f4 a, f4 b) { i4 m = a < b; return (f4)((m & (i4)a) | (~m & (i4)b)); }
static inline f4 max_f4(f4 a, f4 b) { i4 m = a > b; return (f4)((m & (i4)a) | (~m & (i4)b)); }
static inline d4 min_d4(d4 a, d4 b) { i8 m = a < b; return (d4)((m & (i8)a) | (~m & (i8)b)); }
static inline d4 max_d4(d4 a, d4 b) { i8 m = a > b; return (d4)((m & (i8)a) | (~m & (i8)b)); }

static inline double total_of(d4 a, d4 b) {
    d4 t = a + b;
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* out: min, max, sum of (x - shift), sum of (x - shift)^2. n >= 1. */
VARIANTS void reprokit_stats_f32(const float *x, int64_t n, double shift, double *out) {
    double s = 0.0, q = 0.0;
    float low = x[0], high = x[0];
    f4 lows = {x[0], x[0], x[0], x[0]}, highs = lows;
    const d4 by = {shift, shift, shift, shift};
    int64_t i = 0;
    while (n - i >= 8) {
        d4 s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        int64_t whole = (n - i) / 8 * 8;
        int64_t end = i + (whole < SUB ? whole : SUB);
        for (; i < end; i += 8) {
            f4 a, b;
            memcpy(&a, x + i, sizeof a);
            memcpy(&b, x + i + 4, sizeof b);
            lows = min_f4(min_f4(a, b), lows);
            highs = max_f4(max_f4(a, b), highs);
            d4 da = __builtin_convertvector(a, d4) - by;
            d4 db = __builtin_convertvector(b, d4) - by;
            s0 += da;
            s1 += db;
            q0 += da * da;
            q1 += db * db;
        }
        s += total_of(s0, s1);
        q += total_of(q0, q1);
    }
    for (int j = 0; j < 4; j++) {
        low = lows[j] < low ? lows[j] : low;
        high = highs[j] > high ? highs[j] : high;
    }
    for (; i < n; i++) {
        double d = (double)x[i] - shift;
        s += d;
        q += d * d;
        low = x[i] < low ? x[i] : low;
        high = x[i] > high ? x[i] : high;
    }
    out[0] = low;
    out[1] = high;
    out[2] = s;
    out[3] = q;
}

VARIANTS void reprokit_stats_f64(const double *x, int64_t n, double shift, double *out) {
    double s = 0.0, q = 0.0;
    double low = x[0], high = x[0];
    d4 lows = {x[0], x[0], x[0], x[0]}, highs = lows;
    const d4 by = {shift, shift, shift, shift};
    int64_t i = 0;
    while (n - i >= 8) {
        d4 s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        int64_t whole = (n - i) / 8 * 8;
        int64_t end = i + (whole < SUB ? whole : SUB);
        for (; i < end; i += 8) {
            d4 a, b;
            memcpy(&a, x + i, sizeof a);
            memcpy(&b, x + i + 4, sizeof b);
            lows = min_d4(min_d4(a, b), lows);
            highs = max_d4(max_d4(a, b), highs);
            d4 da = a - by, db = b - by;
            s0 += da;
            s1 += db;
            q0 += da * da;
            q1 += db * db;
        }
        s += total_of(s0, s1);
        q += total_of(q0, q1);
    }
    for (int j = 0; j < 4; j++) {
        low = lows[j] < low ? lows[j] : low;
        high = highs[j] > high ? highs[j] : high;
    }
    for (; i < n; i++) {
        double d = x[i] - shift;
        s += d;
        q += d * d;
        low = x[i] < low ? x[i] : low;
        high = x[i] > high ? x[i] : high;
    }
    out[0] = low;
    out[1] = high;
    out[2] = s;
    out[3] = q;
}

/* The version of this interface: native.py loads a library only if it says the one it knows. */
int reprokit_stats_abi(void) { return 1; }
