/* The guest's /init: PID 1 of the thin VM that `ociext4 run` boots.
 *
 * Loads the modules the host listed (in dependency order), mounts the image
 * from /dev/vda as the root, mounts the API file systems, applies the run's
 * settings (argv, env, workdir, user, hostname), runs the command with its
 * stdout and stderr on pipes that this process relays to two serial ports,
 * reaps every zombie, and reports the exit status on a third serial port
 * before it syncs and powers off.
 *
 * Settings arrive in the initramfs as files of NUL-terminated "key=value"
 * records: /ociext4/modules (cached with the kernel's modules) and
 * /ociext4/settings (appended per run).  Nothing is written into the image.
 *
 * Serial ports (8250, built into the kernel, so they exist at once):
 * ttyS0 is the kernel's console, ttyS1 the command's stdout, ttyS2 its
 * stderr, ttyS3 the control channel ("status exit N", "status signal N",
 * "status error N").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_VM 125        /* ociext4 or the VM failed (docker's 125) */
#define EXIT_CANNOT 126    /* the command cannot be run */
#define EXIT_NOTFOUND 127  /* the command was not found */

#define MAX_FILE (16u << 20)
#define MAX_ITEMS 4096u
#define MAX_GROUPS 256u
#define DISK "/dev/vda"
#define NEWROOT "/newroot"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

typedef struct {
    char *buf;
    size_t len;
} blob;

typedef struct {
    const char *items[MAX_ITEMS + 1];  /* NULL-terminated, for execve */
    size_t n;
} list;

typedef struct {
    list argv;
    list env;
    list modules;
    const char *workdir;
    const char *user;
    const char *hostname;
    int rw;
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
    int out;   /* ttyS1 */
    int err;   /* ttyS2 */
    int ctl;   /* ttyS3 */
    int null;  /* /dev/null, the command's stdin */
} ports;

/* ------------------------------------------------------------------ output */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;  /* nowhere left to report it */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void say(const ports *pt, const char *fmt, ...)
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
    write_all(pt->err >= 0 ? pt->err : 2, line, len);
}

static void drain(int fd)
{
    if (fd >= 0)
        while (tcdrain(fd) < 0 && errno == EINTR) {
        }
}

/* Everything written so far has left the UARTs (tcdrain waits for the
 * transmitter to empty, i.e. for QEMU to take the bytes), then the status
 * line goes out last, then the disk is synced and the machine powered off. */
static void finish(const ports *pt, const char *kind, int value, int rw)
{
    char line[64];
    drain(pt->out);
    drain(pt->err);
    int n = snprintf(line, sizeof line, "status %s %d\n", kind, value);
    if (pt->ctl >= 0 && n > 0) {
        write_all(pt->ctl, line, (size_t)n);
        drain(pt->ctl);
    }
    sync();
    if (rw)
        mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);  /* a clean journal */
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

static void fail(const ports *pt, int rw, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    say(pt, "%s", msg);
    finish(pt, "error", EXIT_VM, rw);
}

static int open_port(const char *path)
{
    /* O_NONBLOCK so the open never waits for carrier; CLOCAL then makes
     * that irrelevant, and raw mode stops the tty from turning \n into \r\n. */
    int fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cflag |= CLOCAL | CREAD;
        cfsetospeed(&t, B115200);
        tcsetattr(fd, TCSANOW, &t);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
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
    if (l->n >= MAX_ITEMS)
        return -1;
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
        else if (!strcmp(rec, "workdir"))
            s->workdir = v;
        else if (!strcmp(rec, "user"))
            s->user = v;
        else if (!strcmp(rec, "hostname"))
            s->hostname = v;
        else if (!strcmp(rec, "rw"))
            s->rw = !strcmp(v, "1");
        else if (!strcmp(rec, "probe"))
            s->probe = !strcmp(v, "1");
        else if (!strcmp(rec, "disk_wait_ms"))
            s->disk_wait_ms = strtol(v, NULL, 10);
        /* Unknown keys are skipped: an older init with a newer host. */
        if (bad) {
            snprintf(err, errlen, "settings: more than %u %s records", MAX_ITEMS, rec);
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

/* ------------------------------------------------------------------ mounts */

static int is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Mount points the image lacks are skipped: creating them would write into
 * the image (and a read-only root cannot take them anyway). */
static void mount_api(const ports *pt, const char *src, const char *dir, const char *type,
                      unsigned long flags, const char *data)
{
    if (!is_dir(dir))
        return;
    if (mount(src, dir, type, flags, data) != 0)
        say(pt, "mount %s on %s: %s", type, dir, strerror(errno));
}

static void switch_root(const ports *pt, int rw)
{
    if (chdir(NEWROOT) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 ||
        chdir("/") != 0)
        fail(pt, rw, "switching to the image's root: %s", strerror(errno));
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

static void run_child(const settings *s, const identity *id, const ports *pt, int outw, int errw)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    if (dup2(pt->null, 0) < 0 || dup2(outw, 1) < 0 || dup2(errw, 2) < 0)
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

static int pump(int from, int to)
{
    char buf[16384];
    ssize_t r = read(from, buf, sizeof buf);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (r == 0)
        return 0;
    write_all(to, buf, (size_t)r);
    return 1;
}

/* Relays the pipes to the ports until the command has exited and every
 * writer is gone; reaps every child on the way.  Returns the wait status. */
static int supervise(pid_t child, int sfd, int outr, int errr, const ports *pt)
{
    int status = 0, done = 0, open_out = 1, open_err = 1;
    while (!done || open_out || open_err) {
        struct pollfd p[3] = {{sfd, POLLIN, 0}, {outr, open_out ? POLLIN : 0, 0},
                              {errr, open_err ? POLLIN : 0, 0}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            open_out = pump(outr, pt->out);
        if (p[2].revents)
            open_err = pump(errr, pt->err);
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
                }
            }
        }
    }
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    }
    return status;
}

