/*
 * bench_frame: one frame's entropy coding through the coding loops of rans.c, outside Python,
 * for counting instructions of the aarch64 build under qemu-aarch64 (licfpga/host/ps_model.py,
 * results/board/ps_model.md). rans.c is included whole, with host/rans/standalone/ first on
 * the include path (a stand-in Python.h), so these are the shipped loops, compiled with the
 * extension's flags (-O2 -fwrapv).
 *
 *   bench_frame MODE PART K DATA [STREAMS]
 *     MODE  load    read DATA (and STREAMS if given), code nothing: the baseline to subtract
 *           encode  code PART, write the streams to STREAMS (if given)
 *           decode  decode PART from STREAMS, check the symbols equal DATA's (exit 3 if not)
 *     PART  all | z | y | y<j>: z, the K slices of y, or slice j only
 *     K     y is coded as K independent rANS streams of near-equal contiguous ranges of its
 *           flat [M, h, w] symbols (K = 1: the container as it is today)
 *   DATA (written by ps_model.py, little-endian): "LPSB", u32 version 1, then for y and z:
 *     i32 n_tables, i32 width, i32 cdf[n_tables * width], i32 length[n_tables],
 *     i32 offset[n_tables], i32 n_symbols, i32 symbols[n], i32 indexes[n]
 *   STREAMS: "LPSS", u32 count = K + 1, then per stream (z, y0 .. y(K-1)): u32 bytes, bytes
 *     (a stream not coded has 0 bytes). Each stream is byte-for-byte what
 *     licfpga.host._rans.encode returns for the same symbols.
 * Exit: 0 ok, 1 usage or I/O error, 2 coder error (invalid table / stream), 3 mismatch.
 */
#include "rans.c"

typedef struct {
    Tables t;
    int32_t *cdf, *length, *offset, *sym, *idx;
    Py_ssize_t n;
} Part;

static int read_i32(FILE *f, int32_t *v, size_t n) { return fread(v, 4, n, f) == n ? 0 : -1; }

static int32_t *read_array(FILE *f, size_t n) {
    int32_t *a = (int32_t *)malloc((n ? n : 1) * 4);
    if (!a || read_i32(f, a, n) < 0) {
        free(a);
        return NULL;
    }
    return a;
}

static int read_part(FILE *f, Part *p) {
    int32_t hdr[2], n;
    if (read_i32(f, hdr, 2) < 0 || hdr[0] < 0 || hdr[1] < 0) return -1;
    p->t.n = hdr[0];
    p->t.row = hdr[1];
    if (!(p->cdf = read_array(f, (size_t)hdr[0] * hdr[1])) || !(p->length = read_array(f, hdr[0])) ||
        !(p->offset = read_array(f, hdr[0])) || read_i32(f, &n, 1) < 0 || n < 0 ||
        !(p->sym = read_array(f, n)) || !(p->idx = read_array(f, n)))
        return -1;
    p->n = n;
    p->t.cdf = p->cdf;
    p->t.length = p->length;
    p->t.offset = p->offset;
    return 0;
}

typedef struct {
    unsigned char *b;
    size_t n;
} Bytes;

/* rans_encode's body without Python: check the tables, code, flush; 0 ok */
static int encode_stream(const Part *p, Py_ssize_t lo, Py_ssize_t hi, Bytes *out) {
    if (check_tables(&p->t) < 0) return -1;
    Words ws = {NULL, 0, 0};
    uint64_t state = RANS_L;
    Status st = {OK, 0, 0};
    encode_loop(p->sym + lo, p->idx + lo, hi - lo, &p->t, &ws, &state, &st);
    if (st.code != OK) {
        fprintf(stderr, "encode: status %d at symbol %zd\n", st.code, lo + st.pos);
        free(ws.w);
        return -1;
    }
    out->n = (ws.n + 2) * 4;
    out->b = (unsigned char *)malloc(out->n);
    if (!out->b) return -1;
    unsigned char *q = out->b;
    put_le32(q, (uint32_t)state);
    put_le32(q + 4, (uint32_t)(state >> 32));
    q += 8;
    for (size_t j = ws.n; j > 0; j--, q += 4) put_le32(q, ws.w[j - 1]);
    free(ws.w);
    return 0;
}

