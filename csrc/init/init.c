/* The guest's /init: PID 1 of the thin VM that `ociext4 run` boots.
 *
 * Loads the modules the host listed (in dependency order), mounts the image
 * from /dev/vda as the root (writable unless asked otherwise: the host gives
 * QEMU a throwaway overlay), mounts the API file systems and the volumes,
 * brings up the network, applies the run's settings (argv, env, workdir,
 * user, hostname), runs the command, relays its streams over virtio-serial
 * ports, passes on the host's signals and window size, reaps every zombie,
 * and reports the exit status after the last byte of output, before it
 * syncs and powers off.
 *
 * Settings arrive in the initramfs as files of NUL-terminated "key=value"
 * records: /ociext4/modules (cached with the kernel's modules) and
 * /ociext4/settings (appended per run).
 *
 * Three virtio-serial ports, numbered by the host:
 *   1 "out" guest->host: frames of [kind:1][length:4 LE][payload]; kind 'o'
 *     stdout, 'e' stderr, 's' the status ("exit N", "signal N", "error N").
 *     Each frame holds whole writes of the command (a pipe read with a
 *     buffer as large as the pipe never splits a write of up to PIPE_BUF),
 *     so the host never tears a line when stdout and stderr meet.
 *   2 "ctl" host->guest: frames of the same shape; 'k' signal N, 'w' rows
 *     and columns, 'c' the host closed stream 1 or 2, 'z' stdin ends after
 *     N bytes.
 *   3 "in"  host->guest: stdin's bytes, raw.
 * The kernel's console stays on the 16550 (ttyS0): it exists before any
 * module is loaded, so even an early failure is seen.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/dm-ioctl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#define EXIT_VM 125        /* ociext4 or the VM failed (docker's 125) */
#define EXIT_CANNOT 126    /* the command cannot be run */
#define EXIT_NOTFOUND 127  /* the command was not found */

#define MAX_FILE (64u << 20)
#define MAX_GROUPS 256u
#define PIPE_SIZE (256u << 10)   /* the command's pipes, and the relay's reads */
#define FRAME_HEAD 5u
#define CTL_MAX 1024u            /* longest host->guest control frame */
#define PORT_OUT 1
#define PORT_CTL 2
#define PORT_IN 3
#define DISK "/dev/vda"
#define DM_CONTROL "/dev/mapper/control"
#define VERITY_NAME "ociext4-root"
#define VERITY_DEV "/dev/ociext4-root"
#define LOWER "/lower"     /* a verity root's read-only image, under the overlay */
#define UPPER "/upper"     /* the tmpfs its throwaway writes go to */
#define NEWROOT "/newroot"
#define ETC_DIR "/run/ociext4"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum root_mode { ROOT_THROWAWAY, ROOT_READONLY, ROOT_KEEP };

typedef struct {
    char *buf;
    size_t len;
} blob;

typedef struct {
    const char **items;  /* NULL-terminated, for execve */
    size_t n, cap;
} list;

typedef struct {
    list argv;
    list env;
    list modules;      /* always loaded */
    list net_modules;  /* loaded when the network is on */
    list fs_modules;   /* loaded when there are volumes */
    list dm_modules;   /* loaded for a root on dm-verity */
    list volumes;      /* "TAG\tPATH\tro|rw" */
    list tmpfs;        /* guest paths */
    const char *workdir;
    const char *user;
    const char *hostname;
    const char *hosts;     /* contents of /etc/hosts, if given */
    const char *resolv;    /* contents of /etc/resolv.conf, if given */
    const char *net_addr;  /* "10.0.2.15/24": eth0's address; NULL: no network */
    const char *net_gw;
    const char *verity;    /* the dm-verity table over DISK; NULL: DISK as it is */
    enum root_mode root;
    int interactive;
    int tty;
    unsigned short rows, cols;
    int probe;        /* boot and report, no disk: the KVM probe */
    long disk_wait_ms;
} settings;

typedef struct {
    uid_t uid;
    gid_t gid;
    gid_t groups[MAX_GROUPS];
    size_t ngroups;
    char home[512];
} identity;

typedef struct {
    int out;      /* port 1 */
    int ctl;      /* port 2 */
    int in;       /* port 3 */
    int console;  /* /dev/console, before the ports exist */
    int null;     /* /dev/null: stdin without -i */
} ports;

/* ------------------------------------------------------------------ output */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {fd, POLLOUT, 0};
                poll(&pf, 1, -1);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_head(char *h, char kind, size_t len)
{
    h[0] = kind;
    for (int i = 0; i < 4; i++)
        h[1 + i] = (char)((len >> (8 * i)) & 0xff);
}

static void send_frame(ports *pt, char kind, const char *p, size_t n)
{
    char head[FRAME_HEAD];
    put_head(head, kind, n);
    if (write_all(pt->out, head, sizeof head) == 0)
        write_all(pt->out, p, n);
}

static void say(ports *pt, const char *fmt, ...)
{
    char line[1024];
    int off = snprintf(line, sizeof line, "ociext4: ");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + off, sizeof line - (size_t)off - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)off + ((size_t)n < sizeof line - (size_t)off - 1
                                    ? (size_t)n : sizeof line - (size_t)off - 2);
    line[len++] = '\n';
    if (pt->out >= 0)
        send_frame(pt, 'e', line, len);
    else if (pt->console >= 0)
        write_all(pt->console, line, len);
}

/* The status goes out last, after every byte of output; then the disk is
 * synced (a kept root remounted read-only, for a clean journal) and the
 * machine powered off. */
