/*
 * Layer 1: the poller. evio's internal.Poll in C: one kernel queue per loop
 * and a handful of verbs, with epoll on Linux and kqueue on macOS/BSD behind
 * the same functions. Nothing here knows about Python.
 *
 *   evp_open / evp_close         the kernel queue plus the wake-up channel
 *   evp_add(fd, mask, data)      AddRead / AddReadWrite
 *   evp_mod(fd, old, new, data)  ModRead / ModReadWrite
 *   evp_del(fd, old)             ModDetach
 *   evp_trigger                  Trigger: wake a blocked evp_wait from any thread
 *   evp_wait(timeout_ms)         Wait: block, then fill p->out with ready events
 *
 * `data` is an opaque 64-bit word reported back with every event of that
 * registration; the loop core packs (fd, registration generation) into it so
 * that it can recognise events from a registration it no longer knows.
 */
#ifndef EVIOLOOP_POLLER_H
#define EVIOLOOP_POLLER_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define EVP_READ 1u
#define EVP_WRITE 2u
#define EVP_MAX_EVENTS 1024

typedef struct {
    uint64_t data;
    uint32_t mask; /* EVP_READ and/or EVP_WRITE */
} evp_event;

#if defined(__linux__)
#include <sys/epoll.h>
#include <sys/eventfd.h>

#define EVP_BACKEND "epoll"
#define EVP_WAKE_DATA UINT64_MAX

typedef struct {
    int kq;     /* the epoll fd */
    int wakefd; /* eventfd: Trigger writes to it, Wait drains it */
    int nout;
    struct epoll_event kev[EVP_MAX_EVENTS];
    evp_event out[EVP_MAX_EVENTS];
} evp_poller;

static inline uint32_t evp__epoll_mask(uint32_t mask) {
    uint32_t ev = 0;
    if (mask & EVP_READ) ev |= EPOLLIN;
    if (mask & EVP_WRITE) ev |= EPOLLOUT;
    return ev;
}

static inline int evp__ctl(evp_poller *p, int op, int fd, uint32_t mask, uint64_t data) {
    struct epoll_event ev;
    ev.events = evp__epoll_mask(mask);
    ev.data.u64 = data;
    return epoll_ctl(p->kq, op, fd, &ev);
}

/* Only the epoll instance; the wake-up eventfd survives a reopen. */
static inline int evp__open_queue(evp_poller *p) {
    p->kq = epoll_create1(EPOLL_CLOEXEC);
    if (p->kq < 0) return -1;
    if (evp__ctl(p, EPOLL_CTL_ADD, p->wakefd, EVP_READ, EVP_WAKE_DATA) < 0) {
        int e = errno;
        close(p->kq);
        p->kq = -1;
        errno = e;
        return -1;
    }
    return 0;
}

static inline int evp_open(evp_poller *p) {
    p->nout = 0;
    p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wakefd < 0) return -1;
    if (evp__open_queue(p) < 0) {
        int e = errno;
        close(p->wakefd);
        p->wakefd = -1;
        errno = e;
        return -1;
    }
    return 0;
}

/* epoll keeps a registration alive while any duplicate of the file lives, and
 * keeps reporting it under the old fd number even after that number was closed
 * or reused (trio's _io_epoll.py tells the story). Such a registration cannot be
 * removed with EPOLL_CTL_DEL, because the fd number no longer names that file.
 * The only cure is a fresh epoll instance: the caller re-adds what it knows. */
static inline int evp_reopen(evp_poller *p) {
    if (p->kq >= 0) close(p->kq);
    return evp__open_queue(p);
}

static inline void evp_close(evp_poller *p) {
    if (p->kq >= 0) close(p->kq);
    if (p->wakefd >= 0) close(p->wakefd);
    p->kq = p->wakefd = -1;
}

static inline int evp_add(evp_poller *p, int fd, uint32_t mask, uint64_t data) {
    return evp__ctl(p, EPOLL_CTL_ADD, fd, mask, data);
}

static inline int evp_mod(evp_poller *p, int fd, uint32_t old, uint32_t mask, uint64_t data) {
    (void)old;
    return evp__ctl(p, EPOLL_CTL_MOD, fd, mask, data);
}

static inline int evp_del(evp_poller *p, int fd, uint32_t old) {
    (void)old;
    return evp__ctl(p, EPOLL_CTL_DEL, fd, 0, 0);
}

static inline int evp_trigger(evp_poller *p) {
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: the loop is woken anyway. */
    if (write(p->wakefd, &one, sizeof one) < 0 && errno != EAGAIN) return -1;
    return 0;
}

/* Returns the number of events in p->out, or -1 with errno (EINTR included:
 * the caller runs the signal handlers and comes back). Call without the GIL. */
static inline int evp_wait(evp_poller *p, int timeout_ms) {
    int i, n, k = 0;
    p->nout = 0;
    n = epoll_wait(p->kq, p->kev, EVP_MAX_EVENTS, timeout_ms);
    if (n < 0) return -1;
    for (i = 0; i < n; i++) {
        uint32_t ev = p->kev[i].events;
        uint32_t mask = 0;
        if (p->kev[i].data.u64 == EVP_WAKE_DATA) {
            uint64_t count;
            /* Drain the counter; only the wake-up itself mattered. */
            while (read(p->wakefd, &count, sizeof count) < 0 && errno == EINTR) {}
            continue;
        }
        /* As the stdlib's EpollSelector: an error or hang-up wakes both sides,
         * so whoever waits on the fd finds out on its next read or write. */
        if (ev & ~(uint32_t)EPOLLOUT) mask |= EVP_READ;
        if (ev & ~(uint32_t)EPOLLIN) mask |= EVP_WRITE;
        p->out[k].data = p->kev[i].data.u64;
        p->out[k].mask = mask;
        k++;
    }
    p->nout = k;
    return k;
}

