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
 * sums NaN: the caller then takes the run again with the reprokit_stats_skipnan_* functions,
 * which leave them out of the sums too and count them (slower: a mask and counts for every
 * element). An infinite element, or sums that overflow (|x| near 1e154 and beyond, squared),
 * make an output infinite: numpy summarises such a run (it counts the infinities and says
 * which statistic is lost).
 */
#include <stdint.h>
#include <string.h>

#define SUB 1024 /* elements summed into the partial sums before they are added up */
#define QUIET_F32 0x7fc00000                /* np.float32(np.nan) */
#define QUIET_F64 INT64_C(0x7ff8000000000000) /* np.nan */

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
    f4 lows = {x[0], x[0], x[0], x[0]}, highs = lows, lows_b = lows, highs_b = lows;
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
            lows = min_f4(a, lows); /* a NaN compares false: left out */
            lows_b = min_f4(b, lows_b);
            highs = max_f4(a, highs);
            highs_b = max_f4(b, highs_b);
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
        low = lows_b[j] < low ? lows_b[j] : low;
        high = highs[j] > high ? highs[j] : high;
        high = highs_b[j] > high ? highs_b[j] : high;
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
    d4 lows = {x[0], x[0], x[0], x[0]}, highs = lows, lows_b = lows, highs_b = lows;
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
            lows = min_d4(a, lows); /* a NaN compares false: left out */
            lows_b = min_d4(b, lows_b);
            highs = max_d4(a, highs);
            highs_b = max_d4(b, highs_b);
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
        low = lows_b[j] < low ? lows_b[j] : low;
        high = highs[j] > high ? highs[j] : high;
        high = highs_b[j] > high ? highs_b[j] : high;
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

/* The same leaving NaNs out, for a run that holds one: out also gets the count of the other
 * elements, and of the NaNs whose bits are numpy's np.nan (QUIET_*: the NaN a digest takes
 * every NaN as; those of other bits it must rewrite), as doubles. A NaN adds +0.0 to the
 * sums, which changes none of them (bar the sign of a sum that is zero): on a run without one,
 * this gives what the functions above give, bit for bit. An infinity is not left out: min or max, or the sums, come out infinite (or NaN),
 * and the caller has numpy summarise the run. With only NaNs, min is +inf and max -inf. */
static inline d4 kept_f4(f4 a, i4 kept, d4 by) {
    i8 wide = __builtin_convertvector(kept, i8);
    return (d4)((i8)(__builtin_convertvector(a, d4) - by) & wide);
}

static void counted(double *out, double low, double high, double s, double q, int64_t kept,
                    int64_t usual) {
    out[0] = low;
    out[1] = high;
    out[2] = s;
    out[3] = q;
    out[4] = (double)kept;
    out[5] = (double)usual;
}

VARIANTS void reprokit_stats_skipnan_f32(const float *x, int64_t n, double shift, double *out) {
    const float up = __builtin_inff();
    const f4 ups = {up, up, up, up};
    const i4 quiet = {QUIET_F32, QUIET_F32, QUIET_F32, QUIET_F32};
    const d4 by = {shift, shift, shift, shift};
    f4 lows = ups, highs = -ups, lows_b = ups, highs_b = -ups;
    double s = 0.0, q = 0.0;
    int64_t kept = 0, usual = 0;
    int64_t i = 0;
    while (n - i >= 8) {
        d4 s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        i4 k = {0}, u = {0};
        int64_t whole = (n - i) / 8 * 8;
        int64_t end = i + (whole < SUB ? whole : SUB);
        for (; i < end; i += 8) {
            f4 a, b;
            memcpy(&a, x + i, sizeof a);
            memcpy(&b, x + i + 4, sizeof b);
            i4 ka = a == a, kb = b == b;
            lows = min_f4(a, lows); /* a NaN compares false: left out */
            lows_b = min_f4(b, lows_b);
            highs = max_f4(a, highs);
            highs_b = max_f4(b, highs_b);
            d4 da = kept_f4(a, ka, by), db = kept_f4(b, kb, by);
            s0 += da;
            s1 += db;
            q0 += da * da;
            q1 += db * db;
            k -= ka + kb;
            u -= ((i4)a == quiet) + ((i4)b == quiet);
        }
        s += total_of(s0, s1);
        q += total_of(q0, q1);
        kept += (int64_t)k[0] + k[1] + k[2] + k[3];
        usual += (int64_t)u[0] + u[1] + u[2] + u[3];
    }
    float low = up, high = -up;
    for (int j = 0; j < 4; j++) {
        low = lows[j] < low ? lows[j] : low;
        low = lows_b[j] < low ? lows_b[j] : low;
        high = highs[j] > high ? highs[j] : high;
        high = highs_b[j] > high ? highs_b[j] : high;
    }
    for (; i < n; i++) {
        float v = x[i];
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        usual += bits == QUIET_F32;
        if (v == v) {
            double d = (double)v - shift;
            s += d;
            q += d * d;
            low = v < low ? v : low;
            high = v > high ? v : high;
            kept++;
        }
    }
    counted(out, low, high, s, q, kept, usual);
}

VARIANTS void reprokit_stats_skipnan_f64(const double *x, int64_t n, double shift, double *out) {
    const double up = __builtin_inf();
    const d4 ups = {up, up, up, up};
    const i8 quiet = {QUIET_F64, QUIET_F64, QUIET_F64, QUIET_F64};
    const d4 by = {shift, shift, shift, shift};
    d4 lows = ups, highs = -ups, lows_b = ups, highs_b = -ups;
    double s = 0.0, q = 0.0;
    int64_t kept = 0, usual = 0;
    int64_t i = 0;
    while (n - i >= 8) {
        d4 s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        i8 k = {0}, u = {0};
        int64_t whole = (n - i) / 8 * 8;
        int64_t end = i + (whole < SUB ? whole : SUB);
        for (; i < end; i += 8) {
            d4 a, b;
            memcpy(&a, x + i, sizeof a);
            memcpy(&b, x + i + 4, sizeof b);
            i8 ka = a == a, kb = b == b;
            lows = min_d4(a, lows); /* a NaN compares false: left out */
            lows_b = min_d4(b, lows_b);
            highs = max_d4(a, highs);
            highs_b = max_d4(b, highs_b);
            d4 da = (d4)((i8)(a - by) & ka), db = (d4)((i8)(b - by) & kb);
            s0 += da;
            s1 += db;
            q0 += da * da;
            q1 += db * db;
            k -= ka + kb;
            u -= ((i8)a == quiet) + ((i8)b == quiet);
        }
        s += total_of(s0, s1);
        q += total_of(q0, q1);
        kept += k[0] + k[1] + k[2] + k[3];
        usual += u[0] + u[1] + u[2] + u[3];
    }
    double low = up, high = -up;
    for (int j = 0; j < 4; j++) {
        low = lows[j] < low ? lows[j] : low;
        low = lows_b[j] < low ? lows_b[j] : low;
        high = highs[j] > high ? highs[j] : high;
        high = highs_b[j] > high ? highs_b[j] : high;
    }
    for (; i < n; i++) {
        double v = x[i];
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        usual += bits == (uint64_t)QUIET_F64;
        if (v == v) {
            double d = v - shift;
            s += d;
            q += d * d;
            low = v < low ? v : low;
            high = v > high ? v : high;
            kept++;
        }
    }
    counted(out, low, high, s, q, kept, usual);
}

/* The version of this interface: native.py loads a library only if it says the one it knows. */
int reprokit_stats_abi(void) { return 4; }
