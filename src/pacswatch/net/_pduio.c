/*
 * pacswatch.net._pduio: many TCP connections on one epoll set, their input cut into DICOM PDUs.
 *
 * Why it exists: a full DICOM probe is half a dozen tiny exchanges per endpoint, and in Python
 * each exchange through asyncio's transports, protocols, futures and timers cost more CPU than
 * the protocol work itself. This module does only the I/O: non-blocking connects, writes,
 * reads cut at PDU boundaries (the 6-byte upper-layer header: type, reserved, 32-bit big-endian
 * length), one absolute deadline per connection, and byte caps. Every decision (what to send,
 * how long to wait, what a PDU means) stays in Python's sans-IO code (pacswatch.dicom and
 * probes/dicom_session.py); nothing here knows DICOM beyond the header.
 *
 * Python drives it from the event loop: `fileno()` is the epoll descriptor (readable when any
 * connection or the deadline timer has something), `poll()` returns what happened as a list of
 * (tag, kind, value) tuples, and `connect`, `send`, `close` and `abort` act on a connection.
 * Once Python closed or aborted a connection, no event is returned for its tag; a tag is
 * reused only after the next poll(), so an event list never mixes two connections' events.
 *
 * Framing is strict and gives up early: a header whose type is not 1-7 or whose length passes
 * `frame_max` switches the connection to raw mode for good, and its bytes are handed over as
 * they come (DATA), for the sans-IO decoder to judge (a 4 GB length claim is never buffered
 * here). Bytes of an incomplete PDU are handed over as DATA before an end of stream, an error,
 * a timeout or the byte cap, so Python sees every byte the peer sent, in order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum kind { K_CONNECTED = 1, K_PDU = 2, K_DATA = 3, K_EOF = 4, K_ERROR = 5, K_TIMEOUT = 6, K_CAP = 7 };
enum state { S_FREE = 0, S_CONNECTING, S_OPEN, S_CLOSING, S_RETIRED };

#define HEADER 6
#define READ_SIZE 65536
#define MAX_EVENTS 1024
#define TIMER_TAG UINT64_MAX

typedef struct {
    int fd;
    enum state state;
    int reading;            /* EPOLLIN wanted (until end of stream, error or cap) */
    int raw;                /* framing given up: bytes are handed over as they come */
    uint32_t mask;          /* what epoll watches for this fd now */
    double deadline;        /* absolute CLOCK_MONOTONIC seconds; 0: none */
    Py_ssize_t heap_at;     /* index in the deadline heap, -1 when not in it */
    uint64_t bytes_read, read_cap;
    uint8_t *rbuf;          /* an incomplete PDU (framed mode) */
    size_t rlen;
    uint8_t *wbuf;          /* bytes the kernel did not take yet */
    size_t woff, wlen;
} conn_t;

typedef struct {
    PyObject_HEAD
    int epfd, timerfd;
    double armed;               /* what the timer is set to; 0: not armed */
    uint32_t frame_max;
    conn_t *conns;
    Py_ssize_t nconns, capacity;
    Py_ssize_t *free_tags, nfree;       /* reusable now */
    Py_ssize_t *retired, nretired;      /* reusable after the next poll */
    Py_ssize_t active;
    conn_t **heap;
    Py_ssize_t nheap;
    uint8_t readbuf[READ_SIZE];
} Engine;

static double now_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ deadline heap (min) */

static void heap_swap(Engine *e, Py_ssize_t a, Py_ssize_t b) {
    conn_t *t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->heap[a]->heap_at = a;
    e->heap[b]->heap_at = b;
}

static void heap_up(Engine *e, Py_ssize_t i) {
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (e->heap[parent]->deadline <= e->heap[i]->deadline) break;
        heap_swap(e, i, parent);
        i = parent;
    }
}