static void finish(ports *pt, const char *kind, int value, int keep)
{
    char line[64];
    int n = snprintf(line, sizeof line, "%s %d", kind, value);
    if (pt->out >= 0 && n > 0) {
        int fl = fcntl(pt->out, F_GETFL);
        if (fl >= 0)
            fcntl(pt->out, F_SETFL, fl & ~O_NONBLOCK);
        send_frame(pt, 's', line, (size_t)n);
    } else if (pt->console >= 0 && n > 0) {
        write_all(pt->console, "ociext4: status ", 16);
        write_all(pt->console, line, (size_t)n);
        write_all(pt->console, "\n", 1);
    }
    sync();
    if (keep)
        mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

static int find_ports(ports *pt, long ms);

static void fail(ports *pt, int keep, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pt->out < 0)
        find_ports(pt, 2000);   /* an early failure still reaches the host's stderr */
    say(pt, "%s", msg);
    finish(pt, "error", EXIT_VM, keep);
}

/* ---------------------------------------------------------------- settings */

static int read_file(const char *path, blob *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE) {
                free(buf);
                close(fd);
                errno = EFBIG;
                return -1;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    b->buf = buf;
    b->len = len;
    return 0;
}

static int push(list *l, const char *item)
{
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const char **items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return -1;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = item;
    l->items[l->n] = NULL;
    return 0;
}

/* Records are NUL-terminated "key=value" strings; values may hold anything
 * but NUL (newlines included), which is why they are not lines. */
static int parse_settings(blob *b, settings *s, char *err, size_t errlen)
{
    size_t pos = 0;
    while (pos < b->len) {
        char *rec = b->buf + pos;
        size_t rlen = strnlen(rec, b->len - pos);
        if (pos + rlen >= b->len) {
            snprintf(err, errlen, "settings: unterminated record");
            return -1;
        }
        pos += rlen + 1;
        char *eq = strchr(rec, '=');
        if (!eq) {
            snprintf(err, errlen, "settings: record without '=': %.40s", rec);
            return -1;
        }
        *eq = '\0';
        const char *v = eq + 1;
        int bad = 0;
        if (!strcmp(rec, "arg"))
            bad = push(&s->argv, v);
        else if (!strcmp(rec, "env"))
            bad = push(&s->env, v);
        else if (!strcmp(rec, "module"))
            bad = push(&s->modules, v);
        else if (!strcmp(rec, "module.net"))
            bad = push(&s->net_modules, v);
        else if (!strcmp(rec, "module.fs"))
            bad = push(&s->fs_modules, v);
        else if (!strcmp(rec, "module.dm"))
            bad = push(&s->dm_modules, v);
        else if (!strcmp(rec, "verity"))
            s->verity = v;
        else if (!strcmp(rec, "volume"))
            bad = push(&s->volumes, v);
        else if (!strcmp(rec, "tmpfs"))
            bad = push(&s->tmpfs, v);
        else if (!strcmp(rec, "workdir"))
            s->workdir = v;
        else if (!strcmp(rec, "user"))
            s->user = v;
        else if (!strcmp(rec, "hostname"))
            s->hostname = v;
        else if (!strcmp(rec, "hosts"))
            s->hosts = v;
        else if (!strcmp(rec, "resolv"))
            s->resolv = v;
        else if (!strcmp(rec, "net.addr"))
            s->net_addr = v;
        else if (!strcmp(rec, "net.gw"))
            s->net_gw = v;
        else if (!strcmp(rec, "root"))
            s->root = !strcmp(v, "ro") ? ROOT_READONLY
                      : !strcmp(v, "rw") ? ROOT_KEEP : ROOT_THROWAWAY;
        else if (!strcmp(rec, "rw"))   /* the older host's name for root=rw */
            s->root = !strcmp(v, "1") ? ROOT_KEEP : s->root;
        else if (!strcmp(rec, "interactive"))
            s->interactive = !strcmp(v, "1");
        else if (!strcmp(rec, "tty"))
            s->tty = !strcmp(v, "1");
        else if (!strcmp(rec, "winsize")) {
            unsigned r = 0, c = 0;
            if (sscanf(v, "%u %u", &r, &c) == 2 && r < 65536 && c < 65536) {
                s->rows = (unsigned short)r;
                s->cols = (unsigned short)c;
            }
        } else if (!strcmp(rec, "probe"))
            s->probe = !strcmp(v, "1");
        else if (!strcmp(rec, "disk_wait_ms"))
            s->disk_wait_ms = strtol(v, NULL, 10);
        /* Unknown keys are skipped: an older init with a newer host. */
        if (bad) {
            snprintf(err, errlen, "settings: out of memory at a %s record", rec);
            return -1;
        }
    }
    return 0;
}

/* ----------------------------------------------------------------- modules */

