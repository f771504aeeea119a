/*
 * responder.c: a cheap DICOM acceptor for benchmarks, on many loopback endpoints.
 *
 * The same wire behaviour as pacswatch's Python fast responder (src/pacswatch/lab/fast.py and
 * lab/acceptor.py): every association is accepted (each context with Implicit VR Little
 * Endian, except a `2.25.*` abstract syntax, a scanner's promiscuity control), C-ECHO and C-FIND
 * succeed (zero pending responses), C-CANCEL gets no answer, A-RELEASE-RQ gets A-RELEASE-RP.
 * Data sets are dropped unread. Unlike the Python acceptor, any other DIMSE request gets a
 * success response too (request | 0x8000, status 0x0000).
 *
 *   responder [--threads T] [--backlog N] [--coalesce-us U]  < endpoints
 *
 * stdin: lines `IP PORT [PROFILE DELAY_MS STUDIES PATIENTS]` up to an empty line, a line `END`
 * or EOF; every IP must be in 127.0.0.0/8 (anything else: exit 2 before any socket exists).
 * Without the optional fields an endpoint behaves as described above (profile `accept`, no
 * delay). PROFILE names a row of PROFILES below (products that answer differently, rejections,
 * silence, hostile peers; bench/internet_mix.py draws a mix of them); DELAY_MS (0-1000) holds
 * every reply of that endpoint back that long, like a round trip to a distant host; STUDIES and
 * PATIENTS are how many matches a universal C-FIND of that level gets (a query naming a study or
 * patient matches nothing). One listening socket per
 * endpoint, shared round robin among T threads, each with its own epoll. After binding every
 * endpoint it prints `READY <count>`. It stops (exit 0) when stdin reaches EOF: the parent
 * closed the pipe or died, so no orphans.
 *
 * --coalesce-us U (default 0): after each batch of events, sleep U microseconds before the next
 * epoll_wait, so that one wake-up serves many connections. Against a scanner much slower than
 * this responder, most of the responder's CPU is going to sleep and waking up once per event
 * (the TCP work itself is cheaper); U = 500-1000 cuts that by a third or more, at the price of
 * up to U of extra latency per exchange (the bytes on the wire are the same).
 *
 * Build: gcc -O2 -Wall -Wextra -std=c11 -D_GNU_SOURCE -pthread -o responder responder.c
 * Linux only (epoll, eventfd, accept4). Loopback only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nofile.h"

/* ---- limits and protocol constants ---------------------------------------------------- */

#define PDATA_CAP (256u * 1024u)      /* largest P-DATA-TF body we take */
#define ASSOC_CAP (64u * 1024u)       /* largest A-ASSOCIATE-RQ body */
#define COMMAND_CAP (64u * 1024u)     /* largest reassembled command set */
#define OUT_CAP (4u * 1024u * 1024u)  /* unsent bytes for a peer that does not read: then close */
#define MAX_ITEMS 512                 /* items per A-ASSOCIATE level, as pacswatch's codec */
#define UID_MAX 256                   /* an AffectedSOPClassUID longer than this is refused */
#define READ_CHUNK 65536
#define IDLE_MS 30000                 /* no bytes for this long: close */
#define ARTIM_MS 5000                 /* after A-RELEASE-RP (or A-ABORT) wait this long for the close */
#define SWEEP_MS 1000
#define MAX_EVENTS 256
#define MAX_DELAY_MS 1000             /* per-endpoint reply delay: 0..this */
#define MAX_MATCHES 10000             /* C-FIND matches per level, per endpoint */

#define OUR_MAX_PDU 16384u
static const char APPLICATION_CONTEXT[] = "1.2.840.10008.3.1.1.1";
static const char IMPLICIT_VR_LE[] = "1.2.840.10008.1.2";
/* A made-up UUID-derived UID (PS3.5 B.2) for this responder's implementation. */
static const char IMPLEMENTATION_UID[] = "2.25.81523777265200700493325709223991394369";
static const char IMPLEMENTATION_VERSION[] = "PW_C_RESP";

enum { PDU_ASSOCIATE_RQ = 1, PDU_ASSOCIATE_AC, PDU_ASSOCIATE_RJ, PDU_DATA_TF, PDU_RELEASE_RQ,
       PDU_RELEASE_RP, PDU_ABORT };

/* A-ABORT reasons when the source is the service provider (2), PS3.8 9.3.8 */
enum { R_NOT_SPECIFIED = 0, R_UNRECOGNIZED_PDU = 1, R_UNEXPECTED_PDU = 2,
       R_UNEXPECTED_PARAMETER = 5, R_INVALID_PARAMETER = 6 };

enum { RESULT_ACCEPT = 0, RESULT_ABSTRACT_NOT_SUPPORTED = 3, RESULT_TRANSFER_NOT_SUPPORTED = 4 };

#define NO_DATA_SET 0x0101
#define C_CANCEL_RQ 0x0FFF
#define C_FIND_RQ 0x0020
#define STATUS_PENDING 0xFF00

/* ---- behaviour profiles ---------------------------------------------------------------------- */

/* What an endpoint does with an A-ASSOCIATE-RQ. */
enum { A_ACCEPT, A_REJECT, A_SILENT, A_GARBAGE, A_ABORT, A_DRIP };

/* Kinds of abstract syntax a profile accepts (a bitmask). */
enum { CL_VERIFY = 1, CL_FIND = 2, CL_MOVE = 4, CL_GET = 8, CL_WORKLIST = 16, CL_STORAGE = 32,
       CL_OTHER = 64, CL_CONTROL = 128 };
#define CL_ALL_BUT_CONTROL (CL_VERIFY | CL_FIND | CL_MOVE | CL_GET | CL_WORKLIST | CL_STORAGE | CL_OTHER)

/* Products as their associations look on the wire. The implementation class UIDs and version
 * names follow each product's own scheme (the prefixes pacswatch's fingerprint table knows);
 * the accepted classes follow each product's usual default configuration. */
struct profile {
    const char *name;
    int action;
    unsigned classes;        /* A_ACCEPT, A_DRIP: which abstract syntaxes are accepted */
    const char *impl_uid, *impl_version;
    uint32_t max_pdu;
    const char *called_ae;   /* A_ACCEPT: only this called AE title is accepted (NULL: any) */
    uint8_t rj_result, rj_source, rj_reason; /* A_REJECT, and a wrong called AE: PS3.8 9.3.4 */
};