static void heap_down(Engine *e, Py_ssize_t i) {
    for (;;) {
        Py_ssize_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->nheap && e->heap[l]->deadline < e->heap[m]->deadline) m = l;
        if (r < e->nheap && e->heap[r]->deadline < e->heap[m]->deadline) m = r;
        if (m == i) return;
        heap_swap(e, i, m);
        i = m;
    }
}

static void heap_remove(Engine *e, conn_t *c) {
    Py_ssize_t i = c->heap_at;
    if (i < 0) return;
    c->heap_at = -1;
    e->nheap--;
    if (i != e->nheap) {
        e->heap[i] = e->heap[e->nheap];
        e->heap[i]->heap_at = i;
        heap_up(e, i);
        heap_down(e, e->heap[i]->heap_at);
    }
}

static void set_deadline(Engine *e, conn_t *c, double deadline) {
    heap_remove(e, c);
    c->deadline = deadline;
    if (deadline <= 0) return;
    c->heap_at = e->nheap;
    e->heap[e->nheap++] = c;  /* capacity: one slot per connection, allocated with the table */
    heap_up(e, c->heap_at);
}

static void arm_timer(Engine *e) {
    double next = e->nheap ? e->heap[0]->deadline : 0;
    if (next == e->armed) return;
    struct itimerspec spec = {0};
    if (next > 0) {
        spec.it_value.tv_sec = (time_t)next;
        spec.it_value.tv_nsec = (long)((next - (double)(time_t)next) * 1e9);
        if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    }
    timerfd_settime(e->timerfd, TFD_TIMER_ABSTIME, &spec, NULL);
    e->armed = next;
}

/* ------------------------------------------------------------------ connection table */

static int grow(Engine *e) {
    Py_ssize_t cap = e->capacity ? e->capacity * 2 : 256;
    conn_t *conns = PyMem_Realloc(e->conns, cap * sizeof(conn_t));
    if (!conns) return -1;
    e->conns = conns;
    /* the heap holds pointers into the table: rebuild them after the move */
    conn_t **heap = PyMem_Realloc(e->heap, cap * sizeof(conn_t *));
    if (!heap) return -1;
    e->heap = heap;
    for (Py_ssize_t t = 0; t < e->nconns; t++)
        if (e->conns[t].heap_at >= 0) e->heap[e->conns[t].heap_at] = &e->conns[t];
    Py_ssize_t *free_tags = PyMem_Realloc(e->free_tags, cap * sizeof(Py_ssize_t));
    if (!free_tags) return -1;
    e->free_tags = free_tags;
    Py_ssize_t *retired = PyMem_Realloc(e->retired, cap * sizeof(Py_ssize_t));
    if (!retired) return -1;
    e->retired = retired;
    e->capacity = cap;
    return 0;
}

static Py_ssize_t new_tag(Engine *e) {
    if (e->nfree) return e->free_tags[--e->nfree];
    if (e->nconns == e->capacity && grow(e) < 0) return -1;
    return e->nconns++;
}

