// Self-check of nb_cuda_upload_weight / nb_cuda_matmul / nb_cuda_embed against a host reference, then timings.
//
//   nb_cuda_check_matmul [--quick] [--no-timing] [--timing-only] [--device N]
//
// Weights are random valid ggml bytes; the host reference dequantizes them with a plain C port of the layouts in
// formats/.../Dequantizer.java and accumulates in double. Every output is poisoned with NaN first, so an element the
// kernel forgot shows up. The integer kernels (quantized types, <= 64 tokens) are also checked for batch invariance
// (check_invariance): within 1..8 tokens (gemv_int) and within 9..64 (mmq), not across. Exit status 1 on any failure.
// Timings run the calls inside a captured graph (no launch overhead, as in decoding), rotating over enough weight
// copies that the L2 cache cannot hold them, and take the median of 21 graph launches.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>
#include "nibble.h"
#include "nb_cuda_internal.cuh" // struct nb_cuda: mm_portable, to check the integer matmul's portable form too

namespace {

enum { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, Q6_K = 14, IQ4_NL = 20, BF16 = 30, NF4 = 1024 };
const int kTypes[] = {F32, F16, Q4_0, Q8_0, Q4_K, Q6_K, IQ4_NL, BF16, NF4};

const char *type_name(int t) {
    switch (t) {
        case F32: return "F32"; case F16: return "F16"; case Q4_0: return "Q4_0"; case Q8_0: return "Q8_0";
        case Q4_K: return "Q4_K"; case Q6_K: return "Q6_K"; case IQ4_NL: return "IQ4_NL"; case BF16: return "BF16";
        case NF4: return "NF4"; default: return "?";
    }
}
int block_size(int t) {
    switch (t) {
        case F32: case F16: case BF16: return 1;
        case Q4_0: case Q8_0: case IQ4_NL: return 32;
        default: return 256;
    }
}
int block_bytes(int t) {
    switch (t) {
        case F32: return 4; case F16: case BF16: return 2; case Q4_0: case IQ4_NL: return 18; case Q8_0: return 34;
        case Q4_K: return 144; case Q6_K: return 210; case NF4: return 134; default: return 0;
    }
}
bool is_float(int t) { return t == F32 || t == F16 || t == BF16; }
int64_t row_bytes(int t, int64_t n_in) { return n_in / block_size(t) * block_bytes(t); }

// ---- host numerics ----------------------------------------------------------------------------------------------

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s; }
    uint32_t u32() { return (uint32_t) (next() >> 32); }
    float uni() { return (float) ((next() >> 40) * (1.0 / 16777216.0)); } // [0, 1)
    float sym() { return 2.0f * uni() - 1.0f; }                          // [-1, 1)
};

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t) (h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { // subnormal: normalize
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 1024));
            bits = sign | (uint32_t) (127 - 15 - e) << 23 | (man & 1023) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7F800000u | man << 13;
    else bits = sign | (exp + 112) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
uint16_t f32_to_f16(float f) { // round to nearest even; the inputs here are normal and in range
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, a = x & 0x7FFFFFFFu;
    if (a < 0x38800000u) { // below 2^-14: let the float unit round the subnormal
        float v;
        memcpy(&v, &a, 4);
        return (uint16_t) (sign | (uint32_t) lrintf(v * 16777216.0f));
    }
    uint32_t r = a + 0x0FFF + ((a >> 13) & 1) - 0x38000000u;
    return (uint16_t) (sign | (r >> 13));
}
float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t) h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
uint16_t rd16(const uint8_t *p) { return (uint16_t) (p[0] | p[1] << 8); }
void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t) v; p[1] = (uint8_t) (v >> 8); }

const int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
const float kNf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// A random fp16 scale, log-uniform in [1e-3, 1e-1], with a random sign when `sign`.
uint16_t rand_scale(Rng &r, bool sign) {
    float v = 1e-3f * powf(100.0f, r.uni());
    if (sign && (r.u32() & 1)) v = -v;
    return f32_to_f16(v);
}

// One row of n_in random weights in ggml layout.
void gen_row(int t, int64_t n_in, Rng &r, uint8_t *dst) {
    int64_t nb = n_in / block_size(t);
    int bb = block_bytes(t);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = dst + b * bb;
        switch (t) {
            case F32: { float v = r.sym(); memcpy(p, &v, 4); break; }
            case F16: wr16(p, f32_to_f16(r.sym())); break;
            case BF16: wr16(p, (uint16_t) (r.u32() % 2 ? 0x8000 : 0) | (uint16_t) (0x3A00 + r.u32() % 0x0600)); break;
            case Q4_0: case IQ4_NL: case Q8_0:
                wr16(p, rand_scale(r, true));
                for (int i = 2; i < bb; i++) p[i] = (uint8_t) r.u32();
                break;
            case Q4_K:
                wr16(p, rand_scale(r, false));
                wr16(p + 2, rand_scale(r, false));
                for (int i = 4; i < bb; i++) p[i] = (uint8_t) r.u32();
                break;
            case Q6_K:
                for (int i = 0; i < 208; i++) p[i] = (uint8_t) r.u32();
                wr16(p + 208, rand_scale(r, true));
                break;
            case NF4:
                wr16(p, rand_scale(r, false));
                for (int i = 2; i < bb; i++) p[i] = (uint8_t) r.u32();
                break;
        }
    }
}