static const struct profile PROFILES[] = {
    {"accept", A_ACCEPT, CL_ALL_BUT_CONTROL, IMPLEMENTATION_UID, IMPLEMENTATION_VERSION, OUR_MAX_PDU, NULL, 0, 0, 0},
    /* Orthanc (DCMTK inside): Q/R and storage, no worklist by default */
    {"orthanc", A_ACCEPT, CL_VERIFY | CL_FIND | CL_MOVE | CL_GET | CL_STORAGE,
     "1.2.276.0.7230010.3.0.3.6.9", "OFFIS_DCMTK_369", 16384, NULL, 0, 0, 0},
    /* DCMTK storescp: verification and storage only */
    {"dcmtk-storescp", A_ACCEPT, CL_VERIFY | CL_STORAGE, "1.2.276.0.7230010.3.0.3.6.8", "OFFIS_DCMTK_368",
     16384, NULL, 0, 0, 0},
    /* dcm4chee-arc with its default AE title: everything, called AE checked */
    {"dcm4chee", A_ACCEPT, CL_ALL_BUT_CONTROL, "1.2.40.0.13.1.3", "dcm4che-5.31.0", 16384, "DCM4CHEE", 1, 1, 7},
    /* a pynetdicom echoscp */
    {"pynetdicom-echo", A_ACCEPT, CL_VERIFY, "1.2.826.0.1.3680043.9.3811.2.0.2", "PYNETDICOM_202", 16382,
     NULL, 0, 0, 0},
    /* Conquest, accepting any abstract syntax (promiscuous) */
    {"conquest", A_ACCEPT, CL_ALL_BUT_CONTROL | CL_CONTROL, "1.2.826.0.1.3680043.2.135.1066.101", "1.5.0c",
     32768, NULL, 0, 0, 0},
    {"reject-called", A_REJECT, 0, NULL, NULL, 0, NULL, 1, 1, 7},   /* called AE not recognized */
    {"reject-calling", A_REJECT, 0, NULL, NULL, 0, NULL, 1, 1, 3},  /* calling AE not recognized */
    {"reject-busy", A_REJECT, 0, NULL, NULL, 0, NULL, 2, 3, 2},     /* transient, local limit exceeded */
    {"silent", A_SILENT, 0, NULL, NULL, 0, NULL, 0, 0, 0},          /* accepts TCP, never answers */
    {"garbage", A_GARBAGE, 0, NULL, NULL, 0, NULL, 0, 0, 0},        /* answers with bytes that are no PDU */
    {"abort", A_ABORT, 0, NULL, NULL, 0, NULL, 0, 0, 0},            /* answers the request with A-ABORT */
    /* after the delay an A-ASSOCIATE-AC's header, then its body one byte per delay */
    {"drip", A_DRIP, CL_ALL_BUT_CONTROL, IMPLEMENTATION_UID, IMPLEMENTATION_VERSION, OUR_MAX_PDU, NULL, 0, 0, 0},
};
#define N_PROFILES (sizeof PROFILES / sizeof PROFILES[0])

/* ---- small helpers ------------------------------------------------------------------------ */

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) {
    return p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "responder: out of memory\n");
        exit(1);
    }
    return q;
}

