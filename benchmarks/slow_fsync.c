/* A busy disk, simulated: with this library in LD_PRELOAD every fsync and fdatasync of the
   process takes SLOW_SYNC_MS (default 200) milliseconds longer. Used by
   bench_gui_responsiveness.py --slow-disk to show that no file write waits on the GUI thread. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void slow_down(void) {
    const char *ms = getenv("SLOW_SYNC_MS");
    usleep(1000 * (ms ? atoi(ms) : 200));
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow_down();
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow_down();
    return real(fd);
}