// Dequantizes one row exactly as Dequantizer.java (float operations in the same order, no contraction).
void deq_row(int t, const uint8_t *src, int64_t n_in, float *y) {
    int64_t nb = n_in / block_size(t);
    int bb = block_bytes(t);
    for (int64_t blk = 0; blk < nb; blk++) {
        const uint8_t *b = src + blk * bb;
        float *o = y + blk * block_size(t);
        switch (t) {
            case F32: memcpy(o, b, 4); break;
            case F16: o[0] = f16_to_f32(rd16(b)); break;
            case BF16: o[0] = bf16_to_f32(rd16(b)); break;
            case Q4_0: {
                float d = f16_to_f32(rd16(b));
                for (int j = 0; j < 16; j++) {
                    o[j] = (float) ((b[2 + j] & 15) - 8) * d;
                    o[j + 16] = (float) ((b[2 + j] >> 4) - 8) * d;
                }
                break;
            }
            case IQ4_NL: {
                float d = f16_to_f32(rd16(b));
                for (int j = 0; j < 16; j++) {
                    o[j] = d * (float) kIq4nl[b[2 + j] & 15];
                    o[j + 16] = d * (float) kIq4nl[b[2 + j] >> 4];
                }
                break;
            }
            case Q8_0: {
                float d = f16_to_f32(rd16(b));
                for (int j = 0; j < 32; j++) o[j] = (float) (int8_t) b[2 + j] * d;
                break;
            }
            case Q4_K: {
                float d = f16_to_f32(rd16(b)), dmin = f16_to_f32(rd16(b + 2));
                const uint8_t *sc = b + 4;
                for (int i = 0; i < 4; i++) {
                    int s[2], m[2];
                    for (int h = 0; h < 2; h++) {
                        int j = 2 * i + h;
                        if (j < 4) {
                            s[h] = sc[j] & 63;
                            m[h] = sc[j + 4] & 63;
                        } else {
                            s[h] = (sc[j + 4] & 15) | (sc[j - 4] >> 6) << 4;
                            m[h] = (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
                        }
                    }
                    float d1 = d * (float) s[0], m1 = dmin * (float) m[0], d2 = d * (float) s[1], m2 = dmin * (float) m[1];
                    for (int l = 0; l < 32; l++) {
                        volatile float p1 = d1 * (float) (b[16 + 32 * i + l] & 15), p2 = d2 * (float) (b[16 + 32 * i + l] >> 4);
                        o[64 * i + l] = p1 - m1;
                        o[64 * i + 32 + l] = p2 - m2;
                    }
                }
                break;
            }
            case Q6_K: {
                float d = f16_to_f32(rd16(b + 208));
                for (int half = 0; half < 2; half++) {
                    const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
                    const int8_t *sc = (const int8_t *) (b + 192 + 8 * half);
                    float *oo = o + 128 * half;
                    for (int l = 0; l < 32; l++) {
                        int is = l / 16, h = qh[l];
                        int q1 = ((ql[l] & 15) | (h & 3) << 4) - 32;
                        int q2 = ((ql[l + 32] & 15) | (h >> 2 & 3) << 4) - 32;
                        int q3 = ((ql[l] >> 4) | (h >> 4 & 3) << 4) - 32;
                        int q4 = ((ql[l + 32] >> 4) | (h >> 6 & 3) << 4) - 32;
                        oo[l] = d * (float) sc[is] * (float) q1;
                        oo[l + 32] = d * (float) sc[is + 2] * (float) q2;
                        oo[l + 64] = d * (float) sc[is + 4] * (float) q3;
                        oo[l + 96] = d * (float) sc[is + 6] * (float) q4;
                    }
                }
                break;
            }
            case NF4: {
                float d = f16_to_f32(rd16(b));
                for (int i = 0; i < 4; i++) {
                    float absmax = d * (float) b[2 + i];
                    for (int j = 0; j < 32; j++) {
                        int q = b[6 + 32 * i + j];
                        o[64 * i + j] = absmax * kNf4[q & 15];
                        o[64 * i + j + 32] = absmax * kNf4[q >> 4];
                    }
                }
                break;
            }
        }
    }
}

// ---- the checks -------------------------------------------------------------------------------------------------

int g_failures = 0, g_cases = 0;

#define CHECK_OK(call)                                                                                   \
    do {                                                                                                 \
        nb_status s_ = (call);                                                                           \
        if (s_ != NB_OK) {                                                                               \
            fprintf(stderr, "FATAL %s:%d: %s -> %d: %s\n", __FILE__, __LINE__, #call, s_, nb_cuda_error(ctx)); \
            exit(2);                                                                                     \
        }                                                                                                \
    } while (0)

struct DevBuf {
    nb_cuda *ctx = nullptr;
    void *p = nullptr;
    DevBuf(nb_cuda *c, int64_t bytes) : ctx(c) {
        if (nb_cuda_alloc(ctx, bytes > 0 ? bytes : 16, &p) != NB_OK) {
            fprintf(stderr, "FATAL alloc %lld: %s\n", (long long) bytes, nb_cuda_error(ctx));
            exit(2);
        }
    }
    ~DevBuf() { nb_cuda_free(ctx, p); }
};

// Which kernel a call takes, and how its error is measured. The f32 GEMVs: plain relative error
// ||y - ref|| / ||ref||. The int8-activation matmul (quantized types, <= 64 tokens) and the f16 tensor-core GEMMs: as
// the project's CPU tests, ||y - ref|| / sqrt(sum_t sum_o sum_i (w_oi x_ti)^2), the norm of the terms (rounding the
// activations moves each output by a fraction of the norm of its terms, and cancellation can make the output tiny).
bool int_path(int t) { return t == Q4_0 || t == Q8_0 || t == Q4_K || t == Q6_K || t == IQ4_NL; }
bool term_metric(int t, int64_t n_tok) { return n_tok > 8 || int_path(t); }
double tolerance(int t, int64_t n_tok) {
    if (int_path(t) && n_tok <= 64) return 1e-2; // int8 activations (term norm)
    if (n_tok > 8) return 1e-3;                  // f16 tensor-core GEMM (term norm)
    return 1e-5;                                 // f32 GEMV (plain relative)
}

// Rows whose reference is computed: all of a small matrix; for a large one the first and last 40 (tile edges) and
// 24 spread through the middle.
std::vector<int64_t> sample_rows(int64_t n_out) {
    std::vector<int64_t> rows;
    if (n_out <= 104) {
        for (int64_t r = 0; r < n_out; r++) rows.push_back(r);
        return rows;
    }
    for (int64_t r = 0; r < 40; r++) rows.push_back(r);
    for (int64_t i = 1; i <= 24; i++) rows.push_back(40 + (n_out - 80) * i / 25);
    for (int64_t r = n_out - 40; r < n_out; r++) rows.push_back(r);
    return rows;
}

void check_matmul(nb_cuda *ctx, int t, int64_t n_out, int64_t n_in, const std::vector<int64_t> &toks, Rng &rng) {
    int64_t rb = row_bytes(t, n_in);
    std::vector<uint8_t> w((size_t) (rb * n_out));
    for (int64_t o = 0; o < n_out; o++) gen_row(t, n_in, rng, w.data() + o * rb);
    int64_t dev_bytes = nb_cuda_weight_bytes(t, n_out, n_in);
    if (dev_bytes <= 0) {
        printf("FAIL %-6s %5lld x %-5lld: nb_cuda_weight_bytes = %lld\n", type_name(t), (long long) n_out,
               (long long) n_in, (long long) dev_bytes);
        g_failures++;
        return;
    }
    DevBuf dw(ctx, dev_bytes);
    CHECK_OK(nb_cuda_upload_weight(ctx, t, w.data(), n_out, n_in, dw.p));

    std::vector<int64_t> rows = sample_rows(n_out);
    std::vector<float> wf(rows.size() * (size_t) n_in);
    for (size_t i = 0; i < rows.size(); i++) deq_row(t, w.data() + rows[i] * rb, n_in, wf.data() + i * n_in);

    int64_t max_tok = *std::max_element(toks.begin(), toks.end());
    std::vector<float> x((size_t) (max_tok * n_in));
    for (auto &v : x) v = rng.sym();
    DevBuf dx(ctx, (int64_t) x.size() * 4), dy(ctx, max_tok * n_out * 4);
    CHECK_OK(nb_cuda_upload(ctx, dx.p, x.data(), (int64_t) x.size() * 4));
    std::vector<float> y((size_t) (max_tok * n_out));
    for (int64_t n_tok : toks) {
        g_cases++;
        CHECK_OK(nb_cuda_memset(ctx, dy.p, 0xFF, n_tok * n_out * 4)); // NaN
        nb_status s = nb_cuda_matmul(ctx, t, dw.p, n_out, n_in, (const float *) dx.p, n_tok, (float *) dy.p);
        if (s == NB_OK) s = nb_cuda_read(ctx, y.data(), dy.p, n_tok * n_out * 4);
        if (s != NB_OK) {
            printf("FAIL %-6s %5lld x %-5lld tok %3lld: status %d: %s\n", type_name(t), (long long) n_out,
                   (long long) n_in, (long long) n_tok, s, nb_cuda_error(ctx));
            g_failures++;
            continue;
        }
        int64_t unwritten = 0;
        for (int64_t i = 0; i < n_tok * n_out; i++) unwritten += !isfinite(y[i]);
        double err2 = 0, ref2 = 0, terms2 = 0;
        for (int64_t tk = 0; tk < n_tok; tk++)
            for (size_t i = 0; i < rows.size(); i++) {
                const float *wr = wf.data() + i * n_in, *xr = x.data() + tk * n_in;
                double acc = 0, sq = 0;
                for (int64_t k = 0; k < n_in; k++) {
                    double p = (double) wr[k] * (double) xr[k];
                    acc += p;
                    sq += p * p;
                }
                double got = y[tk * n_out + rows[i]];
                err2 += (got - acc) * (got - acc);
                ref2 += acc * acc;
                terms2 += sq;
            }
        double den = term_metric(t, n_tok) ? terms2 : ref2;
        double rel = sqrt(err2 / (den > 0 ? den : 1e-300)), tol = tolerance(t, n_tok);
        bool ok = unwritten == 0 && rel <= tol && isfinite(rel);
        if (!ok) g_failures++;
        printf("%s %-6s %5lld x %-5lld tok %3lld  %s %.2e (tol %.0e)%s\n", ok ? "PASS" : "FAIL", type_name(t),
               (long long) n_out, (long long) n_in, (long long) n_tok, term_metric(t, n_tok) ? "err/terms" : "rel", rel, tol,
               unwritten ? "  NOT WRITTEN/NON-FINITE ELEMENTS" : "");
        if (unwritten) printf("     %lld of %lld outputs not finite\n", (long long) unwritten, (long long) (n_tok * n_out));
    }
}

// A random weight on the device with its dequantized rows on the host.
struct HostWeight {
    int t;
    int64_t n_out, n_in;
    std::vector<float> wf; // n_out x n_in
    DevBuf *d;
};
HostWeight make_weight(nb_cuda *ctx, int t, int64_t n_out, int64_t n_in, Rng &rng, bool host = true) {
    HostWeight h{t, n_out, n_in, std::vector<float>(host ? (size_t) (n_out * n_in) : 0), nullptr};
    int64_t rb = row_bytes(t, n_in);
    std::vector<uint8_t> w((size_t) (rb * n_out));
    for (int64_t o = 0; o < n_out; o++) gen_row(t, n_in, rng, w.data() + o * rb);
    for (int64_t o = 0; o < n_out && host; o++) deq_row(t, w.data() + o * rb, n_in, h.wf.data() + o * n_in);
    h.d = new DevBuf(ctx, nb_cuda_weight_bytes(t, n_out, n_in));
    CHECK_OK(nb_cuda_upload_weight(ctx, t, w.data(), n_out, n_in, h.d->p));
    return h;
}
// Reference output and the squared norm of its terms.
void ref_dot(const HostWeight &h, int64_t o, const float *xr, double *val, double *sq) {
    double acc = 0, s2 = 0;
    for (int64_t k = 0; k < h.n_in; k++) {
        double p = (double) h.wf[o * h.n_in + k] * (double) xr[k];
        acc += p;
        s2 += p * p;
    }
    *val = acc;
    *sq = s2;
}
int64_t count_unwritten(const std::vector<float> &y) {
    int64_t n = 0;
    for (float v : y) n += !std::isfinite(v);
    return n;
}

// nb_cuda_matmul_shared_input: each output against the reference, measured as nb_cuda_matmul's.
void check_shared_input(nb_cuda *ctx, const std::vector<int> &types, const std::vector<int64_t> &n_outs, int64_t n_in,
                        const std::vector<int64_t> &toks, Rng &rng) {
    int n_w = (int) types.size();
    std::vector<HostWeight> ws;
    for (int j = 0; j < n_w; j++) ws.push_back(make_weight(ctx, types[j], n_outs[j], n_in, rng));
    int64_t max_tok = *std::max_element(toks.begin(), toks.end());
    std::vector<float> x((size_t) (max_tok * n_in));
    for (auto &v : x) v = rng.sym();
    DevBuf dx(ctx, (int64_t) x.size() * 4);
    CHECK_OK(nb_cuda_upload(ctx, dx.p, x.data(), (int64_t) x.size() * 4));
    std::vector<DevBuf *> dys;
    for (int j = 0; j < n_w; j++) dys.push_back(new DevBuf(ctx, max_tok * n_outs[j] * 4));
    std::string names;
    for (int j = 0; j < n_w; j++) names += std::string(j ? "+" : "") + type_name(types[j]);
    for (int64_t n_tok : toks) {
        g_cases++;
        std::vector<const void *> wp;
        std::vector<float *> yp;
        for (int j = 0; j < n_w; j++) {
            wp.push_back(ws[j].d->p);
            yp.push_back((float *) dys[j]->p);
            CHECK_OK(nb_cuda_memset(ctx, dys[j]->p, 0xFF, n_tok * n_outs[j] * 4));
        }
        nb_status s = nb_cuda_matmul_shared_input(ctx, n_w, types.data(), wp.data(), n_outs.data(), n_in,
                                                  (const float *) dx.p, n_tok, yp.data());
        bool ok = s == NB_OK;
        double worst = 0;
        int64_t unwritten = 0;
        for (int j = 0; j < n_w && ok; j++) {
            std::vector<float> y((size_t) (n_tok * n_outs[j]));
            if (nb_cuda_read(ctx, y.data(), dys[j]->p, n_tok * n_outs[j] * 4) != NB_OK) { ok = false; break; }
            unwritten += count_unwritten(y);
            double err2 = 0, ref2 = 0, terms2 = 0;
            for (int64_t tk = 0; tk < n_tok; tk++)
                for (int64_t o = 0; o < n_outs[j]; o++) {
                    double v, sq;
                    ref_dot(ws[j], o, x.data() + tk * n_in, &v, &sq);
                    double e = y[tk * n_outs[j] + o] - v;
                    err2 += e * e;
                    ref2 += v * v;
                    terms2 += sq;
                }
            double den = term_metric(types[j], n_tok) ? terms2 : ref2;
            double rel = sqrt(err2 / (den > 0 ? den : 1e-300));
            if (!(rel <= tolerance(types[j], n_tok))) ok = false;
            worst = std::max(worst, rel / tolerance(types[j], n_tok));
        }
        ok = ok && unwritten == 0;
        if (!ok) g_failures++;
        printf("%s shared_input %-16s n_in %5lld tok %3lld  err/tol %.2f%s%s\n", ok ? "PASS" : "FAIL", names.c_str(),
               (long long) n_in, (long long) n_tok, worst, unwritten ? "  NOT WRITTEN/NON-FINITE" : "",
               s != NB_OK ? nb_cuda_error(ctx) : "");
    }
    for (auto *d : dys) delete d;
    for (auto &w : ws) delete w.d;
}

// nb_cuda_matmul_swiglu: y = silu(g) * u. The error of y is measured against the terms that reach it:
// sqrt(sum (u * terms_g)^2 + (silu(g) * terms_u)^2) for the term-norm paths (|silu'| <= 1.1), ||ref|| otherwise.
void check_swiglu(nb_cuda *ctx, int t, int64_t n_out, int64_t n_in, const std::vector<int64_t> &toks, Rng &rng) {
    HostWeight g = make_weight(ctx, t, n_out, n_in, rng), u = make_weight(ctx, t, n_out, n_in, rng);
    int64_t max_tok = *std::max_element(toks.begin(), toks.end());
    std::vector<float> x((size_t) (max_tok * n_in));
    for (auto &v : x) v = rng.sym();
    DevBuf dx(ctx, (int64_t) x.size() * 4), dy(ctx, max_tok * n_out * 4);
    CHECK_OK(nb_cuda_upload(ctx, dx.p, x.data(), (int64_t) x.size() * 4));
    for (int64_t n_tok : toks) {
        g_cases++;
        CHECK_OK(nb_cuda_memset(ctx, dy.p, 0xFF, n_tok * n_out * 4));
        nb_status s = nb_cuda_matmul_swiglu(ctx, t, g.d->p, u.d->p, n_out, n_in, (const float *) dx.p, n_tok,
                                            (float *) dy.p);
        std::vector<float> y((size_t) (n_tok * n_out));
        if (s == NB_OK) s = nb_cuda_read(ctx, y.data(), dy.p, n_tok * n_out * 4);
        double err2 = 0, ref2 = 0, terms2 = 0;
        for (int64_t tk = 0; tk < n_tok && s == NB_OK; tk++)
            for (int64_t o = 0; o < n_out; o++) {
                double gv, gs, uv, us;
                ref_dot(g, o, x.data() + tk * n_in, &gv, &gs);
                ref_dot(u, o, x.data() + tk * n_in, &uv, &us);
                double sg = gv / (1.0 + exp(-gv)), v = sg * uv;
                double e = y[tk * n_out + o] - v;
                err2 += e * e;
                ref2 += v * v;
                terms2 += 1.21 * uv * uv * gs + sg * sg * us;
            }
        double den = term_metric(t, n_tok) ? terms2 : ref2;
        double rel = sqrt(err2 / (den > 0 ? den : 1e-300));
        double tol = term_metric(t, n_tok) ? tolerance(t, n_tok) : 1e-4;
        int64_t unwritten = s == NB_OK ? count_unwritten(y) : 0;
        bool ok = s == NB_OK && unwritten == 0 && rel <= tol;
        if (!ok) g_failures++;
        printf("%s swiglu %-6s %5lld x %-5lld tok %3lld  %s %.2e (tol %.0e)%s%s\n", ok ? "PASS" : "FAIL", type_name(t),
               (long long) n_out, (long long) n_in, (long long) n_tok, term_metric(t, n_tok) ? "err/terms" : "rel", rel,
               tol, unwritten ? "  NOT WRITTEN/NON-FINITE" : "", s != NB_OK ? nb_cuda_error(ctx) : "");
    }
    delete g.d;
    delete u.d;
}

// Batch invariance of the integer kernels (quantized types): random weights and 64 random activation rows; each entry
// point (nb_cuda_matmul; nb_cuda_matmul_shared_input with three weights; nb_cuda_matmul_swiglu) runs
//  - gemv_int (1..8 tokens): every token of the first 8 alone, then the first k tokens in one call (k = 2, 3, 5, 8:
//    every token-count instance); each of the k output rows must equal its single-token row bit for bit;
//  - mmq (9..64 tokens): all 64 tokens in one call, then the same 64 as consecutive calls of 9..47 tokens (every
//    token tile width: 9..16, 17..32, 33..64); the rows must equal those of the one call bit for bit. Across entry
//    points too: shared_input's first output and the SwiGLU against nb_cuda_matmul (+ nb_cuda_swiglu) on the same
//    weights.
// 1..8 against 9..64 tokens is not checked: the two kernels sum in different orders. n_out = 300 is no multiple of any
// tile; n_in: a few chains (blocks of several row groups), 8 even chains (4096) and 8 uneven ones (11008). On sm_90
// the portable form of mmq (workspace + mq_combine instead of clusters) runs as well and must give the same bits as
// the cluster form.
void check_invariance(nb_cuda *ctx, int t, Rng &rng, bool quick) {
    const int gks[] = {2, 3, 5, 8};
    const int ngk = (int) (sizeof gks / sizeof gks[0]), K = 64, KG = 8;
    const std::vector<std::vector<int>> splits = {{9, 16, 39}, {17, 47}, {24, 40}};
    const int nsp = (int) splits.size();
    std::vector<int64_t> n_ins = block_size(t) == 256 ? std::vector<int64_t>{768, 4096, 11008}
                                                      : std::vector<int64_t>{352, 4096, 11008};
    if (quick) n_ins.pop_back();
    const int64_t outs[3] = {300, 37, 129};
    const int modes = ctx->compute_capability >= 90 ? 2 : 1;
    std::vector<std::string> bad_g(ngk), bad_s(nsp);
    std::string cross, entries;
    static const char *entry_names[3] = {"matmul", "shared_input", "swiglu"};
    using Rows = std::vector<std::vector<float>>; // per output of the entry point
    for (int64_t n_in : n_ins) {
        std::vector<HostWeight> ws;
        for (int j = 0; j < 3; j++) ws.push_back(make_weight(ctx, t, outs[j], n_in, rng, false));
        ws.push_back(make_weight(ctx, t, outs[0], n_in, rng, false)); // the up weight of the SwiGLU pair
        std::vector<float> x((size_t) (K * n_in));
        for (auto &v : x) v = rng.sym();
        DevBuf dx(ctx, K * n_in * 4);
        CHECK_OK(nb_cuda_upload(ctx, dx.p, x.data(), K * n_in * 4));
        std::vector<DevBuf *> dys;
        for (int j = 0; j < 3; j++) dys.push_back(new DevBuf(ctx, K * outs[j] * 4));
        // Runs entry e on tokens [t0, t0 + n): the outputs (one, or three for shared_input), each n rows. Entry 3:
        // nb_cuda_matmul on the gate and on the up weight, then nb_cuda_swiglu (the unfused form of entry 2).
        auto run = [&](int e, int t0, int n) {
            const float *xp = (const float *) dx.p + (int64_t) t0 * n_in;
            const int no = e == 1 ? 3 : 1;
            for (int j = 0; j < 3; j++) CHECK_OK(nb_cuda_memset(ctx, dys[j]->p, 0xFF, n * outs[j] * 4));
            if (e == 0) {
                CHECK_OK(nb_cuda_matmul(ctx, t, ws[0].d->p, outs[0], n_in, xp, n, (float *) dys[0]->p));
            } else if (e == 1) {
                int32_t types[3] = {t, t, t};
                const void *wp[3] = {ws[0].d->p, ws[1].d->p, ws[2].d->p};
                float *yp[3] = {(float *) dys[0]->p, (float *) dys[1]->p, (float *) dys[2]->p};
                CHECK_OK(nb_cuda_matmul_shared_input(ctx, 3, types, wp, outs, n_in, xp, n, yp));
            } else if (e == 2) {
                CHECK_OK(nb_cuda_matmul_swiglu(ctx, t, ws[0].d->p, ws[3].d->p, outs[0], n_in, xp, n, (float *) dys[0]->p));
            } else {
                DevBuf gate(ctx, n * outs[0] * 4), up(ctx, n * outs[0] * 4);
                CHECK_OK(nb_cuda_matmul(ctx, t, ws[0].d->p, outs[0], n_in, xp, n, (float *) gate.p));
                CHECK_OK(nb_cuda_matmul(ctx, t, ws[3].d->p, outs[0], n_in, xp, n, (float *) up.p));
                CHECK_OK(nb_cuda_swiglu(ctx, (const float *) gate.p, (const float *) up.p, n * outs[0],
                                        (float *) dys[0]->p));
            }
            Rows r(no);
            for (int j = 0; j < no; j++) {
                r[j].resize((size_t) (n * outs[j]));
                CHECK_OK(nb_cuda_read(ctx, r[j].data(), dys[j]->p, n * outs[j] * 4));
            }
            return r;
        };
        // The first differing float of p and q (n floats), as a message; "" when they are equal.
        auto differ = [&](const std::vector<float> &p, const std::vector<float> &q, size_t n, int64_t no,
                          const char *what) -> std::string {
            if (memcmp(p.data(), q.data(), n * 4) == 0) return "";
            size_t i = 0;
            while (memcmp(&p[i], &q[i], 4) == 0) i++;
            char m[320];
            snprintf(m, sizeof m, "n_in %lld %s: token %lld row %lld: %.9g vs %.9g", (long long) n_in, what,
                     (long long) (i / no), (long long) (i % no), p[i], q[i]);
            return m;
        };
        // [mode]: every result, for the cluster / workspace comparison
        std::vector<std::vector<Rows>> all(modes);
        for (int mode = 0; mode < modes; mode++) {
            ctx->mm_portable = mode;
            const char *form = mode ? " (workspace form)" : "";
            Rows whole[3]; // mmq: the 64 tokens in one call, per entry point
            for (int e = 0; e < 3; e++) {
                const int no = e == 1 ? 3 : 1;
                // gemv_int: the first KG tokens alone, then the first k in one call
                Rows one(no);
                for (int i = 0; i < KG; i++) {
                    Rows r = run(e, i, 1);
                    for (int j = 0; j < no; j++) one[j].insert(one[j].end(), r[j].begin(), r[j].end());
                }
                all[mode].push_back(one);
                for (int ki = 0; ki < ngk; ki++) {
                    const int k = gks[ki];
                    Rows r = run(e, 0, k);
                    for (int j = 0; j < no && bad_g[ki].empty(); j++) {
                        std::string what = std::string(entry_names[e]) + form + " output " + std::to_string(j) +
                                           ", " + std::to_string(k) + " tokens against each alone";
                        bad_g[ki] = differ(r[j], one[j], (size_t) (k * outs[j]), outs[j], what.c_str());
                    }
                    all[mode].push_back(r);
                }
                // mmq: the 64 tokens in one call, then in consecutive calls
                whole[e] = run(e, 0, K);
                all[mode].push_back(whole[e]);
                for (int si = 0; si < nsp; si++) {
                    Rows parts(no);
                    int t0 = 0;
                    std::string sizes;
                    for (int n : splits[si]) {
                        Rows r = run(e, t0, n);
                        for (int j = 0; j < no; j++) parts[j].insert(parts[j].end(), r[j].begin(), r[j].end());
                        t0 += n;
                        sizes += (sizes.empty() ? "" : " + ") + std::to_string(n);
                    }
                    for (int j = 0; j < no && bad_s[si].empty(); j++) {
                        std::string what = std::string(entry_names[e]) + form + " output " + std::to_string(j) + ", " +
                                           sizes + " tokens against 64 in one call";
                        bad_s[si] = differ(parts[j], whole[e][j], (size_t) (K * outs[j]), outs[j], what.c_str());
                    }
                    all[mode].push_back(parts);
                }
            }
            // mmq across entry points: shared_input's first output and the fused SwiGLU against nb_cuda_matmul (and
            // nb_cuda_swiglu) on the same weights.
            if (entries.empty()) {
                std::string what = std::string("shared_input output 0 against matmul") + form;
                entries = differ(whole[1][0], whole[0][0], (size_t) (K * outs[0]), outs[0], what.c_str());
            }
            if (entries.empty()) {
                Rows unfused = run(3, 0, K);
                std::string what = std::string("swiglu against matmul + matmul + nb_cuda_swiglu") + form;
                entries = differ(whole[2][0], unfused[0], (size_t) (K * outs[0]), outs[0], what.c_str());
            }
        }
        ctx->mm_portable = 0;
        if (modes == 2 && cross.empty()) {
            bool same = all[0].size() == all[1].size();
            for (size_t i = 0; same && i < all[0].size(); i++)
                for (size_t j = 0; same && j < all[0][i].size(); j++)
                    same = all[0][i][j].size() == all[1][i][j].size() &&
                           memcmp(all[0][i][j].data(), all[1][i][j].data(), all[0][i][j].size() * sizeof(float)) == 0;
            if (!same) cross = "n_in " + std::to_string(n_in) + ": the workspace form differs from the cluster form";
        }
        for (auto *d : dys) delete d;
        for (auto &w : ws) delete w.d;
    }
    std::string shapes;
    for (int64_t n : n_ins) shapes += (shapes.empty() ? "" : ", ") + std::to_string(n);
    auto line = [&](const std::string &bad, const char *what, const char *claim) {
        g_cases++;
        const bool ok = bad.empty();
        if (!ok) g_failures++;
        printf("%s invariance %-6s %s: matmul, shared_input, swiglu, 300 x {%s}%s: %s\n", ok ? "PASS" : "FAIL",
               type_name(t), what, shapes.c_str(), modes == 2 ? ", cluster and workspace forms" : "",
               ok ? claim : bad.c_str());
    };
    for (int ki = 0; ki < ngk; ki++) {
        char what[64];
        snprintf(what, sizeof what, "gemv_int k %d", gks[ki]);
        line(bad_g[ki], what, "every token bit-identical to the token alone");
    }
    for (int si = 0; si < nsp; si++) {
        std::string what = "mmq 64 =";
        for (int n : splits[si]) what += (what.size() > 8 ? " + " : " ") + std::to_string(n);
        line(bad_s[si], what.c_str(), "every token bit-identical to the 64 tokens in one call");
    }
    line(entries, "mmq entry points", "shared_input == matmul, swiglu == matmul + matmul + nb_cuda_swiglu");
    if (modes == 2) {
        g_cases++;
        if (!cross.empty()) g_failures++;
        printf("%s invariance %-6s cluster form == workspace form%s%s\n", cross.empty() ? "PASS" : "FAIL", type_name(t),
               cross.empty() ? "" : ": ", cross.c_str());
    }
    fflush(stdout);
}

void check_embed(nb_cuda *ctx, int t, int64_t n_rows, int64_t n_cols, Rng &rng) {
    g_cases++;
    int64_t rb = row_bytes(t, n_cols);
    std::vector<uint8_t> w((size_t) (rb * n_rows));
    for (int64_t o = 0; o < n_rows; o++) gen_row(t, n_cols, rng, w.data() + o * rb);
    DevBuf dw(ctx, nb_cuda_weight_bytes(t, n_rows, n_cols));
    CHECK_OK(nb_cuda_upload_weight(ctx, t, w.data(), n_rows, n_cols, dw.p));
    std::vector<int32_t> ids = {0, (int32_t) n_rows - 1, -1, (int32_t) n_rows, 5 % (int32_t) n_rows, 3 % (int32_t) n_rows};
    for (int i = 0; i < 10; i++) ids.push_back((int32_t) (rng.u32() % n_rows));
    int64_t n_ids = (int64_t) ids.size();
    DevBuf di(ctx, n_ids * 4), dout(ctx, n_ids * n_cols * 4);
    CHECK_OK(nb_cuda_write(ctx, di.p, ids.data(), n_ids * 4));
    CHECK_OK(nb_cuda_memset(ctx, dout.p, 0xFF, n_ids * n_cols * 4));
    std::vector<float> out((size_t) (n_ids * n_cols)), ref((size_t) n_cols);
    nb_status s = nb_cuda_embed(ctx, t, dw.p, n_rows, n_cols, (const int32_t *) di.p, n_ids, (float *) dout.p);
    if (s == NB_OK) s = nb_cuda_read(ctx, out.data(), dout.p, n_ids * n_cols * 4);
    if (s != NB_OK) {
        printf("FAIL embed %-6s %lld x %lld: status %d: %s\n", type_name(t), (long long) n_rows, (long long) n_cols, s,
               nb_cuda_error(ctx));
        g_failures++;
        return;
    }
    int64_t bad = 0;
    for (int64_t r = 0; r < n_ids; r++) {
        if (ids[r] >= 0 && ids[r] < n_rows) deq_row(t, w.data() + ids[r] * rb, n_cols, ref.data());
        else std::fill(ref.begin(), ref.end(), 0.0f);
        for (int64_t c = 0; c < n_cols; c++) bad += memcmp(&out[r * n_cols + c], &ref[c], 4) != 0; // bit-exact
    }
    if (bad) g_failures++;
    printf("%s embed %-6s %lld x %lld, %lld ids (2 out of range): %lld elements differ\n", bad ? "FAIL" : "PASS",
           type_name(t), (long long) n_rows, (long long) n_cols, (long long) n_ids, (long long) bad);
}

// ---- timing -----------------------------------------------------------------------------------------------------
// The rmsnorms leave their output quantized in the scratch buffer for a matmul as the very next call (a host-side
// record; any call in between makes it stale). For each consumer (matmul, shared_input, swiglu), bit for bit:
//  A  add_rmsnorm (or rmsnorm) then the consumer at once: quantize_x skipped when the rows fit the integer GEMV;
//  B  the same with an empty call in between (rmsnorm of 0 rows: no launch), which forces quantize_x;
//  G  A captured as a graph and launched;
//  S  A's norm, then y overwritten by nb_cuda_write with B's y (same values: the record must be dropped, and the
//     result is still B's), and D: y overwritten with other data and the consumer against a fresh B on that data.
void check_norm_fused(nb_cuda *ctx, int64_t n, int64_t rows, bool add, Rng &rng) {
    const float eps = 1e-5f;
    const bool k256 = n % 256 == 0;
    const int t1 = k256 ? Q4_K : Q4_0, t2 = k256 ? Q6_K : Q8_0;
    const int64_t n_out = 37, ff = 45;
    const bool int_ok = n % 32 == 0;
    std::vector<HostWeight> ws;
    if (int_ok) {
        ws.push_back(make_weight(ctx, t1, n_out, n, rng, false));
        ws.push_back(make_weight(ctx, t2, 11, n, rng, false));
        ws.push_back(make_weight(ctx, t1, 5, n, rng, false));
        ws.push_back(make_weight(ctx, t1, ff, n, rng, false));
        ws.push_back(make_weight(ctx, t1, ff, n, rng, false));
    }
    const int64_t xn = rows * n;
    std::vector<float> x((size_t) xn), b((size_t) xn), w((size_t) n), other((size_t) xn);
    for (auto &v : x) v = rng.sym();
    for (auto &v : b) v = rng.sym();
    for (auto &v : w) v = 0.5f + rng.uni();
    for (auto &v : other) v = 3.0f * rng.sym();
    DevBuf dx(ctx, xn * 4), db(ctx, xn * 4), dw(ctx, n * 4), dy(ctx, xn * 4);
    const int64_t out_len = rows * (n_out + 11 + 5 + ff) * 4;
    DevBuf dout(ctx, out_len);
    CHECK_OK(nb_cuda_upload(ctx, db.p, b.data(), xn * 4));
    CHECK_OK(nb_cuda_upload(ctx, dw.p, w.data(), n * 4));
    float *y = (float *) dy.p, *o = (float *) dout.p;
    float *o1 = o, *o2 = o1 + rows * n_out, *o3 = o2 + rows * 11, *o4 = o3 + rows * 5;
    auto norm = [&]() {
        if (add) CHECK_OK(nb_cuda_add_rmsnorm(ctx, (float *) dx.p, (const float *) db.p, (const float *) dw.p, rows, n, eps, y));
        else CHECK_OK(nb_cuda_rmsnorm(ctx, (const float *) dx.p, (const float *) dw.p, rows, n, eps, y));
    };
    auto between = [&]() { CHECK_OK(nb_cuda_rmsnorm(ctx, (const float *) dx.p, (const float *) dw.p, 0, n, eps, y)); };
    auto consume = [&](int which) {
        if (which == 0) {
            CHECK_OK(nb_cuda_matmul(ctx, t1, ws[0].d->p, n_out, n, y, rows, o1));
        } else if (which == 1) {
            int32_t types[3] = {t1, t2, t1};
            const void *wp[3] = {ws[0].d->p, ws[1].d->p, ws[2].d->p};
            int64_t outs[3] = {n_out, 11, 5};
            float *yp[3] = {o1, o2, o3};
            CHECK_OK(nb_cuda_matmul_shared_input(ctx, 3, types, wp, outs, n, y, rows, yp));
        } else {
            CHECK_OK(nb_cuda_matmul_swiglu(ctx, t1, ws[3].d->p, ws[4].d->p, ff, n, y, rows, o4));
        }
    };
    // One run: fresh x, output cleared, then `body`; returns y, x after the call and the outputs.
    auto run = [&](auto body) {
        CHECK_OK(nb_cuda_upload(ctx, dx.p, x.data(), xn * 4));
        CHECK_OK(nb_cuda_memset(ctx, dout.p, 0xFF, out_len));
        body();
        std::vector<uint8_t> r((size_t) (2 * xn * 4 + out_len));
        CHECK_OK(nb_cuda_read(ctx, r.data(), y, xn * 4));
        CHECK_OK(nb_cuda_read(ctx, r.data() + xn * 4, dx.p, xn * 4));
        CHECK_OK(nb_cuda_read(ctx, r.data() + 2 * xn * 4, dout.p, out_len));
        return r;
    };
    static const char *names[3] = {"matmul", "shared_input", "swiglu"};
    for (int which = 0; which < (int_ok ? 3 : 1); which++) {
        if (!int_ok) { // no consumer of the integer path: the norm alone, eager vs graph
            g_cases++;
            auto ra = run([&] { norm(); });
            auto rg = run([&] {
                void *graph = nullptr;
                CHECK_OK(nb_cuda_capture_begin(ctx));
                norm();
                CHECK_OK(nb_cuda_capture_end(ctx, &graph));
                CHECK_OK(nb_cuda_graph_launch(ctx, graph));
                CHECK_OK(nb_cuda_sync(ctx));
                nb_cuda_graph_free(graph);
            });
            bool ok = ra == rg;
            if (!ok) g_failures++;
            printf("%s %s n %5lld rows %lld (no integer GEMV shape) graph == eager\n", ok ? "PASS" : "FAIL",
                   add ? "add_rmsnorm" : "rmsnorm", (long long) n, (long long) rows);
            break;
        }
        g_cases++;
        auto ra = run([&] { norm(); consume(which); });
        auto rb = run([&] { norm(); between(); consume(which); });
        auto rg = run([&] {
            void *graph = nullptr;
            CHECK_OK(nb_cuda_capture_begin(ctx));
            norm();
            consume(which);
            CHECK_OK(nb_cuda_capture_end(ctx, &graph));
            CHECK_OK(nb_cuda_graph_launch(ctx, graph));
            CHECK_OK(nb_cuda_sync(ctx));
            nb_cuda_graph_free(graph);
        });
        std::vector<float> yb((size_t) xn);
        memcpy(yb.data(), rb.data(), (size_t) xn * 4);
        auto rs = run([&] { norm(); CHECK_OK(nb_cuda_write(ctx, y, yb.data(), xn * 4)); consume(which); });
        // D: y replaced by other data after the norm; the reference quantizes that data itself.
        auto rd = run([&] { norm(); CHECK_OK(nb_cuda_write(ctx, y, other.data(), xn * 4)); consume(which); });
        auto re = run([&] { CHECK_OK(nb_cuda_write(ctx, y, other.data(), xn * 4)); between(); consume(which); });
        const size_t ob = (size_t) (2 * xn * 4);
        bool written = true;
        // The consumer's outputs must have been written (0xFF bytes are a NaN pattern left by the memset).
        std::vector<float> oa((size_t) (out_len / 4));
        memcpy(oa.data(), ra.data() + ob, (size_t) out_len);
        const float *first = which == 2 ? oa.data() + (o4 - o) : oa.data();
        const int64_t len = which == 0 ? rows * n_out : which == 1 ? rows * (n_out + 11 + 5) : rows * ff;
        for (int64_t i = 0; i < len; i++) written = written && std::isfinite(first[i]);
        bool ok_b = ra == rb, ok_g = rg == ra, ok_s = rs == rb;
        bool ok_d = memcmp(rd.data() + ob, re.data() + ob, (size_t) out_len) == 0;
        bool ok = written && ok_b && ok_g && ok_s && ok_d;
        if (!ok) g_failures++;
        printf("%s %s + %-12s n %5lld rows %lld  fused == unfused %s, graph %s, rewritten y %s, other y %s%s\n",
               ok ? "PASS" : "FAIL", add ? "add_rmsnorm" : "rmsnorm", names[which], (long long) n, (long long) rows,
               ok_b ? "ok" : "DIFFER", ok_g ? "ok" : "DIFFER", ok_s ? "ok" : "DIFFER", ok_d ? "ok" : "DIFFER",
               written ? "" : "  NOT WRITTEN");
    }
    for (auto &h : ws) delete h.d;
}

// One timing line: microseconds per call, weight bytes per second, and multiply-adds (2 flops each) per second.
struct Timing { std::string what; double us, gbs, tflops; };
std::vector<Timing> g_timings;
void report(const char *what, double us, double weight_bytes, double flops) {
    Timing tm{what, us, weight_bytes / (us * 1e-6) / 1e9, flops / (us * 1e-6) / 1e12};
    printf("TIME %s  %9.2f us  %8.1f GB/s  %7.2f TFLOP/s\n", what, tm.us, tm.gbs, tm.tflops);
    fflush(stdout);
    g_timings.push_back(tm);
}

void time_matmul(nb_cuda *ctx, int t, int64_t n_out, int64_t n_in, int64_t n_tok, Rng &rng) {
    int64_t bytes = nb_cuda_weight_bytes(t, n_out, n_in), rb = row_bytes(t, n_in);
    int copies = (int) std::max<int64_t>(3, (256ll << 20) / bytes + 1); // together well over the 60 MB L2
    std::vector<uint8_t> w((size_t) (rb * n_out));
    for (int64_t o = 0; o < n_out; o++) gen_row(t, n_in, rng, w.data() + o * rb);
    std::vector<DevBuf *> dw;
    for (int c = 0; c < copies; c++) {
        dw.push_back(new DevBuf(ctx, bytes));
        CHECK_OK(nb_cuda_upload_weight(ctx, t, w.data(), n_out, n_in, dw.back()->p));
    }
    std::vector<float> x((size_t) (n_tok * n_in));
    for (auto &v : x) v = rng.sym();
    DevBuf dx(ctx, n_tok * n_in * 4), dy(ctx, n_tok * n_out * 4);
    CHECK_OK(nb_cuda_upload(ctx, dx.p, x.data(), n_tok * n_in * 4));
    // Enough calls per graph that the launch and the synchronization are noise.
    int calls = copies * std::max(1, (int) (48 / copies));
    if (n_tok > 8) calls = std::max(copies, 12);
    void *graph = nullptr;
    CHECK_OK(nb_cuda_capture_begin(ctx));
    for (int i = 0; i < calls; i++)
        CHECK_OK(nb_cuda_matmul(ctx, t, dw[i % copies]->p, n_out, n_in, (const float *) dx.p, n_tok, (float *) dy.p));
    CHECK_OK(nb_cuda_capture_end(ctx, &graph));
    for (int i = 0; i < 3; i++) CHECK_OK(nb_cuda_graph_launch(ctx, graph)); // warm-up
    CHECK_OK(nb_cuda_sync(ctx));
    std::vector<double> samples;
    for (int i = 0; i < 21; i++) {
        auto t0 = std::chrono::steady_clock::now();
        CHECK_OK(nb_cuda_graph_launch(ctx, graph));
        CHECK_OK(nb_cuda_sync(ctx));
        auto t1 = std::chrono::steady_clock::now();
        samples.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
    }
    nb_cuda_graph_free(graph);
    for (auto *d : dw) delete d;
    std::sort(samples.begin(), samples.end());
    double us = samples[samples.size() / 2];
    char what[96];
    snprintf(what, sizeof what, "%-6s %5lld x %-5lld tok %3lld", type_name(t), (long long) n_out, (long long) n_in,
             (long long) n_tok);
    report(what, us, (double) bytes, 2.0 * n_out * n_in * n_tok);
}

// Timing of the fused decode calls: Q,K,V (3 x n x n) and gate/up + SwiGLU (2 x ff x n), one token, graph-replayed.
void time_fused(nb_cuda *ctx, int t, int64_t n, int64_t ff, Rng &rng) {
    const int copies = 4;
    int64_t qkv_bytes = 3 * nb_cuda_weight_bytes(t, n, n), ffn_bytes = 2 * nb_cuda_weight_bytes(t, ff, n);
    std::vector<HostWeight> ws;
    for (int c = 0; c < copies; c++) {
        for (int j = 0; j < 3; j++) ws.push_back(make_weight(ctx, t, n, n, rng, false));
        for (int j = 0; j < 2; j++) ws.push_back(make_weight(ctx, t, ff, n, rng, false));
    }
    DevBuf dx(ctx, n * 4), dy(ctx, 3 * ff * 4), dres(ctx, n * 4), dzero(ctx, n * 4), dnw(ctx, n * 4);
    CHECK_OK(nb_cuda_memset(ctx, dx.p, 0, n * 4));
    CHECK_OK(nb_cuda_memset(ctx, dres.p, 0, n * 4));
    CHECK_OK(nb_cuda_memset(ctx, dzero.p, 0, n * 4));
    std::vector<float> nw((size_t) n, 1.0f);
    CHECK_OK(nb_cuda_upload(ctx, dnw.p, nw.data(), n * 4));
    // which 0/1: qkv, gate/up alone; 2/3: each after an add_rmsnorm writing its input (the norm then quantizes it
    // and the GEMV skips quantize_x); 4/5: the same with an empty call in between (quantize_x runs): 2 vs 4 and
    // 3 vs 5 show the node saved. x += 0 each time, so replays keep the same values.
    static const char *labels[6] = {"qkv 3x4096x4096  ", "swiglu 2x11008x4096", "add_rmsnorm + qkv",
                                    "add_rmsnorm + gate/up", "add_rmsnorm | qkv", "add_rmsnorm | gate/up"};
    for (int which = 0; which < 6; which++) {
        void *graph = nullptr;
        const int calls = 12 * copies;
        CHECK_OK(nb_cuda_capture_begin(ctx));
        for (int i = 0; i < calls; i++) {
            HostWeight *w = &ws[(i % copies) * 5];
            if (which >= 2) {
                CHECK_OK(nb_cuda_add_rmsnorm(ctx, (float *) dres.p, (const float *) dzero.p, (const float *) dnw.p, 1,
                                             n, 1e-5f, (float *) dx.p));
                if (which >= 4) CHECK_OK(nb_cuda_rmsnorm(ctx, (const float *) dres.p, (const float *) dnw.p, 0, n, 1e-5f,
                                                         (float *) dx.p));
            }
            if (which % 2 == 0) {
                int32_t types[3] = {t, t, t};
                const void *wp[3] = {w[0].d->p, w[1].d->p, w[2].d->p};
                int64_t outs[3] = {n, n, n};
                float *yp[3] = {(float *) dy.p, (float *) dy.p + n, (float *) dy.p + 2 * n};
                CHECK_OK(nb_cuda_matmul_shared_input(ctx, 3, types, wp, outs, n, (const float *) dx.p, 1, yp));
            } else {
                CHECK_OK(nb_cuda_matmul_swiglu(ctx, t, w[3].d->p, w[4].d->p, ff, n, (const float *) dx.p, 1,
                                               (float *) dy.p));
            }
        }
        CHECK_OK(nb_cuda_capture_end(ctx, &graph));
        for (int i = 0; i < 3; i++) CHECK_OK(nb_cuda_graph_launch(ctx, graph));
        CHECK_OK(nb_cuda_sync(ctx));
        std::vector<double> samples;
        for (int i = 0; i < 21; i++) {
            auto t0 = std::chrono::steady_clock::now();
            CHECK_OK(nb_cuda_graph_launch(ctx, graph));
            CHECK_OK(nb_cuda_sync(ctx));
            auto t1 = std::chrono::steady_clock::now();
            samples.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
        }
        nb_cuda_graph_free(graph);
        std::sort(samples.begin(), samples.end());
        double us = samples[samples.size() / 2];
        char what[96];
        snprintf(what, sizeof what, "%-6s %s tok   1", type_name(t), labels[which]);
        report(what, us, (double) (which % 2 == 0 ? qkv_bytes : ffn_bytes),
               which % 2 == 0 ? 2.0 * 3 * n * n : 2.0 * 2 * ff * n);
    }
    for (auto &w : ws) delete w.d;
}

// The fused entry points at n_tok tokens: gate/up + SwiGLU (2 x ff x n) and Q,K,V (3 x n x n), graph-replayed over
// four weight sets (over 200 MB, so that no weight is in L2 at its next use).
void time_batch_fused(nb_cuda *ctx, int t, int64_t n, int64_t ff, int64_t n_tok, Rng &rng) {
    const int copies = 4;
    std::vector<HostWeight> ws;
    for (int c = 0; c < copies; c++) {
        for (int j = 0; j < 3; j++) ws.push_back(make_weight(ctx, t, n, n, rng, false));
        for (int j = 0; j < 2; j++) ws.push_back(make_weight(ctx, t, ff, n, rng, false));
    }
    std::vector<float> x((size_t) (n_tok * n));
    for (auto &v : x) v = rng.sym();
    DevBuf dx(ctx, n_tok * n * 4), dy(ctx, n_tok * 3 * ff * 4);
    CHECK_OK(nb_cuda_upload(ctx, dx.p, x.data(), n_tok * n * 4));
    for (int which = 0; which < 2; which++) {
        const int calls = 3 * copies;
        void *graph = nullptr;
        CHECK_OK(nb_cuda_capture_begin(ctx));
        for (int i = 0; i < calls; i++) {
            HostWeight *w = &ws[(i % copies) * 5];
            if (which == 0) {
                CHECK_OK(nb_cuda_matmul_swiglu(ctx, t, w[3].d->p, w[4].d->p, ff, n, (const float *) dx.p, n_tok,
                                               (float *) dy.p));
            } else {
                int32_t types[3] = {t, t, t};
                const void *wp[3] = {w[0].d->p, w[1].d->p, w[2].d->p};
                int64_t outs[3] = {n, n, n};
                float *yp[3] = {(float *) dy.p, (float *) dy.p + n_tok * n, (float *) dy.p + 2 * n_tok * n};
                CHECK_OK(nb_cuda_matmul_shared_input(ctx, 3, types, wp, outs, n, (const float *) dx.p, n_tok, yp));
            }
        }
        CHECK_OK(nb_cuda_capture_end(ctx, &graph));
        for (int i = 0; i < 3; i++) CHECK_OK(nb_cuda_graph_launch(ctx, graph));
        CHECK_OK(nb_cuda_sync(ctx));
        std::vector<double> samples;
        for (int i = 0; i < 21; i++) {
            auto t0 = std::chrono::steady_clock::now();
            CHECK_OK(nb_cuda_graph_launch(ctx, graph));
            CHECK_OK(nb_cuda_sync(ctx));
            auto t1 = std::chrono::steady_clock::now();
            samples.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
        }
        nb_cuda_graph_free(graph);
        std::sort(samples.begin(), samples.end());
        char what[96];
        if (which == 0)
            snprintf(what, sizeof what, "%-6s swiglu 2x%lldx%lld tok %3lld", type_name(t), (long long) ff, (long long) n,
                     (long long) n_tok);
        else
            snprintf(what, sizeof what, "%-6s qkv 3x%lldx%lld tok %3lld", type_name(t), (long long) n, (long long) n,
                     (long long) n_tok);
        const double bytes = which == 0 ? 2.0 * nb_cuda_weight_bytes(t, ff, n) : 3.0 * nb_cuda_weight_bytes(t, n, n);
        const double flops = which == 0 ? 2.0 * 2 * ff * n * n_tok : 2.0 * 3 * n * n * n_tok;
        report(what, samples[samples.size() / 2], bytes, flops);
    }
    for (auto &w : ws) delete w.d;
}

} // namespace

int main(int argc, char **argv) {
    bool quick = false, timing = true, checks = true;
    int device = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--no-timing")) timing = false;
        else if (!strcmp(argv[i], "--timing-only")) checks = false;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--no-timing] [--timing-only] [--device N]\n", argv[0]);
            return 2;
        }
    }
    char name[256] = "";
    int64_t total = 0, free_b = 0;
    int32_t cc = 0, sms = 0;
    if (nb_cuda_device_info(device, name, sizeof name, &total, &free_b, &cc, &sms) != NB_OK) {
        fprintf(stderr, "no CUDA device %d: %s\n", device, nb_cuda_last_open_error());
        return 2;
    }
    printf("device %d: %s, sm_%d, %d SMs, %.1f GiB\n", device, name, cc, sms, total / 1073741824.0);
    nb_cuda *ctx = nullptr;
    if (nb_cuda_open(device, &ctx) != NB_OK) {
        fprintf(stderr, "nb_cuda_open: %s\n", nb_cuda_last_open_error());
        return 2;
    }
    Rng rng(12345);

    if (checks) {
        // Argument checks: bad type, bad n_in, null pointers.
        {
            g_cases++;
            float *dummy = nullptr;
            DevBuf d(ctx, 1 << 16);
            dummy = (float *) d.p;
            bool ok = nb_cuda_weight_bytes(3, 4, 32) == -1 && nb_cuda_weight_bytes(Q4_0, 4, 48) == -1 &&
                      nb_cuda_weight_bytes(Q4_K, 4, 32 * 9) == -1 && nb_cuda_weight_bytes(F16, 4, 3) > 0 &&
                      nb_cuda_matmul(ctx, 3, d.p, 4, 32, dummy, 1, dummy) == NB_ERR_UNSUPPORTED &&
                      nb_cuda_matmul(ctx, Q4_0, d.p, 4, 48, dummy, 1, dummy) == NB_ERR_ARGUMENT &&
                      nb_cuda_matmul(ctx, Q4_0, d.p, 0, 32, dummy, 1, dummy) == NB_ERR_ARGUMENT &&
                      nb_cuda_matmul(ctx, Q4_0, d.p, 4, 32, nullptr, 1, dummy) == NB_ERR_ARGUMENT &&
                      nb_cuda_embed(ctx, Q4_K, d.p, 4, 100, (const int32_t *) d.p, 1, dummy) == NB_ERR_ARGUMENT;
            if (!ok) g_failures++;
            printf("%s argument validation\n", ok ? "PASS" : "FAIL");
        }
        std::vector<int64_t> toks = quick ? std::vector<int64_t>{1, 3, 8, 9, 16, 33, 64, 77}
                                          : std::vector<int64_t>{1, 2, 3, 7, 8, 9, 13, 16, 17, 24, 32, 33, 48, 64, 65,
                                                                 77, 300, 512};
        for (int t : kTypes) {
            std::vector<int64_t> n_ins;
            if (is_float(t)) n_ins = quick ? std::vector<int64_t>{5, 768, 4096} : std::vector<int64_t>{1, 5, 40, 768, 4096, 4097};
            else if (block_size(t) == 32) n_ins = quick ? std::vector<int64_t>{32, 768, 4096} : std::vector<int64_t>{32, 96, 768, 4096, 11008};
            else n_ins = quick ? std::vector<int64_t>{256, 768, 4096} : std::vector<int64_t>{256, 768, 4096, 11008};
            std::vector<int64_t> n_outs = quick ? std::vector<int64_t>{1, 37} : std::vector<int64_t>{1, 3, 37};
            for (int64_t n_out : n_outs)
                for (int64_t n_in : n_ins) check_matmul(ctx, t, n_out, n_in, toks, rng);
            // A large, odd row count: the last GEMM tile holds one row, and a GEMV warp task one row.
            for (size_t i = quick ? n_ins.size() - 1 : n_ins.size() - 2; i < n_ins.size(); i++)
                check_matmul(ctx, t, 4097, n_ins[i], toks, rng);
            check_embed(ctx, t, 37, is_float(t) ? 4099 : 768, rng);
            check_embed(ctx, t, 3, block_size(t) == 1 ? 5 : block_size(t), rng);
            fflush(stdout);
        }
        // The fused entry points: same-type and mixed-type weights (the q4_k_m case: V in Q6_K), float types, a
        // K-split shape, and more tokens than the GEMV takes.
        std::vector<int64_t> ftoks = quick ? std::vector<int64_t>{1, 3, 9, 33, 64}
                                           : std::vector<int64_t>{1, 2, 3, 8, 9, 13, 16, 24, 32, 48, 64, 77};
        check_shared_input(ctx, {Q4_K, Q4_K, Q6_K}, {37, 5, 11}, 768, ftoks, rng);
        check_shared_input(ctx, {Q4_0, Q4_0, Q4_0}, {300, 64, 64}, 4096, ftoks, rng);
        check_shared_input(ctx, {Q8_0, F16, Q8_0, IQ4_NL}, {3, 17, 40, 1}, 512, ftoks, rng);
        check_shared_input(ctx, {F32}, {33}, 96, ftoks, rng);
        for (int t : {Q4_0, Q4_K, Q6_K, Q8_0, IQ4_NL, F16, NF4}) {
            int64_t n_in = block_size(t) == 256 ? 1024 : 352;
            check_swiglu(ctx, t, 37, n_in, ftoks, rng);
        }
        check_swiglu(ctx, Q4_K, 301, 11008, {1, 4, 17, 64}, rng);
        check_shared_input(ctx, {Q4_0, Q4_0, Q4_0}, {300, 64, 64}, 11008, {1, 9, 48}, rng); // uneven chains
        // Batch invariance of the integer kernels, bit for bit, for the three entry points: gemv_int (k <= 8 tokens
        // against each alone), mmq (64 tokens in one call against calls of 9..47); on sm_90 both forms of mmq
        // (clusters, workspace) and one against the other.
        for (int t : {Q4_0, Q4_K, Q6_K, Q8_0, IQ4_NL}) check_invariance(ctx, t, rng, quick);
        // rmsnorm output quantized for the next matmul: bit-identical to quantize_x, and the record dropped when stale.
        for (bool add : {true, false})
            for (int64_t rows : {1, 2, 3, 8, 9, 16, 64}) check_norm_fused(ctx, 4096, rows, add, rng);
        check_norm_fused(ctx, 352, 1, true, rng);  // 11 units: lanes past the row in the norm's warps
        check_norm_fused(ctx, 11008, 2, true, rng); // past the 2048 cached floats, a partial last round
        check_norm_fused(ctx, 96, 8, false, rng);
        check_norm_fused(ctx, 100, 2, true, rng);   // n % 32 != 0: nothing quantized, the norm alone
        printf("\n%d of %d checks failed\n", g_failures, g_cases);
    }

    if (timing) {
        const int64_t shapes[4][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}};
        const int gemv_types[] = {Q4_0, Q4_K, Q6_K, Q8_0, F16};
        for (int t : gemv_types)
            for (int s = 0; s < (quick ? 2 : 4); s++) time_matmul(ctx, t, shapes[s][0], shapes[s][1], 1, rng);
        for (int t : {Q4_0, Q4_K}) {
            time_matmul(ctx, t, 4096, 4096, 4, rng);
            time_matmul(ctx, t, 4096, 4096, 8, rng);
        }
        // Prompt GEMMs: the three Llama-2-7B shapes in the two main types, 4096 x 4096 in the others.
        for (int t : {Q4_0, Q4_K})
            for (int s = 0; s < 3; s++) time_matmul(ctx, t, shapes[s][0], shapes[s][1], 512, rng);
        for (int t : {Q6_K, Q8_0}) time_matmul(ctx, t, 4096, 4096, 512, rng);
        time_matmul(ctx, Q4_0, 4096, 4096, 128, rng);
        for (int t : {Q4_0, Q4_K}) time_fused(ctx, t, 4096, 11008, rng);
        // Decode batches (continuous batching: one token per sequence): the Llama-2-7B matmuls at 1..64 tokens,
        // plain and through the fused entry points.
        for (int t : {Q4_0, Q4_K})
            for (int64_t tok : {1, 8, 16, 32, 64}) {
                for (int s = 0; s < 3; s++) time_matmul(ctx, t, shapes[s][0], shapes[s][1], tok, rng);
                time_batch_fused(ctx, t, 4096, 11008, tok, rng);
            }
        printf("\n%-40s %10s %10s %10s\n", "matmul (n_out x n_in, tokens)", "us", "GB/s", "TFLOP/s");
        for (auto &tm : g_timings)
            printf("%-40s %10.2f %10.1f %10.2f\n", tm.what.c_str(), tm.us, tm.gbs, tm.tflops);
    }
    nb_cuda_close(ctx);
    return g_failures ? 1 : 0;
}
