/*
 * licfpga.host._rans: a bounds-checked rANS coder, stream-compatible with CompressAI 1.2.8.
 *
 * CompressAI's RansEncoder/RansDecoder (compressai/cpp_exts/rans/rans_interface.cpp, built on
 * Fabian Giesen's rans64.h) define the format reproduced here exactly:
 *   - 64-bit state, initial/final state RANS_L = 2^31, renormalisation by 32-bit words;
 *   - 16-bit probability precision: each table is a quantised CDF with cdf[0] = 0,
 *     cdf[len-1] = 65536, strictly increasing; symbol s has start cdf[s], frequency
 *     cdf[s+1] - cdf[s];
 *   - value = symbol - offset[index]; the last CDF slot (len-2) is an escape: a value outside
 *     [0, len-2) is coded as the escape plus a "bypass" raw value in 4-bit chunks
 *     (raw = -2v-1 below the range, 2(v - (len-2)) above it): first the chunk count
 *     (repeated 15s then a remainder), then the chunks, least significant first;
 *   - the stream is the flushed state (low word, high word) followed by the renormalisation
 *     words in decoding order, each word little-endian (CompressAI writes native uint32 on
 *     little-endian hosts; this file writes little-endian on any host).
 * So a stream of CompressAI's encoder decodes here and ours is byte-identical to its.
 *
 * Unlike CompressAI's decoder (no checks: a corrupt payload reads past the buffer in the
 * bypass loops and can crash the process), every word read is checked against the end of the
 * buffer, every CDF index against the table count, the bypass chunk count against 8 (a 32-bit
 * raw value), the tables themselves (monotone, 0..65536, lengths within the rows) on every
 * call, and, in strict mode (default), that the stream ends exactly where the encoder began
 * (final state RANS_L, no trailing words). Any violation raises ValueError; nothing is read
 * or written out of bounds.
 *
 * Arrays are passed through the buffer protocol: C-contiguous int32 (NumPy int32 arrays,
 * array('i'), ...); the payload is any bytes-like object. The coding loops run without the GIL.
 * Python wrapper and documentation: licfpga/host/entropy_coder.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION 16
#define PROB_ONE (1u << PRECISION)
#define BYPASS_PRECISION 4
#define MAX_BYPASS_VAL ((1u << BYPASS_PRECISION) - 1)
#define MAX_N_BYPASS 8 /* raw values are 32-bit: at most 8 chunks of 4 bits */
#define RANS_L (1ull << 31)

/* ---------------------------------------------------------------------------------------- */
/* int32 buffers                                                                            */

static int format_is_int32(const Py_buffer *v) {
    if (v->itemsize != 4) return 0;
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=') f++;
#if PY_LITTLE_ENDIAN
    else if (*f == '<') f++;
#else
    else if (*f == '>' || *f == '!') f++;
#endif
    return (f[0] == 'i' || f[0] == 'l') && f[1] == '\0';
}

