/*
 * A stand-in for CPython's <Python.h>, just enough for ../rans.c to compile outside Python:
 * host/rans/bench_frame.c includes rans.c with this folder first on the include path, so
 * the aarch64 harness runs the very coding loops the extension ships (encode_loop,
 * decode_loop, check_tables), cross-compiled without an aarch64 Python. The extension build
 * (pyproject.toml) never sees this folder. The Python API functions here are stubs: the
 * harness never calls the module functions; an error message is printed to stderr.
 */
#ifndef LICFPGA_STANDALONE_PYTHON_H
#define LICFPGA_STANDALONE_PYTHON_H
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

typedef ssize_t Py_ssize_t;
typedef struct { const char *tp_name; } PyTypeObject;
typedef struct _object { PyTypeObject *ob_type; } PyObject;
typedef struct {
    void *buf;
    Py_ssize_t len, itemsize;
    char *format;
} Py_buffer;
typedef PyObject *(*PyCFunction)(PyObject *, PyObject *);
typedef struct { const char *ml_name; PyCFunction ml_meth; int ml_flags; const char *ml_doc; } PyMethodDef;
typedef struct PyModuleDef { int head; const char *m_name, *m_doc; Py_ssize_t m_size; PyMethodDef *m_methods; } PyModuleDef;

#define PyModuleDef_HEAD_INIT 0
#define METH_VARARGS 1
#define PyBUF_C_CONTIGUOUS 0x38
#define PyBUF_FORMAT 0x4
#define PyBUF_WRITABLE 0x1
#define PY_LITTLE_ENDIAN (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
#define PyDoc_STRVAR(name, str) static const char name[] = str
#define PyMODINIT_FUNC PyObject *
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
#define Py_TYPE(o) ((o)->ob_type)
#define Py_DECREF(o) ((void)(o))
#define Py_RETURN_NONE return NULL
#define PyBytes_AS_STRING(o) ((char *)(o))

static PyObject *PyExc_TypeError, *PyExc_ValueError, *PyExc_SystemError;

/* the one stub the harness reaches: check_tables reports an invalid table through it */
static PyObject *PyErr_Format(PyObject *exc, const char *fmt, ...) {
    (void)exc;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return NULL;
}
static PyObject *PyErr_NoMemory(void) { fputs("out of memory\n", stderr); return NULL; }
static int PyObject_GetBuffer(PyObject *o, Py_buffer *v, int flags) { (void)o; (void)v; (void)flags; abort(); }
static void PyBuffer_Release(Py_buffer *v) { (void)v; }
static int PyArg_ParseTuple(PyObject *a, const char *f, ...) { (void)a; (void)f; abort(); }
static PyObject *PyBytes_FromStringAndSize(const char *s, Py_ssize_t n) { (void)s; (void)n; abort(); }
static PyObject *Py_BuildValue(const char *f, ...) { (void)f; abort(); }
static PyObject *PyModule_Create(PyModuleDef *m) { (void)m; abort(); }
static int PyModule_AddIntConstant(PyObject *m, const char *n, long v) { (void)m; (void)n; (void)v; abort(); }
#endif
