/*
 * loadgen: a small closed-loop TCP load generator for the net benchmarks.
 *
 *   loadgen echo HOST PORT [options]    N connections; each sends S bytes, waits
 *                                       for exactly those S bytes back, repeats.
 *   loadgen http HOST PORT [options]    N keep-alive HTTP/1.1 connections,
 *                                       pipelining depth 1; a request counts when
 *                                       its whole response (Content-Length) is in.
 *
 * Options:
 *   -c N     connections (default 10)
 *   -s S     echo message size in bytes (default 1024)
 *   -d SEC   measured duration (default 2)
 *   -w SEC   warm-up before the measurement (default 0.5)
 *   -t T     worker threads, each with its own epoll; 0 = one per core (default 1)
 *   -V       never compare echoed content (byte counts are always checked)
 *   -A       compare the content of every echo reply (default: the first reply on each
 *            connection and a random 1 in 16 after it; the others are discarded unread with
 *            recv(MSG_TRUNC), so the client does not pay a copy the server pays)
 *   --control  after the warm-up print "ready" and wait for "go" on stdin; after the
 *            run print the result and wait for "quit" (or EOF) before closing the
 *            connections.  The harness uses this so that the server is idle whenever
 *            it samples the server's CPU time: the server's CPU delta then covers
 *            exactly the requests counted here.
 *
 * Output: one JSON line on stdout: requests, elapsed, rps, the client's own CPU
 * time over the measured window (user, sys from getrusage RUSAGE_SELF) and bytes.
 * Any protocol error (short/extra/corrupt echo, bad HTTP response, EOF, reset)
 * prints a message on stderr and exits with status 3.  The whole process is bounded
 * by alarm(): it can never outlive warm-up + duration + 120 s.
 *
 * The measured window: the warm-up ends with a drain (no request in flight), then
 * "go" starts every connection at once; at the deadline no new request is issued
 * and the window closes when the last in-flight one completes.  Requests finished
 * during the drain are counted (they were issued inside the window).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MODE_ECHO, MODE_HTTP };
enum { PH_IDLE, PH_RUN, PH_DRAIN, PH_QUIT };

#define RBUF_SIZE (256 * 1024)
#define HBUF_SIZE 4096
#define MAX_EVENTS 512

static const char HTTP_REQUEST[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: evioloop-loadgen\r\n\r\n";

struct conn {
    int fd;
    int busy;           /* a request is in flight */
    int want_out;       /* EPOLLOUT is registered */
    size_t sent;        /* bytes of the current request written */
    size_t recvd;       /* echo: bytes of the current reply read */
    unsigned long nreq; /* requests started on this connection */
    uint32_t rng;       /* xorshift state: which replies to compare */
    int check;          /* echo: compare this reply's content */
    /* http */
    int in_body;
    long body_left;
    size_t hlen;
    char *hbuf;
};

struct worker {
    int id;
    int ep;
    int evfd;
    struct conn *conns;
    int nconns;
    int inflight;
    unsigned seen;               /* last phase word acted upon */
    char *rbuf;
    pthread_t th;
    /* read by the main thread */
    _Atomic unsigned long count; /* completed requests */
    _Atomic unsigned long bytes; /* payload bytes received */
    _Atomic unsigned drained;    /* generation of the last drain completed */
    _Atomic long drained_ns;     /* monotonic time of that drain */
    char pad[64];
};

static int mode = MODE_ECHO;
static size_t msg_size = 1024;
static int verify = 1;          /* 0: counts only; 1: sampled content; 2: all content */
#define VERIFY_EVERY 16
static char *msg;               /* the echo message pattern */
static size_t req_len;
static const char *req_buf;
static _Atomic unsigned phase_word; /* generation << 4 | phase */

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "loadgen: %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
    fflush(stderr);
    _exit(3);
}

static void set_events(struct worker *w, struct conn *c, int out)
{
    struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl MOD", errno);
    c->want_out = out;
}

/* Write what is left of the current request; register EPOLLOUT only on a partial write. */
static void try_send(struct worker *w, struct conn *c)
{
    size_t len = mode == MODE_ECHO ? msg_size : req_len;
    const char *buf = mode == MODE_ECHO ? msg : req_buf;
    while (c->sent < len) {
        ssize_t n = send(c->fd, buf + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out)
                set_events(w, c, 1);
            return;
        } else {
            die("send", n < 0 ? errno : 0);
        }
    }
    if (c->want_out)
        set_events(w, c, 0);
}