/* Get a C-contiguous int32 buffer; 0 on success, -1 with TypeError set. */
static int get_i32(PyObject *obj, Py_buffer *view, const char *name, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a C-contiguous%s int32 buffer (e.g. a numpy int32 array), got %.100s",
                     name, writable ? " writable" : "", Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (!format_is_int32(view)) {
        PyErr_Format(PyExc_TypeError, "%s must hold int32 items, got format '%s' (itemsize %zd)", name,
                     view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* tables                                                                                   */

typedef struct {
    const int32_t *cdf;    /* n rows of `row` entries */
    const int32_t *length; /* n */
    const int32_t *offset; /* n */
    Py_ssize_t n, row;
} Tables;

/* Check the tables; 0 if valid, -1 with ValueError set. */
static int check_tables(const Tables *t) {
    for (Py_ssize_t k = 0; k < t->n; k++) {
        const int32_t len = t->length[k];
        const int32_t *c = t->cdf + k * t->row;
        if (len < 2 || len > t->row) {
            PyErr_Format(PyExc_ValueError, "CDF %zd: length %d outside 2..%zd (the table width)", k, (int)len,
                         t->row);
            return -1;
        }
        if (c[0] != 0 || c[len - 1] != (int32_t)PROB_ONE) {
            PyErr_Format(PyExc_ValueError, "CDF %zd: must run from 0 to %u, got %d..%d", k, PROB_ONE, (int)c[0],
                         (int)c[len - 1]);
            return -1;
        }
        for (int32_t j = 0; j + 1 < len; j++) {
            if (c[j + 1] <= c[j]) {
                PyErr_Format(PyExc_ValueError, "CDF %zd: not strictly increasing at entry %d (%d -> %d)", k,
                             (int)j, (int)c[j], (int)c[j + 1]);
                return -1;
            }
        }
    }
    return 0;
}

/* Parse (cdfs, cdf_lengths, offsets) into views + Tables; 0 on success (views held). */
static int get_tables(PyObject *cdfs, PyObject *lengths, PyObject *offsets, Py_buffer v[3], Tables *t) {
    if (get_i32(cdfs, &v[0], "cdfs", 0) < 0) return -1;
    if (get_i32(lengths, &v[1], "cdf_lengths", 0) < 0) goto fail0;
    if (get_i32(offsets, &v[2], "offsets", 0) < 0) goto fail1;
    t->n = v[1].len / 4;
    Py_ssize_t total = v[0].len / 4;
    if (v[2].len / 4 != t->n) {
        PyErr_Format(PyExc_ValueError, "%zd CDF lengths but %zd offsets", t->n, v[2].len / 4);
        goto fail2;
    }
    if (t->n == 0 ? total != 0 : total % t->n != 0) {
        PyErr_Format(PyExc_ValueError, "cdfs holds %zd entries: not %zd rows of equal width", total, t->n);
        goto fail2;
    }
    t->row = t->n ? total / t->n : 0;
    t->cdf = (const int32_t *)v[0].buf;
    t->length = (const int32_t *)v[1].buf;
    t->offset = (const int32_t *)v[2].buf;
    if (check_tables(t) < 0) goto fail2;
    return 0;
fail2:
    PyBuffer_Release(&v[2]);
fail1:
    PyBuffer_Release(&v[1]);
fail0:
    PyBuffer_Release(&v[0]);
    return -1;
}

static void release(Py_buffer *v, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&v[i]);
}

/* Errors found with the GIL released: a code, a position and a value, raised afterwards. */
enum { OK = 0, E_NOMEM, E_INDEX, E_RANGE, E_TRUNC, E_NBYPASS, E_OVERFLOW, E_TRAILING, E_STATE };

typedef struct {
    int code;
    Py_ssize_t pos;
    int64_t value;
} Status;

static PyObject *raise_status(const Status *s, Py_ssize_t n_tables) {
    switch (s->code) {
    case E_NOMEM:
        return PyErr_NoMemory();
    case E_INDEX:
        return PyErr_Format(PyExc_ValueError, "CDF index %lld at position %zd outside 0..%zd", (long long)s->value,
                            s->pos, n_tables - 1);
    case E_RANGE:
        return PyErr_Format(PyExc_ValueError,
                            "symbol %lld at position %zd is too far outside its CDF to code (bypass limit 2^32)",
                            (long long)s->value, s->pos);
    case E_TRUNC:
        return PyErr_Format(PyExc_ValueError, "rANS stream truncated: ran out of data at symbol %zd", s->pos);
    case E_NBYPASS:
        return PyErr_Format(PyExc_ValueError, "malformed rANS stream: %lld bypass chunks at symbol %zd (max %d)",
                            (long long)s->value, s->pos, MAX_N_BYPASS);
    case E_OVERFLOW:
        return PyErr_Format(PyExc_ValueError, "malformed rANS stream: decoded value %lld at symbol %zd overflows int32",
                            (long long)s->value, s->pos);
    case E_TRAILING:
        return PyErr_Format(PyExc_ValueError, "malformed rANS stream: %lld trailing bytes after the last symbol",
                            (long long)s->value);
    case E_STATE:
        return PyErr_Format(PyExc_ValueError,
                            "malformed rANS stream: final state %llu is not the encoder's initial state",  /* no %llx in PyErr_Format before 3.12 */
                            (unsigned long long)s->value);
    }
    return PyErr_Format(PyExc_SystemError, "rans: unknown status %d", s->code);
}

/* ---------------------------------------------------------------------------------------- */
/* encoder: symbols coded last to first; renormalisation words collected in emission order  */

typedef struct {
    uint32_t *w;
    size_t n, cap;
} Words;

static inline int words_push(Words *ws, uint32_t v) {
    if (ws->n == ws->cap) {
        size_t cap = ws->cap ? 2 * ws->cap : 1024;
        uint32_t *w = (uint32_t *)realloc(ws->w, cap * sizeof(uint32_t));
        if (!w) return -1;
        ws->w = w;
        ws->cap = cap;
    }
    ws->w[ws->n++] = v;
    return 0;
}

/* Rans64EncPut */
static inline int enc_put(uint64_t *r, Words *ws, uint32_t start, uint32_t freq) {
    uint64_t x = *r;
    const uint64_t x_max = ((RANS_L >> PRECISION) << 32) * freq;
    if (x >= x_max) {
        if (words_push(ws, (uint32_t)x) < 0) return -1;
        x >>= 32;
    }
    *r = ((x / freq) << PRECISION) + (x % freq) + start;
    return 0;
}

/* CompressAI's Rans64EncPutBits (nbits = BYPASS_PRECISION) */
static inline int enc_put_bits(uint64_t *r, Words *ws, uint32_t val) {
    uint64_t x = *r;
    const uint64_t freq = 1u << (16 - BYPASS_PRECISION);
    const uint64_t x_max = ((RANS_L >> 16) << 32) * freq;
    if (x >= x_max) {
        if (words_push(ws, (uint32_t)x) < 0) return -1;
        x >>= 32;
    }
    *r = (x << BYPASS_PRECISION) | val;
    return 0;
}

static void encode_loop(const int32_t *sym, const int32_t *idx, Py_ssize_t n, const Tables *t, Words *ws,
                        uint64_t *state, Status *st) {
    uint64_t r = RANS_L;
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        const int32_t k = idx[i];
        if (k < 0 || k >= t->n) {
            *st = (Status){E_INDEX, i, k};
            return;
        }
        const int32_t *cdf = t->cdf + (Py_ssize_t)k * t->row;
        const int64_t max_value = t->length[k] - 2;
        int64_t value = (int64_t)sym[i] - t->offset[k];
        uint64_t raw = 0;
        int bypass = 0;
        if (value < 0) {
            raw = (uint64_t)(-2 * value - 1);
            bypass = 1;
        } else if (value >= max_value) {
            raw = (uint64_t)(2 * (value - max_value));
            bypass = 1;
        }
        if (bypass) {
            if (raw > 0xFFFFFFFFull) {
                *st = (Status){E_RANGE, i, sym[i]};
                return;
            }
            value = max_value;
            int nb = 0;
            while (nb < MAX_N_BYPASS && (raw >> (nb * BYPASS_PRECISION)) != 0) nb++;
            /* CompressAI pushes [15]*q, rem, chunk 0..nb-1 and codes them from the back */
            for (int j = nb - 1; j >= 0; j--)
                if (enc_put_bits(&r, ws, (uint32_t)(raw >> (j * BYPASS_PRECISION)) & MAX_BYPASS_VAL) < 0) goto nomem;
            if (enc_put_bits(&r, ws, (uint32_t)(nb % MAX_BYPASS_VAL)) < 0) goto nomem;
            for (int q = nb / MAX_BYPASS_VAL; q > 0; q--)
                if (enc_put_bits(&r, ws, MAX_BYPASS_VAL) < 0) goto nomem;
        }
        const uint32_t start = (uint32_t)cdf[value];
        if (enc_put(&r, ws, start, (uint32_t)cdf[value + 1] - start) < 0) goto nomem;
    }
    *state = r;
    return;
nomem:
    *st = (Status){E_NOMEM, 0, 0};
}

static inline void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

PyDoc_STRVAR(encode_doc,
             "encode(symbols, indexes, cdfs, cdf_lengths, offsets) -> bytes\n\n"
             "CompressAI RansEncoder.encode_with_indexes on int32 buffers: symbols[i] coded with CDF\n"
             "indexes[i]; cdfs is the C-contiguous [n_tables, width] table (flat is fine), cdf_lengths\n"
             "and offsets have n_tables entries. ValueError on an invalid table or index.");

static PyObject *rans_encode(PyObject *self, PyObject *args) {
    PyObject *osym, *oidx, *ocdf, *olen, *ooff;
    if (!PyArg_ParseTuple(args, "OOOOO:encode", &osym, &oidx, &ocdf, &olen, &ooff)) return NULL;
    Py_buffer v[5];
    Tables t;
    if (get_i32(osym, &v[0], "symbols", 0) < 0) return NULL;
    if (get_i32(oidx, &v[1], "indexes", 0) < 0) {
        release(v, 1);
        return NULL;
    }
    if (get_tables(ocdf, olen, ooff, &v[2], &t) < 0) {
        release(v, 2);
        return NULL;
    }
    const Py_ssize_t n = v[0].len / 4;
    if (v[1].len / 4 != n) {
        PyErr_Format(PyExc_ValueError, "%zd symbols but %zd indexes", n, v[1].len / 4);
        release(v, 5);
        return NULL;
    }
    Words ws = {NULL, 0, 0};
    uint64_t state = RANS_L;
    Status st = {OK, 0, 0};
    Py_BEGIN_ALLOW_THREADS;
    encode_loop((const int32_t *)v[0].buf, (const int32_t *)v[1].buf, n, &t, &ws, &state, &st);
    Py_END_ALLOW_THREADS;
    release(v, 5);
    PyObject *out = NULL;
    if (st.code != OK) {
        raise_status(&st, t.n);
    } else if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(ws.n + 2) * 4)) != NULL) {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
        put_le32(p, (uint32_t)state); /* Rans64EncFlush: low word first */
        put_le32(p + 4, (uint32_t)(state >> 32));
        p += 8;
        for (size_t j = ws.n; j > 0; j--, p += 4) put_le32(p, ws.w[j - 1]);
    }
    free(ws.w);
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* decoder                                                                                  */

