/*
 * floor_client.c: the cheapest client for a fixed DICOM exchange, to measure the CPU floor of a
 * probe (bench/floor.py). No DICOM logic: it replays canned requests and frames the answers.
 *
 *   floor_client MESSAGES_FILE TARGETS_FILE CONCURRENCY
 *
 * MESSAGES_FILE: records `u32 big-endian length` + that many bytes; record i is sent as step i.
 * TARGETS_FILE: lines `IP PORT`. Every IP must be in 127.0.0.0/8: anything else is refused (exit
 * 2) before any socket exists.
 *
 * Per target, with CONCURRENCY connections in flight: a non-blocking socket with TCP_NODELAY,
 * connect, send message 0, read until exactly one complete PDU (type, reserved, u32 big-endian
 * length, body) has arrived, send the next message, ..., and close after the answer to the last
 * one. An endpoint is ok when every step got exactly one PDU; an error otherwise (connect
 * failure, EOF, reset, bytes beyond the one PDU, or 10 s without progress).
 *
 * stdout, at the end: `done N ok K errors E wall_s W` (exit 0).
 * stderr: a breakdown of errors and a histogram of answer PDU types, for the caller's checks.
 *
 * Build: gcc -O2 -Wall -Wextra -std=c11 -D_GNU_SOURCE -o floor_client floor_client.c
 * Linux only (epoll). Loopback only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nofile.h"

#define TIMEOUT_MS 10000
#define SWEEP_MS 500
#define MAX_EVENTS 512
#define SCRATCH (64 * 1024)
#define MAX_MESSAGES 64

enum { E_CONNECT, E_SEND, E_EOF, E_RESET, E_EXTRA, E_TIMEOUT, E_COUNT };
static const char *error_names[E_COUNT] = {"connect", "send", "eof", "reset", "extra", "timeout"};

struct message {
    uint8_t *p;
    size_t len;
};

struct slot {
    int fd;               /* -1: free */
    uint32_t gen;         /* bumped at each reuse: stale events are recognised */
    size_t target;
    int step;             /* index of the message sent (or being sent) */
    size_t sent;          /* bytes of that message out so far */
    int sending;          /* message not fully sent yet */
    int connected;        /* the first writable event was seen */
    uint8_t hdr[6];
    int hdr_got;
    uint64_t body_left;
    int64_t deadline;
};

static struct message messages[MAX_MESSAGES];
static int n_messages;
static struct sockaddr_in *targets;
static size_t n_targets, next_target;
static struct slot *slots;
static long concurrency;
static int epfd;
static uint8_t scratch[SCRATCH];
static size_t done_count, ok_count, error_count, errors_by[E_COUNT];
static size_t pdu_types[256];
static int64_t now;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "floor_client: %s\n", what);
    exit(2);
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "floor_client: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    size_t cap = 4096, n = 0;
    uint8_t *p = malloc(cap + 1);
    for (;;) {
        if (p == NULL)
            die("out of memory");
        size_t k = fread(p + n, 1, cap - n, f);
        n += k;
        if (n < cap)
            break;
        cap *= 2;
        p = realloc(p, cap + 1);
    }
    if (ferror(f)) {
        fprintf(stderr, "floor_client: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    p[n] = 0;
    *len = n;
    return p;
}

static void load_messages(const char *path) {
    size_t len;
    uint8_t *p = read_file(path, &len);
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 4)
            die("messages file: truncated record length");
        size_t n = ((size_t)p[pos] << 24) | ((size_t)p[pos + 1] << 16) | ((size_t)p[pos + 2] << 8) | p[pos + 3];
        pos += 4;
        if (n == 0 || n > len - pos)
            die("messages file: record empty or longer than the file");
        if (n_messages == MAX_MESSAGES)
            die("messages file: too many records");
        messages[n_messages].p = p + pos;
        messages[n_messages].len = n;
        n_messages++;
        pos += n;
    }
    if (n_messages == 0)
        die("messages file: no records");
}

