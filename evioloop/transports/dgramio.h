/*
 * Layer 3's datagram syscalls (used by _dgram.pyx): several datagrams per
 * call where the kernel can (recvmmsg on Linux, a loop of recvfrom
 * elsewhere), and the numeric IP addresses a sendto() may name, converted
 * without the socket module.
 */
#ifndef EVIOLOOP_DGRAMIO_H
#define EVIOLOOP_DGRAMIO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* recvmmsg */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define EVD_BATCH_MAX 16

/* a socket address and its length */
typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} evd_addr;

/* one receive batch: `n` slots of `slot` bytes */
typedef struct {
    char *bufs;
    size_t slot;
    int n;
    int err;            /* an error met after some datagrams (not Linux) */
    size_t lens[EVD_BATCH_MAX];
    evd_addr addrs[EVD_BATCH_MAX];
#ifdef __linux__
    struct mmsghdr msgs[EVD_BATCH_MAX];
    struct iovec iov[EVD_BATCH_MAX];
#endif
} evd_rx;

static inline evd_rx *evd_rx_new(size_t slot, int n) {
    evd_rx *rx = (evd_rx *)calloc(1, sizeof *rx);
    if (!rx) return NULL;
    if (n > EVD_BATCH_MAX) n = EVD_BATCH_MAX;
    rx->bufs = (char *)malloc(slot * (size_t)n);
    if (!rx->bufs) { free(rx); return NULL; }
    rx->slot = slot;
    rx->n = n;
#ifdef __linux__
    /* where each datagram and its sender go never changes */
    for (int i = 0; i < n; i++) {
        rx->iov[i].iov_base = rx->bufs + (size_t)i * slot;
        rx->iov[i].iov_len = slot;
        rx->msgs[i].msg_hdr.msg_name = &rx->addrs[i].ss;
        rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
        rx->msgs[i].msg_hdr.msg_iovlen = 1;
    }
#endif
    return rx;
}

static inline void evd_rx_free(evd_rx *rx) {
    if (rx) { free(rx->bufs); free(rx); }
}

static inline const char *evd_rx_buf(const evd_rx *rx, int i) {
    return rx->bufs + (size_t)i * rx->slot;
}

static inline size_t evd_rx_len(const evd_rx *rx, int i) { return rx->lens[i]; }

static inline evd_addr *evd_rx_addr(evd_rx *rx, int i) { return &rx->addrs[i]; }

/* A sender address ends with a NUL, as in the socket module's zeroed buffer:
 * an unnamed Unix sender (no path) reads as an empty path. */
static inline void evd_terminate(evd_addr *a) {
    if (a->len < sizeof a->ss) ((char *)&a->ss)[a->len] = 0;
    if (a->len <= offsetof(struct sockaddr_un, sun_path))
        ((struct sockaddr_un *)&a->ss)->sun_path[0] = 0;
}

/* Receive up to rx->n datagrams. Returns how many (their sizes and senders
 * in rx), or -1 with errno when the first one failed. */
static inline int evd_recv_batch(int fd, evd_rx *rx) {
    int i, n = rx->n;
    rx->err = 0;
#ifdef __linux__
    for (i = 0; i < n; i++) {
        rx->msgs[i].msg_hdr.msg_namelen = sizeof rx->addrs[i].ss;
        rx->msgs[i].msg_hdr.msg_flags = 0;
    }
    /* an error after the first datagram stays pending in the socket (the
     * kernel puts it back) and comes with the next call */
    int got = recvmmsg(fd, rx->msgs, (unsigned)n, MSG_DONTWAIT, NULL);
    for (i = 0; i < got; i++) {
        rx->lens[i] = rx->msgs[i].msg_len;
        rx->addrs[i].len = rx->msgs[i].msg_hdr.msg_namelen;
        evd_terminate(&rx->addrs[i]);
    }
    return got;
#else
    for (i = 0; i < n; i++) {
        rx->addrs[i].len = sizeof rx->addrs[i].ss;
        ssize_t k = recvfrom(fd, rx->bufs + (size_t)i * rx->slot, rx->slot, 0,
                             (struct sockaddr *)&rx->addrs[i].ss, &rx->addrs[i].len);
        if (k < 0) {
            if (i == 0) return -1;
            /* BSDs hand a pending error out once: keep it for the caller */
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) rx->err = errno;
            return i;
        }
        rx->lens[i] = (size_t)k;
        evd_terminate(&rx->addrs[i]);
    }
    return n;
