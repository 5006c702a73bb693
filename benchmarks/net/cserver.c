/*
 * cserver: the reference servers for the net benchmarks, in plain C.
 *
 *   cserver echo [PORT]    single-threaded epoll echo server
 *   cserver http [PORT]    single-threaded epoll keep-alive HTTP/1.1 server answering
 *                          every request (a head ending in CRLF CRLF, no body) with the
 *                          same fixed response as the Python HTTP server
 *
 * It listens on 127.0.0.1 (PORT 0 = any free port) and prints "ready PORT".  It speaks
 * the same control protocol on stdin as benchmarks/net/server.py: "cpu" prints
 * "cpu SECONDS" (user + sys of this process, getrusage RUSAGE_SELF); "quit" or EOF
 * exits.  The echo path is what an event loop does at best: one read() into a 256 KiB
 * buffer per readable event and one write() back; only a partial write keeps bytes
 * (and stops reading that connection until they are flushed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)   /* the read size of uvloop and of the stock loop */

static const char HTTP_RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

struct conn {
    int fd;
    char *out;          /* unsent bytes (only after a partial write) */
    size_t outlen, outoff, outcap;
    char *in;           /* http: an incomplete request head */
    size_t inlen, incap;
};

static int ep, http;
static char buf[BUF_SIZE];
static char resp[BUF_SIZE];

static void die(const char *what)
{
    perror(what);
    exit(3);
}

static void append(char **p, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *p = realloc(*p, *cap);
        if (!*p)
            die("realloc");
    }
    memcpy(*p + *len, data, n);
    *len += n;
}

static void close_conn(struct conn *c)
{
    close(c->fd);    /* closing also removes it from the epoll set */
    free(c->out);
    free(c->in);
    free(c);
}

static void watch(struct conn *c, int op, unsigned events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(ep, op, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Send data; keep any unsent tail and switch the connection to EPOLLOUT only. */
static int send_or_queue(struct conn *c, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(c->fd, data, n);
        if (w > 0) {
            data += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->outlen = c->outoff = 0;
            append(&c->out, &c->outlen, &c->outcap, data, n);
            watch(c, EPOLL_CTL_MOD, EPOLLOUT);
            return 0;
        } else {
            return -1;
        }
    }
    return 0;
}

static int on_writable(struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w > 0)
            c->outoff += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return -1;
    }
    c->outlen = c->outoff = 0;
    watch(c, EPOLL_CTL_MOD, EPOLLIN);
    return 0;
}

/* http: answer every complete request head in the input; keep a partial one. */
static int http_input(struct conn *c, const char *data, size_t n)
{
    append(&c->in, &c->inlen, &c->incap, data, n);
    size_t off = 0, rlen = 0;
    for (;;) {
        char *end = memmem(c->in + off, c->inlen - off, "\r\n\r\n", 4);
        if (!end)
            break;
        off = (size_t)(end - c->in) + 4;
        if (rlen + sizeof HTTP_RESPONSE - 1 > sizeof resp)
            break;
        memcpy(resp + rlen, HTTP_RESPONSE, sizeof HTTP_RESPONSE - 1);
        rlen += sizeof HTTP_RESPONSE - 1;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    if (c->inlen > 65536)
        return -1;
    return rlen ? send_or_queue(c, resp, rlen) : 0;
}

static int on_readable(struct conn *c)
{
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (n == 0)
        return -1;
    return http ? http_input(c, buf, (size_t)n) : send_or_queue(c, buf, (size_t)n);
}

static int control(void)
{
    char line[64];
    ssize_t n = read(0, line, sizeof line - 1);
    if (n <= 0)
        return -1;
    line[n] = 0;
    if (strncmp(line, "cpu", 3) == 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("cpu %.6f\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                             ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
        fflush(stdout);
        return 0;
    }
    return -1;   /* "quit" or anything else */
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "http") != 0)) {
        fprintf(stderr, "usage: cserver echo|http [PORT]\n");
        return 2;
    }
    http = strcmp(argv[1], "http") == 0;
    int port = argc > 2 ? atoi(argv[2]) : 0;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0)
        die("bind/listen");
    socklen_t slen = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &slen);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static int stdin_tag;
    ev.data.ptr = &stdin_tag;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    printf("ready %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    watch(c, EPOLL_CTL_ADD, EPOLLIN);
                }
            } else if (p == &stdin_tag) {
                if (control() < 0)
                    return 0;
            } else {
                struct conn *c = p;
                int r = 0;
                if (evs[i].events & EPOLLOUT)
                    r = on_writable(c);
                else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    r = on_readable(c);
                if (r < 0)
                    close_conn(c);
            }
        }
    }
}