typedef struct {
    const unsigned char *p, *end;
    uint64_t x;
} Dec;

static inline uint32_t get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Rans64DecAdvance's renormalisation; -1 if the stream has no word left */
static inline int dec_renorm(Dec *d) {
    if (d->x < RANS_L) {
        if (d->end - d->p < 4) return -1;
        d->x = (d->x << 32) | get_le32(d->p);
        d->p += 4;
    }
    return 0;
}

/* CompressAI's Rans64DecGetBits (n = BYPASS_PRECISION); -1 if truncated */
static inline int dec_get_bits(Dec *d, uint32_t *val) {
    *val = (uint32_t)(d->x & MAX_BYPASS_VAL);
    d->x >>= BYPASS_PRECISION;
    return dec_renorm(d);
}

static void decode_loop(Dec *d, const int32_t *idx, int32_t *out, Py_ssize_t n, const Tables *t, Status *st) {
    const uint64_t mask = PROB_ONE - 1;
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        const int32_t k = idx[i];
        if (k < 0 || k >= t->n) {
            *st = (Status){E_INDEX, i, k};
            return;
        }
        const int32_t *cdf = t->cdf + (Py_ssize_t)k * t->row;
        const int32_t len = t->length[k];
        const int32_t max_value = len - 2;
        const uint32_t cum = (uint32_t)(d->x & mask);
        /* largest s in [0, len-2] with cdf[s] <= cum (cdf[0] = 0 <= cum < 65536 = cdf[len-1]):
         * branchless binary search, the answer stays in [base, base + m), base + m <= cdf + len - 1 */
        const int32_t *base = cdf;
        int32_t m = len - 1;
        while (m > 1) {
            const int32_t half = m >> 1;
            base = ((uint32_t)base[half] <= cum) ? base + half : base;
            m -= half;
        }
        const int32_t lo = (int32_t)(base - cdf);
        const uint32_t start = (uint32_t)cdf[lo], freq = (uint32_t)cdf[lo + 1] - start;
        d->x = freq * (d->x >> PRECISION) + (d->x & mask) - start;
        if (dec_renorm(d) < 0) goto truncated;
        int64_t value = lo;
        if (lo == max_value) {
            uint32_t val;
            if (dec_get_bits(d, &val) < 0) goto truncated;
            int64_t nb = val;
            while (val == MAX_BYPASS_VAL && nb <= MAX_N_BYPASS) {
                if (dec_get_bits(d, &val) < 0) goto truncated;
                nb += val;
            }
            if (nb > MAX_N_BYPASS) {
                *st = (Status){E_NBYPASS, i, nb};
                return;
            }
            uint32_t raw = 0;
            for (int j = 0; j < nb; j++) {
                if (dec_get_bits(d, &val) < 0) goto truncated;
                raw |= val << (j * BYPASS_PRECISION);
            }
            value = (int64_t)(raw >> 1);
            value = (raw & 1) ? -value - 1 : value + max_value;
        }
        value += t->offset[k];
        if (value < INT32_MIN || value > INT32_MAX) {
            *st = (Status){E_OVERFLOW, i, value};
            return;
        }
        out[i] = (int32_t)value;
    }
    return;
