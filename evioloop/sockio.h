/*
 * Layer 3's few socket syscalls, with the platform differences kept here:
 * accept with non-blocking + close-on-exec in one call where the kernel has
 * accept4, and send without SIGPIPE.
 */
#ifndef EVIOLOOP_SOCKIO_H
#define EVIOLOOP_SOCKIO_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is not needed, Python ignores SIGPIPE */
#endif

/* accept one connection: a non-blocking, close-on-exec fd, or -1 with errno */
static inline int evs_accept(int fd) {
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int c = accept(fd, NULL, NULL);
    if (c >= 0) {
        fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
        fcntl(c, F_SETFD, FD_CLOEXEC);
    }
    return c;
#endif
}

static inline ssize_t evs_send(int fd, const char *buf, size_t len) {
    return send(fd, buf, len, MSG_NOSIGNAL);
}

static inline ssize_t evs_recv(int fd, char *buf, size_t len) {
    return recv(fd, buf, len, 0);
}

/* writev for sockets: sendmsg, so that MSG_NOSIGNAL applies */
static inline ssize_t evs_sendv(int fd, struct iovec *iov, int n) {
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

static inline int evs_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

#endif /* EVIOLOOP_SOCKIO_H */
