/*
 * Line-protocol assembly kernel for ingest.lineprotocol.
 *
 * Why C: after the vectorized steps (validation, line grouping, float formatting with orjson),
 * what is left is laying out a few small pieces per sample -- the series' line head, "key=",
 * the value, " <ts>\n". numpy can only do that through padded byte matrices and a compaction
 * pass that touches every byte several times (measured: about half of the encoder's time).
 * Here it is one pass of memcpy and integer formatting into the final buffer, with the GIL
 * released so chunks can be assembled in parallel threads.
 *
 * Everything per series (escaped heads and keys) and every float text is prepared by the caller;
 * this file contains no escaping rule for names and no float formatting, only:
 *   - integers in decimal (fields get the "i" suffix, timestamps none),
 *   - booleans as true/false,
 *   - string values quoted, with backslash and double quote escaped.
 * The Python side (ingest/lineprotocol.py) documents the layout; tests compare the bytes with
 * influxdb_client.Point and with the pure-numpy path.
 *
 * Only the stable buffer protocol is used, so building needs no numpy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { KIND_TEXT = 0, KIND_INT = 1, KIND_BOOL = 2, KIND_STRING = 3 };

static const char DIGIT_PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Decimal digits of v at p; returns the number of bytes written (at most 20). */
static inline Py_ssize_t write_i64(char *p, int64_t v) {
    char tmp[24];
    char *end = tmp + sizeof(tmp);
    char *q = end;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        q -= 2;
        memcpy(q, DIGIT_PAIRS + 2 * r, 2);
    }
    if (u >= 10) {
        q -= 2;
        memcpy(q, DIGIT_PAIRS + 2 * u, 2);
    } else {
        *--q = (char)('0' + u);
    }
    if (v < 0) *--q = '-';
    Py_ssize_t n = end - q;
    memcpy(p, q, (size_t)n);
    return n;
}

/* off[0..n] must start at 0 or more, never decrease, and end inside a buffer of size len. */
static int offsets_ok(const int64_t *off, Py_ssize_t n, Py_ssize_t len) {
    if (off[0] < 0) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (off[i + 1] < off[i]) return 0;
    }
    return off[n] <= len;
}

typedef struct {
    Py_buffer b;
    int held;
} buf_t;

static int get_buf(PyObject *obj, buf_t *out, Py_ssize_t itemsize, const char *name, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &out->b, flags) < 0) {
        return -1;
    }
    out->held = 1;
    if (out->b.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name, itemsize,
                     out->b.itemsize);
        return -1;
    }
    return 0;
}

#define N_ITEMS(x) ((x).b.len / (x).b.itemsize)

/*
 * assemble(line_first, line_group, line_ts, heads, head_off, series, keys, key_off,
 *          kind, value_i64, text, text_start, text_len, line_ends_out) -> bytes
 *
 * line_first  int64[L+1]  first sample of each line; line_first[L] = number of samples
 * line_group  int32[L]    head index of each line
 * line_ts     int64[L]    timestamp of each line (ns)
 * heads       uint8[]     concatenated line heads ("m,t=v "), head_off int64[G+1]
 * series      int32[n]    series of each sample
 * keys        uint8[]     concatenated field keys with "=" ("k="), key_off int64[S+1]
 * kind        uint8[n]    KIND_* of each sample
 * value_i64   int64[n]    integer and boolean values
 * text        uint8[]     float texts and raw UTF-8 string values, text_start/text_len int64[n]
 * line_ends_out int64[L]  filled with the byte offset just after each line's newline
 */