/* A growable byte buffer. */
struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t extra) {
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}
static void buf_put(struct buf *b, const void *data, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}
static void buf_u8(struct buf *b, uint8_t v) { buf_put(b, &v, 1); }
static void buf_be16(struct buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    buf_put(b, x, 2);
}
static void buf_be32(struct buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_put(b, x, 4);
}
static void buf_le16(struct buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    buf_put(b, x, 2);
}
static void buf_le32(struct buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buf_put(b, x, 4);
}
static void put_be32_at(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static void put_be16_at(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void buf_free(struct buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
/* An item (or sub-item) header: type, reserved, 2-byte length; returns where the length goes. */
static size_t buf_item(struct buf *b, uint8_t type, const void *value, size_t n) {
    buf_u8(b, type);
    buf_u8(b, 0);
    size_t at = b->len;
    buf_be16(b, (uint16_t)n);
    if (value != NULL)
        buf_put(b, value, n);
    return at;
}

/* ---- objects in the epoll sets: each starts with its kind ------------------------------- */

enum { K_LISTENER = 1, K_CONN, K_STDIN, K_STOP };

/* How one endpoint behaves: a profile, a reply delay, its C-FIND matches. */
struct behaviour {
    const struct profile *profile;
    int delay_ms;
    uint32_t studies, patients;
};

struct listener {
    int kind;
    int fd;
    struct behaviour how;
};

enum { ST_IDLE, ST_OPEN, ST_RELEASED, ST_CLOSING };

/* The parts of a DIMSE request we answer from. */
struct command {
    uint16_t field, message_id, data_set_type;
    int has_message_id;
    size_t uid_len; /* 0: no AffectedSOPClassUID */
    uint8_t uid[UID_MAX];
};

struct worker;

struct conn {
    int kind;
    int fd;
    int state;
    int want_out;         /* EPOLLOUT is in the interest set */
    int64_t deadline;     /* close when the sweep finds now past this */
    struct conn *prev, *next;
    struct buf in;        /* a partial PDU carried over to the next read */
    struct buf out;       /* bytes the kernel did not take yet */
    struct buf cmd;       /* command fragments being reassembled */
    uint32_t peer_max;    /* the requestor's maximum PDU length (0: no limit) */
    int pending;          /* a request whose data set is still arriving */
    uint8_t pending_ctx;
    struct command pending_cmd;
    uint8_t accepted[32]; /* bitmap of accepted presentation context ids */
    struct behaviour how; /* the endpoint's, copied at accept */
    struct buf ds;        /* the data set of a pending C-FIND (for its unique keys) */
    struct buf held;      /* replies waiting for their delay */
    size_t held_sent;     /* A_DRIP: bytes of `held` already let out */
    int64_t due;          /* when `held` goes out (while queued) */
    struct conn *qprev, *qnext; /* in its worker's queue for how.delay_ms, while `held` waits */
};

/* Replies wait in one FIFO queue per delay value: every connection of a queue waits the same
 * time, so the queue is ordered by due time as it is appended to, and the earliest due time of
 * all is the first of one of the queues. Cheaper than a heap, and no sleep anywhere. */
struct delay_queue {
    struct conn *first, *last;
};

struct worker {
    int index;
    int epfd;
    int watch_stdin;
    struct listener *listeners;
    size_t n_listeners;
    struct conn head;     /* list sentinel: every open connection of this worker */
    int64_t now;
    int stop;
    int told_nofile;
    uint8_t *rbuf;        /* READ_CHUNK bytes */
    struct buf reply;     /* what one read's PDUs answer, sent with one send() */
    struct delay_queue *queues; /* MAX_DELAY_MS + 1 of them, by delay */
    int min_delay, max_delay;   /* the range of delays in use (no queue outside it is scanned) */
    pthread_t thread;
};

static int stop_fd = -1;
static struct timespec coalesce; /* --coalesce-us: pause after each batch of events */
static struct { int kind; } stdin_tag = {K_STDIN}, stop_tag = {K_STOP};

/* ---- connections ---------------------------------------------------------------------------- */

static int queued(const struct worker *w, const struct conn *c) {
    return c->qprev != NULL || w->queues[c->how.delay_ms].first == c;
}

static void unqueue(struct worker *w, struct conn *c) {
    struct delay_queue *q = &w->queues[c->how.delay_ms];
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        q->first = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        q->last = c->qprev;
    c->qprev = c->qnext = NULL;
}

static void enqueue(struct worker *w, struct conn *c) {
    struct delay_queue *q = &w->queues[c->how.delay_ms];
    c->due = w->now + c->how.delay_ms;
    c->qprev = q->last;
    c->qnext = NULL;
    if (q->last)
        q->last->qnext = c;
    else
        q->first = c;
    q->last = c;
}

static void conn_close(struct worker *w, struct conn *c) {
    if (queued(w, c))
        unqueue(w, c);
    close(c->fd); /* also removes it from the epoll set */
    c->prev->next = c->next;
    c->next->prev = c->prev;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->cmd);
    buf_free(&c->ds);
    buf_free(&c->held);
    free(c);
}

static void conn_interest(struct worker *w, struct conn *c, int want_out) {
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

/* Send what the kernel takes now, keep the rest for EPOLLOUT. Returns -1 when the peer is gone
 * or hoards our output (close then). */
static int conn_write(struct worker *w, struct conn *c, const uint8_t *p, size_t n) {
    if (c->out.len == 0) {
        while (n > 0) {
            ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                return -1;
            }
            p += k;
            n -= (size_t)k;
        }
    }
    if (n > 0) {
        if (c->out.len + n > OUT_CAP)
            return -1;
        buf_put(&c->out, p, n);
        conn_interest(w, c, 1);
    }
    return 0;
}

/* EPOLLOUT: flush. Returns -1 to close. */
static int conn_flush(struct worker *w, struct conn *c) {
    size_t done = 0;
    while (done < c->out.len) {
        ssize_t k = send(c->fd, c->out.p + done, c->out.len - done, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        done += (size_t)k;
    }
    if (done > 0) {
        memmove(c->out.p, c->out.p + done, c->out.len - done);
        c->out.len -= done;
    }
    if (c->out.len == 0) {
        conn_interest(w, c, 0);
        if (c->state == ST_CLOSING)
            return -1; /* the A-ABORT (or last answer) is out: close */
    }
    return 0;
}

static void abort_association(struct worker *w, struct conn *c, uint8_t source, uint8_t reason) {
    static const uint8_t head[] = {PDU_ABORT, 0, 0, 0, 0, 4, 0, 0};
    buf_put(&w->reply, head, sizeof head);
    buf_u8(&w->reply, source);
    buf_u8(&w->reply, reason);
    c->state = ST_CLOSING;
    c->deadline = w->now + ARTIM_MS;
}

static int accepted(const struct conn *c, uint8_t id) { return (c->accepted[id >> 3] >> (id & 7)) & 1; }

/* ---- A-ASSOCIATE-RQ -> A-ASSOCIATE-AC ----------------------------------------------------- */

/* A UID from an item, without trailing NUL or space padding some peers add. */
static size_t uid_length(const uint8_t *p, size_t n) {
    while (n > 0 && (p[n - 1] == 0 || p[n - 1] == ' '))
        n--;
    return n;
}

/* Walk items in [p, p + n): calls back for none, fills type/value/length one at a time. */
struct items {
    const uint8_t *p;
    size_t pos, end;
    int count;
};
/* 1: an item; 0: the end; -1: malformed (truncated header, overrun, too many). */
static int next_item(struct items *it, uint8_t *type, const uint8_t **value, size_t *length) {
    if (it->pos >= it->end)
        return 0;
    if (++it->count > MAX_ITEMS || it->end - it->pos < 4)
        return -1;
    *type = it->p[it->pos];
    *length = be16(it->p + it->pos + 2);
    *value = it->p + it->pos + 4;
    if (*length > it->end - it->pos - 4)
        return -1;
    it->pos += 4 + *length;
    return 1;
}

static int uid_equals(const uint8_t *p, size_t n, const char *uid) {
    size_t k = strlen(uid);
    return n == k && memcmp(p, uid, k) == 0;
}

static int uid_starts(const uint8_t *p, size_t n, const char *prefix) {
    size_t k = strlen(prefix);
    return n > k && memcmp(p, prefix, k) == 0;
}

/* Which kind of abstract syntax a UID is (PS3.4 annexes: Q/R classes end in .1 FIND, .2 MOVE,
 * .3 GET). */
static unsigned classify(const uint8_t *p, size_t n) {
    static const char QR[] = "1.2.840.10008.5.1.4.1.2.";
    if (n >= 5 && memcmp(p, "2.25.", 5) == 0)
        return CL_CONTROL;
    if (uid_equals(p, n, "1.2.840.10008.1.1"))
        return CL_VERIFY;
    if (uid_equals(p, n, "1.2.840.10008.5.1.4.31"))
        return CL_WORKLIST;
    if (uid_starts(p, n, "1.2.840.10008.5.1.4.1.1."))
        return CL_STORAGE;
    if (uid_starts(p, n, QR) && n >= 2 && p[n - 2] == '.') {
        switch (p[n - 1]) {
        case '1': return CL_FIND;
        case '2': return CL_MOVE;
        case '3': return CL_GET;
        default: break;
        }
    }
    return CL_OTHER;
}

static void reject_association(struct worker *w, struct conn *c) {
    const struct profile *p = c->how.profile;
    const uint8_t rj[] = {PDU_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, p->rj_result, p->rj_source, p->rj_reason};
    buf_put(&w->reply, rj, sizeof rj);
    c->state = ST_CLOSING; /* the acceptor closes after an A-ASSOCIATE-RJ */
    c->deadline = w->now + ARTIM_MS;
}

/* A hostile answer: 64 bytes that start no PDU (type 0xEE), then the close. */
static void send_garbage(struct worker *w, struct conn *c) {
    uint8_t junk[64];
    uint32_t x = 0x9E3779B9u;
    for (size_t i = 0; i < sizeof junk; i++) { /* xorshift32: the same bytes every time */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk[i] = (uint8_t)x;
    }
    junk[0] = 0xEE;
    buf_put(&w->reply, junk, sizeof junk);
    c->state = ST_CLOSING;
    c->deadline = w->now + ARTIM_MS;
}

/* The called AE title (PS3.8 9.3.2: 16 bytes, space padded) is `want`? */
static int called_ae_is(const uint8_t *body, const char *want) {
    size_t n = 16;
    const uint8_t *p = body + 4;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == 0))
        n--;
    while (n > 0 && *p == ' ') {
        p++;
        n--;
    }
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

/* Returns 0, or -1 when the request is malformed (abort, reason 6). */
static int answer_associate(struct worker *w, struct conn *c, const uint8_t *body, size_t n) {
    const struct profile *prof = c->how.profile;
    if (prof->called_ae != NULL && !called_ae_is(body, prof->called_ae)) {
        reject_association(w, c);
        return 0;
    }
    struct buf *r = &w->reply;
    size_t start = r->len;
    /* Header and fixed fields: protocol version echoed, reserved, the called and calling AE
     * titles copied as received (PS3.8 9.3.3.2), 32 reserved bytes. */
    static const uint8_t zeros[32];
    buf_u8(r, PDU_ASSOCIATE_AC);
    buf_u8(r, 0);
    buf_be32(r, 0); /* length, patched below */
    buf_put(r, body, 2);
    buf_be16(r, 0);
    buf_put(r, body + 4, 32);
    buf_put(r, zeros, 32);
    buf_item(r, 0x10, APPLICATION_CONTEXT, sizeof APPLICATION_CONTEXT - 1);

    int have_application_context = 0;
    memset(c->accepted, 0, sizeof c->accepted);
    struct items top = {body, 68, n, 0};
    uint8_t type;
    const uint8_t *value;
    size_t length;
    int got;
    while ((got = next_item(&top, &type, &value, &length)) == 1) {
        if (type == 0x10) {
            have_application_context = 1;
        } else if (type == 0x20) {
            if (length < 4)
                goto bad;
            uint8_t id = value[0];
            const uint8_t *abstract = NULL, *first_ts = NULL;
            size_t abstract_len = 0, first_ts_len = 0;
            int transfers = 0, implicit = 0;
            struct items sub = {value, 4, length, 0};
            uint8_t st;
            const uint8_t *sv;
            size_t sl;
            int sgot;
            while ((sgot = next_item(&sub, &st, &sv, &sl)) == 1) {
                if (st == 0x30) {
                    abstract = sv;
                    abstract_len = sl;
                } else if (st == 0x40) {
                    size_t ul = uid_length(sv, sl);
                    if (transfers++ == 0) {
                        first_ts = sv;
                        first_ts_len = ul;
                    }
                    if (ul == sizeof IMPLICIT_VR_LE - 1 && memcmp(sv, IMPLICIT_VR_LE, ul) == 0)
                        implicit = 1;
                }
            }
            if (sgot < 0 || abstract == NULL || transfers == 0)
                goto bad;
            uint8_t result;
            const void *ts = IMPLICIT_VR_LE;
            size_t ts_len = sizeof IMPLICIT_VR_LE - 1;
            if (!(classify(abstract, uid_length(abstract, abstract_len)) & prof->classes)) {
                result = RESULT_ABSTRACT_NOT_SUPPORTED; /* the proposed first syntax, PS3.8 */
                ts = first_ts;
                ts_len = first_ts_len;
            } else if (!implicit) {
                result = RESULT_TRANSFER_NOT_SUPPORTED;
                ts = first_ts;
                ts_len = first_ts_len;
            } else {
                result = RESULT_ACCEPT;
                c->accepted[id >> 3] |= (uint8_t)(1u << (id & 7));
            }
            uint8_t head[4] = {id, 0, result, 0};
            size_t at = buf_item(r, 0x21, NULL, 0);
            buf_put(r, head, 4);
            buf_item(r, 0x40, ts, ts_len);
            put_be16_at(r->p + at, (uint16_t)(r->len - at - 2));
        } else if (type == 0x50) {
            struct items sub = {value, 0, length, 0};
            uint8_t st;
            const uint8_t *sv;
            size_t sl;
            int sgot;
            while ((sgot = next_item(&sub, &st, &sv, &sl)) == 1) {
                if (st == 0x51) {
                    if (sl != 4)
                        goto bad;
                    c->peer_max = be32(sv);
                }
            }
            if (sgot < 0)
                goto bad;
        }
        /* other item types are skipped by their length (PS3.8 7.5) */
    }
    if (got < 0 || !have_application_context)
        goto bad;

    size_t at = buf_item(r, 0x50, NULL, 0);
    buf_u8(r, 0x51);
    buf_u8(r, 0);
    buf_be16(r, 4);
    buf_be32(r, prof->max_pdu);
    buf_item(r, 0x52, prof->impl_uid, strlen(prof->impl_uid));
    buf_item(r, 0x55, prof->impl_version, strlen(prof->impl_version));
    put_be16_at(r->p + at, (uint16_t)(r->len - at - 2));
    put_be32_at(r->p + start + 2, (uint32_t)(r->len - start - 6));
    c->state = ST_OPEN;
    return 0;
bad:
    r->len = start;
    memset(c->accepted, 0, sizeof c->accepted);
    return -1;
}

/* ---- P-DATA-TF: DIMSE ------------------------------------------------------------------------ */

/* Parse an Implicit VR LE command set. Returns -1 when malformed or without CommandField. */
static int parse_command(const uint8_t *p, size_t n, struct command *cmd) {
    int has_field = 0;
    cmd->data_set_type = NO_DATA_SET;
    cmd->has_message_id = 0;
    cmd->uid_len = 0;
    size_t pos = 0;
    while (pos < n) {
        if (n - pos < 8)
            return -1;
        uint16_t group = le16(p + pos), element = le16(p + pos + 2);
        uint32_t length = le32(p + pos + 4);
        pos += 8;
        if (group != 0 || length > n - pos)
            return -1;
        const uint8_t *v = p + pos;
        pos += length;
        switch (element) {
        case 0x0100: case 0x0110: case 0x0120: case 0x0700: case 0x0800: case 0x0900:
            if (length != 2)
                return -1;
            if (element == 0x0100) {
                cmd->field = le16(v);
                has_field = 1;
            } else if (element == 0x0110) {
                cmd->message_id = le16(v);
                cmd->has_message_id = 1;
            } else if (element == 0x0800) {
                cmd->data_set_type = le16(v);
            }
            break;
        case 0x0002: {
            size_t s = 0, e = length;
            while (s < e && (v[s] == 0 || v[s] == ' '))
                s++;
            while (e > s && (v[e - 1] == 0 || v[e - 1] == ' '))
                e--;
            if (e - s > UID_MAX - 1)
                return -1;
            memcpy(cmd->uid, v + s, e - s);
            cmd->uid_len = e - s;
            break;
        }
        default:
            break; /* everything else is skipped by its length */
        }
    }
    return has_field ? 0 : -1;
}

static void element_us(struct buf *b, uint16_t element, uint16_t value) {
    buf_le16(b, 0);
    buf_le16(b, element);
    buf_le32(b, 2);
    buf_le16(b, value);
}

/* `p` as P-DATA-TF PDU(s) on context `ctx`, fragmented to the peer's max; `command` marks a
 * command set (else a data set). */
static void put_message(struct worker *w, struct conn *c, uint8_t ctx, int command, const uint8_t *p, size_t n) {
    /* A PDV adds 6 bytes (length, context, header) inside the PDU's variable field. */
    size_t chunk = (c->peer_max >= 8) ? c->peer_max - 6 : n;
    struct buf *r = &w->reply;
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        int last = off + k >= n;
        buf_u8(r, PDU_DATA_TF);
        buf_u8(r, 0);
        buf_be32(r, (uint32_t)(k + 6));
        buf_be32(r, (uint32_t)(k + 2));
        buf_u8(r, ctx);
        buf_u8(r, (uint8_t)((command ? 0x01 : 0x00) | (last ? 0x02 : 0x00)));
        buf_put(r, p + off, k);
    }
}

/* The response command set to `rq` with `status`; `with_data_set`: a data set follows. */
static void put_response(struct worker *w, struct conn *c, uint8_t ctx, const struct command *rq, uint16_t status,
                         int with_data_set) {
    uint8_t set[UID_MAX + 96];
    struct buf b = {set, 0, sizeof set}; /* fits: never grows, never freed */
    size_t uid_padded = rq->uid_len + (rq->uid_len & 1);
    size_t group = (rq->uid_len ? 8 + uid_padded : 0) + 10 + (rq->has_message_id ? 10 : 0) + 10 + 10;
    buf_le16(&b, 0);
    buf_le16(&b, 0x0000);
    buf_le32(&b, 4);
    buf_le32(&b, (uint32_t)group);
    if (rq->uid_len) {
        buf_le16(&b, 0);
        buf_le16(&b, 0x0002);
        buf_le32(&b, (uint32_t)uid_padded);
        buf_put(&b, rq->uid, rq->uid_len);
        if (rq->uid_len & 1)
            buf_u8(&b, 0);
    }
    element_us(&b, 0x0100, (uint16_t)(rq->field | 0x8000));
    if (rq->has_message_id)
        element_us(&b, 0x0120, rq->message_id);
    element_us(&b, 0x0800, with_data_set ? 0x0000 : NO_DATA_SET);
    element_us(&b, 0x0900, status);
    put_message(w, c, ctx, 1, b.p, b.len);
}

/* Does the C-FIND identifier name a study or a patient (a non-empty StudyInstanceUID or
 * PatientID)? Then it matches nothing here; an empty key is a universal match. */
static int names_a_key(const uint8_t *p, size_t n) {
    size_t pos = 0;
    while (n - pos >= 8) {
        uint16_t group = le16(p + pos), element = le16(p + pos + 2);
        uint32_t length = le32(p + pos + 4);
        pos += 8;
        if (length > n - pos)
            return 0;
        if ((group == 0x0020 && element == 0x000D) || (group == 0x0010 && element == 0x0020)) {
            for (uint32_t i = 0; i < length; i++)
                if (p[pos + i] != ' ' && p[pos + i] != 0)
                    return 1;
        }
        pos += length;
    }
    return 0;
}

static void element_text(struct buf *b, uint16_t group, uint16_t element, const char *text, uint8_t pad) {
    size_t n = strlen(text);
    buf_le16(b, group);
    buf_le16(b, element);
    buf_le32(b, (uint32_t)(n + (n & 1)));
    buf_put(b, text, n);
    if (n & 1)
        buf_u8(b, pad);
}

/* A C-FIND's answers: one pending response with a made-up identifier (a 2.25 study UID or a
 * "PW<n>" patient ID: nothing about anyone) per match, then success. */
static void answer_find(struct worker *w, struct conn *c, uint8_t ctx, const struct command *rq) {
    static const char STUDY_ROOT[] = "1.2.840.10008.5.1.4.1.2.2.1", PATIENT_ROOT[] = "1.2.840.10008.5.1.4.1.2.1.1";
    uint32_t matches = 0;
    int study = uid_equals(rq->uid, rq->uid_len, STUDY_ROOT);
    if (!names_a_key(c->ds.p, c->ds.len)) {
        if (study)
            matches = c->how.studies;
        else if (uid_equals(rq->uid, rq->uid_len, PATIENT_ROOT))
            matches = c->how.patients;
    }
    for (uint32_t i = 0; i < matches; i++) {
        uint8_t space[96];
        struct buf b = {space, 0, sizeof space}; /* fits: never grows, never freed */
        char key[32];
        put_response(w, c, ctx, rq, STATUS_PENDING, 1);
        if (study) {
            element_text(&b, 0x0008, 0x0052, "STUDY", ' ');
            snprintf(key, sizeof key, "2.25.%u", i + 1);
            element_text(&b, 0x0020, 0x000D, key, 0);
        } else {
            element_text(&b, 0x0008, 0x0052, "PATIENT", ' ');
            snprintf(key, sizeof key, "PW%u", i + 1);
            element_text(&b, 0x0010, 0x0020, key, ' ');
        }
        put_message(w, c, ctx, 0, b.p, b.len);
    }
    put_response(w, c, ctx, rq, 0x0000, 0);
}

/* The response(s) to `rq` on context `ctx`. */
static void respond(struct worker *w, struct conn *c, uint8_t ctx, const struct command *rq) {
    if (rq->field == C_CANCEL_RQ)
        return; /* no response of its own (PS3.7 9.3.2.3) */
    if (rq->field == C_FIND_RQ)
        answer_find(w, c, ctx, rq);
    else
        put_response(w, c, ctx, rq, 0x0000, 0);
    c->ds.len = 0;
}

static void handle_pdata(struct worker *w, struct conn *c, const uint8_t *body, size_t n) {
    size_t pos = 0;
    while (pos < n && c->state == ST_OPEN) {
        if (n - pos < 4) {
            abort_association(w, c, 2, R_INVALID_PARAMETER);
            return;
        }
        uint32_t length = be32(body + pos);
        if (length < 2 || length > n - pos - 4) {
            abort_association(w, c, 2, R_INVALID_PARAMETER);
            return;
        }
        uint8_t ctx = body[pos + 4], header = body[pos + 5];
        const uint8_t *data = body + pos + 6;
        size_t dlen = length - 2;
        pos += 4 + length;
        if (!accepted(c, ctx)) {
            abort_association(w, c, 2, R_INVALID_PARAMETER);
            return;
        }
        if (header & 0x01) { /* command fragment */
            if (c->pending || c->cmd.len + dlen > COMMAND_CAP) {
                abort_association(w, c, 2, R_UNEXPECTED_PARAMETER);
                return;
            }
            if (!(header & 0x02)) {
                buf_put(&c->cmd, data, dlen);
                continue;
            }
            struct command cmd;
            int ok;
            if (c->cmd.len == 0) {
                ok = parse_command(data, dlen, &cmd);
            } else {
                buf_put(&c->cmd, data, dlen);
                ok = parse_command(c->cmd.p, c->cmd.len, &cmd);
                c->cmd.len = 0;
            }
            if (ok < 0) {
                abort_association(w, c, 2, R_INVALID_PARAMETER);
                return;
            }
            if (cmd.data_set_type != NO_DATA_SET) {
                c->pending = 1;
                c->pending_ctx = ctx;
                c->pending_cmd = cmd;
            } else {
                respond(w, c, ctx, &cmd);
            }
        } else { /* data set fragment: kept for a C-FIND (its keys), else dropped unread */
            if (!c->pending) {
                abort_association(w, c, 2, R_UNEXPECTED_PARAMETER);
                return;
            }
            if (c->pending_cmd.field == C_FIND_RQ) {
                if (c->ds.len + dlen > COMMAND_CAP) {
                    abort_association(w, c, 2, R_UNEXPECTED_PARAMETER);
                    return;
                }
                buf_put(&c->ds, data, dlen);
            }
            if (header & 0x02) {
                c->pending = 0;
                respond(w, c, c->pending_ctx, &c->pending_cmd);
            }
        }
    }
}

/* ---- PDU framing ------------------------------------------------------------------------------ */

static void handle_pdu(struct worker *w, struct conn *c, uint8_t type, const uint8_t *body, size_t n) {
    switch (type) {
    case PDU_ASSOCIATE_RQ:
        if (c->state != ST_IDLE)
            abort_association(w, c, 2, R_UNEXPECTED_PDU);
        else if (c->how.profile->action == A_REJECT)
            reject_association(w, c);
        else if (c->how.profile->action == A_ABORT)
            abort_association(w, c, 2, R_NOT_SPECIFIED);
        else if (answer_associate(w, c, body, n) < 0)
            abort_association(w, c, 2, R_INVALID_PARAMETER);
        break;
    case PDU_DATA_TF:
        if (c->state != ST_OPEN)
            abort_association(w, c, 2, R_UNEXPECTED_PDU);
        else
            handle_pdata(w, c, body, n);
        break;
    case PDU_RELEASE_RQ:
        if (c->state != ST_OPEN) {
            abort_association(w, c, 2, R_UNEXPECTED_PDU);
        } else {
            static const uint8_t rp[] = {PDU_RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0};
            buf_put(&w->reply, rp, sizeof rp);
            c->state = ST_RELEASED; /* the requestor closes; we wait ARTIM for it */
            c->deadline = w->now + ARTIM_MS;
        }
        break;
    case PDU_ABORT:
        c->state = ST_CLOSING; /* nothing to answer: close once our output is out */
        c->deadline = w->now + ARTIM_MS;
        break;
    default: /* AC, RJ or RP sent to an acceptor */
        abort_association(w, c, 2, R_UNEXPECTED_PDU);
        break;
    }
}

/* Consume every complete PDU in [data, data + n); returns how many bytes were used. Stops at
 * the first PDU that ends the association. A bad header is refused before its body arrives. */
static size_t handle_bytes(struct worker *w, struct conn *c, const uint8_t *data, size_t n) {
    size_t pos = 0;
    while (pos < n && (c->state == ST_IDLE || c->state == ST_OPEN)) {
        uint8_t type = data[pos];
        if (type < PDU_ASSOCIATE_RQ || type > PDU_ABORT) {
            abort_association(w, c, 2, R_UNRECOGNIZED_PDU);
            break;
        }
        if (n - pos < 6)
            break;
        uint32_t length = be32(data + pos + 2);
        int bad;
        switch (type) {
        case PDU_ASSOCIATE_RQ: case PDU_ASSOCIATE_AC:
            bad = length < 68 || length > ASSOC_CAP;
            break;
        case PDU_DATA_TF:
            bad = length < 6 || length > PDATA_CAP;
            break;
        default:
            bad = length != 4;
            break;
        }
        if (bad) {
            abort_association(w, c, 2, R_INVALID_PARAMETER);
            break;
        }
        if (n - pos - 6 < length)
            break;
        handle_pdu(w, c, type, data + pos + 6, length);
        pos += 6 + (size_t)length;
    }
    return pos;
}

/* Readable: one recv (level-triggered epoll calls again if more is waiting). */
static void conn_readable(struct worker *w, struct conn *c) {
    ssize_t got = recv(c->fd, w->rbuf, READ_CHUNK, 0);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(w, c);
        return;
    }
    if (got == 0 || c->state == ST_RELEASED) { /* EOF, or bytes after the release: done */
        conn_close(w, c);
        return;
    }
    if (c->state == ST_CLOSING)
        return; /* drained and dropped while our A-ABORT goes out */
    int action = c->how.profile->action;
    if (action == A_SILENT || (action == A_DRIP && c->state != ST_IDLE))
        return; /* read and dropped: this endpoint says nothing (more) */
    size_t n = (size_t)got;
    if (c->state == ST_IDLE || c->state == ST_OPEN)
        c->deadline = w->now + IDLE_MS;
    w->reply.len = 0;
    if (action == A_GARBAGE) {
        send_garbage(w, c);
    } else if (c->in.len == 0) {
        size_t used = handle_bytes(w, c, w->rbuf, n);
        if (used < n && (c->state == ST_IDLE || c->state == ST_OPEN))
            buf_put(&c->in, w->rbuf + used, n - used);
    } else {
        buf_put(&c->in, w->rbuf, n);
        size_t used = handle_bytes(w, c, c->in.p, c->in.len);
        memmove(c->in.p, c->in.p + used, c->in.len - used);
        c->in.len -= used;
    }
    if (c->state == ST_CLOSING || c->state == ST_RELEASED)
        c->in.len = 0;
    if (c->in.cap > READ_CHUNK && c->in.len == 0)
        buf_free(&c->in); /* a big PDU is done: give its room back */
    if (w->reply.len > 0 && c->how.delay_ms > 0) {
        /* Held back like the answer of a distant host; joins what is already waiting. */
        buf_put(&c->held, w->reply.p, w->reply.len);
        if (!queued(w, c))
            enqueue(w, c);
        return;
    }
    if (w->reply.len > 0 && conn_write(w, c, w->reply.p, w->reply.len) < 0) {
        conn_close(w, c);
        return;
    }
    if (c->state == ST_CLOSING && c->out.len == 0)
        conn_close(w, c);
}

