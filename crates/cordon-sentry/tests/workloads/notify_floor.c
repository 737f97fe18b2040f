/* The cost floor of the sentry's mechanism on this machine, without cordon: a child traps
 * openat with SECCOMP_RET_USER_NOTIF and times open+read+close of a 64-byte file; the parent
 * answers each notification the cheapest possible way. No other filter, no policy, no
 * argument copy, no path resolution in the sandbox's root.
 *   send:       answer with a made-up fd number (no fd installed: measures only the round trip)
 *   addfd-dup:  install a dup of a file opened once (SECCOMP_ADDFD_FLAG_SEND)
 *   addfd-open: open the file, install it, close it (what any supervisor must do at least)
 *   addfd-broker: as addfd-open, but the open is made by a second thread restricted with
 *               Landlock (read beneath /tmp only), handed over through two pipes: the cost of
 *               a Gofer-style broker that keeps Landlock away from the memory-reading thread
 * Build: gcc -O2 -pthread -o notify_floor notify_floor.c; run as root: ./notify_floor addfd-open */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <pthread.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "floor_common.h"

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#endif
#define FILE_PATH "/tmp/cordon-notify-floor"

static int to_broker[2], from_broker[2];

/* The broker thread: Landlock on itself only, then one open per request byte. */
static void *broker(void *arg) {
    (void)arg;
    struct landlock_ruleset_attr attr = {.handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE |
                                                              LANDLOCK_ACCESS_FS_WRITE_FILE};
    int rs = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    struct landlock_path_beneath_attr rule = {.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE,
                                              .parent_fd = open("/tmp", O_PATH)};
    if (rs < 0 || syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) ||
        syscall(SYS_landlock_restrict_self, rs, 0)) {
        perror("landlock");
        _exit(1);
    }
    char req;
    while (read(to_broker[0], &req, 1) == 1) {
        int fd = open(FILE_PATH, O_RDONLY | O_CLOEXEC);
        write(from_broker[1], &fd, sizeof fd);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "addfd-open";
    int sv[2], src = open(FILE_PATH, O_RDWR | O_CREAT | O_TRUNC, 0600);
    char data[64];
    memset(data, 'x', sizeof data);
    if (src < 0 || write(src, data, sizeof data) != sizeof data) return perror(FILE_PATH), 1;
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pid_t child = fork();
    if (child == 0) {
        int l = trap_openat(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        send_fd(sv[0], l);
        close(l);
        char go;
        read(sv[0], &go, 1);
        int n = 20000;
        double t = now();
        for (int i = 0; i < n; i++) {
            int fd = openat(AT_FDCWD, FILE_PATH, O_RDONLY | O_CLOEXEC);
            char buf[4096];
            read(fd, buf, sizeof buf);
            close(fd);
        }
        printf("%s: %.1f us per open+read+close\n", mode, (now() - t) / n / 1000);
        fflush(stdout);
        _exit(0);
    }
    if (strcmp(mode, "addfd-broker") == 0) {
        pthread_t t;
        pipe(to_broker);
        pipe(from_broker);
        pthread_create(&t, NULL, broker, NULL);
    }
    int l = recv_fd(sv[1]);
    ioctl(l, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0);
    write(sv[1], "g", 1);
    for (;;) {
        struct seccomp_notif n;
        memset(&n, 0, sizeof n);
        if (ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &n)) break;
        if (strcmp(mode, "send") == 0) {
            struct seccomp_notif_resp r = {.id = n.id, .val = 1000};
            ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &r);
            continue;
        }
        int fd;
        if (strcmp(mode, "addfd-broker") == 0) {
            write(to_broker[1], "o", 1);
            read(from_broker[0], &fd, sizeof fd);
        } else {
            fd = strcmp(mode, "addfd-dup") == 0 ? dup(src) : open(FILE_PATH, O_RDONLY | O_CLOEXEC);
        }
        struct seccomp_notif_addfd a = {.id = n.id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = fd,
                                        .newfd_flags = O_CLOEXEC};
        ioctl(l, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
        close(fd);
    }
    waitpid(child, NULL, 0);
    unlink(FILE_PATH);
    return 0;
}
