/* Shared by notify_floor.c and systrap_floor.c: a monotonic clock in nanoseconds and fd
 * passing over a unix socket (SCM_RIGHTS, one byte of payload). */
#ifndef CORDON_FLOOR_COMMON_H
#define CORDON_FLOOR_COMMON_H
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void send_fd(int sock, int fd) {
    char ctl[CMSG_SPACE(sizeof fd)] = {0}, byte = 'x';
    struct iovec io = {&byte, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fd);
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    sendmsg(sock, &m, 0);
}

static int recv_fd(int sock) {
    char ctl[CMSG_SPACE(sizeof(int))] = {0}, byte;
    struct iovec io = {&byte, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    int fd = -1;
    if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) > 0) memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}
#endif
