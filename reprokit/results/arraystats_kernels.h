/* The two kernels of arraystats.c for one element type, included there once per type with
 * ELEM (float or double), VEC (its vector of 4), MASK (the matching integer vector), BITS (an
 * unsigned integer of its width), QUIET (np.nan's bits at that width), SUFFIX (f32 or f64),
 * WIDEN (VEC to d4), WIDE_MASK (MASK to i8), VMIN and VMAX defined; it undefines them. The
 * order of every sum is written out here, so each type's two kernels agree bit for bit on a
 * run without NaN, and every build agrees with every other. */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

/* The lanes' extremes folded into *low and *high (a NaN lane is passed over). */
static inline void CAT(fold_extremes, SUFFIX)(VEC lows, VEC lows_b, VEC highs, VEC highs_b,
                                              ELEM *low, ELEM *high) {
    for (int j = 0; j < 4; j++) {
        *low = lows[j] < *low ? lows[j] : *low;
        *low = lows_b[j] < *low ? lows_b[j] : *low;
        *high = highs[j] > *high ? highs[j] : *high;
        *high = highs_b[j] > *high ? highs_b[j] : *high;
    }
}

/* out: min, max, sum of (x - shift), sum of (x - shift)^2. n >= 1. */
VARIANTS void CAT(reprokit_stats, SUFFIX)(const ELEM *x, int64_t n, double shift, double *out) {
    double s = 0.0, q = 0.0;
    ELEM low = x[0], high = x[0];
    VEC lows = {x[0], x[0], x[0], x[0]}, highs = lows, lows_b = lows, highs_b = lows;
    const d4 by = {shift, shift, shift, shift};
    int64_t i = 0;
    while (n - i >= 8) {
        d4 s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        int64_t whole = (n - i) / 8 * 8;
        int64_t end = i + (whole < SUB ? whole : SUB);
        for (; i < end; i += 8) {
            VEC a, b;
            memcpy(&a, x + i, sizeof a);
            memcpy(&b, x + i + 4, sizeof b);
            lows = VMIN(a, lows); /* a NaN compares false: left out */
            lows_b = VMIN(b, lows_b);
            highs = VMAX(a, highs);
            highs_b = VMAX(b, highs_b);
            d4 da = WIDEN(a) - by, db = WIDEN(b) - by;
            s0 += da;
            s1 += db;
            q0 += da * da;
            q1 += db * db;
        }
        s += total_of(s0, s1);
        q += total_of(q0, q1);
    }
    CAT(fold_extremes, SUFFIX)(lows, lows_b, highs, highs_b, &low, &high);
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

/* The same leaving NaNs out, for a run that holds one: out also gets the count of the other
 * elements, and of the NaNs whose bits are numpy's np.nan (QUIET: the NaN a digest takes every
 * NaN as; those of other bits it must rewrite), as doubles. A NaN adds +0.0 to the sums, which
 * changes none of them (bar the sign of a sum that is zero): on a run without one, this gives
 * what the function above gives, bit for bit. An infinity is not left out: min or max, or the
 * sums, come out infinite (or NaN), and the caller has numpy summarise the run. With only
 * NaNs, min is +inf and max -inf. */
VARIANTS void CAT(reprokit_stats_skipnan, SUFFIX)(const ELEM *x, int64_t n, double shift,
                                                  double *out) {
    const ELEM up = (ELEM)__builtin_inf();
    const VEC ups = {up, up, up, up};
    const MASK quiet = {QUIET, QUIET, QUIET, QUIET};
    const d4 by = {shift, shift, shift, shift};
    VEC lows = ups, highs = -ups, lows_b = ups, highs_b = -ups;
    double s = 0.0, q = 0.0;
    int64_t kept = 0, usual = 0;
    int64_t i = 0;
    while (n - i >= 8) {
        d4 s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        MASK k = {0}, u = {0};
        int64_t whole = (n - i) / 8 * 8;
        int64_t end = i + (whole < SUB ? whole : SUB);
        for (; i < end; i += 8) {
            VEC a, b;
            memcpy(&a, x + i, sizeof a);
            memcpy(&b, x + i + 4, sizeof b);
            MASK ka = a == a, kb = b == b;
            lows = VMIN(a, lows);
            lows_b = VMIN(b, lows_b);
            highs = VMAX(a, highs);
            highs_b = VMAX(b, highs_b);
            d4 da = (d4)((i8)(WIDEN(a) - by) & WIDE_MASK(ka));
            d4 db = (d4)((i8)(WIDEN(b) - by) & WIDE_MASK(kb));
            s0 += da;
            s1 += db;
            q0 += da * da;
            q1 += db * db;
            k -= ka + kb;
            u -= ((MASK)a == quiet) + ((MASK)b == quiet);
        }
        s += total_of(s0, s1);
        q += total_of(q0, q1);
        kept += (int64_t)k[0] + k[1] + k[2] + k[3];
        usual += (int64_t)u[0] + u[1] + u[2] + u[3];
    }
    ELEM low = up, high = -up;
    CAT(fold_extremes, SUFFIX)(lows, lows_b, highs, highs_b, &low, &high);
    for (; i < n; i++) {
        ELEM v = x[i];
        BITS bits;
        memcpy(&bits, &v, sizeof bits);
        usual += bits == (BITS)QUIET;
        if (v == v) {
            double d = (double)v - shift;
            s += d;
            q += d * d;
            low = v < low ? v : low;
            high = v > high ? v : high;
            kept++;
        }
    }
    out[0] = low;
    out[1] = high;
    out[2] = s;
    out[3] = q;
    out[4] = (double)kept;
    out[5] = (double)usual;
}

#undef CAT
#undef CAT_
#undef ELEM
#undef VEC
#undef MASK
#undef BITS
#undef QUIET
#undef SUFFIX
#undef WIDEN
#undef WIDE_MASK
#undef VMIN
#undef VMAX
