// Self-check of the CUDA attention and element-wise kernels against host references in double, then timings.
// Usage: nb_cuda_check_attention [--quick] [--device N]. Prints PASS/FAIL per case, a timing table last;
// exit status 1 when a case fails.
//
// Timings: R calls of the kernel are captured into one graph (nb_cuda_capture_begin/end) and the graph is
// launched and waited for; time per call = wall time / R, median of the runs (after warm-up). This is the
// cost the runtime sees when it replays its decode graph (launch gaps included, host launch cost excluded).
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include "nibble.h"

// Test hooks of libnibble_cuda (not part of nibble.h): force the d_work + combine path (1) or go back to the automatic
// choice (0); the split plan of the decode path (splits, cluster 0/1, clusters resident at once), without start rows
// (with_start 0) or with (1).
extern "C" void nb_cuda_attention_test_path(int32_t path);
extern "C" int32_t nb_cuda_attention_test_plan(nb_cuda *ctx, int64_t n_tok, int64_t n_heads, int64_t n_kv_heads,
                                               int64_t head_dim, int64_t n_kv, int32_t with_start, int32_t *out);

static nb_cuda *g_ctx;
static int g_fail = 0, g_pass = 0;
static bool g_quick = false;

#define CK(call)                                                                                                  \
    do {                                                                                                          \
        nb_status s_ = (call);                                                                                    \
        if (s_ != NB_OK) {                                                                                        \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call, (int)s_,                   \
                    g_ctx ? nb_cuda_error(g_ctx) : "");                                                           \
            exit(2);                                                                                              \
        }                                                                                                         \
    } while (0)

// ------------------------------------------------------------------------------- host f16 (round to nearest even)