/* rans_decode's body (strict) without Python; 0 ok, -1 coder error, -3 mismatch */
static int decode_stream(const Part *p, Py_ssize_t lo, Py_ssize_t hi, const Bytes *in) {
    if (check_tables(&p->t) < 0) return -1;
    if (in->n < 8 || in->n % 4) {
        fprintf(stderr, "decode: %zu bytes is not a stream\n", in->n);
        return -1;
    }
    int32_t *out = (int32_t *)malloc((size_t)(hi - lo + 1) * 4);
    if (!out) return -1;
    Dec d;
    d.p = in->b;
    d.end = in->b + in->n;
    d.x = (uint64_t)get_le32(d.p) | ((uint64_t)get_le32(d.p + 4) << 32);
    d.p += 8;
    Status st = {OK, 0, 0};
    decode_loop(&d, p->idx + lo, out, hi - lo, &p->t, &st);
    if (st.code == OK && (d.p != d.end || d.x != RANS_L)) st.code = E_STATE;
    int rc = 0;
    if (st.code != OK) {
        fprintf(stderr, "decode: status %d at symbol %zd\n", st.code, lo + st.pos);
        rc = -1;
    } else if (memcmp(out, p->sym + lo, (size_t)(hi - lo) * 4) != 0) {
        fprintf(stderr, "decode: symbols differ from the encoder's\n");
        rc = -3;
    }
    free(out);
    return rc;
}

static int usage(void) {
    fputs("usage: bench_frame load|encode|decode all|z|y|y<j> K DATA [STREAMS]\n", stderr);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) return usage();
    const char *mode = argv[1], *part = argv[2], *streams = argc == 6 ? argv[5] : NULL;
    int enc = !strcmp(mode, "encode"), dec = !strcmp(mode, "decode");
    if (!enc && !dec && strcmp(mode, "load")) return usage();
    char *end;
    long K = strtol(argv[3], &end, 10);
    if (*end || K < 1 || K > 256) return usage();
    int want_z = !strcmp(part, "all") || !strcmp(part, "z");
    long only = -1; /* slice of y, or -1: all slices (PART all / y), -2: none (PART z) */
    if (!strcmp(part, "z")) only = -2;
    else if (part[0] == 'y' && part[1]) {
        only = strtol(part + 1, &end, 10);
        if (*end || only < 0 || only >= K) return usage();
    } else if (strcmp(part, "all") && strcmp(part, "y")) return usage();
    if (dec && !streams) return usage();

    FILE *f = fopen(argv[4], "rb");
    char magic[4];
    uint32_t version;
    Part y, z;
    if (!f || fread(magic, 1, 4, f) != 4 || memcmp(magic, "LPSB", 4) || fread(&version, 4, 1, f) != 1 ||
        version != 1 || read_part(f, &y) < 0 || read_part(f, &z) < 0) {
        fprintf(stderr, "cannot read %s (not a bench_frame data file)\n", argv[4]);
        return 1;
    }
    fclose(f);

    Bytes *s = (Bytes *)calloc((size_t)K + 1, sizeof(Bytes)); /* z, y0 .. y(K-1) */
    if (streams && !enc) {
        FILE *g = fopen(streams, "rb");
        uint32_t count;
        if (!g || fread(magic, 1, 4, g) != 4 || memcmp(magic, "LPSS", 4) || fread(&count, 4, 1, g) != 1 ||
            count != (uint32_t)K + 1) {
            fprintf(stderr, "cannot read %s (not a stream file of %ld y slices)\n", streams, K);
            return 1;
        }
        for (long j = 0; j <= K; j++) {
            uint32_t n;
            if (fread(&n, 4, 1, g) != 1 || !(s[j].b = (unsigned char *)malloc(n ? n : 1)) ||
                fread(s[j].b, 1, n, g) != n) {
                fprintf(stderr, "%s: truncated\n", streams);
                return 1;
            }
            s[j].n = n;
        }
        fclose(g);
    }
    if (!enc && !dec) return 0;

    int rc = 0;
    if (want_z) rc = enc ? encode_stream(&z, 0, z.n, &s[0]) : decode_stream(&z, 0, z.n, &s[0]);
    for (long j = 0; j < K && rc == 0; j++) {
        if (only == -2 || (only >= 0 && j != only)) continue;
        Py_ssize_t lo = (Py_ssize_t)(y.n * j / K), hi = (Py_ssize_t)(y.n * (j + 1) / K);
        rc = enc ? encode_stream(&y, lo, hi, &s[j + 1]) : decode_stream(&y, lo, hi, &s[j + 1]);
    }
    if (rc) return rc == -3 ? 3 : 2;
    if (enc && streams) {
        FILE *g = fopen(streams, "wb");
        uint32_t count = (uint32_t)K + 1;
        if (!g || fwrite("LPSS", 1, 4, g) != 4 || fwrite(&count, 4, 1, g) != 1) return 1;
        for (long j = 0; j <= K; j++) {
            uint32_t n = (uint32_t)s[j].n;
            if (fwrite(&n, 4, 1, g) != 1 || (n && fwrite(s[j].b, 1, n, g) != n)) return 1;
        }
        if (fclose(g)) return 1;
    }
    for (long j = 0; j <= K; j++) printf("%s%zu", j ? " " : "bytes ", s[j].n);
    printf("\n");
    return 0;
}
