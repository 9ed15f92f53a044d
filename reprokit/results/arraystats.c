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

static inline d4 widen_f4(f4 a) { return __builtin_convertvector(a, d4); }
static inline d4 widen_d4(d4 a) { return a; }
static inline i8 widen_i4(i4 m) { return __builtin_convertvector(m, i8); }
static inline i8 widen_i8(i8 m) { return m; }

/* The kernels, written once in arraystats_kernels.h and made here for each element type. */
#define ELEM float
#define VEC f4
#define MASK i4
#define BITS uint32_t
#define QUIET QUIET_F32
#define SUFFIX f32
#define WIDEN widen_f4
#define WIDE_MASK widen_i4
#define VMIN min_f4
#define VMAX max_f4
#include "arraystats_kernels.h"

#define ELEM double
#define VEC d4
#define MASK i8
#define BITS uint64_t
#define QUIET QUIET_F64
#define SUFFIX f64
#define WIDEN widen_d4
#define WIDE_MASK widen_i8
#define VMIN min_d4
#define VMAX max_d4
#include "arraystats_kernels.h"

/* The version of this interface: native.py loads a library only if it says the one it knows. */
int reprokit_stats_abi(void) { return 4; }

