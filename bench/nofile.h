/* Shared by bench/'s C programs: a process that holds 10,000+ sockets needs its descriptor limit
 * raised from the usual soft 1024 to the hard limit (or, where that is unlimited, to 2^20). */
#ifndef PACSWATCH_BENCH_NOFILE_H
#define PACSWATCH_BENCH_NOFILE_H

#include <sys/resource.h>

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && rl.rlim_max == RLIM_INFINITY) {
            rl.rlim_cur = 1 << 20;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
}

#endif