static int load_module(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "module %s: %s", path, strerror(errno));
        return -1;
    }
    long r = syscall(SYS_finit_module, fd, "", 0);
    int e = errno;
    if (r != 0 && e == ENOSYS) {
        /* Kernels without finit_module take the image from memory. */
        close(fd);
        blob b;
        if (read_file(path, &b) != 0) {
            snprintf(err, errlen, "module %s: %s", path, strerror(errno));
            return -1;
        }
        r = syscall(SYS_init_module, b.buf, (unsigned long)b.len, "");
        e = errno;
        free(b.buf);
    } else {
        close(fd);
    }
    if (r != 0 && e != EEXIST) {
        snprintf(err, errlen, "module %s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

static int load_modules(const list *l, char *err, size_t errlen)
{
    for (size_t i = 0; i < l->n; i++)
        if (load_module(l->items[i], err, errlen) != 0)
            return -1;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int wait_for(const char *path, long ms)
{
    struct stat st;
    for (long waited = 0; waited <= ms; waited += 2) {
        if (stat(path, &st) == 0)
            return 0;
        sleep_ms(2);
    }
    return -1;
}

/* ------------------------------------------------------------- dm-verity */

static void dm_header(struct dm_ioctl *io, size_t size, uint32_t flags)
{
    memset(io, 0, sizeof *io);
    io->version[0] = DM_VERSION_MAJOR;
    io->data_size = (uint32_t)size;
    io->data_start = sizeof *io;
    io->flags = flags;
    snprintf(io->name, sizeof io->name, "%s", VERITY_NAME);
}

/* The root's read-only dm-verity device, made with the three DM ioctls
 * dmsetup would use (create, load the table, resume), then a node for it.
 * `table` is the verity target's parameters, from the host. */
static int setup_verity(const char *table, char *err, size_t errlen)
{
    unsigned long long blocks = 0;
    if (sscanf(table, "%*u %*s %*s %*u %*u %llu", &blocks) != 1 || blocks == 0 ||
        blocks > (UINT64_MAX >> 3)) {
        snprintf(err, errlen, "verity: bad table: %.80s", table);
        return -1;
    }
    if (wait_for(DM_CONTROL, 5000) != 0) {
        snprintf(err, errlen, "verity: %s did not appear (no dm_mod?)", DM_CONTROL);
        return -1;
    }
    size_t plen = strlen(table) + 1;
    size_t size = sizeof(struct dm_ioctl) + sizeof(struct dm_target_spec) +
                  ((plen + 7) & ~(size_t)7);
    if (size > UINT32_MAX) {
        snprintf(err, errlen, "verity: table too long");
        return -1;
    }
    char *buf = calloc(1, size);
    int fd = open(DM_CONTROL, O_RDWR | O_CLOEXEC);
    if (!buf || fd < 0) {
        snprintf(err, errlen, "verity: %s: %s", DM_CONTROL, strerror(errno));
        free(buf);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct dm_ioctl *io = (struct dm_ioctl *)buf;
    const char *step = "creating the device";
    dm_header(io, sizeof *io, 0);
    if (ioctl(fd, DM_DEV_CREATE, io) != 0)
        goto out;
    dev_t dev = (dev_t)io->dev;
    step = "loading the table";
    dm_header(io, size, DM_READONLY_FLAG);
    io->target_count = 1;
    struct dm_target_spec *t = (struct dm_target_spec *)(buf + sizeof *io);
    t->sector_start = 0;
    t->length = blocks * 8;   /* 512-byte sectors in the 4 KiB data blocks */
    t->next = (uint32_t)(size - sizeof *io);
    snprintf(t->target_type, sizeof t->target_type, "verity");
    memcpy(buf + sizeof *io + sizeof *t, table, plen);
    if (ioctl(fd, DM_TABLE_LOAD, io) != 0)
        goto out;
    step = "activating it";
    dm_header(io, sizeof *io, 0);   /* a resume: no DM_SUSPEND_FLAG */
    if (ioctl(fd, DM_DEV_SUSPEND, io) != 0)
        goto out;
    close(fd);
    free(buf);
    if (mknod(VERITY_DEV, S_IFBLK | 0600, dev) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "verity: %s: %s", VERITY_DEV, strerror(errno));
        return -1;
    }
    /* A wrong root hash fails every read: say that, not mount's vaguer
     * "can't read superblock". */
    char block[4096];
    int d = open(VERITY_DEV, O_RDONLY | O_CLOEXEC);
    ssize_t got = d >= 0 ? pread(d, block, sizeof block, 0) : -1;
    int e = errno;
    if (d >= 0)
        close(d);
    if (got != (ssize_t)sizeof block) {
        snprintf(err, errlen, "verity: the image does not match the root hash it is pinned "
                 "to (%s)", got < 0 ? strerror(e) : "short read");
        return -1;
    }
    return 0;
out:
    snprintf(err, errlen, "verity: %s: %s", step, strerror(errno));
    close(fd);
    free(buf);
    return -1;
}

/* dm-verity cannot be written, and QEMU's snapshot overlay is below it: the
 * throwaway writable root is an overlay of a tmpfs on the verified image,
 * its upper root made as the image's root is. */
static int mount_overlay(const char *disk, char *err, size_t errlen)
{
    struct stat st;
    mkdir(LOWER, 0755);
    mkdir(UPPER, 0755);
    if (mount(disk, LOWER, "ext4", MS_RDONLY, "") != 0) {
        snprintf(err, errlen, "the image does not mount as ext4 (%s: %s)", disk,
                 strerror(errno));
        return -1;
    }
    const char *step = "tmpfs";
    if (mount("tmpfs", UPPER, "tmpfs", 0, "mode=0755") != 0)
        goto out;
    step = "the upper root";
    if (stat(LOWER, &st) != 0 || mkdir(UPPER "/data", 0700) != 0 ||
        chown(UPPER "/data", st.st_uid, st.st_gid) != 0 ||
        chmod(UPPER "/data", st.st_mode & 07777) != 0 || mkdir(UPPER "/work", 0700) != 0)
        goto out;
    step = "overlay";
    if (mount("overlay", NEWROOT, "overlay", 0,
              "lowerdir=" LOWER ",upperdir=" UPPER "/data,workdir=" UPPER "/work") != 0)
        goto out;
    return 0;
out:
    snprintf(err, errlen, "the writable layer over the verified root: %s: %s", step,
             strerror(errno));
    return -1;
}

/* ------------------------------------------------------------------- ports */

static void close_port(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* virtio-serial ports appear as /dev/vport<device>p<port> once QEMU has
 * announced them, which happens after the driver loads: the device index
 * depends on probe order, the port number is the host's. */
static int find_ports(ports *pt, long ms)
{
    for (long waited = 0; waited <= ms; waited += 2) {
        char found[4][272] = {"", "", "", ""};
        DIR *d = opendir("/dev");
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                unsigned dev, port;
                if (sscanf(e->d_name, "vport%up%u", &dev, &port) == 2 && port >= 1 &&
                    port <= 3)
                    snprintf(found[port], sizeof found[port], "/dev/%s", e->d_name);
            }
            closedir(d);
        }
        if (*found[PORT_OUT] && *found[PORT_CTL] && *found[PORT_IN]) {
            pt->out = open(found[PORT_OUT], O_WRONLY | O_NOCTTY | O_CLOEXEC);
            pt->ctl = open(found[PORT_CTL], O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
            pt->in = open(found[PORT_IN], O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
            if (pt->out >= 0 && pt->ctl >= 0 && pt->in >= 0)
                return 0;
            /* ENXIO: the node is there before the driver has the port. */
            int e = errno;
            close_port(&pt->out);
            close_port(&pt->ctl);
            close_port(&pt->in);
            if (e != ENXIO)
                return -1;
        }
        sleep_ms(2);
    }
    errno = ETIMEDOUT;
    return -1;
}

/* ------------------------------------------------------------------ mounts */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p; the root is writable only when it is a throwaway or kept. */
static int make_dirs(const char *path, mode_t mode)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return -1;
            if (!is_dir(buf)) {
                errno = ENOTDIR;
                return -1;
            }
            *p = c;
            if (!c)
                return 0;
        }
    }
}

static void mount_api(ports *pt, const settings *s, const char *src, const char *dir,
                      const char *type, unsigned long flags, const char *data)
{
    /* A missing mount point is made only where writes are thrown away:
     * never in an image file. */
    if (!is_dir(dir) && (s->root != ROOT_THROWAWAY || make_dirs(dir, 0755) != 0))
        return;
    if (mount(src, dir, type, flags, data) != 0)
        say(pt, "mount %s on %s: %s", type, dir, strerror(errno));
}

static void switch_root(ports *pt, int keep)
{
    if (chdir(NEWROOT) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 ||
        chdir("/") != 0)
        fail(pt, keep, "switching to the image's root: %s", strerror(errno));
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int r = write_all(fd, text, strlen(text));
    close(fd);
    return r;
}

/* /etc/hosts, /etc/hostname and /etc/resolv.conf as docker gives them:
 * files of the run bound over the image's (which stay as they are). */
static void etc_file(ports *pt, const settings *s, const char *name, const char *text)
{
    char src[256], dst[256];
    snprintf(src, sizeof src, "%s/%s", ETC_DIR, name);
    snprintf(dst, sizeof dst, "/etc/%s", name);
    if (write_text(src, text) != 0)
        return;
    struct stat st;
    if (lstat(dst, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (s->root != ROOT_THROWAWAY || make_dirs("/etc", 0755) != 0)
            return;
        unlink(dst);   /* a dangling symlink (resolv.conf often is one) */
        if (write_text(dst, "") != 0)
            return;
    }
    if (mount(src, dst, NULL, MS_BIND, NULL) != 0)
        say(pt, "bind %s on %s: %s", src, dst, strerror(errno));
}

static void etc_files(ports *pt, const settings *s, const char *host)
{
    if (!is_dir("/run") || make_dirs(ETC_DIR, 0755) != 0)
        return;
    char hostname[300];
    snprintf(hostname, sizeof hostname, "%s\n", host);
    etc_file(pt, s, "hostname", hostname);
    if (s->hosts)
        etc_file(pt, s, "hosts", s->hosts);
    if (s->resolv)
        etc_file(pt, s, "resolv.conf", s->resolv);
}

static void mount_volumes(ports *pt, const settings *s)
{
    for (size_t i = 0; i < s->volumes.n; i++) {
        char spec[4096];
        snprintf(spec, sizeof spec, "%s", s->volumes.items[i]);
        char *tag = spec, *path = strchr(tag, '\t'), *mode = NULL;
        if (path) {
            *path++ = '\0';
            mode = strchr(path, '\t');
        }
        if (!path || !mode) {
            say(pt, "volume %.60s: malformed", s->volumes.items[i]);
            continue;
        }
        *mode++ = '\0';
        if (!is_dir(path) && make_dirs(path, 0755) != 0)
            fail(pt, s->root == ROOT_KEEP, "volume %s: making the mount point: %s", path,
                 strerror(errno));
        unsigned long flags = MS_NODEV | (strcmp(mode, "ro") ? 0 : MS_RDONLY);
        if (mount(tag, path, "virtiofs", flags, "") != 0)
            fail(pt, s->root == ROOT_KEEP, "volume %s: %s", path, strerror(errno));
    }
    for (size_t i = 0; i < s->tmpfs.n; i++) {
        const char *path = s->tmpfs.items[i];
        if (!is_dir(path) && make_dirs(path, 0755) != 0)
            fail(pt, s->root == ROOT_KEEP, "tmpfs %s: making the mount point: %s", path,
                 strerror(errno));
        if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
            fail(pt, s->root == ROOT_KEEP, "tmpfs %s: %s", path, strerror(errno));
    }
}

/* ----------------------------------------------------------------- network */

static int if_up(int sock, const char *name)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0)
        return -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(sock, SIOCSIFFLAGS, &ifr);
}