/* A connection's delay is over: let its held replies out (A_DRIP: the first PDU header, then
 * one byte per delay). */
static void release_held(struct worker *w, struct conn *c) {
    size_t n = c->held.len - c->held_sent;
    if (c->how.profile->action == A_DRIP)
        n = c->held_sent == 0 ? (n < 6 ? n : 6) : 1;
    if (conn_write(w, c, c->held.p + c->held_sent, n) < 0) {
        conn_close(w, c);
        return;
    }
    c->held_sent += n;
    if (c->held_sent < c->held.len) {
        enqueue(w, c);
        return;
    }
    c->held.len = c->held_sent = 0;
    if (c->state == ST_CLOSING && c->out.len == 0)
        conn_close(w, c);
}

/* Let out every reply whose delay is over; returns ms until the next one is due (-1: none). */
static int run_delays(struct worker *w) {
    int wait = -1;
    for (int d = w->min_delay; d <= w->max_delay; d++) {
        struct delay_queue *q = &w->queues[d];
        while (q->first != NULL && q->first->due <= w->now) {
            struct conn *c = q->first;
            unqueue(w, c);
            release_held(w, c); /* may enqueue it again (drip), at the end: the loop stops there */
        }
        if (q->first != NULL && (wait < 0 || q->first->due - w->now < wait))
            wait = (int)(q->first->due - w->now);
    }
    return wait;
}