#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || \
    defined(__OpenBSD__) || defined(__DragonFly__)
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <fcntl.h>

#define EVP_BACKEND "kqueue"
#define EVP_WAKE_IDENT 0

typedef struct {
    int kq;
    int wakefd; /* unused with kqueue: EVFILT_USER needs no fd */
    int nout;
    struct kevent kev[EVP_MAX_EVENTS];
    evp_event out[EVP_MAX_EVENTS];
} evp_poller;

static inline int evp__open_queue(evp_poller *p) {
    struct kevent ch;
    p->kq = kqueue();
    if (p->kq < 0) return -1;
    fcntl(p->kq, F_SETFD, FD_CLOEXEC);
    EV_SET(&ch, EVP_WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
    if (kevent(p->kq, &ch, 1, NULL, 0, NULL) < 0) {
        int e = errno;
        close(p->kq);
        p->kq = -1;
        errno = e;
        return -1;
    }
    return 0;
}

static inline int evp_open(evp_poller *p) {
    p->nout = 0;
    p->wakefd = -1;
    return evp__open_queue(p);
}

/* kqueue drops an fd's filters when the fd is closed, so stale registrations
 * do not outlive their fd; a reopen is still supported for symmetry. */
static inline int evp_reopen(evp_poller *p) {
    if (p->kq >= 0) close(p->kq);
    return evp__open_queue(p);
}

static inline void evp_close(evp_poller *p) {
    if (p->kq >= 0) close(p->kq);
    p->kq = -1;
}

/* Apply the difference between two interest masks as one kevent() call. */
static inline int evp__change(evp_poller *p, int fd, uint32_t old, uint32_t mask, uint64_t data) {
    struct kevent ch[2];
    int n = 0, r;
    void *udata = (void *)(uintptr_t)data;
    if ((mask & EVP_READ) && !(old & EVP_READ))
        EV_SET(&ch[n++], fd, EVFILT_READ, EV_ADD, 0, 0, udata);
    else if (!(mask & EVP_READ) && (old & EVP_READ))
        EV_SET(&ch[n++], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    else if (mask & EVP_READ)
        EV_SET(&ch[n++], fd, EVFILT_READ, EV_ADD, 0, 0, udata); /* new udata */
    if ((mask & EVP_WRITE) && !(old & EVP_WRITE))
        EV_SET(&ch[n++], fd, EVFILT_WRITE, EV_ADD, 0, 0, udata);
    else if (!(mask & EVP_WRITE) && (old & EVP_WRITE))
        EV_SET(&ch[n++], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    else if (mask & EVP_WRITE)
        EV_SET(&ch[n++], fd, EVFILT_WRITE, EV_ADD, 0, 0, udata);
    if (n == 0) return 0;
    r = kevent(p->kq, ch, n, NULL, 0, NULL);
    if (r < 0 && mask == 0 && (errno == ENOENT || errno == EBADF)) return 0;
    return r < 0 ? -1 : 0;
}

static inline int evp_add(evp_poller *p, int fd, uint32_t mask, uint64_t data) {
    return evp__change(p, fd, 0, mask, data);
}

static inline int evp_mod(evp_poller *p, int fd, uint32_t old, uint32_t mask, uint64_t data) {
    return evp__change(p, fd, old, mask, data);
}

static inline int evp_del(evp_poller *p, int fd, uint32_t old) {
    return evp__change(p, fd, old, 0, 0);
}

static inline int evp_trigger(evp_poller *p) {
    struct kevent ch;
    EV_SET(&ch, EVP_WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
    return kevent(p->kq, &ch, 1, NULL, 0, NULL) < 0 ? -1 : 0;
}

static inline int evp_wait(evp_poller *p, int timeout_ms) {
    struct timespec ts, *tsp = NULL;
    int i, n, k = 0;
    p->nout = 0;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    n = kevent(p->kq, NULL, 0, p->kev, EVP_MAX_EVENTS, tsp);
    if (n < 0) return -1;
    for (i = 0; i < n; i++) {
        struct kevent *e = &p->kev[i];
        uint32_t mask;
        if (e->filter == EVFILT_USER) continue;
        if (e->flags & EV_ERROR) mask = EVP_READ | EVP_WRITE;
        else if (e->filter == EVFILT_READ) mask = EVP_READ;
        else if (e->filter == EVFILT_WRITE) mask = EVP_WRITE;
        else continue;
        p->out[k].data = (uint64_t)(uintptr_t)e->udata;
        p->out[k].mask = mask;
        k++;
    }
    p->nout = k;
    return k;
}

#else
#error "evioloop needs epoll (Linux) or kqueue (macOS/BSD)"
#endif

/* The loop's clock: the same one time.monotonic() reads, so that loop.time()
 * and time.monotonic() agree. */
#include <time.h>
static inline double evp_monotonic(void) {
    struct timespec ts;
#if defined(__APPLE__)
    return (double)clock_gettime_nsec_np(CLOCK_UPTIME_RAW) * 1e-9;
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
}

#endif /* EVIOLOOP_POLLER_H */