/* Every address is checked here, before any socket exists. */
static void load_targets(const char *path) {
    size_t len;
    char *text = (char *)read_file(path, &len);
    size_t cap = 1024, lineno = 0;
    targets = malloc(cap * sizeof *targets);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char ip[64];
        unsigned port;
        char extra;
        if (line[strspn(line, " \t\r")] == 0)
            continue;
        if (sscanf(line, "%63s %u %c", ip, &port, &extra) != 2 || port < 1 || port > 65535) {
            fprintf(stderr, "floor_client: targets line %zu: expected 'IP PORT'\n", lineno);
            exit(2);
        }
        struct in_addr a;
        if (inet_pton(AF_INET, ip, &a) != 1) {
            fprintf(stderr, "floor_client: targets line %zu: not an IPv4 address: '%s'\n", lineno, ip);
            exit(2);
        }
        if ((ntohl(a.s_addr) >> 24) != 127) {
            fprintf(stderr, "floor_client: refusing %s: not a loopback address (127.0.0.0/8); "
                            "no socket was created\n", ip);
            exit(2);
        }
        if (n_targets == cap) {
            cap *= 2;
            targets = realloc(targets, cap * sizeof *targets);
        }
        if (targets == NULL)
            die("out of memory");
        memset(&targets[n_targets], 0, sizeof targets[n_targets]);
        targets[n_targets].sin_family = AF_INET;
        targets[n_targets].sin_port = htons((uint16_t)port);
        targets[n_targets].sin_addr = a;
        n_targets++;
    }
    free(text);
}

static void finish(struct slot *s, int error) {
    close(s->fd); /* also leaves the epoll set */
    s->fd = -1;
    done_count++;
    if (error < 0) {
        ok_count++;
    } else {
        error_count++;
        errors_by[error]++;
    }
}

/* Send the rest of the current message. Returns 0, or an error code. */
static int send_current(struct slot *s) {
    const struct message *m = &messages[s->step];
    while (s->sent < m->len) {
        ssize_t k = send(s->fd, m->p + s->sent, m->len - s->sent, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s->sending = 1; /* EPOLLOUT (edge-triggered) says when there is room again */
                return -1;
            }
            return s->connected ? E_SEND : E_CONNECT;
        }
        s->sent += (size_t)k;
    }
    s->sending = 0;
    return -1;
}

static void start_step(struct slot *s, int step) {
    s->step = step;
    s->sent = 0;
    s->hdr_got = 0;
    s->body_left = 0;
}

/* Open the next target in slot `s`, until one is in flight or none is left. */
static void start_next(struct slot *s) {
    while (s->fd < 0 && next_target < n_targets) {
        const struct sockaddr_in *sa = &targets[next_target];
        if ((ntohl(sa->sin_addr.s_addr) >> 24) != 127) /* checked at load; never connect elsewhere */
            exit(2);
        s->target = next_target++;
        s->gen++;
        s->connected = 0;
        s->deadline = now + TIMEOUT_MS;
        start_step(s, 0);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fprintf(stderr, "floor_client: socket: %s\n", strerror(errno));
            done_count++;
            error_count++;
            errors_by[E_CONNECT]++;
            continue;
        }
        s->fd = fd;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Edge-triggered: one epoll_ctl per connection, no MOD between writing and reading. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = ((uint64_t)s->gen << 32) | (uint64_t)(s - slots)};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            finish(s, E_CONNECT);
            continue;
        }
        if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
            finish(s, E_CONNECT);
            continue;
        }
    }
}

/* Bytes arrived for the current step. Returns -1 to go on, -2 when the endpoint is done (ok),
 * or an error code. */
