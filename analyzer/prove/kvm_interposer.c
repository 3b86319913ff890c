/*
 * kvm_interposer.c: an LD_PRELOAD shim for `vmstate-guard prove`.
 *
 * Loaded into qemu-system-x86_64, it wraps libc's ioctl() so that a
 * destination QEMU sees a KVM that looks older than the host's, and it
 * records what that QEMU hands to KVM. Configuration, read once at load:
 *
 *   VMSTATE_GUARD_HIDE_MSRS  comma-separated MSR indices (0x3b or 59): they
 *                            are removed from the answers of
 *                            KVM_GET_MSR_INDEX_LIST and
 *                            KVM_GET_MSR_FEATURE_INDEX_LIST.
 *   VMSTATE_GUARD_HIDE_CAPS  comma-separated KVM_CAP_* numbers:
 *                            KVM_CHECK_EXTENSION answers 0 for them, on any
 *                            descriptor, without asking the kernel.
 *   VMSTATE_GUARD_KVM_LOG    file to append the log to (no log without it).
 *
 * Log format: text, one event per line, fields separated by one space,
 * numbers in hex with 0x or in decimal as shown. Every line is written
 * with a single write(2) on an O_APPEND descriptor, so lines from many
 * vCPU threads (or several processes sharing the file) never mix. fd=N is
 * the descriptor the ioctl was made on (a vCPU fd tells vCPUs apart).
 *
 *   start pid=N hide-msrs=0x3b,0x48 hide-caps=126
 *       the shim loaded in process N with this effective configuration
 *   config-error VARIABLE TOKEN
 *       a token of a hide list that is not a number in range: ignored
 *   hide-msr 0x3b list=index|feature
 *       a hidden MSR was removed from a real answer of the index list or
 *       the feature index list
 *   hide-cap 126 fd=N
 *       KVM_CHECK_EXTENSION asked for a hidden capability and got 0
 *   set-msr 0x3b 0x5a5a000000000001 fd=N
 *       one KVM_SET_MSRS entry (index, data), logged before the real call
 *   set-msrs-ret R fd=N
 *       that KVM_SET_MSRS call's return: the number of leading entries the
 *       kernel accepted, or -errno
 *   set nr=0xa0 size=64 fd=N ret=R HEX
 *       another KVM ioctl that hands a payload to the kernel: every _IOW
 *       one but the queries below, plus KVM_SET_IRQCHIP and KVM_SET_PIT
 *       (declared _IOR in linux/kvm.h, yet they pass state in); HEX is the
 *       _IOC_SIZE bytes at the argument, taken before the call (so the
 *       fixed header only of a flexible struct such as kvm_cpuid2); R is
 *       the return or -errno
 *   set-tsc-khz N fd=N ret=R
 *       KVM_SET_TSC_KHZ (an _IO whose argument is the value)
 *   truncated
 *       the process wrote LOG_CAP bytes; it logs nothing more
 *
 * Requests are compared on their low 32 bits: QEMU's kvm_ioctl() takes
 * the request as an int, so one with _IOC_READ (bit 31) set reaches
 * ioctl() sign-extended; the kernel truncates it the same way.
 *
 * Not logged: _IOWR requests (in linux/kvm.h all queries whose input is a
 * buffer length, KVM_GET_MSRS on every state sync among them), KVM_RUN
 * (_IO), and the _IOW queries KVM_GET_DIRTY_LOG (every migration pass),
 * KVM_GET_ONE_REG, KVM_GET_DEVICE_ATTR and KVM_HAS_DEVICE_ATTR.
 *
 * The wrapper runs on every vCPU thread at once and may run where malloc
 * or stdio would not be safe: no allocation, no stdio, no locks; the
 * configuration is written only by the constructor, before any thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/kvm.h>

/* Enough for every probe a finding hides; more is reported, not stored. */
#define MAX_HIDDEN 64
/* Bounds the disk a long-running or chatty guest can fill. */
#define LOG_CAP (64UL << 20)
/* _IOC_SIZE is 14 bits: the largest payload, as hex. */
#define MAX_PAYLOAD_HEX (2 * _IOC_SIZEMASK)

typedef int (*ioctl_fn)(int, unsigned long, ...);