static void conn_event(struct worker *w, struct conn *c, uint32_t events) {
    if ((events & EPOLLOUT) && c->out.len > 0) {
        if (conn_flush(w, c) < 0) {
            conn_close(w, c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_readable(w, c);
}

/* One connection per readiness event: the listener is level-triggered, so a second waiting
 * connection reports again, and the common case (one connection per endpoint) costs no
 * accept4() that fails with EAGAIN. TCP_NODELAY comes from the listening socket (Linux copies
 * it to accepted sockets). */
static void accept_one(struct worker *w, struct listener *l) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            /* Out of descriptors: say so once, and pause instead of spinning on the listener
             * while the idle sweep frees some. */
            if (!w->told_nofile)
                fprintf(stderr, "responder: accept: %s\n", strerror(errno));
            w->told_nofile = 1;
            struct timespec pause = {0, 10 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        return; /* EAGAIN, ECONNABORTED, EINTR: nothing to do */
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->kind = K_CONN;
    c->fd = fd;
    c->how = l->how;
    c->state = ST_IDLE;
    c->deadline = w->now + IDLE_MS;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->next = w->head.next;
    c->prev = &w->head;
    w->head.next->prev = c;
    w->head.next = c;
}

static void sweep(struct worker *w) {
    struct conn *c = w->head.next;
    while (c != &w->head) {
        struct conn *next = c->next;
        if (w->now >= c->deadline)
            conn_close(w, c);
        c = next;
    }
}

static void request_stop(void) {
    uint64_t one = 1;
    ssize_t k = write(stop_fd, &one, sizeof one);
    (void)k;
}

static void *worker_run(void *arg) {
    struct worker *w = arg;
    struct epoll_event events[MAX_EVENTS];
    w->now = now_ms();
    int64_t next_sweep = w->now + SWEEP_MS;
    while (!w->stop) {
        int timeout = (int)(next_sweep - w->now);
        int due = run_delays(w);
        if (due >= 0 && due < timeout)
            timeout = due;
        if (timeout < 0)
            timeout = 0;
        int n = epoll_wait(w->epfd, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "responder: epoll_wait: %s\n", strerror(errno));
            request_stop();
            break;
        }
        w->now = now_ms();
        for (int i = 0; i < n; i++) {
            int kind = *(int *)events[i].data.ptr;
            if (kind == K_CONN) {
                conn_event(w, events[i].data.ptr, events[i].events);
            } else if (kind == K_LISTENER) {
                accept_one(w, events[i].data.ptr);
            } else if (kind == K_STOP) {
                w->stop = 1;
            } else if (kind == K_STDIN) {
                ssize_t k = read(0, w->rbuf, READ_CHUNK); /* bytes are ignored; EOF stops */
                if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) {
                    w->stop = 1;
                    request_stop();
                }
            }
        }
        if (w->now >= next_sweep) {
            sweep(w);
            next_sweep = w->now + SWEEP_MS;
        }
        if (coalesce.tv_nsec > 0 && n > 0 && n < MAX_EVENTS && !w->stop)
            nanosleep(&coalesce, NULL); /* let more events gather: fewer wake-ups per exchange */
    }
    while (w->head.next != &w->head)
        conn_close(w, w->head.next);
    for (size_t i = 0; i < w->n_listeners; i++)
        close(w->listeners[i].fd);
    close(w->epfd);
    return NULL;
}

/* ---- start-up --------------------------------------------------------------------------------- */

struct endpoint {
    struct in_addr ip;
    uint16_t port;
    struct behaviour how;
};

static void usage(void) {
    fprintf(stderr, "usage: responder [--threads T] [--backlog N] [--coalesce-us U] "
                    "< endpoints (lines 'IP PORT [PROFILE DELAY_MS STUDIES PATIENTS]', then END)\n");
    exit(2);
}

static long number(const char *s, long lo, long hi, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "responder: %s must be %ld-%ld, not '%s'\n", what, lo, hi, s);
        exit(2);
    }
    return v;
}

