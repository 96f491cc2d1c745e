// Runs ICHKernels' convolution kernels (through the @_cdecl entry points of Entry.swift) on fixed pseudo-random
// inputs and prints one FNV-1a checksum per (case, kernel); identical on every architecture if the kernels are
// bit-exact. Also checks each optimised kernel against the reference in-process. usage: driver [outdir]
// (scripts/check-arm-kernels.sh runs it natively and under qemu-aarch64 and compares stdout and the outdirs.)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern int32_t ichk_conv(int32_t kind, intptr_t inC, intptr_t h, intptr_t w, intptr_t outC, intptr_t k, intptr_t stride,
                         intptr_t pad, const uint8_t *input, int32_t inZero, const int8_t *weights, const int32_t *bias,
                         int32_t *acc);
extern void ichk_requant(int32_t mode, const int32_t *acc, intptr_t channels, intptr_t plane, const float *scales,
                         const float *wideScales, int32_t zero, _Bool relu, const uint8_t *residualBytes, int32_t residualZero,
                         const int16_t *residualWide, float residualScale, uint8_t *out, int16_t *outWide);
extern void ichk_maxpool(const uint8_t *input, intptr_t channels, intptr_t h, intptr_t w, uint8_t *out);
extern void ichk_tile(intptr_t depth, const int8_t *weights, const int8_t *rows, _Bool int16, int32_t *out);

static uint64_t rng;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static uint64_t fnv(const void *p, size_t n) {
    const uint8_t *b = p; uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}