static void watch(Engine *e, conn_t *c, Py_ssize_t tag, uint32_t mask) {
    if (mask == c->mask) return;
    struct epoll_event ev = {.events = mask, .data.u64 = (uint64_t)tag};
    if (c->mask == 0) epoll_ctl(e->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    else if (mask == 0) epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd, &ev);
    else epoll_ctl(e->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->mask = mask;
}

static void rewatch(Engine *e, conn_t *c, Py_ssize_t tag) {
    uint32_t mask = 0;
    if (c->state == S_CONNECTING || c->wlen > c->woff) mask |= EPOLLOUT;
    if (c->state != S_CONNECTING && c->reading) mask |= EPOLLIN;
    watch(e, c, tag, mask);
}

/* Close the socket and retire the tag: no more events for it, reusable after the next poll. */
static void retire(Engine *e, conn_t *c, Py_ssize_t tag) {
    heap_remove(e, c);
    if (c->fd >= 0) close(c->fd);  /* also removes it from the epoll set */
    c->fd = -1;
    c->mask = 0;
    PyMem_Free(c->rbuf);
    PyMem_Free(c->wbuf);
    c->rbuf = c->wbuf = NULL;
    c->rlen = c->wlen = c->woff = 0;
    c->state = S_RETIRED;
    e->retired[e->nretired++] = tag;
    e->active--;
}

static conn_t *lookup(Engine *e, PyObject *tag_obj, Py_ssize_t *tag_out) {
    Py_ssize_t tag = PyLong_AsSsize_t(tag_obj);
    if (tag == -1 && PyErr_Occurred()) return NULL;
    if (tag < 0 || tag >= e->nconns || e->conns[tag].state == S_FREE || e->conns[tag].state == S_RETIRED) {
        PyErr_Format(PyExc_KeyError, "no open connection with tag %zd", tag);
        return NULL;
    }
    *tag_out = tag;
    return &e->conns[tag];
}

/* ------------------------------------------------------------------ events */

static int emit(PyObject *out, Py_ssize_t tag, int kind, PyObject *value) {
    /* steals `value` (a new reference, or NULL for None) */
    if (value == NULL) value = Py_NewRef(Py_None);
    PyObject *t = PyTuple_New(3);
    if (!t) { Py_DECREF(value); return -1; }
    PyTuple_SET_ITEM(t, 0, PyLong_FromSsize_t(tag));
    PyTuple_SET_ITEM(t, 1, PyLong_FromLong(kind));
    PyTuple_SET_ITEM(t, 2, value);
    int rc = PyList_Append(out, t);
    Py_DECREF(t);
    return rc;
}

static int emit_bytes(PyObject *out, Py_ssize_t tag, int kind, const uint8_t *data, size_t n) {
    PyObject *b = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)n);
    if (!b) return -1;
    return emit(out, tag, kind, b);
}

/* The incomplete PDU's bytes, handed over before whatever ends the reading. */
static int emit_partial(PyObject *out, conn_t *c, Py_ssize_t tag) {
    if (!c->rlen) return 0;
    int rc = emit_bytes(out, tag, K_DATA, c->rbuf, c->rlen);
    c->rlen = 0;
    return rc;
}

/* Cut `data` (appended to what was pending) into PDUs; keep an incomplete tail. */
static int frame(Engine *e, PyObject *out, conn_t *c, Py_ssize_t tag, const uint8_t *data, size_t n) {
    if (c->raw) return emit_bytes(out, tag, K_DATA, data, n);
    if (c->rlen) {
        uint8_t *buf = PyMem_Realloc(c->rbuf, c->rlen + n);
        if (!buf) { PyErr_NoMemory(); return -1; }
        memcpy(buf + c->rlen, data, n);
        c->rbuf = buf;
        data = buf;
        n += c->rlen;
        c->rlen = 0;
    }
    size_t at = 0;
    while (n - at >= HEADER) {
        const uint8_t *h = data + at;
        uint32_t length = ((uint32_t)h[2] << 24) | ((uint32_t)h[3] << 16) | ((uint32_t)h[4] << 8) | h[5];
        if (h[0] < 1 || h[0] > 7 || length > e->frame_max - HEADER) {
            c->raw = 1;
            break;
        }
        if (n - at < HEADER + (size_t)length) break;
        if (emit_bytes(out, tag, K_PDU, h, HEADER + length) < 0) return -1;
        at += HEADER + length;
    }
    size_t rest = n - at;
    if (c->raw) {
        int rc = rest ? emit_bytes(out, tag, K_DATA, data + at, rest) : 0;
        if (data == c->rbuf) c->rlen = 0;
        return rc;
    }
    if (rest) {
        if (data == c->rbuf) {
            memmove(c->rbuf, data + at, rest);
        } else {
            uint8_t *buf = PyMem_Realloc(c->rbuf, rest);
            if (!buf) { PyErr_NoMemory(); return -1; }
            memcpy(buf, data + at, rest);
            c->rbuf = buf;
        }
    }
    c->rlen = rest;
    return 0;
}