static PyObject *assemble(PyObject *self, PyObject *args) {
    PyObject *o[14];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13])) {
        return NULL;
    }
    static const char *names[14] = {"line_first", "line_group", "line_ts",   "heads",
                                    "head_off",   "series",     "keys",      "key_off",
                                    "kind",       "value_i64",  "text",      "text_start",
                                    "text_len",   "line_ends_out"};
    static const Py_ssize_t sizes[14] = {8, 4, 8, 1, 8, 4, 1, 8, 1, 8, 1, 8, 8, 8};
    buf_t b[14];
    memset(b, 0, sizeof(b));
    PyObject *out = NULL;
    for (int i = 0; i < 14; i++) {
        if (get_buf(o[i], &b[i], sizes[i], names[i], i == 13) < 0) goto done;
    }
    const int64_t *line_first = b[0].b.buf;
    const int32_t *line_group = b[1].b.buf;
    const int64_t *line_ts = b[2].b.buf;
    const char *heads = b[3].b.buf;
    const int64_t *head_off = b[4].b.buf;
    const int32_t *series = b[5].b.buf;
    const char *keys = b[6].b.buf;
    const int64_t *key_off = b[7].b.buf;
    const uint8_t *kind = b[8].b.buf;
    const int64_t *vi = b[9].b.buf;
    const char *text = b[10].b.buf;
    const int64_t *tstart = b[11].b.buf;
    const int64_t *tlen = b[12].b.buf;
    int64_t *line_ends = b[13].b.buf;

    Py_ssize_t L = N_ITEMS(b[1]);
    Py_ssize_t n = N_ITEMS(b[5]);
    Py_ssize_t G = N_ITEMS(b[4]) - 1;
    Py_ssize_t S = N_ITEMS(b[7]) - 1;
    Py_ssize_t text_size = b[10].b.len;
    if (N_ITEMS(b[0]) != L + 1 || N_ITEMS(b[2]) != L || N_ITEMS(b[13]) != L || N_ITEMS(b[8]) != n ||
        N_ITEMS(b[9]) != n || N_ITEMS(b[11]) != n || N_ITEMS(b[12]) != n || G < 0 || S < 0 ||
        (L > 0 && (line_first[0] != 0 || line_first[L] != n))) {
        PyErr_SetString(PyExc_ValueError, "assemble: inconsistent array lengths");
        goto done;
    }

    /* Pass 1: check every offset and index and bound the output size, so pass 2 needs no
     * checks. */
    Py_ssize_t bound = 0;
    const char *err = NULL;
    Py_BEGIN_ALLOW_THREADS
    if (!offsets_ok(head_off, G, b[3].b.len)) err = "head offsets out of range";
    else if (!offsets_ok(key_off, S, b[6].b.len)) err = "key offsets out of range";
    for (Py_ssize_t l = 0; l < L && !err; l++) {
        int32_t g = line_group[l];
        if (g < 0 || g >= G) { err = "line head index out of range"; break; }
        int64_t lo = line_first[l], hi = line_first[l + 1];
        if (lo >= hi || hi > n) { err = "line_first must increase"; break; }
        bound += (Py_ssize_t)(head_off[g + 1] - head_off[g]) + 22; /* " " ts(20) "\n" */
        for (int64_t i = lo; i < hi; i++) {
            int32_t s = series[i];
            if (s < 0 || s >= S) { err = "series index out of range"; break; }
            bound += (Py_ssize_t)(key_off[s + 1] - key_off[s]) + 1; /* "," */
            switch (kind[i]) {
            case KIND_TEXT:
            case KIND_STRING:
                if (tstart[i] < 0 || tlen[i] < 0 || tstart[i] > text_size ||
                    tlen[i] > text_size - tstart[i]) {
                    err = "text slice out of range";
                    break;
                }
                bound += kind[i] == KIND_TEXT ? tlen[i] : 2 * tlen[i] + 2;
                break;
            case KIND_INT: bound += 21; break;
            case KIND_BOOL: bound += 5; break;
            default: err = "unknown value kind";
            }
            if (err) break;
        }
    }
    Py_END_ALLOW_THREADS
    if (err) {
        PyErr_Format(PyExc_ValueError, "assemble: %s", err);
        goto done;
    }

    out = PyBytes_FromStringAndSize(NULL, bound);
    if (!out) goto done;
    char *const base = PyBytes_AS_STRING(out);
    char *p = base;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t l = 0; l < L; l++) {
        int32_t g = line_group[l];
        size_t hl = (size_t)(head_off[g + 1] - head_off[g]);
        memcpy(p, heads + head_off[g], hl);
        p += hl;
        int64_t lo = line_first[l], hi = line_first[l + 1];
        for (int64_t i = lo; i < hi; i++) {
            if (i > lo) *p++ = ',';
            int32_t s = series[i];
            size_t kl = (size_t)(key_off[s + 1] - key_off[s]);
            memcpy(p, keys + key_off[s], kl);
            p += kl;
            switch (kind[i]) {
            case KIND_TEXT:
                memcpy(p, text + tstart[i], (size_t)tlen[i]);
                p += tlen[i];
                break;
            case KIND_INT:
                p += write_i64(p, vi[i]);
                *p++ = 'i';
                break;
            case KIND_BOOL:
                if (vi[i]) { memcpy(p, "true", 4); p += 4; }
                else { memcpy(p, "false", 5); p += 5; }
                break;
            default: { /* KIND_STRING */
                const char *src = text + tstart[i];
                const char *stop = src + tlen[i];
                *p++ = '"';
                while (src < stop) {
                    /* copy runs without a character to escape in one memcpy */
                    const char *run = src;
                    while (src < stop && *src != '"' && *src != '\\') src++;
                    memcpy(p, run, (size_t)(src - run));
                    p += src - run;
                    if (src < stop) {
                        *p++ = '\\';
                        *p++ = *src++;
                    }
                }
                *p++ = '"';
            }
            }
        }
        *p++ = ' ';
        p += write_i64(p, line_ts[l]);
        *p++ = '\n';
        line_ends[l] = (int64_t)(p - base);
    }
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&out, p - base) < 0) out = NULL;

done:
    for (int i = 0; i < 14; i++) {
        if (b[i].held) PyBuffer_Release(&b[i].b);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"assemble", assemble, METH_VARARGS,
     "Lay out line-protocol lines from prepared pieces (see ingest/_lpkernel.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lpkernel",
                                    "Line-protocol assembly kernel (C).", -1, methods};

PyMODINIT_FUNC PyInit__lpkernel(void) { return PyModule_Create(&module); }