/* Parse one line into `out`. Returns 1 for an endpoint, 0 for the end of the list. Exits 2 on
 * anything else, before any socket exists. */
static int parse_line(char *line, size_t lineno, struct endpoint *out) {
    char *save = NULL;
    char *ip = strtok_r(line, " \t\r\n", &save);
    if (ip == NULL || strcmp(ip, "END") == 0)
        return 0;
    char *port = strtok_r(NULL, " \t\r\n", &save);
    char *profile = strtok_r(NULL, " \t\r\n", &save);
    char *delay = strtok_r(NULL, " \t\r\n", &save);
    char *studies = strtok_r(NULL, " \t\r\n", &save);
    char *patients = strtok_r(NULL, " \t\r\n", &save);
    char *extra = strtok_r(NULL, " \t\r\n", &save);
    if (port == NULL || (profile != NULL && patients == NULL) || extra != NULL) {
        fprintf(stderr, "responder: line %zu: expected 'IP PORT [PROFILE DELAY_MS STUDIES PATIENTS]'\n", lineno);
        exit(2);
    }
    out->how = (struct behaviour){&PROFILES[0], 0, 0, 0};
    if (profile != NULL) {
        size_t i = 0;
        while (i < N_PROFILES && strcmp(PROFILES[i].name, profile) != 0)
            i++;
        if (i == N_PROFILES) {
            fprintf(stderr, "responder: line %zu: no profile '%s'\n", lineno, profile);
            exit(2);
        }
        out->how.profile = &PROFILES[i];
        out->how.delay_ms = (int)number(delay, 0, MAX_DELAY_MS, "DELAY_MS");
        out->how.studies = (uint32_t)number(studies, 0, MAX_MATCHES, "STUDIES");
        out->how.patients = (uint32_t)number(patients, 0, MAX_MATCHES, "PATIENTS");
    }
    if (inet_pton(AF_INET, ip, &out->ip) != 1) {
        fprintf(stderr, "responder: line %zu: not an IPv4 address: '%s'\n", lineno, ip);
        exit(2);
    }
    if ((ntohl(out->ip.s_addr) >> 24) != 127) {
        fprintf(stderr, "responder: refusing %s: not a loopback address (127.0.0.0/8); nothing was bound\n", ip);
        exit(2);
    }
    out->port = (uint16_t)number(port, 1, 65535, "port");
    return 1;
}