static int stop_reading(Engine *e, PyObject *out, conn_t *c, Py_ssize_t tag, int kind, PyObject *value) {
    c->reading = 0;
    rewatch(e, c, tag);
    if (emit_partial(out, c, tag) < 0) { Py_XDECREF(value); return -1; }
    return emit(out, tag, kind, value);
}

static int on_readable(Engine *e, PyObject *out, conn_t *c, Py_ssize_t tag) {
    ssize_t n = recv(c->fd, e->readbuf, READ_SIZE, 0);
    if (n > 0) {
        if (c->bytes_read + (uint64_t)n > c->read_cap)
            return stop_reading(e, out, c, tag, K_CAP, PyLong_FromUnsignedLongLong(c->read_cap));
        c->bytes_read += (uint64_t)n;
        return frame(e, out, c, tag, e->readbuf, (size_t)n);
    }
    if (n == 0) return stop_reading(e, out, c, tag, K_EOF, NULL);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    return stop_reading(e, out, c, tag, K_ERROR, PyLong_FromLong(errno));
}

static void flush(Engine *e, conn_t *c, Py_ssize_t tag) {
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) { c->woff += (size_t)n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        c->woff = c->wlen;  /* the peer is gone: its reset or close reaches Python through the read side */
    }
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    if (c->state == S_CLOSING && c->wlen == 0) { retire(e, c, tag); return; }
    rewatch(e, c, tag);
}

static int on_writable(Engine *e, PyObject *out, conn_t *c, Py_ssize_t tag) {
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            c->state = S_OPEN;
            c->reading = 0;
            set_deadline(e, c, 0);
            watch(e, c, tag, 0);
            return emit(out, tag, K_ERROR, PyLong_FromLong(err));
        }
        c->state = S_OPEN;
        c->reading = 1;
        set_deadline(e, c, 0);
        rewatch(e, c, tag);
        return emit(out, tag, K_CONNECTED, NULL);
    }
    flush(e, c, tag);
    return 0;
}

/* ------------------------------------------------------------------ methods */

static PyObject *Engine_fileno(Engine *e, PyObject *Py_UNUSED(ignored)) { return PyLong_FromLong(e->epfd); }

static PyObject *Engine_connect(Engine *e, PyObject *args) {
    const char *ip;
    int port;
    double deadline;
    unsigned long long read_cap;
    if (!PyArg_ParseTuple(args, "sidK", &ip, &port, &deadline, &read_cap)) return NULL;
    /* The event Python's own sockets raise, so audit hooks (the tests' loopback guard) see these
       connects too; a hook that raises stops this one before any socket exists. */
    if (PySys_Audit("socket.connect", "O(si)", (PyObject *)e, ip, port) < 0) return NULL;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    memset(&addr, 0, sizeof addr);
    if (port < 1 || port > 65535) return PyErr_Format(PyExc_ValueError, "port out of range: %d", port);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        addrlen = sizeof *v4;
    } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        addrlen = sizeof *v6;
    } else {
        return PyErr_Format(PyExc_ValueError, "not an IP address: %s", ip);
    }
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return PyErr_SetFromErrno(PyExc_OSError);
    int one = 1;  /* no Nagle: every exchange is one small write waiting for an answer */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_ssize_t tag = new_tag(e);
    if (tag < 0) { close(fd); return PyErr_NoMemory(); }
    conn_t *c = &e->conns[tag];
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->heap_at = -1;
    c->state = S_CONNECTING;  /* even when connect() finished at once: EPOLLOUT reports it */
    c->read_cap = read_cap;
    e->active++;
    rewatch(e, c, tag);
    set_deadline(e, c, deadline);
    arm_timer(e);
    return PyLong_FromSsize_t(tag);
}