#endif
}

/* Receive one datagram into slot 0: 1, or -1 with errno. A single recvfrom
 * costs the kernel less than a recvmmsg that finds one datagram (which then
 * tries a second one and fails): the read of a socket that gets one datagram
 * per wake-up, as in a request/response exchange. */
static inline int evd_recv_one(int fd, evd_rx *rx) {
    rx->err = 0;
    rx->addrs[0].len = sizeof rx->addrs[0].ss;
    ssize_t k = recvfrom(fd, rx->bufs, rx->slot, MSG_DONTWAIT,
                         (struct sockaddr *)&rx->addrs[0].ss, &rx->addrs[0].len);
    if (k < 0) return -1;
    rx->lens[0] = (size_t)k;
    evd_terminate(&rx->addrs[0]);
    return 1;
}

static inline int evd_addr_eq(const evd_addr *a, const evd_addr *b) {
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static inline void evd_addr_copy(evd_addr *dst, const evd_addr *src) {
    memcpy(dst, src, sizeof *dst);
}

static inline int evd_family(const evd_addr *a) { return a->ss.ss_family; }

static inline ssize_t evd_send(int fd, const char *buf, size_t len) {
    return send(fd, buf, len, MSG_NOSIGNAL);
}

static inline ssize_t evd_sendto(int fd, const char *buf, size_t len, const evd_addr *a) {
    return sendto(fd, buf, len, MSG_NOSIGNAL, (const struct sockaddr *)&a->ss, a->len);
}

/* A numeric IPv4 address and port as a sockaddr; 0 if `host` is not one
 * (the caller then lets the socket module parse it). */
static inline int evd_inet4(const char *host, unsigned long port, evd_addr *out) {
    struct sockaddr_in *a = (struct sockaddr_in *)&out->ss;
    memset(out, 0, sizeof *out);
    if (port > 65535 || inet_pton(AF_INET, host, &a->sin_addr) != 1) return 0;
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)port);
    out->len = sizeof *a;
    return 1;
}

static inline int evd_inet6(const char *host, unsigned long port, unsigned long flowinfo,
                            unsigned long scope_id, evd_addr *out) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&out->ss;
    memset(out, 0, sizeof *out);
    if (port > 65535 || flowinfo > 0xfffff || scope_id > 0xffffffffUL) return 0;
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return 0;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((unsigned short)port);
    a->sin6_flowinfo = htonl((uint32_t)flowinfo);
    a->sin6_scope_id = (uint32_t)scope_id;
    out->len = sizeof *a;
    return 1;
}

/* The host text of an IP sender as the socket module writes it (getnameinfo
 * with NI_NUMERICHOST: a scoped IPv6 address carries its %interface). */
static inline int evd_host_text(const evd_addr *a, char *host, size_t hostlen) {
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        return inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hostlen) ? 0 : -1;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        if (!in6->sin6_scope_id)
            return inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hostlen) ? 0 : -1;
        return getnameinfo((const struct sockaddr *)&a->ss, a->len, host, (socklen_t)hostlen,
                           NULL, 0, NI_NUMERICHOST) == 0 ? 0 : -1;
    }
    return -1;
}

static inline unsigned evd_port(const evd_addr *a) {
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static inline unsigned evd_flowinfo(const evd_addr *a) {
    return ntohl(((const struct sockaddr_in6 *)&a->ss)->sin6_flowinfo);
}

static inline unsigned evd_scope_id(const evd_addr *a) {
    return ((const struct sockaddr_in6 *)&a->ss)->sin6_scope_id;
}

static inline const char *evd_sun_path(const evd_addr *a) {
    return ((const struct sockaddr_un *)&a->ss)->sun_path;
}

/* the bytes of sun_path the kernel filled in */
static inline size_t evd_sun_path_len(const evd_addr *a) {
    size_t off = offsetof(struct sockaddr_un, sun_path);
    return a->len > off ? a->len - off : 0;
}

#endif /* EVIOLOOP_DGRAMIO_H */