static void set_sin(struct sockaddr *sa, in_addr_t addr)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = addr;
    memcpy(sa, &sin, sizeof sin);
}

/* lo always (the kernel gives it 127.0.0.1 when it comes up); eth0 with a
 * static address and default route when the host gave one, as QEMU's
 * user-mode network hands out by DHCP, without waiting for a DHCP client. */
static void network(ports *pt, const settings *s)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || if_up(sock, "lo") != 0)
        say(pt, "bringing up lo: %s", strerror(errno));
    if (sock < 0 || !s->net_addr)
        goto out;
    char addr[64];
    snprintf(addr, sizeof addr, "%s", s->net_addr);
    char *slash = strchr(addr, '/');
    int prefix = slash ? atoi(slash + 1) : 24;
    if (slash)
        *slash = '\0';
    struct in_addr a, gw;
    if (inet_pton(AF_INET, addr, &a) != 1 || prefix < 1 || prefix > 32 ||
        (s->net_gw && inet_pton(AF_INET, s->net_gw, &gw) != 1)) {
        say(pt, "network address %s: malformed", s->net_addr);
        goto out;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
    int found = 0;
    for (long waited = 0; waited <= s->disk_wait_ms; waited += 2) {
        if (ioctl(sock, SIOCGIFINDEX, &ifr) == 0) {
            found = 1;
            break;
        }
        sleep_ms(2);
    }
    if (!found) {
        say(pt, "the network device eth0 did not appear");
        goto out;
    }
    set_sin(&ifr.ifr_addr, a.s_addr);
    if (ioctl(sock, SIOCSIFADDR, &ifr) != 0)
        say(pt, "eth0 address: %s", strerror(errno));
    set_sin(&ifr.ifr_netmask, htonl(0xffffffffu << (32 - prefix)));
    if (ioctl(sock, SIOCSIFNETMASK, &ifr) != 0)
        say(pt, "eth0 netmask: %s", strerror(errno));
    if (if_up(sock, "eth0") != 0)
        say(pt, "bringing up eth0: %s", strerror(errno));
    if (s->net_gw) {
        struct rtentry rt;
        memset(&rt, 0, sizeof rt);
        set_sin(&rt.rt_dst, INADDR_ANY);
        set_sin(&rt.rt_genmask, INADDR_ANY);
        set_sin(&rt.rt_gateway, gw.s_addr);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(sock, SIOCADDRT, &rt) != 0)
            say(pt, "default route: %s", strerror(errno));
    }