static PyObject *Engine_send(Engine *e, PyObject *args) {
    PyObject *tag_obj;
    Py_buffer data;
    double deadline;
    if (!PyArg_ParseTuple(args, "Oy*d", &tag_obj, &data, &deadline)) return NULL;
    Py_ssize_t tag;
    conn_t *c = lookup(e, tag_obj, &tag);
    if (!c || c->state != S_OPEN) {
        PyBuffer_Release(&data);
        if (c) PyErr_Format(PyExc_ValueError, "connection %zd is not open", tag);
        return NULL;
    }
    if (data.len) {
        size_t len = (size_t)data.len;
        if (c->wlen == 0) {
            ssize_t n = send(c->fd, data.buf, len, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) n = (ssize_t)len;  /* peer gone */
            if (n < 0) n = 0;
            if ((size_t)n < len) {
                c->wbuf = PyMem_Malloc(len - (size_t)n);
                if (!c->wbuf) { PyBuffer_Release(&data); return PyErr_NoMemory(); }
                memcpy(c->wbuf, (uint8_t *)data.buf + n, len - (size_t)n);
                c->woff = 0;
                c->wlen = len - (size_t)n;
            }
        } else {
            uint8_t *buf = PyMem_Realloc(c->wbuf, c->wlen + len);
            if (!buf) { PyBuffer_Release(&data); return PyErr_NoMemory(); }
            memcpy(buf + c->wlen, data.buf, len);
            c->wbuf = buf;
            c->wlen += len;
        }
        rewatch(e, c, tag);
    }
    PyBuffer_Release(&data);
    set_deadline(e, c, deadline);
    arm_timer(e);
    Py_RETURN_NONE;
}

static PyObject *Engine_close(Engine *e, PyObject *tag_obj) {
    Py_ssize_t tag;
    conn_t *c = lookup(e, tag_obj, &tag);
    if (!c) return NULL;
    if (c->state == S_CLOSING) Py_RETURN_NONE;
    if (c->state == S_OPEN && c->wlen > c->woff) {
        /* what was sent must still leave; the deadline already set bounds the wait */
        c->state = S_CLOSING;
        c->reading = 0;
        rewatch(e, c, tag);
    } else {
        retire(e, c, tag);
    }
    arm_timer(e);
    Py_RETURN_NONE;
}

static PyObject *Engine_abort(Engine *e, PyObject *tag_obj) {
    Py_ssize_t tag;
    conn_t *c = lookup(e, tag_obj, &tag);
    if (!c) return NULL;
    retire(e, c, tag);
    arm_timer(e);
    Py_RETURN_NONE;
}

static PyObject *Engine_poll(Engine *e, PyObject *Py_UNUSED(ignored)) {
    /* the tags retired before this poll may be reused from now on */
    for (Py_ssize_t i = 0; i < e->nretired; i++) {
        e->conns[e->retired[i]].state = S_FREE;
        e->free_tags[e->nfree++] = e->retired[i];
    }
    e->nretired = 0;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(e->epfd, evs, MAX_EVENTS, 0);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == TIMER_TAG) {
            uint64_t expirations;
            if (read(e->timerfd, &expirations, sizeof expirations) < 0) { /* nothing to read: fine */ }
            e->armed = 0;
            continue;
        }
        Py_ssize_t tag = (Py_ssize_t)evs[i].data.u64;
        conn_t *c = &e->conns[tag];
        uint32_t what = evs[i].events;
        if (c->state == S_RETIRED || c->state == S_FREE) continue;
        int rc = 0;
        if (c->state == S_CONNECTING) {
            if (what & (EPOLLOUT | EPOLLERR | EPOLLHUP)) rc = on_writable(e, out, c, tag);
        } else {
            if ((what & EPOLLOUT) && c->wlen > c->woff) flush(e, c, tag);
            if (c->state == S_OPEN && c->reading && (what & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                rc = on_readable(e, out, c, tag);
        }
        if (rc < 0) { Py_DECREF(out); return NULL; }
    }
    double now = now_monotonic();
    while (e->nheap && e->heap[0]->deadline <= now) {
        conn_t *c = e->heap[0];
        Py_ssize_t tag = c - e->conns;
        set_deadline(e, c, 0);
        if (c->state == S_CLOSING) { retire(e, c, tag); continue; }  /* a peer that stopped reading */
        int rc = emit_partial(out, c, tag);
        if (rc == 0) rc = emit(out, tag, K_TIMEOUT, NULL);
        if (rc < 0) { Py_DECREF(out); return NULL; }
    }
    arm_timer(e);
    return out;
}