/* Read the endpoint list from stdin (fd 0, unbuffered: the same fd is watched for EOF later). */
static struct endpoint *read_endpoints(size_t *count) {
    struct buf text = {0};
    struct endpoint *list = NULL;
    size_t n = 0, cap = 0, lineno = 0, scanned = 0;
    int eof = 0;
    for (;;) {
        uint8_t *nl = text.len > scanned ? memchr(text.p + scanned, '\n', text.len - scanned) : NULL;
        if (nl == NULL && !eof) {
            scanned = text.len;
            buf_reserve(&text, 4096);
            ssize_t k = read(0, text.p + text.len, text.cap - text.len);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                eof = 1;
            else
                text.len += (size_t)k;
            continue;
        }
        size_t line_len = nl ? (size_t)(nl - text.p) : text.len;
        if (line_len > 1024) {
            fprintf(stderr, "responder: line %zu too long\n", lineno + 1);
            exit(2);
        }
        char line[1025];
        memcpy(line, text.p, line_len);
        line[line_len] = 0;
        lineno++;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            list = xrealloc(list, cap * sizeof *list);
        }
        if (!parse_line(line, lineno, &list[n]))
            break;
        n++;
        if (nl == NULL)
            break; /* EOF ended the last line */
        size_t used = line_len + 1;
        memmove(text.p, text.p + used, text.len - used);
        text.len -= used;
        scanned = 0;
    }
    buf_free(&text);
    *count = n;
    return list;
}