out:
    if (sock >= 0)
        close(sock);
}

/* ------------------------------------------------------------------- users */

static int parse_id(const char *s, unsigned long *out)
{
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || errno || v > 0xfffffffeul)
        return -1;
    *out = v;
    return 0;
}

/* Splits one line of a colon-separated database in place. */
static size_t fields(char *line, char **f, size_t max)
{
    size_t n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == ':') {
            *p = '\0';
            f[n++] = p + 1;
        }
    }
    return n;
}

static char *next_line(char **cursor)
{
    char *line = *cursor;
    if (!line || !*line)
        return NULL;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = line + strlen(line);
    }
    return line;
}

static int member_of(char *members, const char *name)
{
    char *save = NULL;
    for (char *tok = strtok_r(members, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (!strcmp(tok, name))
            return 1;
    return 0;
}

/* USER is "", "name", "uid", "name:group", "uid:gid" or mixes, as docker
 * takes them; names come from the image's /etc/passwd and /etc/group. */
static int resolve_user(const char *spec, identity *id, char *err, size_t errlen)
{
    char user[256], group[256] = "";
    const char *colon = strchr(spec, ':');
    size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
    if (ulen >= sizeof user || (colon && strlen(colon + 1) >= sizeof group)) {
        snprintf(err, errlen, "user %.60s: too long", spec);
        return -1;
    }
    memcpy(user, spec, ulen);
    user[ulen] = '\0';
    if (colon)
        snprintf(group, sizeof group, "%s", colon + 1);

    id->uid = 0;
    id->gid = 0;
    id->ngroups = 0;
    snprintf(id->home, sizeof id->home, "/");
    if (!*user)
        snprintf(user, sizeof user, "0");

    char name[256] = "";
    unsigned long num;
    int numeric = parse_id(user, &num) == 0;
    int found = 0;
    blob pw = {0};
    if (read_file("/etc/passwd", &pw) == 0) {
        char *cur = pw.buf, *line;
        while (!found && (line = next_line(&cur))) {
            char *f[7];
            if (fields(line, f, 7) < 7)
                continue;
            unsigned long u, g;
            if (parse_id(f[2], &u) != 0 || parse_id(f[3], &g) != 0)
                continue;
            if (numeric ? u == num : !strcmp(f[0], user)) {
                found = 1;
                id->uid = (uid_t)u;
                id->gid = (gid_t)g;
                snprintf(name, sizeof name, "%s", f[0]);
                snprintf(id->home, sizeof id->home, "%s", *f[5] ? f[5] : "/");
            }
        }
        free(pw.buf);
    }
    if (!found) {
        if (!numeric) {
            snprintf(err, errlen, "unable to find user %s: no matching entries in passwd file",
                     user);
            return -1;
        }
        id->uid = (uid_t)num;
    }

    int group_numeric = *group && parse_id(group, &num) == 0;
    if (group_numeric)
        id->gid = (gid_t)num;
    int group_found = !*group || group_numeric;
    blob gr = {0};
    if ((*name || (*group && !group_numeric)) && read_file("/etc/group", &gr) == 0) {
        char *cur = gr.buf, *line;
        while ((line = next_line(&cur))) {
            char *f[4];
            if (fields(line, f, 4) < 4)
                continue;
            unsigned long g;
            if (parse_id(f[2], &g) != 0)
                continue;
            if (*group && !group_numeric && !strcmp(f[0], group)) {
                id->gid = (gid_t)g;
                group_found = 1;
            }
            if (*name && member_of(f[3], name) && id->ngroups < MAX_GROUPS)
                id->groups[id->ngroups++] = (gid_t)g;
        }
        free(gr.buf);
    }
    if (!group_found) {
        snprintf(err, errlen, "unable to find group %s: no matching entries in group file",
                 group);
        return -1;
    }
    if (id->ngroups < MAX_GROUPS)
        id->groups[id->ngroups++] = id->gid;
    return 0;
}

/* -------------------------------------------------------------- the child */

static const char *env_get(const list *env, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < env->n; i++)
        if (!strncmp(env->items[i], key, klen) && env->items[i][klen] == '=')
            return env->items[i] + klen + 1;
    return NULL;
}

static void child_fail(int code, const char *what, const char *name, int e)
{
    char line[1200];
    int n = snprintf(line, sizeof line, "ociext4: %s %s: %s\n", what, name, strerror(e));
    if (n > 0)
        write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    _exit(code);
}

/* execvpe with the command's own PATH: 127 when nothing is found, 126 when
 * something is found but cannot be run. */
static void exec_command(const settings *s)
{
    const char *cmd = s->argv.items[0];
    char *const *argv = (char *const *)s->argv.items;
    char *const *envp = (char *const *)s->env.items;
    if (strchr(cmd, '/')) {
        execve(cmd, argv, envp);
        child_fail(errno == ENOENT || errno == ENOTDIR ? EXIT_NOTFOUND : EXIT_CANNOT,
                   "exec", cmd, errno);
    }
    const char *path = env_get(&s->env, "PATH");
    if (!path)
        path = DEFAULT_PATH;
    int denied = 0;
    size_t clen = strlen(cmd);
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        char full[4096];
        if (dlen + 1 + clen < sizeof full) {
            if (dlen == 0) {
                memcpy(full, cmd, clen + 1);  /* an empty entry means "." */
            } else {
                memcpy(full, p, dlen);
                full[dlen] = '/';
                memcpy(full + dlen + 1, cmd, clen + 1);
            }
            execve(full, argv, envp);
            if (errno == EACCES)
                denied = 1;
            else if (errno != ENOENT && errno != ENOTDIR)
                child_fail(EXIT_CANNOT, "exec", full, errno);
        }
        if (!*end)
            break;
        p = end;
    }
    if (denied)
        child_fail(EXIT_CANNOT, "exec", cmd, EACCES);
    child_fail(EXIT_NOTFOUND, "exec", cmd, ENOENT);
}

