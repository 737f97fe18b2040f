/* The cost floor of a systrap-style sentry on this machine, without cordon: the child traps
 * openat with SECCOMP_RET_TRAP, so the kernel delivers SIGSYS to a handler inside the child
 * itself, and times open+read+close of a 64-byte file. The handler asks a supervisor process
 * for the fd and writes it into the saved RAX before returning. This is the design gVisor's
 * systrap platform uses to avoid seccomp user notification's wake-ups; it needs code of the
 * sandbox's own inside every workload process. Modes:
 *   none:   no filter at all (native open+read+close)
 *   local:  the handler makes the open itself with another syscall number: the price of the
 *           signal alone (NOT a safe design: the workload would open what it likes)
 *   socket: the handler sends the path over a unix socket and blocks for the fd (SCM_RIGHTS)
 *   futex:  path through shared memory, futex wake-ups both ways, fd by SCM_RIGHTS
 *   spin:   path through shared memory, both sides busy-wait (no sleeping at all: one core
 *           burnt by the supervisor while it waits), fd by SCM_RIGHTS
 * Build: gcc -O2 -o systrap_floor systrap_floor.c; run: ./systrap_floor spin */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "floor_common.h"

#define FILE_PATH "/tmp/cordon-systrap-floor"
enum { IDLE, REQUEST, REPLY, DONE };

/* One request slot shared by the child's handler and the supervisor. */
struct slot {
    _Atomic int state;
    char path[256];
};

static struct slot *slot;
static int sock;
static const char *mode;

static void futex(_Atomic int *addr, int op, int val) { syscall(SYS_futex, addr, op, val, NULL, NULL, 0); }

/* Waits until the slot holds `want` (spinning or sleeping on the futex). */
static int await_state(int want, int or_else) {
    for (;;) {
        int s = atomic_load(&slot->state);
        if (s == want || s == or_else) return s;
        if (mode[0] == 'f')
            futex(&slot->state, FUTEX_WAIT, s);
        else
            __builtin_ia32_pause();
    }
}

static void set_state(int s) {
    atomic_store(&slot->state, s);
    if (mode[0] == 'f') futex(&slot->state, FUTEX_WAKE, 1);
}

static void on_sigsys(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    const char *path = (const char *)uc->uc_mcontext.gregs[REG_RSI];
    int fd;
    if (strcmp(mode, "local") == 0) {
        fd = syscall(SYS_open, path, O_RDONLY | O_CLOEXEC);
    } else if (strcmp(mode, "socket") == 0) {
        write(sock, path, strlen(path) + 1);
        fd = recv_fd(sock);
    } else {
        strncpy(slot->path, path, sizeof slot->path - 1);
        set_state(REQUEST);
        await_state(REPLY, REPLY);
        fd = recv_fd(sock);
        atomic_store(&slot->state, IDLE);
    }
    uc->uc_mcontext.gregs[REG_RAX] = fd;
}

int main(int argc, char **argv) {
    mode = argc > 1 ? argv[1] : "spin";
    int f = open(FILE_PATH, O_RDWR | O_CREAT | O_TRUNC, 0600);
    char data[64];
    memset(data, 'x', sizeof data);
    if (f < 0 || write(f, data, sizeof data) != sizeof data) return perror(FILE_PATH), 1;
    close(f);
    int sv[2];
    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    slot = mmap(NULL, sizeof *slot, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t child = fork();
    if (child == 0) {
        sock = sv[1];
        if (strcmp(mode, "none") != 0) {
            struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
            sigaction(SIGSYS, &sa, NULL);
            trap_openat(SECCOMP_RET_TRAP, 0);
        }
        int n = 20000;
        char buf[4096];
        double t = now();
        for (int i = 0; i < n; i++) {
            int fd = openat(AT_FDCWD, FILE_PATH, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || read(fd, buf, sizeof buf) != 64) {
                perror("open+read");
                _exit(1);
            }
            close(fd);
        }
        printf("%s: %.1f us per open+read+close\n", mode, (now() - t) / n / 1000);
        fflush(stdout);
        set_state(DONE);
        _exit(0);
    }
    close(sv[1]);
    sock = sv[0];
    char path[256];
    if (strcmp(mode, "socket") == 0) {
        ssize_t n;
        while ((n = read(sock, path, sizeof path)) > 0) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            send_fd(sock, fd);
            close(fd);
        }
    } else if (strcmp(mode, "futex") == 0 || strcmp(mode, "spin") == 0) {
        while (await_state(REQUEST, DONE) == REQUEST) {
            memcpy(path, slot->path, sizeof path);
            path[sizeof path - 1] = 0;
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            send_fd(sock, fd);
            close(fd);
            set_state(REPLY);
        }
    }
    waitpid(child, NULL, 0);
    unlink(FILE_PATH);
    return 0;
}