/* -------------------------------------------------------------------- main */

int main(void)
{
    ports pt = {-1, -1, -1, -1};
    settings s;
    memset(&s, 0, sizeof s);
    s.disk_wait_ms = 20000;
    char err[1024];

    mkdir("/dev", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    pt.out = open_port("/dev/ttyS1");
    pt.err = open_port("/dev/ttyS2");
    pt.ctl = open_port("/dev/ttyS3");
    pt.null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (pt.out < 0 || pt.err < 0 || pt.ctl < 0 || pt.null < 0)
        fail(&pt, 0, "opening the serial ports: %s", strerror(errno));

    blob mods = {0}, run = {0};
    if (read_file("/ociext4/modules", &mods) != 0 || read_file("/ociext4/settings", &run) != 0)
        fail(&pt, 0, "reading the settings: %s", strerror(errno));
    if (parse_settings(&mods, &s, err, sizeof err) != 0 ||
        parse_settings(&run, &s, err, sizeof err) != 0)
        fail(&pt, 0, "%s", err);
    for (size_t i = 0; i < s.modules.n; i++)
        if (load_module(s.modules.items[i], err, sizeof err) != 0)
            fail(&pt, 0, "%s", err);
    if (s.probe)
        finish(&pt, "exit", 0, 0);
    if (s.argv.n == 0)
        fail(&pt, 0, "no command given");

    if (wait_for(DISK, s.disk_wait_ms) != 0)
        fail(&pt, 0, "%s did not appear within %ld ms", DISK, s.disk_wait_ms);
    mkdir(NEWROOT, 0755);
    if (mount(DISK, NEWROOT, "ext4", s.rw ? 0 : MS_RDONLY, "") != 0)
        fail(&pt, 0, "the image does not mount as ext4 (%s: %s)", DISK, strerror(errno));
    switch_root(&pt, s.rw);

    mount_api(&pt, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_api(&pt, "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_api(&pt, "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    if (is_dir("/dev")) {
        mkdir("/dev/pts", 0755);  /* in the devtmpfs, not in the image */
        mkdir("/dev/shm", 01777);
    }
    mount_api(&pt, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "gid=5,mode=620,ptmxmode=666");
    mount_api(&pt, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount_api(&pt, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount_api(&pt, "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    const char *host = s.hostname && *s.hostname ? s.hostname : "ociext4";
    if (sethostname(host, strlen(host)) != 0)
        say(&pt, "hostname %s: %s", host, strerror(errno));

    identity id;
    if (resolve_user(s.user ? s.user : "", &id, err, sizeof err) != 0) {
        say(&pt, "%s", err);
        finish(&pt, "exit", EXIT_CANNOT, s.rw);
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
    int outp[2], errp[2];
    if (sfd < 0 || pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0)
        fail(&pt, s.rw, "setting up the command's pipes: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0)
        fail(&pt, s.rw, "fork: %s", strerror(errno));
    if (child == 0)
        run_child(&s, &id, &pt, outp[1], errp[1]);
    close(outp[1]);
    close(errp[1]);
    int status = supervise(child, sfd, outp[0], errp[0], &pt);
    if (WIFSIGNALED(status))
        finish(&pt, "signal", WTERMSIG(status), s.rw);
    finish(&pt, "exit", WEXITSTATUS(status), s.rw);
    return 0;
}