/* The command's side of its streams: pipes, or one terminal for all three. */
typedef struct {
    int in, out, err;
    int tty;   /* the terminal's peer, made the controlling terminal */
} child_fds;

static void run_child(const settings *s, const identity *id, const child_fds *c)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    if (c->tty >= 0 && ioctl(c->tty, TIOCSCTTY, 0) != 0)
        _exit(EXIT_VM);
    if (dup2(c->in, 0) < 0 || dup2(c->out, 1) < 0 || dup2(c->err, 2) < 0)
        _exit(EXIT_VM);
    if (setgroups(id->ngroups, id->groups) != 0)
        child_fail(EXIT_CANNOT, "setgroups", "", errno);
    if (setgid(id->gid) != 0)
        child_fail(EXIT_CANNOT, "setgid", "", errno);
    if (setuid(id->uid) != 0)
        child_fail(EXIT_CANNOT, "setuid", "", errno);
    const char *wd = s->workdir && *s->workdir ? s->workdir : "/";
    if (chdir(wd) != 0)
        child_fail(EXIT_CANNOT, "workdir", wd, errno);
    exec_command(s);
}

/* ------------------------------------------------------------------- relay */

/* What the relay moves: the command's output into frames for port 1, the
 * host's stdin from port 3 into the command, control frames from port 2. */