static int consume(struct slot *s, const uint8_t *p, size_t n) {
    size_t pos = 0;
    while (pos < n) {
        if (s->hdr_got < 6) {
            size_t k = 6 - (size_t)s->hdr_got;
            if (k > n - pos)
                k = n - pos;
            memcpy(s->hdr + s->hdr_got, p + pos, k);
            s->hdr_got += (int)k;
            pos += k;
            if (s->hdr_got < 6)
                return -1;
            s->body_left = ((uint64_t)s->hdr[2] << 24) | ((uint64_t)s->hdr[3] << 16) |
                           ((uint64_t)s->hdr[4] << 8) | s->hdr[5];
        }
        size_t k = n - pos;
        if (k > s->body_left)
            k = (size_t)s->body_left;
        pos += k;
        s->body_left -= k;
        if (s->body_left > 0)
            return -1;
        /* one complete PDU: the answer to this step */
        pdu_types[s->hdr[0]]++;
        if (pos < n)
            return E_EXTRA; /* more than one PDU for this step */
        if (s->step + 1 == n_messages)
            return -2;
        start_step(s, s->step + 1);
        int err = send_current(s);
        if (err >= 0)
            return err;
    }
    return -1;
}

static void on_event(struct slot *s, uint32_t events) {
    s->deadline = now + TIMEOUT_MS;
    if (!s->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            finish(s, E_CONNECT);
            return;
        }
        s->connected = 1;
        s->sending = 1;
    }
    if (s->sending && (events & EPOLLOUT)) {
        int err = send_current(s);
        if (err >= 0) {
            finish(s, err);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        for (;;) {
            ssize_t k = recv(s->fd, scratch, SCRATCH, 0);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                finish(s, E_RESET);
                return;
            }
            if (k == 0) {
                finish(s, E_EOF);
                return;
            }
            int r = consume(s, scratch, (size_t)k);
            if (r == -2) {
                finish(s, -1);
                return;
            }
            if (r >= 0) {
                finish(s, r);
                return;
            }
            /* A short read drained the socket; the next arrival is a new edge. Only a full
             * buffer may leave more behind. */
            if ((size_t)k < SCRATCH)
                return;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: floor_client MESSAGES_FILE TARGETS_FILE CONCURRENCY\n");
        return 2;
    }
    char *end;
    concurrency = strtol(argv[3], &end, 10);
    if (*end || end == argv[3] || concurrency < 1 || concurrency > 1000000)
        die("CONCURRENCY must be 1-1000000");
    load_messages(argv[1]);
    load_targets(argv[2]); /* refuses anything outside 127.0.0.0/8: no socket exists yet */
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1 failed");
    if ((size_t)concurrency > n_targets)
        concurrency = n_targets ? (long)n_targets : 1;
    slots = calloc((size_t)concurrency, sizeof *slots);
    if (slots == NULL)
        die("out of memory");
    double t0 = now_s();
    now = now_ms();
    for (long i = 0; i < concurrency; i++) {
        slots[i].fd = -1;
        start_next(&slots[i]);
    }
    struct epoll_event events[MAX_EVENTS];
    int64_t next_sweep = now + SWEEP_MS;
    while (done_count < n_targets) {
        int timeout = (int)(next_sweep - now);
        int n = epoll_wait(epfd, events, MAX_EVENTS, timeout < 0 ? 0 : timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait failed");
        now = now_ms();
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            struct slot *s = &slots[(uint32_t)tag];
            if (s->fd < 0 || s->gen != (uint32_t)(tag >> 32))
                continue; /* a connection finished earlier in this batch */
            on_event(s, events[i].events);
            if (s->fd < 0)
                start_next(s);
        }
        if (now >= next_sweep) {
            for (long i = 0; i < concurrency; i++) {
                struct slot *s = &slots[i];
                if (s->fd >= 0 && now >= s->deadline)
                    finish(s, E_TIMEOUT);
                if (s->fd < 0)
                    start_next(s);
            }
            next_sweep = now + SWEEP_MS;
        }
    }
    double wall = now_s() - t0;
    close(epfd);

    fprintf(stderr, "errors");
    for (int e = 0; e < E_COUNT; e++)
        fprintf(stderr, " %s %zu", error_names[e], errors_by[e]);
    fprintf(stderr, "\npdu_types");
    for (int t = 0; t < 256; t++)
        if (pdu_types[t])
            fprintf(stderr, " %d:%zu", t, pdu_types[t]);
    fprintf(stderr, "\n");
    printf("done %zu ok %zu errors %zu wall_s %.3f\n", done_count, ok_count, error_count, wall);
    return 0;
}