static void start_request(struct worker *w, struct conn *c)
{
    c->busy = 1;
    c->sent = 0;
    c->recvd = 0;
    c->in_body = 0;
    c->body_left = 0;
    c->hlen = 0;
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 17;
    c->rng ^= c->rng << 5;
    c->check = verify == 2 || (verify == 1 && (c->nreq == 0 || c->rng % VERIFY_EVERY == 0));
    c->nreq++;
    w->inflight++;
    try_send(w, c);
}

static void complete(struct worker *w, struct conn *c, unsigned phase)
{
    c->busy = 0;
    w->inflight--;
    atomic_store_explicit(&w->count, atomic_load_explicit(&w->count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (phase == PH_RUN)
        start_request(w, c);
}

/* Parse whatever response bytes arrived for an HTTP connection. */
static void http_bytes(struct worker *w, struct conn *c, const char *p, size_t n, unsigned phase)
{
    if (!c->busy)
        die("http: bytes received with no request in flight", 0);
    if (c->in_body) {
        c->body_left -= (long)n;
        if (c->body_left < 0)
            die("http: more bytes than Content-Length (pipelining depth is 1)", 0);
        if (c->body_left == 0)
            complete(w, c, phase);
        return;
    }
    if (c->hlen + n > HBUF_SIZE)
        die("http: response head too large", 0);
    memcpy(c->hbuf + c->hlen, p, n);
    c->hlen += n;
    char *end = memmem(c->hbuf, c->hlen, "\r\n\r\n", 4);
    if (!end)
        return;
    size_t head = (size_t)(end - c->hbuf) + 4;
    if (c->hlen < 12 || memcmp(c->hbuf, "HTTP/1.1 200", 12) != 0)
        die("http: status is not HTTP/1.1 200", 0);
    long cl = -1;
    for (char *line = memchr(c->hbuf, '\n', head); line && line < end; ) {
        line++;
        if ((size_t)(end - line) > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            cl = strtol(line + 15, NULL, 10);
            break;
        }
        line = memchr(line, '\n', (size_t)(end - line) + 1);
    }
    if (cl < 0)
        die("http: response without Content-Length", 0);
    long extra = (long)(c->hlen - head);
    if (extra > cl)
        die("http: more bytes than Content-Length (pipelining depth is 1)", 0);
    c->hlen = 0;
    if (extra == cl) {
        complete(w, c, phase);
    } else {
        c->in_body = 1;
        c->body_left = cl - extra;
    }
}

static void on_readable(struct worker *w, struct conn *c, unsigned phase)
{
    for (;;) {
        /* An echo reply we do not compare is discarded in the kernel (MSG_TRUNC on a
         * TCP socket drops the bytes without copying them); the count is still checked. */
        int trunc = mode == MODE_ECHO && c->busy && !c->check;
        ssize_t n = recv(c->fd, w->rbuf, RBUF_SIZE, trunc ? MSG_TRUNC : 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            die("recv", errno);
        }
        if (n == 0)
            die("server closed a connection", 0);
        atomic_store_explicit(&w->bytes,
                              atomic_load_explicit(&w->bytes, memory_order_relaxed) + (unsigned long)n,
                              memory_order_relaxed);
        if (mode == MODE_HTTP) {
            http_bytes(w, c, w->rbuf, (size_t)n, phase);
        } else {
            if (!c->busy || c->recvd + (size_t)n > c->sent)
                die("echo: received more bytes than were sent", 0);
            if (!trunc && memcmp(w->rbuf, msg + c->recvd, (size_t)n) != 0)
                die("echo: echoed bytes differ from the bytes sent", 0);
            c->recvd += (size_t)n;
            if (c->recvd == msg_size)
                complete(w, c, phase);
        }
        /* Level-triggered: a short read means the socket is drained for now. */
        if ((size_t)n < RBUF_SIZE)
            return;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        unsigned word = atomic_load(&phase_word);
        unsigned phase = word & 15;
        if (word != w->seen) {
            w->seen = word;
            if (phase == PH_QUIT)
                return NULL;
            if (phase == PH_RUN)
                for (int i = 0; i < w->nconns; i++)
                    if (!w->conns[i].busy)
                        start_request(w, &w->conns[i]);
        }
        if (phase == PH_DRAIN && w->inflight == 0 && atomic_load(&w->drained) != (word >> 4)) {
            atomic_store(&w->drained_ns, now_ns());
            atomic_store(&w->drained, word >> 4);
        }
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait", errno);
        }
        /* The phase may have changed while we waited: a completion after the
         * deadline must not issue a new request. */
        phase = atomic_load(&phase_word) & 15;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {            /* the eventfd: the phase changed */
                uint64_t v;
                if (read(w->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
                    die("read eventfd", errno);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(w, c, phase);
            if ((evs[i].events & EPOLLOUT) && c->busy)
                try_send(w, c);
        }
    }
}

static int connect_to(const struct sockaddr_storage *sa, socklen_t salen)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket", errno);
    if (connect(fd, (const struct sockaddr *)sa, salen) < 0)
        die("connect", errno);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static struct worker *workers;
static int nworkers = 1;

static void set_phase(unsigned gen, unsigned ph)
{
    atomic_store(&phase_word, (gen << 4) | ph);
    uint64_t one = 1;
    for (int i = 0; i < nworkers; i++)
        if (write(workers[i].evfd, &one, sizeof one) < 0)
            die("write eventfd", errno);
}

/* Wait until every worker has drained generation gen; return the time the last one did. */
static long wait_drained(unsigned gen)
{
    long limit = now_ns() + 30L * 1000000000L;
    for (;;) {
        int all = 1;
        long last = 0;
        for (int i = 0; i < nworkers; i++) {
            if (atomic_load(&workers[i].drained) != gen) {
                all = 0;
                break;
            }
            long t = atomic_load(&workers[i].drained_ns);
            if (t > last)
                last = t;
        }
        if (all)
            return last;
        if (now_ns() > limit)
            die("requests still in flight 30 s after the deadline (server stalled?)", 0);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
}

static void sleep_until(long t)
{
    struct timespec ts = { t / 1000000000L, t % 1000000000L };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Wait for one line on stdin (bounded); return it without the newline, "" on EOF. */
static void read_command(char *line, size_t size, int timeout_s)
{
    struct pollfd p = { .fd = 0, .events = POLLIN };
    int r = poll(&p, 1, timeout_s * 1000);
    if (r == 0)
        die("no command on stdin before the timeout", 0);
    if (!fgets(line, (int)size, stdin)) {
        line[0] = 0;
        return;
    }
    line[strcspn(line, "\r\n")] = 0;
}

static double cpu_s(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen echo|http HOST PORT [-c conns] [-s size] [-d sec] [-w sec] "
                    "[-t threads] [-V|-A] [--control]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        usage();
    if (strcmp(argv[1], "echo") == 0)
        mode = MODE_ECHO;
    else if (strcmp(argv[1], "http") == 0)
        mode = MODE_HTTP;
    else
        usage();
    const char *host = argv[2], *port = argv[3];
    int nconns = 10, control = 0;
    double duration = 2.0, warmup = 0.5;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--control") == 0) { control = 1; continue; }
        if (strcmp(a, "-V") == 0) { verify = 0; continue; }
        if (strcmp(a, "-A") == 0) { verify = 2; continue; }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "-c") == 0) nconns = atoi(v);
        else if (strcmp(a, "-s") == 0) msg_size = (size_t)atol(v);
        else if (strcmp(a, "-d") == 0) duration = atof(v);
        else if (strcmp(a, "-w") == 0) warmup = atof(v);
        else if (strcmp(a, "-t") == 0) nworkers = atoi(v);
        else usage();
    }
    if (nworkers <= 0)
        nworkers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nworkers > nconns)
        nworkers = nconns;
    if (nconns <= 0 || msg_size == 0 || duration <= 0 || warmup < 0)
        usage();
    /* Hard bound on the process lifetime (plus the harness's own timeouts). */
    alarm((unsigned)(warmup + duration) + (control ? 240 : 120));

    msg = malloc(msg_size);
    for (size_t i = 0; i < msg_size; i++)
        msg[i] = (char)((i * 131 + (i >> 8) * 7 + 1) & 0xff);
    req_buf = HTTP_REQUEST;
    req_len = sizeof HTTP_REQUEST - 1;

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", host, port, gai_strerror(gai));
        return 3;
    }
    struct sockaddr_storage sa;
    socklen_t salen = ai->ai_addrlen;
    memcpy(&sa, ai->ai_addr, salen);
    freeaddrinfo(ai);

    workers = calloc((size_t)nworkers, sizeof *workers);
    for (int t = 0; t < nworkers; t++) {
        struct worker *w = &workers[t];
        w->id = t;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->ep < 0 || w->evfd < 0)
            die("epoll_create1/eventfd", errno);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &ev);
        w->nconns = nconns / nworkers + (t < nconns % nworkers);
        w->conns = calloc((size_t)w->nconns, sizeof *w->conns);
        w->rbuf = malloc(RBUF_SIZE);
        for (int i = 0; i < w->nconns; i++) {
            struct conn *c = &w->conns[i];
            c->fd = connect_to(&sa, salen);
            c->rng = 2463534242u + 7919u * (uint32_t)(t * 1000 + i);
            c->hbuf = malloc(HBUF_SIZE);
            struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
            if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &cev) < 0)
                die("epoll_ctl ADD", errno);
        }
    }
    atomic_store(&phase_word, (0u << 4) | PH_IDLE);
    for (int t = 0; t < nworkers; t++)
        if (pthread_create(&workers[t].th, NULL, worker_main, &workers[t]) != 0)
            die("pthread_create", 0);

    unsigned gen = 1;
    if (warmup > 0) {
        long t = now_ns();
        set_phase(gen, PH_RUN);
        sleep_until(t + (long)(warmup * 1e9));
        set_phase(++gen, PH_DRAIN);
        wait_drained(gen);
    }
    char line[64];
    if (control) {
        printf("ready\n");
        fflush(stdout);
        read_command(line, sizeof line, 120);
        if (strcmp(line, "go") != 0)
            die("expected \"go\" on stdin", 0);
    }
    unsigned long c0 = 0, b0 = 0;
    for (int t = 0; t < nworkers; t++) {
        c0 += atomic_load(&workers[t].count);
        b0 += atomic_load(&workers[t].bytes);
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    long t0 = now_ns();
    set_phase(++gen, PH_RUN);
    sleep_until(t0 + (long)(duration * 1e9));
    set_phase(++gen, PH_DRAIN);
    long t1 = wait_drained(gen);
    getrusage(RUSAGE_SELF, &ru1);
    unsigned long c1 = 0, b1 = 0;
    for (int t = 0; t < nworkers; t++) {
        c1 += atomic_load(&workers[t].count);
        b1 += atomic_load(&workers[t].bytes);
    }
    double elapsed = (double)(t1 - t0) / 1e9;
    unsigned long reqs = c1 - c0;
    printf("{\"mode\": \"%s\", \"conns\": %d, \"size\": %zu, \"threads\": %d, "
           "\"requests\": %lu, \"elapsed\": %.6f, \"rps\": %.1f, \"bytes\": %lu, "
           "\"cpu_user\": %.6f, \"cpu_sys\": %.6f, \"verified\": %s}\n",
           mode == MODE_ECHO ? "echo" : "http", nconns, mode == MODE_ECHO ? msg_size : 0,
           nworkers, reqs, elapsed, (double)reqs / elapsed, b1 - b0,
           cpu_s(&ru1.ru_utime) - cpu_s(&ru0.ru_utime),
           cpu_s(&ru1.ru_stime) - cpu_s(&ru0.ru_stime),
           mode == MODE_ECHO ? (verify == 2 ? "\"counts+content\"" : verify ? "\"counts+sampled content\"" : "\"counts\"") : "\"content-length\"");
    fflush(stdout);
    if (control)
        read_command(line, sizeof line, 120);  /* "quit" or EOF */
    set_phase(++gen, PH_QUIT);
    for (int t = 0; t < nworkers; t++)
        pthread_join(workers[t].th, NULL);
    for (int t = 0; t < nworkers; t++)
        for (int i = 0; i < workers[t].nconns; i++)
            close(workers[t].conns[i].fd);
    return 0;
}