typedef struct {
    int outr, errr;        /* the command's stdout and stderr (or the terminal) */
    int inw;               /* the command's stdin (or the terminal), -1 if none */
    char *obuf;            /* one frame being written to port 1 */
    size_t olen, ooff;
    char *ibuf;            /* stdin bytes on their way to the command */
    size_t ilen, ioff;
    uint64_t received;     /* stdin bytes read from port 3 */
    int64_t eof_at;        /* stdin ends after this many bytes; -1: not yet known */
    char cbuf[CTL_MAX + FRAME_HEAD];
    size_t clen;
} relay;

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The command's stream is read into a frame only when the last one has
 * gone out: a host that reads slowly slows the command, as a pipe would.
 * (splice() from the pipe to the port saves two of the guest's three
 * copies, about a fifth of the time under TCG, but lost bytes here when
 * the port's queue was full: a 50 MB round trip came back short.) */
static void fill_frame(relay *r, int *fd, char kind)
{
    ssize_t n = read(*fd, r->obuf + FRAME_HEAD, PIPE_SIZE);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {   /* EOF, or EIO from a terminal nobody holds any more */
        if (*fd == r->inw)
            r->inw = -1;   /* the terminal was both */
        close_fd(fd);
        return;
    }
    put_head(r->obuf, kind, (size_t)n);
    r->olen = FRAME_HEAD + (size_t)n;
    r->ooff = 0;
}

static void send_pending(relay *r, ports *pt)
{
    ssize_t w = write(pt->out, r->obuf + r->ooff, r->olen - r->ooff);
    if (w > 0)
        r->ooff += (size_t)w;
    else if (w < 0 && errno != EAGAIN && errno != EINTR)
        r->olen = r->ooff = 0;   /* the host is gone: nothing to keep for it */
    if (r->ooff == r->olen)
        r->olen = r->ooff = 0;
}

static void stdin_done(relay *r, const settings *s)
{
    if (r->inw < 0)
        return;
    if (s->tty) {
        /* A terminal has no end of file but the line discipline's ^D. */
        char eof = 4;
        write_all(r->inw, &eof, 1);
        return;
    }
    close_fd(&r->inw);
}

static void control(relay *r, const settings *s, pid_t child, int done)
{
    while (r->clen >= FRAME_HEAD) {
        size_t n = 0;
        for (int i = 0; i < 4; i++)
            n |= (size_t)(unsigned char)r->cbuf[1 + i] << (8 * i);
        if (n > CTL_MAX) {
            r->clen = 0;   /* not ours to make sense of: drop it */
            return;
        }
        if (r->clen < FRAME_HEAD + n)
            return;
        char arg[CTL_MAX + 1];
        memcpy(arg, r->cbuf + FRAME_HEAD, n);
        arg[n] = '\0';
        char kind = r->cbuf[0];
        if (kind == 'k' && !done) {
            int sig = atoi(arg);
            if (sig > 0 && sig < 65)
                kill(child, sig);
        } else if (kind == 'w' && s->tty && r->outr >= 0) {
            unsigned rows = 0, cols = 0;
            if (sscanf(arg, "%u %u", &rows, &cols) == 2 && rows < 65536 && cols < 65536) {
                struct winsize ws = {(unsigned short)rows, (unsigned short)cols, 0, 0};
                ioctl(r->outr, TIOCSWINSZ, &ws);   /* the kernel sends SIGWINCH */
            }
        } else if (kind == 'c') {
            /* The host's stdout (or stderr) is gone: closing our end gives
             * the command EPIPE and SIGPIPE, as on the host. */
            int *fd = atoi(arg) == 2 ? &r->errr : &r->outr;
            if (*fd == r->inw)
                r->inw = -1;
            close_fd(fd);
        } else if (kind == 'z') {
            r->eof_at = strtoll(arg, NULL, 10);
        }
        memmove(r->cbuf, r->cbuf + FRAME_HEAD + n, r->clen - FRAME_HEAD - n);
        r->clen -= FRAME_HEAD + n;
    }
}

/* Relays until the command has exited and every writer of its streams is
 * gone; reaps every child on the way.  Returns the wait status. */
static int supervise(pid_t child, int sfd, relay *r, ports *pt, const settings *s)
{
    int status = 0, done = 0, ctl_open = 1, in_open = s->interactive;
    /* A port reads as closed (POLLHUP, read 0) until the host's side has
     * been announced, which may come after the guest opened it: that is
     * "not yet", never an end (stdin's end comes as a 'z' frame), so the
     * ports are looked at again a little later rather than at once. */
    int not_yet = 0;
    int fl = fcntl(pt->out, F_GETFL);
    if (fl >= 0)
        fcntl(pt->out, F_SETFL, fl | O_NONBLOCK);
    while (!done || r->outr >= 0 || r->errr >= 0 || r->olen > r->ooff) {
        if (in_open && r->eof_at >= 0 && r->received >= (uint64_t)r->eof_at &&
            r->ioff == r->ilen) {
            in_open = 0;
            stdin_done(r, s);
        }
        int sending = r->olen > r->ooff;
        int feeding = r->ilen > r->ioff && r->inw >= 0;
        struct pollfd p[7] = {
            {sfd, POLLIN, 0},
            {sending && !not_yet ? pt->out : -1, POLLOUT, 0},
            {sending ? -1 : r->outr, POLLIN, 0},
            {sending ? -1 : r->errr, POLLIN, 0},
            {ctl_open && !not_yet ? pt->ctl : -1, POLLIN, 0},
            {in_open && !not_yet && r->ilen == r->ioff ? pt->in : -1, POLLIN, 0},
            {feeding ? r->inw : -1, POLLOUT, 0},
        };
        int wait_ms = not_yet ? 5 : -1;
        not_yet = 0;
        if (poll(p, 7, wait_ms) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents & POLLOUT)
            send_pending(r, pt);
        else if (p[1].revents)
            not_yet = 1;
        if (p[2].revents) {
            fill_frame(r, &r->outr, 'o');
        } else if (p[3].revents) {
            fill_frame(r, &r->errr, 'e');
        }
        if (p[4].revents) {
            ssize_t n = read(pt->ctl, r->cbuf + r->clen, sizeof r->cbuf - r->clen);
            if (n > 0) {
                r->clen += (size_t)n;
                control(r, s, child, done);
            } else if (n == 0) {
                not_yet = 1;
            } else if (errno != EAGAIN && errno != EINTR) {
                ctl_open = 0;
            }
        }
        if (p[5].revents) {
            /* A port read returns one of the driver's page-sized buffers:
             * gather what is there, so the command gets large writes. */
            size_t got = 0;
            for (;;) {
                ssize_t n = read(pt->in, r->ibuf + got, PIPE_SIZE - got);
                if (n > 0) {
                    got += (size_t)n;
                    if (got + 4096 <= PIPE_SIZE)
                        continue;
                } else if (n == 0) {
                    not_yet = 1;
                } else if (errno != EAGAIN && errno != EINTR) {
                    in_open = 0;
                }
                break;
            }
            r->received += got;
            r->ilen = r->inw >= 0 ? got : 0;   /* a closed stdin drops them */
            r->ioff = 0;
            if (!in_open)
                stdin_done(r, s);
        }
        if (p[6].revents) {
            ssize_t w = write(r->inw, r->ibuf + r->ioff, r->ilen - r->ioff);
            if (w > 0) {
                r->ioff += (size_t)w;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                /* The command closed its stdin: the rest has no reader. */
                if (!s->tty)
                    close_fd(&r->inw);
                r->ilen = r->ioff = 0;
            }
        }
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {
            }
            int st;
            pid_t pid;
            while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
                if (pid == child && !done) {
                    status = st;
                    done = 1;
                    /* Like a container: the rest dies with the main process,
                     * which also closes any pipe ends they held. */
                    kill(-1, SIGKILL);
                    if (!s->tty)
                        close_fd(&r->inw);
                }
            }
        }
    }
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    }
    return status;
}

/* ------------------------------------------------------------------ set-up */

static int make_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    /* As large as the relay's reads, so that one read takes whole writes. */
    fcntl(fds[0], F_SETPIPE_SZ, (int)PIPE_SIZE);
    return 0;
}

/* The command's streams and the relay's ends of them. */
static int streams(const settings *s, ports *pt, relay *r, child_fds *c)
{
    if (s->tty) {
        int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
            return -1;
        int unlock = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) != 0)
            return -1;
        int peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (peer < 0)
            return -1;
        if (s->rows && s->cols) {
            struct winsize ws = {s->rows, s->cols, 0, 0};
            ioctl(master, TIOCSWINSZ, &ws);
        }
        r->outr = master;
        r->errr = -1;
        r->inw = s->interactive ? master : -1;
        /* Without -i the command still reads a terminal, but nobody types. */
        *c = (child_fds){peer, peer, peer, peer};
        return 0;
    }
    int o[2], e[2], i[2] = {-1, -1};
    if (make_pipe(o) != 0 || make_pipe(e) != 0 || (s->interactive && make_pipe(i) != 0))
        return -1;
    r->outr = o[0];
    r->errr = e[0];
    r->inw = i[1];
    if (r->inw >= 0)
        fcntl(r->inw, F_SETFL, O_NONBLOCK);
    *c = (child_fds){s->interactive ? i[0] : pt->null, o[1], e[1], -1};
    return 0;
}