static PyObject *Engine_shutdown(Engine *e, PyObject *Py_UNUSED(ignored)) {
    for (Py_ssize_t t = 0; t < e->nconns; t++) {
        conn_t *c = &e->conns[t];
        if (c->state != S_FREE && c->state != S_RETIRED) retire(e, c, t);
    }
    if (e->epfd >= 0) close(e->epfd);
    if (e->timerfd >= 0) close(e->timerfd);
    e->epfd = e->timerfd = -1;
    Py_RETURN_NONE;
}

static PyObject *Engine_get_active(Engine *e, void *Py_UNUSED(closure)) { return PyLong_FromSsize_t(e->active); }

static int Engine_init(Engine *e, PyObject *args, PyObject *kwds) {
    static char *names[] = {"frame_max", NULL};
    unsigned int frame_max = 65536 + HEADER;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|I", names, &frame_max)) return -1;
    if (frame_max < HEADER + 1) { PyErr_SetString(PyExc_ValueError, "frame_max too small"); return -1; }
    e->frame_max = frame_max;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    e->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (e->timerfd < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->timerfd, &ev) < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    return 0;
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Engine *e = (Engine *)type->tp_alloc(type, 0);
    if (e) e->epfd = e->timerfd = -1;
    return (PyObject *)e;
}

static void Engine_dealloc(Engine *e) {
    PyObject *r = Engine_shutdown(e, NULL);
    Py_XDECREF(r);
    PyMem_Free(e->conns);
    PyMem_Free(e->heap);
    PyMem_Free(e->free_tags);
    PyMem_Free(e->retired);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyMethodDef Engine_methods[] = {
    {"fileno", (PyCFunction)Engine_fileno, METH_NOARGS, "The epoll descriptor: readable when poll() has something."},
    {"connect", (PyCFunction)Engine_connect, METH_VARARGS,
     "connect(ip, port, deadline, read_cap) -> tag. Starts a non-blocking connect; raises OSError when it fails at once."},
    {"send", (PyCFunction)Engine_send, METH_VARARGS,
     "send(tag, data, deadline): write data (may be empty) and wait for the peer until deadline (0: none)."},
    {"close", (PyCFunction)Engine_close, METH_O, "close(tag): close once the written bytes left."},
    {"abort", (PyCFunction)Engine_abort, METH_O, "abort(tag): close now."},
    {"poll", (PyCFunction)Engine_poll, METH_NOARGS, "poll() -> [(tag, kind, value)], without waiting."},
    {"shutdown", (PyCFunction)Engine_shutdown, METH_NOARGS, "Close every connection and the engine."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"active", (getter)Engine_get_active, NULL, "connections not yet closed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pacswatch.net._pduio.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TCP connections on one epoll set, their input cut into DICOM PDUs (see the module docstring).",
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pacswatch.net._pduio",
    "Many TCP connections on one epoll set, their input cut into DICOM PDUs; all decisions stay in Python.",
    -1, NULL,
};

PyMODINIT_FUNC PyInit__pduio(void) {
    if (PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Engine", (PyObject *)&EngineType) < 0) { Py_DECREF(m); return NULL; }
    const struct { const char *name; int value; } kinds[] = {
        {"CONNECTED", K_CONNECTED}, {"PDU", K_PDU}, {"DATA", K_DATA}, {"EOF", K_EOF},
        {"ERROR", K_ERROR}, {"TIMEOUT", K_TIMEOUT}, {"CAP", K_CAP},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (PyModule_AddIntConstant(m, kinds[i].name, kinds[i].value) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