static ioctl_fn real_ioctl;
static int log_fd = -1;
static uint32_t hidden_msrs[MAX_HIDDEN];
static size_t n_hidden_msrs;
static long hidden_caps[MAX_HIDDEN];
static size_t n_hidden_caps;
static unsigned long log_bytes;
static int log_truncated;

/* A line under construction in a caller-owned buffer; overflow drops text. */
struct line {
    char *buf;
    size_t cap;
    size_t len;
};

static void put_str(struct line *l, const char *s)
{
    while (*s && l->len < l->cap) {
        l->buf[l->len++] = *s++;
    }
}

static void put_char(struct line *l, char c)
{
    if (l->len < l->cap) {
        l->buf[l->len++] = c;
    }
}

static void put_hex(struct line *l, uint64_t v)
{
    char tmp[16];
    int n = 0;

    put_str(l, "0x");
    do {
        tmp[n++] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v);
    while (n) {
        put_char(l, tmp[--n]);
    }
}

static void put_dec(struct line *l, long long v)
{
    char tmp[20];
    int n = 0;
    /* Negate in unsigned arithmetic so LLONG_MIN does not overflow. */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    if (v < 0) {
        put_char(l, '-');
    }
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n) {
        put_char(l, tmp[--n]);
    }
}

static void put_fd(struct line *l, int fd)
{
    put_str(l, " fd=");
    put_dec(l, fd);
}

/* The value an ioctl returned, as the kernel meant it: a count or -errno. */
static long long result(int ret, int err)
{
    return ret < 0 ? -(long long)err : ret;
}

static void write_all(const struct iovec *iov, int n)
{
    /* One writev on O_APPEND is one atomic append for a regular file. */
    while (writev(log_fd, iov, n) < 0 && errno == EINTR) {
    }
}

/* Append pieces plus a newline as one line, within the log cap. */
static void emit_parts(const char *a, size_t alen, const char *b, size_t blen)
{
    struct iovec iov[3] = {
        {(void *)a, alen},
        {(void *)b, blen},
        {"\n", 1},
    };
    size_t total = alen + blen + 1;

    if (log_fd < 0) {
        return;
    }
    if (__atomic_add_fetch(&log_bytes, total, __ATOMIC_RELAXED) > LOG_CAP) {
        if (!__atomic_exchange_n(&log_truncated, 1, __ATOMIC_RELAXED)) {
            struct iovec t = {"truncated\n", 10};
            write_all(&t, 1);
        }
        return;
    }
    write_all(iov, 3);
}

static void emit(const struct line *l)
{
    emit_parts(l->buf, l->len, "", 0);
}

static int msr_hidden(uint32_t index)
{
    for (size_t i = 0; i < n_hidden_msrs; i++) {
        if (hidden_msrs[i] == index) {
            return 1;
        }
    }
    return 0;
}

static int cap_hidden(long cap)
{
    for (size_t i = 0; i < n_hidden_caps; i++) {
        if (hidden_caps[i] == cap) {
            return 1;
        }
    }
    return 0;
}

/* Parse a whole token as 0x-hex or decimal (never octal: "010" is ten). */
static int parse_number(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    size_t i = 0;

    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    if (i == len) {
        return 0;
    }
    for (; i < len; i++) {
        char c = s[i];
        unsigned d;

        if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (base == 16 && c >= 'a' && c <= 'f') {
            d = (unsigned)(c - 'a' + 10);
        } else if (base == 16 && c >= 'A' && c <= 'F') {
            d = (unsigned)(c - 'A' + 10);
        } else {
            return 0;
        }
        if (v > (max - d) / base) {
            return 0;
        }
        v = v * base + d;
    }
    *out = v;
    return 1;
}

static void config_error(const char *var, const char *token, size_t len)
{
    char buf[160];
    struct line l = {buf, sizeof(buf), 0};
    size_t start;

    put_str(&l, "config-error ");
    start = l.len;
    put_str(&l, var);
    put_char(&l, ' ');
    for (size_t i = 0; i < len && i < 64; i++) {
        /* Keep the log one event per line whatever the variable holds. */
        char c = token[i];
        put_char(&l, c > ' ' && c < 0x7f ? c : '?');
    }
    emit(&l);
    /* Also on stderr: someone running QEMU by hand may have no log. */
    put_char(&l, '\n');
    {
        static const char prefix[] = "vmstate-guard kvm interposer: ignoring ";
        struct iovec iov[2] = {{(void *)prefix, sizeof(prefix) - 1}, {l.buf + start, l.len - start}};

        while (writev(STDERR_FILENO, iov, 2) < 0 && errno == EINTR) {
        }
    }
}