int main(int argc, char **argv) {
    long threads = 1, backlog = 128;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = number(argv[++i], 1, 256, "--threads");
        else if (strcmp(argv[i], "--backlog") == 0 && i + 1 < argc)
            backlog = number(argv[++i], 1, 1 << 20, "--backlog");
        else if (strcmp(argv[i], "--coalesce-us") == 0 && i + 1 < argc)
            coalesce.tv_nsec = number(argv[++i], 0, 999999, "--coalesce-us") * 1000;
        else
            usage();
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    size_t count;
    struct endpoint *endpoints = read_endpoints(&count); /* every address checked: loopback */
    if ((size_t)threads > count)
        threads = count ? (long)count : 1;

    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    struct listener *listeners = calloc(count ? count : 1, sizeof *listeners);
    if (workers == NULL || listeners == NULL) {
        fprintf(stderr, "responder: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < count; i++) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &endpoints[i].ip, ip, sizeof ip);
        if ((ntohl(endpoints[i].ip.s_addr) >> 24) != 127) /* checked already; never bind elsewhere */
            return 2;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(endpoints[i].port),
                                 .sin_addr = endpoints[i].ip};
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, (int)backlog) < 0) {
            fprintf(stderr, "responder: cannot listen on %s:%u: %s\n", ip, endpoints[i].port, strerror(errno));
            return 1;
        }
        listeners[i].kind = K_LISTENER;
        listeners[i].fd = fd;
        listeners[i].how = endpoints[i].how;
    }
    int min_delay = MAX_DELAY_MS, max_delay = 0;
    for (size_t i = 0; i < count; i++) {
        if (endpoints[i].how.delay_ms < min_delay)
            min_delay = endpoints[i].how.delay_ms;
        if (endpoints[i].how.delay_ms > max_delay)
            max_delay = endpoints[i].how.delay_ms;
    }
    free(endpoints);

    stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (stop_fd < 0) {
        fprintf(stderr, "responder: eventfd: %s\n", strerror(errno));
        return 1;
    }
    /* Listener i goes to worker i % T (each worker its own epoll and share). */
    size_t per = count / (size_t)threads + 1;
    for (long t = 0; t < threads; t++) {
        struct worker *w = &workers[t];
        w->index = (int)t;
        w->head.next = w->head.prev = &w->head;
        w->rbuf = malloc(READ_CHUNK);
        w->listeners = calloc(per, sizeof *w->listeners);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->queues = calloc(MAX_DELAY_MS + 1, sizeof *w->queues);
        w->min_delay = min_delay;
        w->max_delay = max_delay;
        if (w->rbuf == NULL || w->listeners == NULL || w->queues == NULL || w->epfd < 0) {
            fprintf(stderr, "responder: start-up failed: %s\n", strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stop_tag};
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, stop_fd, &ev);
    }
    for (size_t i = 0; i < count; i++) {
        struct worker *w = &workers[i % (size_t)threads];
        struct listener *l = &w->listeners[w->n_listeners++];
        *l = listeners[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0) {
            fprintf(stderr, "responder: epoll_ctl: %s\n", strerror(errno));
            return 1;
        }
    }
    free(listeners);

    /* The first worker (this thread) also watches stdin: EOF stops everyone. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stdin_tag};
    if (epoll_ctl(workers[0].epfd, EPOLL_CTL_ADD, 0, &ev) < 0) {
        /* not pollable (a regular file, /dev/null): it is at EOF as far as we can tell */
        fprintf(stderr, "responder: stdin cannot be watched (%s): stopping\n", strerror(errno));
        request_stop();
    }
    for (long t = 1; t < threads; t++) {
        int err = pthread_create(&workers[t].thread, NULL, worker_run, &workers[t]);
        if (err) {
            fprintf(stderr, "responder: pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    printf("READY %zu\n", count);
    fflush(stdout);
    worker_run(&workers[0]);
    for (long t = 1; t < threads; t++)
        pthread_join(workers[t].thread, NULL);
    for (long t = 0; t < threads; t++) {
        free(workers[t].rbuf);
        free(workers[t].listeners);
        free(workers[t].queues);
        buf_free(&workers[t].reply);
    }
    free(workers);
    close(stop_fd);
    return 0;
}
