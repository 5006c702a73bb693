/*
 * Layer 3's few socket syscalls, with the platform differences kept here:
 * accept with non-blocking + close-on-exec in one call where the kernel has
 * accept4, and send without SIGPIPE.
 */
#ifndef EVIOLOOP_SOCKIO_H
#define EVIOLOOP_SOCKIO_H

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>
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

/* accept one connection: a non-blocking, close-on-exec fd, or -1 with errno;
 * the peer's address lands in *addr (zeroed first, so an unnamed Unix peer
 * reads as an empty path) */
static inline int evs_accept(int fd, struct sockaddr_storage *addr, socklen_t *len) {
    memset(addr, 0, sizeof *addr);
    *len = sizeof *addr;
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    return accept4(fd, (struct sockaddr *)addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int c = accept(fd, (struct sockaddr *)addr, len);
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

static inline int evs_setint(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value);
}

/* one datagram; the sender's address lands in *addr */
static inline ssize_t evs_recvfrom(int fd, char *buf, size_t len,
                                   struct sockaddr_storage *addr, socklen_t *addrlen) {
    *addrlen = sizeof *addr;
    return recvfrom(fd, buf, len, 0, (struct sockaddr *)addr, addrlen);
}

static inline ssize_t evs_sendto(int fd, const char *buf, size_t len,
                                 const struct sockaddr_storage *addr, socklen_t addrlen) {
    return sendto(fd, buf, len, MSG_NOSIGNAL, (const struct sockaddr *)addr, addrlen);
}

/* The parts of an address Python's socket module reports: host text and port
 * for IP (the caller builds the tuple), the path for Unix sockets. Returns the
 * family, or -1 when the caller should ask the socket module instead (a
 * link-local IPv6 peer, whose host text carries a scope, or another family). */
static inline int evs_addr_parts(const struct sockaddr_storage *ss, socklen_t len,
                                 char *host, size_t hostlen, unsigned *port,
                                 unsigned *flowinfo, unsigned *scope_id,
                                 const char **path, size_t *pathlen) {
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (!inet_ntop(AF_INET, &a->sin_addr, host, hostlen)) return -1;
        *port = ntohs(a->sin_port);
        return AF_INET;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (a->sin6_scope_id) return -1;
        if (!inet_ntop(AF_INET6, &a->sin6_addr, host, hostlen)) return -1;
        *port = ntohs(a->sin6_port);
        *flowinfo = ntohl(a->sin6_flowinfo);
        *scope_id = a->sin6_scope_id;
        return AF_INET6;
    }
    if (ss->ss_family == AF_UNIX || (ss->ss_family == 0 && len <= offsetof(struct sockaddr_un, sun_path))) {
        const struct sockaddr_un *a = (const struct sockaddr_un *)ss;
        size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
        *path = a->sun_path;
        *pathlen = n;
        return AF_UNIX;
    }
    return -1;
}

#endif /* EVIOLOOP_SOCKIO_H */