/* Read a comma-separated list; bad tokens are reported and skipped. */
static size_t parse_list(const char *var, uint64_t max, uint64_t *out)
{
    const char *s = getenv(var);
    size_t n = 0;

    if (!s) {
        return 0;
    }
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *tok = s;
        size_t tlen = len;
        uint64_t v;

        while (tlen && (*tok == ' ' || *tok == '\t')) {
            tok++;
            tlen--;
        }
        while (tlen && (tok[tlen - 1] == ' ' || tok[tlen - 1] == '\t')) {
            tlen--;
        }
        if (tlen) {
            if (!parse_number(tok, tlen, max, &v) || n == MAX_HIDDEN) {
                config_error(var, tok, tlen);
            } else {
                out[n++] = v;
            }
        }
        s += len;
        if (*s == ',') {
            s++;
        }
    }
    return n;
}

static void resolve_real_ioctl(void)
{
    if (!real_ioctl) {
        real_ioctl = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
    }
}

__attribute__((constructor)) static void interposer_init(void)
{
    uint64_t values[MAX_HIDDEN];
    const char *path = getenv("VMSTATE_GUARD_KVM_LOG");
    char buf[2048];
    struct line l = {buf, sizeof(buf), 0};
    size_t n;

    resolve_real_ioctl();
    if (path && *path) {
        log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
    n = parse_list("VMSTATE_GUARD_HIDE_MSRS", UINT32_MAX, values);
    for (size_t i = 0; i < n; i++) {
        hidden_msrs[i] = (uint32_t)values[i];
    }
    n_hidden_msrs = n;
    /* KVM_CHECK_EXTENSION's argument is a long; caps are small positives. */
    n = parse_list("VMSTATE_GUARD_HIDE_CAPS", INT32_MAX, values);
    for (size_t i = 0; i < n; i++) {
        hidden_caps[i] = (long)values[i];
    }
    n_hidden_caps = n;

    put_str(&l, "start pid=");
    put_dec(&l, getpid());
    put_str(&l, " hide-msrs=");
    for (size_t i = 0; i < n_hidden_msrs; i++) {
        if (i) {
            put_char(&l, ',');
        }
        put_hex(&l, hidden_msrs[i]);
    }
    put_str(&l, " hide-caps=");
    for (size_t i = 0; i < n_hidden_caps; i++) {
        if (i) {
            put_char(&l, ',');
        }
        put_dec(&l, hidden_caps[i]);
    }
    emit(&l);
}

/* Drop hidden MSRs from a list the kernel filled in, logging each one. */
static void filter_msr_list(struct kvm_msr_list *list, const char *which)
{
    uint32_t out = 0;

    for (uint32_t i = 0; i < list->nmsrs; i++) {
        uint32_t index = list->indices[i];

        if (msr_hidden(index)) {
            char buf[64];
            struct line l = {buf, sizeof(buf), 0};

            put_str(&l, "hide-msr ");
            put_hex(&l, index);
            put_str(&l, " list=");
            put_str(&l, which);
            emit(&l);
            continue;
        }
        list->indices[out++] = index;
    }
    list->nmsrs = out;
}

static int set_msrs(int fd, unsigned long request, struct kvm_msrs *msrs)
{
    char buf[96];
    struct line l = {buf, sizeof(buf), 0};
    int ret, err;

    if (msrs && log_fd >= 0) {
        for (uint32_t i = 0; i < msrs->nmsrs; i++) {
            l.len = 0;
            put_str(&l, "set-msr ");
            put_hex(&l, msrs->entries[i].index);
            put_char(&l, ' ');
            put_hex(&l, msrs->entries[i].data);
            put_fd(&l, fd);
            emit(&l);
        }
    }
    ret = real_ioctl(fd, request, msrs);
    err = errno;
    l.len = 0;
    put_str(&l, "set-msrs-ret ");
    put_dec(&l, result(ret, err));
    put_fd(&l, fd);
    emit(&l);
    errno = err;
    return ret;
}

static int set_tsc_khz(int fd, unsigned long request, void *arg)
{
    char buf[96];
    struct line l = {buf, sizeof(buf), 0};
    int ret = real_ioctl(fd, request, arg);
    int err = errno;

    put_str(&l, "set-tsc-khz ");
    /* The kernel reads the argument as a u32 kHz value. */
    put_dec(&l, (uint32_t)(uintptr_t)arg);
    put_fd(&l, fd);
    put_str(&l, " ret=");
    put_dec(&l, result(ret, err));
    emit(&l);
    errno = err;
    return ret;
}

/* Out of line so that the big buffer is on the stack only when logging. */
__attribute__((noinline)) static int set_payload(int fd, unsigned long request, void *arg)
{
    char hex[MAX_PAYLOAD_HEX];
    char buf[128];
    struct line h = {hex, sizeof(hex), 0};
    struct line l = {buf, sizeof(buf), 0};
    uint32_t req = (uint32_t)request;
    size_t size = _IOC_SIZE(req);
    int ret, err;

    if (arg) {
        /* Taken before the call: the state as handed in. */
        const unsigned char *p = arg;

        for (size_t i = 0; i < size; i++) {
            put_char(&h, "0123456789abcdef"[p[i] >> 4]);
            put_char(&h, "0123456789abcdef"[p[i] & 0xf]);
        }
    }
    ret = real_ioctl(fd, request, arg);
    err = errno;
    put_str(&l, "set nr=");
    put_hex(&l, _IOC_NR(req));
    put_str(&l, " size=");
    put_dec(&l, (long long)(h.len / 2));
    put_fd(&l, fd);
    put_str(&l, " ret=");
    put_dec(&l, result(ret, err));
    if (h.len) {
        put_char(&l, ' ');
    }
    emit_parts(l.buf, l.len, h.buf, h.len);
    errno = err;
    return ret;
}

static int logs_payload(uint32_t req)
{
    switch (req) {
    case KVM_SET_IRQCHIP:
    case KVM_SET_PIT:
        return 1;
    case KVM_GET_DIRTY_LOG:
    case KVM_GET_ONE_REG:
    case KVM_GET_DEVICE_ATTR:
    case KVM_HAS_DEVICE_ATTR:
        return 0;
    default:
        return _IOC_DIR(req) == _IOC_WRITE;
    }
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    void *arg;
    uint32_t req = (uint32_t)request;
    int ret, err;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);

    /* Only when another constructor calls ioctl() before ours ran. */
    resolve_real_ioctl();
    if (!real_ioctl) {
        return (int)syscall(SYS_ioctl, fd, request, arg);
    }
    if (_IOC_TYPE(req) != KVMIO) {
        return real_ioctl(fd, request, arg);
    }

    switch (req) {
    case KVM_CHECK_EXTENSION:
        if (cap_hidden((long)arg)) {
            char buf[64];
            struct line l = {buf, sizeof(buf), 0};

            err = errno;
            put_str(&l, "hide-cap ");
            put_dec(&l, (long)arg);
            put_fd(&l, fd);
            emit(&l);
            errno = err;
            return 0;
        }
        return real_ioctl(fd, request, arg);
    case KVM_GET_MSR_INDEX_LIST:
    case KVM_GET_MSR_FEATURE_INDEX_LIST:
        ret = real_ioctl(fd, request, arg);
        /* The sizing call (nmsrs too small, E2BIG) passes through as is. */
        if (ret == 0 && arg && n_hidden_msrs) {
            err = errno;
            filter_msr_list(arg, req == KVM_GET_MSR_INDEX_LIST ? "index" : "feature");
            errno = err;
        }
        return ret;
    case KVM_SET_MSRS:
        return set_msrs(fd, request, arg);
    case KVM_SET_TSC_KHZ:
        return set_tsc_khz(fd, request, arg);
    default:
        if (log_fd >= 0 && logs_payload(req)) {
            return set_payload(fd, request, arg);
        }
        return real_ioctl(fd, request, arg);
    }
}