typedef struct { const char *name; int inC, h, w, outC, k, stride, pad, zero; } Case;
static const Case cases[] = {
    {"small3x3s1",      16, 16, 16,  20, 3, 1, 1,  37},   // outC not a multiple of 4
    {"odd3x3s2",        13, 15, 17,  8,  3, 2, 1,  0},
    {"stem7x7s2",        3, 64, 64,  64, 7, 2, 3, 128},
    {"layer1-3x3",      64, 32, 32,  64, 3, 1, 1, 255},   // Winograd shape
    {"layer2.0.conv1", 64, 32, 32, 128, 3, 2, 1,  3},
    {"downsample1x1",  128, 16, 16, 256, 1, 2, 0, 90},
    {"layer2-3x3",     128, 16, 32,  64, 3, 1, 1, 44},   // Winograd shape (rows and outC cut for qemu)
    {"layer3-3x3",     256, 16, 16,  64, 3, 1, 1, 17},   // outC cut to 64 to keep qemu short
    {"layer4-3x3",     512,  8,  8,  64, 3, 1, 1, 200},   // K = 4608, outC cut to 64 to keep qemu short; Winograd (4x4 tiles)
    {"narrow3x3",       24, 16, 24,  11, 3, 1, 1,  5},    // Winograd in 4 x 4-tile blocks, 3 per band
};
// winograd: on arm64's GEMM tile (smlal lanes; also 4 x 4-tile blocks, layer4's 8 x 8); wino-pairs: on x86's
// (vpmaddwd pairs). Both run on every architecture.
#define KINDS 7
static const char *kinds[KINDS] = {"reference", "dot", "pairs", "winograd", "dot-i32", "dot-i16", "wino-pairs"};

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    const char *outdir = argc > 1 ? argv[1] : NULL;
    int failures = 0;
    // The dot kernel's register tile alone (2 channels x 3 rows): depth 64 and 4608, extreme values included;
    // int32 products (d < 2) and int16 products (weights -127 at most).
    for (int d = 0; d < 4; d++) {
        int depth = d & 1 ? 4608 : 64, int16 = d >= 2;
        int8_t *w = malloc(depth * 2), *r = malloc(depth * 3);
        rng = 0x9E3779B97F4A7C15ull + d;
        for (int i = 0; i < depth * 2; i++) w[i] = (int8_t)(i < 64 ? -128 : next());
        if (int16) for (int i = 0; i < depth * 2; i++) if (w[i] == -128) w[i] = i & 1 ? -127 : 127;
        for (int i = 0; i < depth * 3; i++) r[i] = (int8_t)(i < 64 ? -128 : next());
        int32_t out[6], ref[6] = {0, 0, 0, 0, 0, 0};
        ichk_tile(depth, w, r, int16, out);
        for (int c = 0; c < 2; c++) for (int p = 0; p < 3; p++) for (int j = 0; j < depth; j++) ref[c * 3 + p] += (int32_t)w[c * depth + j] * r[p * depth + j];
        int ok = !memcmp(out, ref, sizeof out);
        failures += !ok;
        printf("tile%s depth %-5d %08x %08x %08x %08x %08x %08x %s\n", int16 ? "-i16" : "-i32", depth, out[0], out[1], out[2], out[3], out[4], out[5],
               ok ? "== C" : "MISMATCH vs C");
        free(w); free(r);
    }
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const Case *s = &cases[c];
        int oh = (s->h + 2 * s->pad - s->k) / s->stride + 1, ow = (s->w + 2 * s->pad - s->k) / s->stride + 1;
        size_t nin = (size_t)s->inC * s->h * s->w, nw = (size_t)s->outC * s->inC * s->k * s->k, nacc = (size_t)s->outC * oh * ow;
        uint8_t *in = malloc(nin); int8_t *wt = malloc(nw); int32_t *bias = malloc(4 * s->outC);
        rng = 0x243F6A8885A308D3ull ^ (c * 0x1000193);
        for (size_t i = 0; i < nin; i++) in[i] = (uint8_t)next();
        for (size_t i = 0; i < nw; i++) wt[i] = (int8_t)next();
        for (int i = 0; i < s->outC; i++) bias[i] = (int32_t)(next() % 200001) - 100000;
        in[0] = 255; in[1] = 0; wt[0] = -128; wt[1] = 127;  // extremes
        // Every other case without -128 weights, so that the int16-products kernel runs too (-127 and 127 instead).
        if (c % 2 == 0) for (size_t i = 0; i < nw; i++) if (wt[i] == -128) wt[i] = i & 1 ? -127 : 127;
        int32_t *ref = NULL;
        for (int kind = 0; kind < KINDS; kind++) {
            int32_t *acc = calloc(nacc, 4);
            double t0 = now();
            int rc = ichk_conv(kind, s->inC, s->h, s->w, s->outC, s->k, s->stride, s->pad, in, s->zero, wt, bias, acc);
            double t = now() - t0;
            if (rc != 0) { printf("%-15s %-9s n/a\n", s->name, kinds[kind]); free(acc); continue; }
            const char *verdict = "";
            if (kind == 0) ref = acc;
            else { int ok = !memcmp(acc, ref, nacc * 4); failures += !ok; verdict = ok ? "== reference" : "MISMATCH vs reference"; }
            printf("%-15s %-9s %016llx %s\n", s->name, kinds[kind], (unsigned long long)fnv(acc, nacc * 4), verdict);
            fprintf(stderr, "  %-15s %-9s %.3f s (%.1f MMAC)\n", s->name, kinds[kind], t, (double)nacc * s->inC * s->k * s->k / 1e6);
            if (outdir) {
                char path[512]; snprintf(path, sizeof path, "%s/%s.%s.i32", outdir, s->name, kinds[kind]);
                FILE *f = fopen(path, "wb"); if (f) { fwrite(acc, 4, nacc, f); fclose(f); }
            }
            if (kind) free(acc);
        }
        free(ref); free(in); free(wt); free(bias);
    }
    // Random small shapes: channel counts off the tiles, every kernel size and stride, ragged widths.
    uint64_t all[KINDS];
    for (int kind = 0; kind < KINDS; kind++) all[kind] = 1469598103934665603ull;
    int fuzzed = 0, fuzzFail = 0, winogradRuns = 0, int16Runs = 0;
    for (int n = 0; n < 300; n++) {
        rng = 0xA5A5A5A5DEADBEEFull + 7919ull * n; next();
        static const int ks[] = {1, 3, 5, 7};
        int k = ks[next() % 4], stride = 1 + next() % 3, pad = next() % (k / 2 + 1);
        int inC = 1 + next() % 70, outC = 1 + next() % 37, h = k + next() % 20, w = k + next() % 20, zero = next() % 256;
        if (n % 5 == 0) { k = 3; stride = 1; pad = 1; h = 4 * (1 + next() % 4); w = 16 * (1 + next() % 2); }  // Winograd shapes
        if (n % 10 == 5) { h = 8 * (1 + next() % 2); w = 8 * (1 + next() % 3); }  // 4 x 4-tile blocks (lanes GEMM only)
        int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
        size_t nin = (size_t)inC * h * w, nw = (size_t)outC * inC * k * k, nacc = (size_t)outC * oh * ow;
        uint8_t *in = malloc(nin); int8_t *wt = malloc(nw); int32_t *bias = malloc(4 * outC);
        for (size_t i = 0; i < nin; i++) in[i] = (uint8_t)next();
        for (size_t i = 0; i < nw; i++) wt[i] = (int8_t)next();
        if (n % 2) for (size_t i = 0; i < nw; i++) if (wt[i] == -128) wt[i] = -127;  // int16 products allowed
        for (int i = 0; i < outC; i++) bias[i] = (int32_t)(next() % 2001) - 1000;
        int32_t *acc[KINDS];
        for (int kind = 0; kind < KINDS; kind++) {
            acc[kind] = calloc(nacc, 4);
            int rc = ichk_conv(kind, inC, h, w, outC, k, stride, pad, in, zero, wt, bias, acc[kind]);
            if (rc != 0) continue;
            if (kind == 3) winogradRuns++;
            if (kind == 5) int16Runs++;
            const uint8_t *b = (const uint8_t *)acc[kind];
            for (size_t i = 0; i < nacc * 4; i++) { all[kind] ^= b[i]; all[kind] *= 1099511628211ull; }
            if (kind && memcmp(acc[kind], acc[0], nacc * 4)) { fuzzFail++; printf("fuzz %d kind %s MISMATCH\n", n, kinds[kind]); }
        }
        fuzzed++;
        for (int kind = 0; kind < KINDS; kind++) free(acc[kind]);
        free(in); free(wt); free(bias);
    }
    failures += fuzzFail;
    printf("fuzz: %d random shapes (%d Winograd, %d int16 products), %d mismatches; chained checksums", fuzzed, winogradRuns,
           int16Runs, fuzzFail);
    for (int kind = 0; kind < KINDS; kind++) printf(" %s %016llx", kinds[kind], (unsigned long long)all[kind]);
    printf("\n");
    // Requantisation (fp32 multiply/add, round to nearest even, clamp) and max pooling: checksums only (the
    // cross-architecture diff of stdout is the check).
    for (int mode = 0; mode < 3; mode++) {
        int channels = 37, plane = 1021;  // plane not a multiple of 8: SIMD8 loop + scalar tail
        size_t n = (size_t)channels * plane;
        int32_t *acc = malloc(4 * n); uint8_t *res = malloc(n), *out = calloc(n, 1); int16_t *resw = malloc(2 * n), *outw = calloc(n, 2);
        float *sc = malloc(4 * channels), *wsc = malloc(4 * channels);
        rng = 0x1234567ull + mode;
        for (size_t i = 0; i < n; i++) {
            acc[i] = (int32_t)(next() >> 40) - (1 << 23);
            res[i] = (uint8_t)next(); resw[i] = (int16_t)next();
        }
        acc[0] = 2147483647; acc[1] = -2147483647 - 1; acc[2] = 0;
        for (int c = 0; c < channels; c++) { sc[c] = (float)((next() % 100000) + 1) * 1e-9f; wsc[c] = sc[c] * 37.5f; }
        ichk_requant(mode, acc, channels, plane, sc, wsc, 3 + mode * 50, mode != 1, res, 77, resw, 0.73f, out, outw);
        printf("requant mode %d          bytes %016llx  int16 %016llx\n", mode, (unsigned long long)fnv(out, n),
               (unsigned long long)fnv(outw, 2 * n));
        free(acc); free(res); free(out); free(resw); free(outw); free(sc); free(wsc);
    }
    {
        int channels = 64, h = 65, w = 63, oh = (h + 1) / 2, ow = (w + 1) / 2;
        uint8_t *in = malloc((size_t)channels * h * w), *out = calloc((size_t)channels * oh * ow, 1);
        rng = 0x5151ull;
        for (int i = 0; i < channels * h * w; i++) in[i] = (uint8_t)next();
        ichk_maxpool(in, channels, h, w, out);
        printf("maxpool3x3s2            bytes %016llx\n", (unsigned long long)fnv(out, (size_t)channels * oh * ow));
        free(in); free(out);
    }
    printf("%s\n", failures ? "FAILURES" : "all kernels == reference");
    return failures != 0;
}