static void close_child_side(child_fds *c, ports *pt)
{
    int fds[4] = {c->in, c->out, c->err, c->tty};
    for (int i = 0; i < 4; i++) {
        if (fds[i] < 0 || fds[i] == pt->null)
            continue;
        for (int j = i + 1; j < 4; j++)
            if (fds[j] == fds[i])
                fds[j] = -1;
        close(fds[i]);
    }
}

/* -------------------------------------------------------------------- main */

int main(void)
{
    ports pt = {-1, -1, -1, -1, -1};
    settings s;
    memset(&s, 0, sizeof s);
    s.disk_wait_ms = 20000;
    char err[1024];

    mkdir("/dev", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    pt.console = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    pt.null = open("/dev/null", O_RDWR | O_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);

    blob mods = {0}, run = {0};
    if (read_file("/ociext4/modules", &mods) != 0 || read_file("/ociext4/settings", &run) != 0)
        fail(&pt, 0, "reading the settings: %s", strerror(errno));
    if (parse_settings(&mods, &s, err, sizeof err) != 0 ||
        parse_settings(&run, &s, err, sizeof err) != 0)
        fail(&pt, 0, "%s", err);
    if (load_modules(&s.modules, err, sizeof err) != 0)
        fail(&pt, 0, "%s", err);
    if (s.probe) {
        if (find_ports(&pt, s.disk_wait_ms) != 0)
            fail(&pt, 0, "the virtio-serial ports did not appear: %s", strerror(errno));
        finish(&pt, "exit", 0, 0);
    }
    if (s.argv.n == 0)
        fail(&pt, 0, "no command given");
    if (s.net_addr && load_modules(&s.net_modules, err, sizeof err) != 0)
        fail(&pt, 0, "%s", err);
    if (s.volumes.n && load_modules(&s.fs_modules, err, sizeof err) != 0)
        fail(&pt, 0, "%s", err);
    if (s.verity && load_modules(&s.dm_modules, err, sizeof err) != 0)
        fail(&pt, 0, "%s", err);

    if (wait_for(DISK, s.disk_wait_ms) != 0)
        fail(&pt, 0, "%s did not appear within %ld ms", DISK, s.disk_wait_ms);
    mkdir(NEWROOT, 0755);
    const char *disk = DISK;
    if (s.verity) {
        if (setup_verity(s.verity, err, sizeof err) != 0)
            fail(&pt, 0, "%s", err);
        disk = VERITY_DEV;
        if (s.root == ROOT_KEEP)
            s.root = ROOT_READONLY;   /* never kept: the host refuses --rw first */
    }
    if (s.verity && s.root == ROOT_THROWAWAY) {
        if (mount_overlay(disk, err, sizeof err) != 0)
            fail(&pt, 0, "%s", err);
    } else if (mount(disk, NEWROOT, "ext4", s.root == ROOT_READONLY ? MS_RDONLY : 0, "") != 0) {
        fail(&pt, 0, "the image does not mount as ext4 (%s: %s)", disk, strerror(errno));
    }
    int keep = s.root == ROOT_KEEP;
    /* The ports are announced while the disk is found and mounted: looked
     * for only now, they are usually there. */
    if (find_ports(&pt, s.disk_wait_ms) != 0)
        fail(&pt, keep, "the virtio-serial ports did not appear: %s", strerror(errno));
    switch_root(&pt, keep);

    mount_api(&pt, &s, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_api(&pt, &s, "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_api(&pt, &s, "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    if (is_dir("/dev")) {
        mkdir("/dev/pts", 0755);  /* in the devtmpfs, not in the image */
        mkdir("/dev/shm", 01777);
    }
    mount_api(&pt, &s, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "gid=5,mode=620,ptmxmode=666");
    mount_api(&pt, &s, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount_api(&pt, &s, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount_api(&pt, &s, "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    const char *host = s.hostname && *s.hostname ? s.hostname : "ociext4";
    if (sethostname(host, strlen(host)) != 0)
        say(&pt, "hostname %s: %s", host, strerror(errno));
    etc_files(&pt, &s, host);
    network(&pt, &s);
    mount_volumes(&pt, &s);

    identity id;
    if (resolve_user(s.user ? s.user : "", &id, err, sizeof err) != 0) {
        say(&pt, "%s", err);
        finish(&pt, "exit", EXIT_CANNOT, keep);
    }
    /* docker makes a missing working directory; an image file is written
     * only with --rw, where writes are the point. */
    if (s.workdir && *s.workdir && !is_dir(s.workdir) && s.root != ROOT_READONLY &&
        make_dirs(s.workdir, 0755) == 0 && (id.uid || id.gid)) {
        if (chown(s.workdir, id.uid, id.gid) != 0)
            say(&pt, "workdir %s: %s", s.workdir, strerror(errno));
    }
    if (!env_get(&s.env, "HOME")) {
        static const char key[] = "HOME=";
        char *home = malloc(sizeof key + strlen(id.home));
        if (home) {
            memcpy(home, key, sizeof key - 1);
            strcpy(home + sizeof key - 1, id.home);
            push(&s.env, home);
        }
    }

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    relay r;
    memset(&r, 0, sizeof r);
    r.eof_at = -1;
    r.obuf = malloc(FRAME_HEAD + PIPE_SIZE);
    r.ibuf = malloc(PIPE_SIZE);
    child_fds c;
    if (sfd < 0 || !r.obuf || !r.ibuf || streams(&s, &pt, &r, &c) != 0)
        fail(&pt, keep, "setting up the command's streams: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0)
        fail(&pt, keep, "fork: %s", strerror(errno));
    if (child == 0)
        run_child(&s, &id, &c);
    close_child_side(&c, &pt);
    int status = supervise(child, sfd, &r, &pt, &s);
    if (WIFSIGNALED(status))
        finish(&pt, "signal", WTERMSIG(status), keep);
    finish(&pt, "exit", WEXITSTATUS(status), keep);
    return 0;
}