static uint16_t h_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0)); // inf / nan
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); // rounds to >= 65520: inf
    if (ax < 0x38800000u) { // below the smallest normal half (2^-14): a subnormal in units of 2^-24
        float a;
        memcpy(&a, &ax, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(a * 16777216.0f)); // exact scaling, ties to even
    }
    uint32_t r = ((ax >> 13) - (112u << 10)); // rebias exponent 127 -> 15
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static float h_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu, x;
    if (e == 0) {
        if (m == 0) x = sign;
        else { // subnormal: normalise
            int s = 0;
            while (!(m & 0x400u)) m <<= 1, s++;
            x = sign | ((uint32_t)(113 - s) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

// ------------------------------------------------------------------------------- device helpers

template <class T> static T *dalloc(size_t n) {
    void *p = nullptr;
    CK(nb_cuda_alloc(g_ctx, (int64_t)(n * sizeof(T)) + 16, &p));
    return (T *)p;
}
template <class T> static void up(T *d, const std::vector<T> &h) {
    if (!h.empty()) CK(nb_cuda_upload(g_ctx, d, h.data(), (int64_t)(h.size() * sizeof(T))));
}
template <class T> static std::vector<T> down(const T *d, size_t n) {
    std::vector<T> h(n);
    if (n) CK(nb_cuda_read(g_ctx, h.data(), d, (int64_t)(n * sizeof(T))));
    return h;
}
static void poison(void *d, size_t bytes) { CK(nb_cuda_memset(g_ctx, d, 0xFF, (int64_t)bytes)); }

static std::mt19937_64 g_rng(12345);
static std::vector<float> randv(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto &x : v) {
        do x = u(g_rng);
        while (x == 0.0f);
    }
    return v;
}

/* Relative L2 error; NaN (an element never written, or a wrong one) counts as failure. */
static double rel_err(const std::vector<float> &out, const std::vector<double> &ref, size_t *bad_index) {
    double num = 0, den = 0;
    *bad_index = (size_t)-1;
    for (size_t i = 0; i < out.size(); i++) {
        if (!std::isfinite(out[i])) {
            if (*bad_index == (size_t)-1) *bad_index = i;
            continue;
        }
        const double d = (double)out[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (*bad_index != (size_t)-1) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void report(const std::string &name, double err, double tol, size_t bad) {
    const bool ok = err <= tol;
    if (ok) g_pass++;
    else g_fail++;
    if (bad != (size_t)-1)
        printf("%s %-72s non-finite output at element %zu (unwritten?)\n", ok ? "PASS" : "FAIL", name.c_str(), bad);
    else
        printf("%s %-72s rel err %.3e (tol %.0e)\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol);
    fflush(stdout);
}

static void parallel_for(int64_t n, const std::function<void(int64_t)> &f) {
    int nt = (int)std::thread::hardware_concurrency();
    if (nt < 1) nt = 1;
    if (nt > 32) nt = 32;
    if (n < nt) nt = (int)std::max<int64_t>(n, 1);
    std::vector<std::thread> th;
    for (int w = 0; w < nt; w++)
        th.emplace_back([&, w] {
            for (int64_t i = w; i < n; i += nt) f(i);
        });
    for (auto &t : th) t.join();
}

// ------------------------------------------------------------------------------- attention

/* One cache (K and V) on host and device: `rows` positions of `stride` halves; positions < filled random,
 * the rest and the row padding NaN (never to be read). */
struct Cache {
    int64_t rows, stride, filled;
    std::vector<uint16_t> hk, hv;
    uint16_t *dk = nullptr, *dv = nullptr;
};

/* filled_row(j): whether row j holds random values (else NaN). */
static Cache make_cache_rows(int64_t rows, int64_t stride, int64_t used_cols,
                             const std::function<bool(int64_t)> &filled_row) {
    Cache c;
    c.rows = rows, c.stride = stride, c.filled = 0;
    c.hk.assign((size_t)(rows * stride), 0xFFFFu);
    c.hv.assign((size_t)(rows * stride), 0xFFFFu);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t j = 0; j < rows; j++) {
        if (!filled_row(j)) continue;
        c.filled = j + 1;
        for (int64_t i = 0; i < used_cols; i++) {
            float a, b;
            do a = u(g_rng);
            while (a == 0.0f);
            do b = u(g_rng);
            while (b == 0.0f);
            c.hk[(size_t)(j * stride + i)] = h_f32_to_f16(a);
            c.hv[(size_t)(j * stride + i)] = h_f32_to_f16(b);
        }
    }
    c.dk = dalloc<uint16_t>(c.hk.size());
    c.dv = dalloc<uint16_t>(c.hv.size());
    up(c.dk, c.hk);
    up(c.dv, c.hv);
    return c;
}

static Cache make_cache(int64_t rows, int64_t stride, int64_t used_cols, int64_t filled) {
    return make_cache_rows(rows, stride, used_cols, [filled](int64_t j) { return j < filled; });
}

static void free_cache(Cache &c) {
    CK(nb_cuda_free(g_ctx, c.dk));
    CK(nb_cuda_free(g_ctx, c.dv));
    c.dk = c.dv = nullptr;
}

/* start empty: every token's sequence begins at row 0; else token t's at row start[t] (< 0: it sees nothing). */
static std::vector<double> ref_attention(const std::vector<float> &q, const std::vector<int32_t> &pos,
                                         const std::vector<int32_t> &start, int64_t H, int64_t Hk, int64_t D,
                                         const Cache &c, int64_t n_kv, float scale) {
    const int64_t n_tok = (int64_t)pos.size(), G = H / Hk;
    std::vector<double> out((size_t)(n_tok * H * D), 0.0);
    parallel_for(n_tok * H, [&](int64_t idx) {
        const int64_t t = idx / H, qh = idx % H, h = qh / G;
        const int64_t p = std::min<int64_t>(pos[t], n_kv - 1), b = start.empty() ? 0 : start[t];
        if (p < 0 || b < 0) return;
        std::vector<double> s((size_t)(p + 1));
        double mx = -INFINITY;
        const float *qr = &q[(size_t)(idx * D)];
        for (int64_t j = 0; j <= p; j++) {
            const uint16_t *kr = &c.hk[(size_t)((b + j) * c.stride + h * D)];
            double acc = 0;
            for (int64_t d = 0; d < D; d++) acc += (double)qr[d] * h_f16_to_f32(kr[d]);
            s[j] = acc * scale;
            mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto &x : s) sum += (x = exp(x - mx));
        double *o = &out[(size_t)(idx * D)];
        for (int64_t j = 0; j <= p; j++) {
            const uint16_t *vr = &c.hv[(size_t)((b + j) * c.stride + h * D)];
            const double w = s[j] / sum;
            for (int64_t d = 0; d < D; d++) o[d] += w * h_f16_to_f32(vr[d]);
        }
    });
    return out;
}

/* start empty: d_start NULL. The workspace is the bound for n_tok tokens, or for `work_tok` tokens when larger (one
 * workspace for a whole batch size, as the runtime sizes it). */
static void check_attention_case(const std::string &name, int64_t H, int64_t Hk, int64_t D, const Cache &c,
                                 const std::vector<int32_t> &pos, int64_t n_kv,
                                 const std::vector<int32_t> &start = {}, int64_t work_tok = 0) {
    const int64_t n_tok = (int64_t)pos.size();
    const float scale = 1.0f / sqrtf((float)D);
    std::vector<float> q = randv((size_t)(n_tok * H * D), -3.0f, 3.0f);
    float *dq = dalloc<float>(q.size()), *dout = dalloc<float>(q.size());
    int32_t *dpos = dalloc<int32_t>(pos.size());
    int32_t *dstart = start.empty() ? nullptr : dalloc<int32_t>(start.size());
    up(dq, q);
    up(dpos, pos);
    if (dstart) up(dstart, start);
    const int64_t wb = nb_cuda_attention_work_bytes(std::max(n_tok, work_tok), H, D, n_kv);
    if (wb < 0) {
        report(name + " (work_bytes < 0)", INFINITY, 0, (size_t)-1);
        return;
    }
    void *dwork = nullptr;
    if (wb > 0) {
        CK(nb_cuda_alloc(g_ctx, wb, &dwork));
        poison(dwork, (size_t)wb);
    }
    poison(dout, q.size() * 4);
    nb_status st = nb_cuda_attention(g_ctx, dq, n_tok, dpos, dstart, H, Hk, D, c.dk, c.dv, n_kv, c.stride, scale,
                                     dwork, wb, dout);
    if (st != NB_OK) {
        printf("FAIL %-72s status %d: %s\n", name.c_str(), (int)st, nb_cuda_error(g_ctx));
        g_fail++;
    } else {
        std::vector<float> out = down(dout, q.size());
        std::vector<double> ref = ref_attention(q, pos, start, H, Hk, D, c, n_kv, scale);
        size_t bad;
        const double err = rel_err(out, ref, &bad);
        report(name, err, 1e-3, bad);
    }
    CK(nb_cuda_free(g_ctx, dq));
    CK(nb_cuda_free(g_ctx, dout));
    CK(nb_cuda_free(g_ctx, dpos));
    if (dstart) CK(nb_cuda_free(g_ctx, dstart));
    if (dwork) CK(nb_cuda_free(g_ctx, dwork));
}

/* split_only: only the split-K (n_tok <= 4) cases, names prefixed with `tag` (the d_work pass below). */
static void check_attention(bool split_only = false, const char *tag = "") {
    struct Shape { int64_t H, Hk, D; };
    const Shape shapes[] = {{4, 4, 64}, {8, 2, 64}, {64, 8, 128}, {32, 32, 128}, {6, 1, 32}};
    std::vector<int64_t> toks = {1, 2, 3, 5, 64, 77, 300};
    if (g_quick) toks = {1, 3, 77};
    if (split_only) toks = {1, 2, 4};
    const int64_t CAP = 4096, FILLED = 1400; // positions used below stay < FILLED
    std::uniform_int_distribution<int> upos(0, 1000);
    for (const Shape &sh : shapes) {
        Cache c = make_cache(CAP, sh.Hk * sh.D, sh.Hk * sh.D, FILLED);
        for (int64_t n_tok : toks) {
            for (int mode = 0; mode < 3; mode++) {
                std::vector<int32_t> pos((size_t)n_tok);
                const char *mname = mode == 0 ? "contig@0" : mode == 1 ? "contig@13" : "arbitrary";
                for (int64_t t = 0; t < n_tok; t++) {
                    if (mode == 0) pos[t] = (int32_t)t;
                    else if (mode == 1) pos[t] = (int32_t)(13 + t);
                    else pos[t] = (n_tok > 1 && t % 7 == 3) ? -1 : upos(g_rng); // -1: a token with no output
                }
                if (mode == 2 && n_tok == 1) pos[0] = 1000;
                int32_t maxp = 0;
                for (int32_t p : pos) maxp = std::max(maxp, p);
                for (int nk = 0; nk < 2; nk++) {
                    const int64_t n_kv = nk == 0 ? CAP : maxp + 1;
                    char name[160];
                    snprintf(name, sizeof name, "%sattention H%lld/%lld D%lld n_tok %lld %s n_kv %lld", tag,
                             (long long)sh.H, (long long)sh.Hk, (long long)sh.D, (long long)n_tok, mname,
                             (long long)n_kv);
                    check_attention_case(name, sh.H, sh.Hk, sh.D, c, pos, n_kv);
                }
            }
        }
        // n_kv below some positions: they are clamped to n_kv - 1.
        if (!split_only) {
            std::vector<int32_t> pos = {900, 20, 555, 999};
            char name[160];
            snprintf(name, sizeof name, "attention H%lld/%lld D%lld n_tok 4 clamped to n_kv 600", (long long)sh.H,
                     (long long)sh.Hk, (long long)sh.D);
            check_attention_case(name, sh.H, sh.Hk, sh.D, c, pos, 600);
            std::vector<int32_t> pos2(40);
            for (int t = 0; t < 40; t++) pos2[t] = 580 + t;
            snprintf(name, sizeof name, "attention H%lld/%lld D%lld n_tok 40 clamped to n_kv 600", (long long)sh.H,
                     (long long)sh.Hk, (long long)sh.D);
            check_attention_case(name, sh.H, sh.Hk, sh.D, c, pos2, 600);
        }
        free_cache(c);
    }
    // Short contexts in a large cache (the grid is sized for the capacity; the blocks share the real length).
    for (int64_t len : {(int64_t)1, (int64_t)2, (int64_t)17, (int64_t)65, (int64_t)129, (int64_t)513}) {
        const int64_t H = 32, Hk = 8, D = 128;
        Cache c = make_cache(8192, Hk * D, Hk * D, len);
        for (int64_t n_tok : {(int64_t)1, (int64_t)2}) {
            std::vector<int32_t> pos((size_t)n_tok);
            for (int64_t t = 0; t < n_tok; t++) pos[t] = (int32_t)(len - n_tok + t);
            if (pos[0] < 0) pos[0] = -1;
            char name[160];
            snprintf(name, sizeof name, "%sattention H32/8 D128 n_tok %lld len %lld n_kv 8192", tag, (long long)n_tok,
                     (long long)len);
            check_attention_case(name, H, Hk, D, c, pos, 8192);
        }
        free_cache(c);
    }
    if (split_only) return;
    // Strided caches: a wider row (multiple of 8 halves: fast path) and an odd one (fallback path).
    const int64_t extra[] = {64, 4, 3};
    for (int64_t ex : extra) {
        const int64_t H = 64, Hk = 8, D = 128;
        Cache c = make_cache(2048, Hk * D + ex, Hk * D, 1100);
        for (int64_t n_tok : {(int64_t)1, (int64_t)3, (int64_t)77}) {
            std::vector<int32_t> pos((size_t)n_tok);
            for (int64_t t = 0; t < n_tok; t++) pos[t] = (int32_t)(1000 - n_tok + 1 + t);
            char name[160];
            snprintf(name, sizeof name, "attention H64/8 D128 n_tok %lld kv_stride %lld (+%lld) n_kv 2048",
                     (long long)n_tok, (long long)c.stride, (long long)ex);
            check_attention_case(name, H, Hk, D, c, pos, 2048);
        }
        free_cache(c);
    }
    // Other head dims (fallback kernel).
    for (int64_t D : {(int64_t)96, (int64_t)256}) {
        Cache c = make_cache(512, 2 * D, 2 * D, 300);
        std::vector<int32_t> pos = {7, 299, -1};
        char name[160];
        snprintf(name, sizeof name, "attention H4/2 D%lld n_tok 3 n_kv 512", (long long)D);
        check_attention_case(name, 4, 2, D, c, pos, 512);
        free_cache(c);
    }
}

/* Tokens of several sequences in one pool (d_start): sequence s owns rows [start_s, start_s + len_s), placed in
 * shuffled order with NaN rows between them and after them, so that a key read outside a token's own rows shows as a
 * non-finite output. Some sequences hold n_kv positions and some of their tokens sit past n_kv (they see n_kv);
 * several tokens share a sequence; tokens are in no order of sequence or position. */
struct PoolCase {
    std::vector<int32_t> pos, start;
    int64_t rows;
};

static PoolCase make_pool_case(int64_t n_tok, int64_t n_kv, bool one_token_per_seq) {
    PoolCase pc;
    const int64_t n_seq = one_token_per_seq ? n_tok : std::max<int64_t>(1, std::min<int64_t>(12, (n_tok + 1) / 2));
    std::uniform_int_distribution<int64_t> ulen(1, n_kv), ugap(0, 70);
    std::vector<int64_t> len((size_t)n_seq), order((size_t)n_seq);
    for (int64_t s = 0; s < n_seq; s++) {
        len[s] = s % 3 == 0 ? n_kv : ulen(g_rng);
        order[s] = s;
    }
    std::shuffle(order.begin(), order.end(), g_rng);
    std::vector<int64_t> start((size_t)n_seq);
    int64_t row = ugap(g_rng);
    for (int64_t s : order) {
        start[s] = row;
        row += len[s] + ugap(g_rng);
    }
    pc.rows = row + 1;
    std::uniform_int_distribution<int64_t> useq(0, n_seq - 1), upast(0, 500);
    for (int64_t t = 0; t < n_tok; t++) {
        const int64_t s = t < n_seq ? order[t] : useq(g_rng); // every sequence has a token, some several
        std::uniform_int_distribution<int64_t> upos(0, len[s] - 1);
        int64_t p = upos(g_rng);
        if (len[s] == n_kv && t % 4 == 1) p = n_kv + upast(g_rng); // past n_kv: sees n_kv positions
        if (!one_token_per_seq && n_tok >= 9 && t == 7) p = -1;     // sees nothing: zeros
        pc.pos.push_back((int32_t)p);
        pc.start.push_back((int32_t)start[s]);
    }
    return pc;
}

/* Rows a token of pc may see: those of its sequence up to its clamped position (a row a sequence holds but no token
 * sees stays NaN too). */
static Cache make_pool_cache(const PoolCase &pc, int64_t stride, int64_t used_cols, int64_t n_kv) {
    std::vector<char> seen((size_t)pc.rows, 0);
    for (size_t t = 0; t < pc.pos.size(); t++)
        for (int64_t j = 0; j <= std::min<int64_t>(pc.pos[t], n_kv - 1); j++) seen[(size_t)(pc.start[t] + j)] = 1;
    return make_cache_rows(pc.rows, stride, used_cols, [&](int64_t j) { return seen[(size_t)j] != 0; });
}

/* d_start cases: tokens of several sequences against the reference, for the tensor-core layouts (7B: 32/32/128,
 * 70B: 64/8/128, groups of 4, of 1 at D 64, of 32 and of 80 (rows of 64 per tile, two tiles a token)) and the
 * fallback kernel (D 32, 96); the workspace sized for n_tok tokens or for a batch of 512. split_only: the tensor-core
 * layouts at the long span with up to 16 tokens, where calls split (the d_work pass below). */
static void check_attention_pool(bool split_only = false, const char *tag = "") {
    struct Shape { int64_t H, Hk, D; };
    const Shape shapes[] = {{32, 32, 128}, {64, 8, 128}, {8, 2, 64}, {4, 4, 64}, {32, 1, 64}, {80, 1, 64},
                            {6, 1, 32}, {4, 2, 96}};
    std::vector<int64_t> toks = {1, 2, 3, 5, 8, 9, 16, 40, 64};
    if (g_quick) toks = {1, 5, 40};
    if (split_only) toks = {1, 2, 5, 8, 16};
    for (const Shape &sh : shapes) {
        if (split_only && sh.D != 64 && sh.D != 128) continue; // (the fallback kernel does not split)
        for (int64_t n_kv : {(int64_t)300, (int64_t)1500}) {
            if (n_kv > 300 && (sh.H != 32 && sh.H != 64) && !split_only) continue; // long contexts: 7B and 70B
            if (n_kv == 300 && split_only) continue;
            for (int64_t n_tok : toks) {
                if (n_kv > 300 && n_tok > 16) continue;
                for (int own = 0; own < 2; own++) {
                    if (own && n_tok == 1) continue;
                    const PoolCase pc = make_pool_case(n_tok, n_kv, own != 0);
                    Cache c = make_pool_cache(pc, sh.Hk * sh.D, sh.Hk * sh.D, n_kv);
                    char name[200];
                    snprintf(name, sizeof name, "%sattention starts H%lld/%lld D%lld n_tok %lld %s n_kv %lld pool %lld",
                             tag, (long long)sh.H, (long long)sh.Hk, (long long)sh.D, (long long)n_tok,
                             own ? "own seqs" : "shared seqs", (long long)n_kv, (long long)pc.rows);
                    // half of the cases with the workspace of a 512-token batch, as the runtime sizes it
                    check_attention_case(name, sh.H, sh.Hk, sh.D, c, pc.pos, n_kv, pc.start, own ? 512 : 0);
                    free_cache(c);
                }
            }
        }
    }
    if (split_only) return;
    // A start row of the tensor-core path whose cache rows are not 16-byte aligned: the fallback kernel.
    {
        const int64_t H = 8, Hk = 2, D = 64, n_kv = 200;
        const PoolCase pc = make_pool_case(7, n_kv, false);
        Cache c = make_pool_cache(pc, Hk * D + 3, Hk * D, n_kv);
        check_attention_case("attention starts H8/2 D64 n_tok 7 kv_stride +3 (fallback)", H, Hk, D, c, pc.pos, n_kv,
                             pc.start);
        free_cache(c);
    }
}

// ------------------------------------------------------------------------------- element-wise

static void check_rmsnorm() {
    for (int64_t n : {(int64_t)4096, (int64_t)5120, (int64_t)8192, (int64_t)37, (int64_t)16384}) {
        for (int64_t rows : {(int64_t)1, (int64_t)7}) {
            for (int add = 0; add < 2; add++) {
                const float eps = 1e-5f;
                std::vector<float> x = randv((size_t)(rows * n), -2.0f, 2.0f), b = randv(x.size(), -1.0f, 1.0f),
                                   w = randv((size_t)n, 0.5f, 1.5f);
                float *dx = dalloc<float>(x.size()), *db = dalloc<float>(x.size()), *dw = dalloc<float>(w.size()),
                      *dy = dalloc<float>(x.size());
                up(dx, x), up(db, b), up(dw, w);
                poison(dy, x.size() * 4);
                std::vector<double> xr(x.size()), yr(x.size());
                for (size_t i = 0; i < x.size(); i++) xr[i] = add ? (double)(x[i] + b[i]) : (double)x[i];
                for (int64_t r = 0; r < rows; r++) {
                    double ss = 0;
                    for (int64_t i = 0; i < n; i++) ss += xr[r * n + i] * xr[r * n + i];
                    const double s = 1.0 / sqrt(ss / (double)n + eps);
                    for (int64_t i = 0; i < n; i++) yr[r * n + i] = xr[r * n + i] * s * w[i];
                }
                nb_status st = add ? nb_cuda_add_rmsnorm(g_ctx, dx, db, dw, rows, n, eps, dy)
                                   : nb_cuda_rmsnorm(g_ctx, dx, dw, rows, n, eps, dy);
                char name[160];
                snprintf(name, sizeof name, "%s n %lld rows %lld", add ? "add_rmsnorm" : "rmsnorm", (long long)n,
                         (long long)rows);
                if (st != NB_OK) {
                    printf("FAIL %-72s status %d: %s\n", name, (int)st, nb_cuda_error(g_ctx));
                    g_fail++;
                } else {
                    size_t bad;
                    double err = rel_err(down(dy, x.size()), yr, &bad);
                    if (add) { // x must hold x + b
                        size_t bad2;
                        const double e2 = rel_err(down(dx, x.size()), xr, &bad2);
                        if (e2 > err) err = e2, bad = bad2;
                    }
                    report(name, err, 1e-5, bad);
                }
                CK(nb_cuda_free(g_ctx, dx)); CK(nb_cuda_free(g_ctx, db)); CK(nb_cuda_free(g_ctx, dw));
                CK(nb_cuda_free(g_ctx, dy));
            }
        }
    }
    // In place (y == x).
    {
        const int64_t n = 4096, rows = 3;
        std::vector<float> x = randv((size_t)(rows * n), -2.0f, 2.0f), w = randv((size_t)n, 0.5f, 1.5f);
        float *dx = dalloc<float>(x.size()), *dw = dalloc<float>(w.size());
        up(dx, x), up(dw, w);
        std::vector<double> yr(x.size());
        for (int64_t r = 0; r < rows; r++) {
            double ss = 0;
            for (int64_t i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
            const double s = 1.0 / sqrt(ss / (double)n + 1e-6);
            for (int64_t i = 0; i < n; i++) yr[r * n + i] = x[r * n + i] * s * w[i];
        }
        CK(nb_cuda_rmsnorm(g_ctx, dx, dw, rows, n, 1e-6f, dx));
        size_t bad;
        report("rmsnorm n 4096 rows 3 in place", rel_err(down(dx, x.size()), yr, &bad), 1e-5, bad);
        CK(nb_cuda_free(g_ctx, dx)); CK(nb_cuda_free(g_ctx, dw));
    }
}

static void check_rope() {
    struct Case { int64_t n_tok, H, D; float theta, fscale; bool ff; };
    const Case cases[] = {{5, 32, 128, 10000.0f, 1.0f, false}, {5, 32, 128, 500000.0f, 1.0f, true},
                          {3, 8, 64, 10000.0f, 0.25f, false}, {4, 8, 64, 500000.0f, 1.0f, true},
                          {1, 64, 128, 10000.0f, 1.0f, false}};
    std::uniform_int_distribution<int> upos(0, 30000);
    for (const Case &cs : cases) {
        std::vector<float> x = randv((size_t)(cs.n_tok * cs.H * cs.D), -2.0f, 2.0f);
        std::vector<float> ff = randv((size_t)(cs.D / 2), 1.0f, 8.0f);
        std::vector<int32_t> pos((size_t)cs.n_tok);
        for (auto &p : pos) p = upos(g_rng);
        pos[0] = 30000;
        float *dx = dalloc<float>(x.size()), *dff = dalloc<float>(ff.size());
        int32_t *dpos = dalloc<int32_t>(pos.size());
        up(dx, x), up(dff, ff), up(dpos, pos);
        std::vector<double> ref(x.size());
        for (int64_t t = 0; t < cs.n_tok; t++)
            for (int64_t h = 0; h < cs.H; h++)
                for (int64_t i = 0; i < cs.D / 2; i++) {
                    const double inv = pow((double)cs.theta, -2.0 * (double)i / (double)cs.D);
                    const double ang = (double)pos[t] * cs.fscale * inv / (cs.ff ? (double)ff[i] : 1.0);
                    const size_t o = (size_t)((t * cs.H + h) * cs.D + 2 * i);
                    const double a = x[o], b = x[o + 1];
                    ref[o] = a * cos(ang) - b * sin(ang);
                    ref[o + 1] = a * sin(ang) + b * cos(ang);
                }
        nb_status st = nb_cuda_rope(g_ctx, dx, cs.n_tok, cs.H, cs.D, dpos, cs.theta, cs.fscale, cs.ff ? dff : nullptr);
        char name[160];
        snprintf(name, sizeof name, "rope n_tok %lld heads %lld head_dim %lld theta %g scale %g%s",
                 (long long)cs.n_tok, (long long)cs.H, (long long)cs.D, cs.theta, cs.fscale,
                 cs.ff ? " freq_factors" : "");
        if (st != NB_OK) {
            printf("FAIL %-72s status %d: %s\n", name, (int)st, nb_cuda_error(g_ctx));
            g_fail++;
        } else {
            size_t bad;
            report(name, rel_err(down(dx, x.size()), ref, &bad), 1e-5, bad);
        }
        CK(nb_cuda_free(g_ctx, dx)); CK(nb_cuda_free(g_ctx, dff)); CK(nb_cuda_free(g_ctx, dpos));
    }
}

/* nb_cuda_rope_store against the host reference and, bit for bit, against nb_cuda_rope + nb_cuda_kv_store; without
 * start rows (rows pos[t]) and with (rows start[t] + pos[t], the angle still pos[t]'s). */
static void check_rope_store(bool with_start);
static void check_rope_store() {
    for (int with_start = 0; with_start < 2; with_start++) check_rope_store(with_start != 0);
}

static void check_rope_store(bool with_start) {
    struct Case { int64_t n_tok, H, Hk, D; float theta, fscale; bool ff; };
    const Case cases[] = {{5, 32, 8, 128, 10000.0f, 1.0f, false}, {3, 8, 2, 64, 500000.0f, 0.25f, true},
                          {1, 64, 8, 128, 10000.0f, 1.0f, false}, {1, 32, 32, 128, 10000.0f, 1.0f, false},
                          {7, 6, 6, 32, 10000.0f, 1.0f, true}};
    const int64_t cap = 40;
    for (const Case &cs : cases) {
        const int64_t row = cs.Hk * cs.D;
        std::vector<float> q = randv((size_t)(cs.n_tok * cs.H * cs.D), -2.0f, 2.0f);
        std::vector<float> k = randv((size_t)(cs.n_tok * row), -2.0f, 2.0f), v = randv(k.size(), -2.0f, 2.0f);
        std::vector<float> ff = randv((size_t)(cs.D / 2), 1.0f, 8.0f);
        std::vector<int32_t> pos((size_t)cs.n_tok), start((size_t)cs.n_tok, 0);
        const int32_t special[] = {39, -1, 40, 0, 1000000, 5, 17};
        // with starts, rows {9, 0, 35, 12, (past the cache), 25, 20}: a negative position or start may still land
        // inside, as the sum is what counts
        const int32_t starts[] = {-30, 1, -5, 12, 0, 20, 3};
        for (int64_t t = 0; t < cs.n_tok; t++) {
            pos[t] = cs.n_tok == 1 ? 31 : special[t % 7];
            if (with_start) start[t] = cs.n_tok == 1 ? 5 : starts[t % 7];
        }
        std::vector<int32_t> crow((size_t)cs.n_tok);
        for (int64_t t = 0; t < cs.n_tok; t++) crow[t] = pos[t] + start[t];
        float *dq = dalloc<float>(q.size()), *dk = dalloc<float>(k.size()), *dv = dalloc<float>(v.size());
        float *dq2 = dalloc<float>(q.size()), *dk2 = dalloc<float>(k.size()), *dff = dalloc<float>(ff.size());
        int32_t *dpos = dalloc<int32_t>(pos.size()), *dstart = dalloc<int32_t>(start.size());
        int32_t *ds = with_start ? dstart : nullptr;
        uint16_t *kc = dalloc<uint16_t>((size_t)(cap * row)), *vc = dalloc<uint16_t>((size_t)(cap * row));
        uint16_t *kc2 = dalloc<uint16_t>((size_t)(cap * row)), *vc2 = dalloc<uint16_t>((size_t)(cap * row));
        up(dq, q), up(dk, k), up(dv, v), up(dq2, q), up(dk2, k), up(dff, ff), up(dpos, pos);
        up(dstart, start);
        for (uint16_t *c : {kc, vc, kc2, vc2}) poison(c, (size_t)(cap * row) * 2); // NaN rows: must stay so
        const float *dffp = cs.ff ? dff : nullptr;
        char name[200];
        snprintf(name, sizeof name, "rope_store n_tok %lld heads %lld/%lld head_dim %lld theta %g scale %g%s%s",
                 (long long)cs.n_tok, (long long)cs.H, (long long)cs.Hk, (long long)cs.D, cs.theta, cs.fscale,
                 cs.ff ? " ff" : "", with_start ? " starts" : "");
        nb_status st = nb_cuda_rope_store(g_ctx, dq, dk, dv, cs.n_tok, cs.H, cs.Hk, cs.D, dpos, ds, cs.theta, cs.fscale,
                                          dffp, kc, vc, cap);
        if (st != NB_OK) {
            printf("FAIL %-72s status %d: %s\n", name, (int)st, nb_cuda_error(g_ctx));
            g_fail++;
        } else {
            // The reference: q and k rotated in double.
            auto rot = [&](const std::vector<float> &x, int64_t heads, std::vector<double> &out) {
                out.assign(x.size(), 0.0);
                for (int64_t t = 0; t < cs.n_tok; t++)
                    for (int64_t h = 0; h < heads; h++)
                        for (int64_t i = 0; i < cs.D / 2; i++) {
                            const double inv = pow((double)cs.theta, -2.0 * (double)i / (double)cs.D);
                            const double ang = (double)pos[t] * cs.fscale * inv / (cs.ff ? (double)ff[i] : 1.0);
                            const size_t o = (size_t)((t * heads + h) * cs.D + 2 * i);
                            out[o] = x[o] * cos(ang) - x[o + 1] * sin(ang);
                            out[o + 1] = x[o] * sin(ang) + x[o + 1] * cos(ang);
                        }
            };
            std::vector<double> qref, kref;
            rot(q, cs.H, qref);
            rot(k, cs.Hk, kref);
            size_t bad;
            double err = rel_err(down(dq, q.size()), qref, &bad);
            // Cache rows: stored ones against the reference (k to f16 accuracy, v exactly), the others still NaN.
            const std::vector<uint16_t> gk = down(kc, (size_t)(cap * row)), gv = down(vc, (size_t)(cap * row));
            std::vector<float> kgot;
            std::vector<double> kwant;
            size_t vmism = 0, untouched_bad = 0;
            std::vector<int> stored((size_t)cap, -1);
            for (int64_t t = 0; t < cs.n_tok; t++)
                if (crow[t] >= 0 && crow[t] < cap) stored[(size_t)crow[t]] = (int)t;
            for (int64_t r = 0; r < cap; r++) {
                const int t = stored[(size_t)r];
                for (int64_t i = 0; i < row; i++) {
                    const size_t ci = (size_t)(r * row + i);
                    if (t < 0) {
                        untouched_bad += gk[ci] != 0xFFFFu || gv[ci] != 0xFFFFu;
                        continue;
                    }
                    kgot.push_back(h_f16_to_f32(gk[ci]));
                    kwant.push_back(kref[(size_t)(t * row + i)]);
                    vmism += gv[ci] != h_f32_to_f16(v[(size_t)(t * row + i)]);
                }
            }
            size_t bad2;
            const double kerr = rel_err(kgot, kwant, &bad2);
            const bool k_same = down(dk, k.size()) == k; // k itself is left unchanged
            report(std::string(name) + " q", err, 1e-5, bad);
            const bool cache_ok = kerr <= 1e-3 && vmism == 0 && untouched_bad == 0 && k_same;
            if (cache_ok) g_pass++;
            else g_fail++;
            printf("%s %-72s k rel err %.2e, v mismatches %zu, rows not stored touched %zu, k %s\n",
                   cache_ok ? "PASS" : "FAIL", (std::string(name) + " caches").c_str(), kerr, vmism, untouched_bad,
                   k_same ? "unchanged" : "CHANGED");
            // Bit for bit: nb_cuda_rope on q and k, nb_cuda_kv_store of k and v.
            CK(nb_cuda_rope(g_ctx, dq2, cs.n_tok, cs.H, cs.D, dpos, cs.theta, cs.fscale, dffp));
            CK(nb_cuda_rope(g_ctx, dk2, cs.n_tok, cs.Hk, cs.D, dpos, cs.theta, cs.fscale, dffp));
            CK(nb_cuda_kv_store(g_ctx, dk2, cs.n_tok, row, dpos, ds, kc2, cap));
            CK(nb_cuda_kv_store(g_ctx, dv, cs.n_tok, row, dpos, ds, vc2, cap));
            const std::vector<float> q1 = down(dq, q.size()), q2 = down(dq2, q.size());
            const bool same = memcmp(q1.data(), q2.data(), q1.size() * 4) == 0 &&
                              down(kc2, (size_t)(cap * row)) == gk && down(vc2, (size_t)(cap * row)) == gv;
            if (same) g_pass++;
            else g_fail++;
            printf("%s %-72s %s\n", same ? "PASS" : "FAIL", (std::string(name) + " == rope + kv_store").c_str(),
                   same ? "identical bits" : "DIFFERENT bits");
        }
        for (void *p : {(void *)dq, (void *)dk, (void *)dv, (void *)dq2, (void *)dk2, (void *)dff, (void *)dpos,
                        (void *)dstart, (void *)kc, (void *)vc, (void *)kc2, (void *)vc2})
            CK(nb_cuda_free(g_ctx, p));
    }
}

static void check_swiglu_add() {
    for (int64_t n : {(int64_t)1001, (int64_t)4097, (int64_t)11008, (int64_t)3}) {
        for (int alias = 0; alias < 2; alias++) {
            std::vector<float> g = randv((size_t)n, -6.0f, 6.0f), u = randv((size_t)n, -2.0f, 2.0f);
            float *dg = dalloc<float>((size_t)n), *du = dalloc<float>((size_t)n), *dout = dalloc<float>((size_t)n);
            std::vector<double> rs((size_t)n), ra((size_t)n);
            for (int64_t i = 0; i < n; i++) {
                rs[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
                ra[i] = (double)g[i] + u[i];
            }
            char name[160];
            size_t bad;
            // swiglu
            up(dg, g), up(du, u);
            poison(dout, (size_t)n * 4);
            float *o = alias ? dg : dout;
            CK(nb_cuda_swiglu(g_ctx, dg, du, n, o));
            snprintf(name, sizeof name, "swiglu n %lld%s", (long long)n, alias ? " (out = gate)" : "");
            report(name, rel_err(down(o, (size_t)n), rs, &bad), 1e-6, bad);
            // add
            up(dg, g), up(du, u);
            poison(dout, (size_t)n * 4);
            o = alias ? du : dout;
            CK(nb_cuda_add(g_ctx, dg, du, n, o));
            snprintf(name, sizeof name, "add n %lld%s", (long long)n, alias ? " (out = b)" : "");
            report(name, rel_err(down(o, (size_t)n), ra, &bad), 1e-6, bad);
            CK(nb_cuda_free(g_ctx, dg)); CK(nb_cuda_free(g_ctx, du)); CK(nb_cuda_free(g_ctx, dout));
        }
    }
}

/* Rows pos[t] (no starts) or start[t] + pos[t]; rows outside the cache skipped, every other row untouched. */
static void check_kv_store() {
    for (int with_start = 0; with_start < 2; with_start++) {
        for (int64_t row_len : {(int64_t)1024, (int64_t)37}) {
            const int64_t cap = 16;
            std::vector<int32_t> pos = {2, -1, 16, 0, 15, 1000, 1, 0};
            // with starts, rows {7, -1, 19, 10, 15, 1000, 0, 14}: -1 before the cache, 19 and 1000 past it
            std::vector<int32_t> start = {5, 0, 3, 10, 0, 0, -1, 14};
            const int64_t n_tok = (int64_t)pos.size();
            std::vector<int32_t> rows((size_t)n_tok);
            for (int64_t t = 0; t < n_tok; t++) rows[t] = pos[t] + (with_start ? start[t] : 0);
            if (!with_start) rows[6] = pos[6] = 3, rows[7] = pos[7] = 9; // distinct rows without starts too
            std::vector<float> src = randv((size_t)(n_tok * row_len), -3.0f, 3.0f);
            float *dsrc = dalloc<float>(src.size());
            int32_t *dpos = dalloc<int32_t>(pos.size()), *dstart = dalloc<int32_t>(start.size());
            uint16_t *dcache = dalloc<uint16_t>((size_t)(cap * row_len));
            up(dsrc, src), up(dpos, pos), up(dstart, start);
            CK(nb_cuda_memset(g_ctx, dcache, 0x5A, cap * row_len * 2)); // sentinel 0x5A5A
            CK(nb_cuda_kv_store(g_ctx, dsrc, n_tok, row_len, dpos, with_start ? dstart : nullptr, dcache, cap));
            std::vector<uint16_t> got = down(dcache, (size_t)(cap * row_len));
            std::vector<uint16_t> want((size_t)(cap * row_len), 0x5A5Au);
            for (int64_t t = 0; t < n_tok; t++)
                if (rows[t] >= 0 && rows[t] < cap)
                    for (int64_t i = 0; i < row_len; i++)
                        want[(size_t)(rows[t] * row_len + i)] = h_f32_to_f16(src[(size_t)(t * row_len + i)]);
            size_t mism = 0;
            for (size_t i = 0; i < got.size(); i++) mism += got[i] != want[i];
            char name[160];
            snprintf(name, sizeof name, "kv_store row_len %lld%s (rows outside [0, 16) skipped)", (long long)row_len,
                     with_start ? " starts" : "");
            if (mism == 0) g_pass++;
            else g_fail++;
            printf("%s %-72s %zu mismatching halves\n", mism ? "FAIL" : "PASS", name, mism);
            CK(nb_cuda_free(g_ctx, dsrc)); CK(nb_cuda_free(g_ctx, dpos)); CK(nb_cuda_free(g_ctx, dstart));
            CK(nb_cuda_free(g_ctx, dcache));
        }
    }
}

/* Argument checks: each call must fail with NB_ERR_ARGUMENT and leave a message. */
static void check_arguments() {
    float *d = dalloc<float>(1024);
    int32_t *dp = dalloc<int32_t>(4);
    uint16_t *dc = dalloc<uint16_t>(4096);
    struct { const char *what; nb_status st; } cases[] = {
        {"attention head_dim 100",
         nb_cuda_attention(g_ctx, d, 1, dp, nullptr, 4, 4, 100, dc, dc, 4, 400, 1.f, nullptr, 0, d)},
        {"attention heads 6/4", nb_cuda_attention(g_ctx, d, 1, dp, nullptr, 6, 4, 32, dc, dc, 4, 128, 1.f, nullptr, 0, d)},
        {"attention kv_stride small",
         nb_cuda_attention(g_ctx, d, 1, dp, nullptr, 4, 4, 32, dc, dc, 4, 64, 1.f, nullptr, 0, d)},
        {"attention no work", nb_cuda_attention(g_ctx, d, 1, dp, nullptr, 4, 4, 32, dc, dc, 1000, 128, 1.f, nullptr, 0, d)},
        {"attention starts, no work (8 tokens)",
         nb_cuda_attention(g_ctx, d, 8, dp, dp, 4, 4, 32, dc, dc, 1000, 128, 1.f, nullptr, 0, d)},
        {"rmsnorm null w", nb_cuda_rmsnorm(g_ctx, d, nullptr, 1, 16, 1e-5f, d)},
        {"rope odd head_dim", nb_cuda_rope(g_ctx, d, 1, 1, 7, dp, 10000.f, 1.f, nullptr)},
        {"swiglu n < 0", nb_cuda_swiglu(g_ctx, d, d, -1, d)},
        {"kv_store null pos", nb_cuda_kv_store(g_ctx, d, 1, 16, nullptr, dp, dc, 4)},
        {"rope_store odd head_dim",
         nb_cuda_rope_store(g_ctx, d, d, d, 1, 2, 1, 7, dp, nullptr, 10000.f, 1.f, nullptr, dc, dc, 4)},
        {"rope_store null v cache",
         nb_cuda_rope_store(g_ctx, d, d, d, 1, 2, 1, 8, dp, dp, 10000.f, 1.f, nullptr, dc, nullptr, 4)},
    };
    for (auto &c : cases) {
        const bool ok = c.st == NB_ERR_ARGUMENT && nb_cuda_error(g_ctx)[0] != 0;
        if (ok) g_pass++;
        else g_fail++;
        printf("%s %-72s status %d\n", ok ? "PASS" : "FAIL", (std::string("rejects ") + c.what).c_str(), (int)c.st);
    }
    CK(nb_cuda_free(g_ctx, d)); CK(nb_cuda_free(g_ctx, dp)); CK(nb_cuda_free(g_ctx, dc));
}

// ------------------------------------------------------------------------------- timing

struct Timing { std::string what; double us; std::string metric; };
static std::vector<Timing> g_times;

/* Median time per call (microseconds) of `call`, replayed R times per graph launch. */
static double time_calls(const std::function<void()> &call, int R) {
    const int runs = g_quick ? 7 : 25;
    void *graph = nullptr;
    CK(nb_cuda_capture_begin(g_ctx));
    for (int r = 0; r < R; r++) call();
    CK(nb_cuda_capture_end(g_ctx, &graph));
    for (int w = 0; w < 3; w++) CK(nb_cuda_graph_launch(g_ctx, graph)); CK(nb_cuda_sync(g_ctx));
    std::vector<double> us;
    for (int i = 0; i < runs; i++) {
        const auto t0 = std::chrono::steady_clock::now();
        CK(nb_cuda_graph_launch(g_ctx, graph));
        CK(nb_cuda_sync(g_ctx));
        const auto t1 = std::chrono::steady_clock::now();
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / R);
    }
    nb_cuda_graph_free(graph);
    std::sort(us.begin(), us.end());
    return us[us.size() / 2];
}

static void time_decode(const char *model, int64_t H, int64_t Hk, int64_t D, int64_t filled, int64_t cap) {
    Cache c;
    c.rows = cap, c.stride = Hk * D, c.filled = filled;
    // Random device contents are not needed for timing: a uniform, finite cache.
    c.dk = dalloc<uint16_t>((size_t)(cap * c.stride));
    c.dv = dalloc<uint16_t>((size_t)(cap * c.stride));
    CK(nb_cuda_memset(g_ctx, c.dk, 0x2C, cap * c.stride * 2)); // 0x2C2C ~ 0.06
    CK(nb_cuda_memset(g_ctx, c.dv, 0x2C, cap * c.stride * 2));
    std::vector<float> q = randv((size_t)(H * D), -1.0f, 1.0f);
    std::vector<int32_t> pos = {(int32_t)(filled - 1)};
    float *dq = dalloc<float>(q.size()), *dout = dalloc<float>(q.size());
    int32_t *dpos = dalloc<int32_t>(1);
    up(dq, q), up(dpos, pos);
    const int64_t wb = nb_cuda_attention_work_bytes(1, H, D, cap);
    void *dwork = nullptr;
    if (wb > 0) CK(nb_cuda_alloc(g_ctx, wb, &dwork));
    const float scale = 1.0f / sqrtf((float)D);
    const double us = time_calls([&] {
        CK(nb_cuda_attention(g_ctx, dq, 1, dpos, nullptr, H, Hk, D, c.dk, c.dv, cap, c.stride, scale, dwork, wb,
                             dout));
    }, 50);
    const double bytes = (double)filled * Hk * D * 2 * 2;
    char w[160], m[64];
    snprintf(w, sizeof w, "decode attention %s (H%lld/%lld D%lld) len %lld cap %lld", model, (long long)H,
             (long long)Hk, (long long)D, (long long)filled, (long long)cap);
    int32_t plan[3] = {0, 0, 0};
    nb_cuda_attention_test_plan(g_ctx, 1, H, Hk, D, cap, 0, plan);
    snprintf(m, sizeof m, "%.0f GB/s cache  [X %d%s, %d clusters fit]", bytes / us * 1e-3, (int)plan[0],
             plan[1] ? " cluster" : " d_work", (int)plan[2]);
    g_times.push_back({w, us, m});
    CK(nb_cuda_free(g_ctx, dq)); CK(nb_cuda_free(g_ctx, dout)); CK(nb_cuda_free(g_ctx, dpos));
    if (dwork) CK(nb_cuda_free(g_ctx, dwork));
    free_cache(c);
}

/* A decode batch of n_tok tokens, each of its own sequence of ctx positions (at position ctx - 1) in a pool of
 * n_tok * ctx rows, with d_start (n_kv = ctx). GB/s: the K and V rows the tokens see, read once per call. For one
 * token, the same call without d_start too (a sequence at row 0, same n_kv): the two should take the same time. */
static void time_decode_starts(const char *model, int64_t H, int64_t Hk, int64_t D, int64_t n_tok, int64_t ctx) {
    const int64_t rows = n_tok * ctx, stride = Hk * D;
    uint16_t *dk = dalloc<uint16_t>((size_t)(rows * stride)), *dv = dalloc<uint16_t>((size_t)(rows * stride));
    CK(nb_cuda_memset(g_ctx, dk, 0x2C, rows * stride * 2)); // 0x2C2C ~ 0.06: a uniform, finite cache
    CK(nb_cuda_memset(g_ctx, dv, 0x2C, rows * stride * 2));
    std::vector<float> q = randv((size_t)(n_tok * H * D), -1.0f, 1.0f);
    std::vector<int32_t> pos((size_t)n_tok, (int32_t)(ctx - 1)), start((size_t)n_tok);
    for (int64_t t = 0; t < n_tok; t++) start[t] = (int32_t)(t * ctx);
    float *dq = dalloc<float>(q.size()), *dout = dalloc<float>(q.size());
    int32_t *dpos = dalloc<int32_t>(pos.size()), *dstart = dalloc<int32_t>(start.size());
    up(dq, q), up(dpos, pos), up(dstart, start);
    const int64_t wb = nb_cuda_attention_work_bytes(n_tok, H, D, ctx);
    void *dwork = nullptr;
    if (wb > 0) CK(nb_cuda_alloc(g_ctx, wb, &dwork));
    const float scale = 1.0f / sqrtf((float)D);
    const double bytes = (double)n_tok * ctx * Hk * D * 2 * 2;
    for (int with = 1; with >= (n_tok == 1 ? 0 : 1); with--) {
        const double us = time_calls([&] {
            CK(nb_cuda_attention(g_ctx, dq, n_tok, dpos, with ? dstart : nullptr, H, Hk, D, dk, dv, ctx, stride, scale,
                                 dwork, wb, dout));
        }, 20);
        int32_t plan[3] = {0, 0, 0};
        nb_cuda_attention_test_plan(g_ctx, n_tok, H, Hk, D, ctx, with, plan);
        char w[160], m[96];
        snprintf(w, sizeof w, "decode attention %s (H%lld/%lld D%lld) %s n_tok %lld ctx %lld", model, (long long)H,
                 (long long)Hk, (long long)D, with ? "starts" : "no starts", (long long)n_tok, (long long)ctx);
        snprintf(m, sizeof m, "%.0f GB/s K/V  [X %d%s]", bytes / us * 1e-3, (int)plan[0],
                 plan[0] <= 1 ? "" : plan[1] ? " cluster" : " d_work");
        g_times.push_back({w, us, m});
    }
    for (void *p : {(void *)dq, (void *)dout, (void *)dpos, (void *)dstart, (void *)dk, (void *)dv})
        CK(nb_cuda_free(g_ctx, p));
    if (dwork) CK(nb_cuda_free(g_ctx, dwork));
}

static void time_prompt(int64_t H, int64_t Hk, int64_t D, int64_t n_tok) {
    const int64_t cap = 4096, stride = Hk * D;
    uint16_t *dk = dalloc<uint16_t>((size_t)(cap * stride)), *dv = dalloc<uint16_t>((size_t)(cap * stride));
    CK(nb_cuda_memset(g_ctx, dk, 0x2C, cap * stride * 2));
    CK(nb_cuda_memset(g_ctx, dv, 0x2C, cap * stride * 2));
    std::vector<float> q = randv((size_t)(n_tok * H * D), -1.0f, 1.0f);
    std::vector<int32_t> pos((size_t)n_tok);
    for (int64_t t = 0; t < n_tok; t++) pos[t] = (int32_t)t;
    float *dq = dalloc<float>(q.size()), *dout = dalloc<float>(q.size());
    int32_t *dpos = dalloc<int32_t>(pos.size());
    up(dq, q), up(dpos, pos);
    const int64_t wb = nb_cuda_attention_work_bytes(n_tok, H, D, cap);
    void *dwork = nullptr;
    if (wb > 0) CK(nb_cuda_alloc(g_ctx, wb, &dwork));
    const double us = time_calls([&] {
        CK(nb_cuda_attention(g_ctx, dq, n_tok, dpos, nullptr, H, Hk, D, dk, dv, cap, stride, 1.0f / sqrtf((float)D),
                             dwork, wb,
                             dout));
    }, 10);
    const double flops = 4.0 * H * D * (double)n_tok * (n_tok + 1) / 2; // QK^T and PV over the causal triangle
    char w[160], m[64];
    snprintf(w, sizeof w, "prompt attention H%lld/%lld D%lld n_tok %lld (causal)", (long long)H, (long long)Hk,
             (long long)D, (long long)n_tok);
    snprintf(m, sizeof m, "%.1f TFLOP/s", flops / us * 1e-6);
    g_times.push_back({w, us, m});
    CK(nb_cuda_free(g_ctx, dq)); CK(nb_cuda_free(g_ctx, dout)); CK(nb_cuda_free(g_ctx, dpos));
    CK(nb_cuda_free(g_ctx, dk)); CK(nb_cuda_free(g_ctx, dv));
    if (dwork) CK(nb_cuda_free(g_ctx, dwork));
}

static void time_rope_store(int64_t n_tok, int64_t H, int64_t Hk, int64_t D) {
    const int64_t cap = 4096, row = Hk * D;
    std::vector<float> q = randv((size_t)(n_tok * H * D), -1.0f, 1.0f), k = randv((size_t)(n_tok * row), -1.0f, 1.0f);
    std::vector<int32_t> pos((size_t)n_tok);
    for (int64_t t = 0; t < n_tok; t++) pos[t] = (int32_t)(100 + t);
    float *dq = dalloc<float>(q.size()), *dk = dalloc<float>(k.size()), *dv = dalloc<float>(k.size());
    int32_t *dpos = dalloc<int32_t>(pos.size());
    uint16_t *kc = dalloc<uint16_t>((size_t)(cap * row)), *vc = dalloc<uint16_t>((size_t)(cap * row));
    up(dq, q), up(dk, k), up(dv, k), up(dpos, pos);
    const double us = time_calls([&] {
        CK(nb_cuda_rope_store(g_ctx, dq, dk, dv, n_tok, H, Hk, D, dpos, nullptr, 10000.0f, 1.0f, nullptr, kc, vc, cap));
    }, 100);
    char w[160];
    snprintf(w, sizeof w, "rope_store n_tok %lld H%lld/%lld D%lld", (long long)n_tok, (long long)H, (long long)Hk,
             (long long)D);
    g_times.push_back({w, us, ""});
    for (void *p : {(void *)dq, (void *)dk, (void *)dv, (void *)dpos, (void *)kc, (void *)vc}) CK(nb_cuda_free(g_ctx, p));
}

static void time_rmsnorm(int64_t rows, int64_t n) {
    std::vector<float> x = randv((size_t)(rows * n), -1.0f, 1.0f), w = randv((size_t)n, 0.5f, 1.5f);
    float *dx = dalloc<float>(x.size()), *dw = dalloc<float>(w.size()), *dy = dalloc<float>(x.size());
    up(dx, x), up(dw, w);
    const double us = time_calls([&] { CK(nb_cuda_rmsnorm(g_ctx, dx, dw, rows, n, 1e-5f, dy)); }, 100);
    char wh[160], m[64];
    snprintf(wh, sizeof wh, "rmsnorm %lld x %lld", (long long)rows, (long long)n);
    snprintf(m, sizeof m, "%.0f GB/s", (double)(rows * n * 8 + n * 4) / us * 1e-3);
    g_times.push_back({wh, us, m});
    CK(nb_cuda_free(g_ctx, dx)); CK(nb_cuda_free(g_ctx, dw)); CK(nb_cuda_free(g_ctx, dy));
}

int main(int argc, char **argv) {
    int device = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g_quick = true;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--device N]\n", argv[0]);
            return 2;
        }
    }
    if (nb_cuda_open(device, &g_ctx) != NB_OK) {
        fprintf(stderr, "nb_cuda_open(%d) failed: %s\n", device, nb_cuda_last_open_error());
        return 2;
    }
    char name[256] = "";
    int64_t total = 0, freeb = 0;
    int32_t cc = 0, sms = 0;
    nb_cuda_device_info(device, name, sizeof name, &total, &freeb, &cc, &sms);
    printf("device %d: %s, cc %d, %d SMs, CUDA runtime %d\n", device, name, cc, sms, nb_cuda_version());

    check_arguments();
    check_rmsnorm();
    check_rope();
    check_swiglu_add();
    check_kv_store();
    check_rope_store();
    check_attention();
    check_attention_pool();
    // The d_work + combine path (what other archs than sm_90 take), forced on this device.
    nb_cuda_attention_test_path(1);
    check_attention(true, "[d_work] ");
    check_attention_pool(true, "[d_work] ");
    nb_cuda_attention_test_path(0);

    time_decode("7B", 32, 32, 128, 1, 4096);
    time_decode("7B", 32, 32, 128, 64, 4096);
    time_decode("7B", 32, 32, 128, 512, 4096);
    time_decode("7B", 32, 32, 128, 4096, 4096);
    time_decode("70B", 64, 8, 128, 1, 4096);
    time_decode("70B", 64, 8, 128, 512, 4096);
    time_decode("70B", 64, 8, 128, 4096, 4096);
    if (!g_quick) time_decode("70B", 64, 8, 128, 512, 32768);
    if (!g_quick) time_decode("70B", 64, 8, 128, 32768, 32768);
    nb_cuda_attention_test_path(1);
    time_decode("7B [d_work]", 32, 32, 128, 1, 4096);
    time_decode("7B [d_work]", 32, 32, 128, 512, 4096);
    time_decode("70B [d_work]", 64, 8, 128, 4096, 4096);
    nb_cuda_attention_test_path(0);
    // Decode batches of tokens of different sequences (d_start), 7B layout; 70B for a few.
    for (int64_t ctx : {(int64_t)256, (int64_t)1024})
        for (int64_t n_tok : {(int64_t)1, (int64_t)8, (int64_t)16, (int64_t)32, (int64_t)64})
            time_decode_starts("7B", 32, 32, 128, n_tok, ctx);
    if (!g_quick)
        for (int64_t n_tok : {(int64_t)1, (int64_t)8, (int64_t)32}) time_decode_starts("70B", 64, 8, 128, n_tok, 1024);
    nb_cuda_attention_test_path(1);
    time_decode_starts("7B [d_work]", 32, 32, 128, 1, 1024);
    if (!g_quick) time_decode_starts("70B [d_work]", 64, 8, 128, 8, 1024);
    nb_cuda_attention_test_path(0);
    time_prompt(32, 32, 128, 512);
    if (!g_quick) time_prompt(64, 8, 128, 512);
    time_rope_store(1, 32, 32, 128);
    time_rope_store(1, 64, 8, 128);
    if (!g_quick) time_rope_store(512, 32, 32, 128);
    time_rmsnorm(1, 4096);
    if (!g_quick) time_rmsnorm(512, 4096);

    printf("\n%-64s %10s  %s\n", "timing (median per call, graph-replayed)", "us", "");
    for (const Timing &t : g_times) printf("%-64s %10.2f  %s\n", t.what.c_str(), t.us, t.metric.c_str());
    printf("\n%d passed, %d failed\n", g_pass, g_fail);
    nb_cuda_close(g_ctx);
    return g_fail ? 1 : 0;
}