truncated:
    *st = (Status){E_TRUNC, i, 0};
}

PyDoc_STRVAR(decode_doc,
             "decode(data, indexes, cdfs, cdf_lengths, offsets, out, strict=True) -> None\n\n"
             "CompressAI RansDecoder.decode_with_indexes into `out` (a writable int32 buffer with one\n"
             "entry per index). Every read is bounds-checked; a malformed stream raises ValueError.\n"
             "strict: also require the stream to end exactly (encoder's initial state, no trailing\n"
             "words), which every stream of CompressAI's RansEncoder does.");

static PyObject *rans_decode(PyObject *self, PyObject *args) {
    PyObject *odata, *oidx, *ocdf, *olen, *ooff, *oout;
    int strict = 1;
    if (!PyArg_ParseTuple(args, "OOOOOO|p:decode", &odata, &oidx, &ocdf, &olen, &ooff, &oout, &strict)) return NULL;
    Py_buffer data, v[5];
    Tables t;
    if (PyObject_GetBuffer(odata, &data, PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "data must be bytes-like, got %.100s", Py_TYPE(odata)->tp_name);
        return NULL;
    }
    if (get_i32(oidx, &v[0], "indexes", 0) < 0) goto fail_data;
    if (get_i32(oout, &v[1], "out", 1) < 0) {
        release(v, 1);
        goto fail_data;
    }
    if (get_tables(ocdf, olen, ooff, &v[2], &t) < 0) {
        release(v, 2);
        goto fail_data;
    }
    const Py_ssize_t n = v[0].len / 4;
    if (v[1].len / 4 != n) {
        PyErr_Format(PyExc_ValueError, "out has %zd entries for %zd indexes", v[1].len / 4, n);
        goto fail;
    }
    if (data.len < 8 || data.len % 4) {
        PyErr_Format(PyExc_ValueError, "malformed rANS stream: %zd bytes (need a multiple of 4, at least 8)",
                     data.len);
        goto fail;
    }
    Dec d;
    d.p = (const unsigned char *)data.buf;
    d.end = d.p + data.len;
    d.x = (uint64_t)get_le32(d.p) | ((uint64_t)get_le32(d.p + 4) << 32); /* Rans64DecInit */
    d.p += 8;
    Status st = {OK, 0, 0};
    Py_BEGIN_ALLOW_THREADS;
    decode_loop(&d, (const int32_t *)v[0].buf, (int32_t *)v[1].buf, n, &t, &st);
    Py_END_ALLOW_THREADS;
    if (st.code == OK && strict) {
        if (d.p != d.end)
            st = (Status){E_TRAILING, 0, (int64_t)(d.end - d.p)};
        else if (d.x != RANS_L)
            st = (Status){E_STATE, 0, (int64_t)d.x};
    }
    release(v, 5);
    PyBuffer_Release(&data);
    if (st.code != OK) return raise_status(&st, t.n);
    Py_RETURN_NONE;
fail:
    release(v, 5);
fail_data:
    PyBuffer_Release(&data);
    return NULL;
}

PyDoc_STRVAR(check_tables_doc,
             "check_tables(cdfs, cdf_lengths, offsets) -> (n_tables, width)\n\n"
             "Validate CDF tables as encode/decode do (ValueError if invalid).");

static PyObject *rans_check_tables(PyObject *self, PyObject *args) {
    PyObject *ocdf, *olen, *ooff;
    if (!PyArg_ParseTuple(args, "OOO:check_tables", &ocdf, &olen, &ooff)) return NULL;
    Py_buffer v[3];
    Tables t;
    if (get_tables(ocdf, olen, ooff, v, &t) < 0) return NULL;
    release(v, 3);
    return Py_BuildValue("(nn)", t.n, t.row);
}

static PyMethodDef methods[] = {
    {"encode", rans_encode, METH_VARARGS, encode_doc},
    {"decode", rans_decode, METH_VARARGS, decode_doc},
    {"check_tables", rans_check_tables, METH_VARARGS, check_tables_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rans",
    "Bounds-checked rANS coder, stream-compatible with CompressAI 1.2.8 (see licfpga.host.entropy_coder).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__rans(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "PRECISION", PRECISION) < 0 ||
        PyModule_AddIntConstant(m, "MAX_BYPASS_CHUNKS", MAX_N_BYPASS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
