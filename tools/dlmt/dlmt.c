// SPDX-License-Identifier: GPL-2.0-only
/*
 * dlmt - a static user-space DLM workload program for the dlm-rs test
 * platform.
 *
 * It speaks the DLM character devices directly (no libdlm):
 * /dev/dlm-control creates and removes lockspaces, /dev/dlm_<ls> takes
 * locks; completion ASTs come back as struct dlm_lock_result records read
 * from the lockspace device.  See tools/dlmt/README.rst for the commands,
 * the output format and the kernel behaviour they rely on.
 *
 * Every result line goes to stdout as "<command> key=value ...";
 * diagnostics go to stderr.  Exit codes: 0 success, 1 failure, 2 usage.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/dlm.h>
#include <linux/dlm_device.h>
#include <linux/dlmconstants.h>

#define EXIT_USAGE 2
#define LVB_LEN DLM_USER_LVB_LEN
#define NSEC_PER_SEC 1000000000LL
/*
 * The port stored in configfs comms/<id>/addr must be 0: lowcomms matches
 * an accepted connection to a node by comparing the peer address, with
 * its port zeroed, against the configured addresses including their port
 * (addr_compare); outgoing connects use cluster/tcp_port regardless.
 */
#define DEFAULT_PORT 0
#define MAX_LOCKERS 4096
#define MAX_HOLD (1u << 22)

/* ------------------------------------------------------------------ */
/* Options                                                            */
/* ------------------------------------------------------------------ */

enum cmd {
	CMD_NONE = 0,
	CMD_JOIN,
	CMD_LEAVE,
	CMD_TORTURE,
	CMD_LVB,
	CMD_BENCH,
	CMD_HOLD,
	CMD_ADDR,
	CMD_SELFTEST,
	CMD_HELP,
};

struct opts {
	enum cmd cmd;
	const char *cmd_name;
	const char *pos[4];
	int npos;

	/* generic */
	const char *dev_dir;
	const char *configfs;
	uint64_t timeout_s;
	bool verbose;

	/* per command */
	const char *res;
	const char *prefix;
	const char *tag;
	const char *record;
	uint64_t record_base;
	uint64_t iters;
	uint64_t count;
	uint64_t lockers;
	uint64_t secs;
	uint64_t seed;
	uint64_t port;
	int mode;
	bool have_iters, have_count, have_lockers, have_secs, have_mode;
	bool force, convert, no_anchor, allow_invalid, raw, random, valblk;
	bool local;
};

enum optkind { OK_FLAG, OK_STR, OK_U64, OK_MODE };

struct optspec {
	const char *name;
	enum optkind kind;
	size_t off;		/* offset of the value in struct opts */
	size_t have_off;	/* offset of a "have" flag, or 0 */
	unsigned int cmds;	/* bit mask of commands that accept it */
};

#define B(c) (1u << (c))
#define ALLCMDS (~0u)
#define OFF(f) offsetof(struct opts, f)

static const struct optspec optspecs[] = {
	{ "timeout", OK_U64, OFF(timeout_s), 0, ALLCMDS },
	{ "dev", OK_STR, OFF(dev_dir), 0, ALLCMDS },
	{ "verbose", OK_FLAG, OFF(verbose), 0, ALLCMDS },
	{ "force", OK_FLAG, OFF(force), 0, B(CMD_LEAVE) },
	{ "res", OK_STR, OFF(res), 0, B(CMD_TORTURE) | B(CMD_HOLD) },
	{ "iters", OK_U64, OFF(iters), OFF(have_iters), B(CMD_TORTURE) },
	{ "tag", OK_STR, OFF(tag), 0, B(CMD_TORTURE) },
	{ "record", OK_STR, OFF(record), 0, B(CMD_TORTURE) },
	{ "record-base", OK_U64, OFF(record_base), 0, B(CMD_TORTURE) },
	{ "convert", OK_FLAG, OFF(convert), 0, B(CMD_TORTURE) },
	{ "no-anchor", OK_FLAG, OFF(no_anchor), 0, B(CMD_TORTURE) },
	{ "allow-invalid", OK_FLAG, OFF(allow_invalid), 0,
	  B(CMD_TORTURE) | B(CMD_LVB) },
	{ "raw", OK_FLAG, OFF(raw), 0, B(CMD_LVB) },
	{ "prefix", OK_STR, OFF(prefix), 0, B(CMD_BENCH) | B(CMD_HOLD) },
	{ "count", OK_U64, OFF(count), OFF(have_count),
	  B(CMD_BENCH) | B(CMD_HOLD) },
	{ "lockers", OK_U64, OFF(lockers), OFF(have_lockers), B(CMD_BENCH) },
	{ "secs", OK_U64, OFF(secs), OFF(have_secs),
	  B(CMD_BENCH) | B(CMD_HOLD) },
	{ "mode", OK_MODE, OFF(mode), OFF(have_mode),
	  B(CMD_BENCH) | B(CMD_HOLD) },
	{ "random", OK_FLAG, OFF(random), 0, B(CMD_BENCH) },
	{ "seed", OK_U64, OFF(seed), 0, B(CMD_BENCH) },
	{ "valblk", OK_FLAG, OFF(valblk), 0, B(CMD_HOLD) },
	{ "port", OK_U64, OFF(port), 0, B(CMD_ADDR) },
	{ "local", OK_FLAG, OFF(local), 0, B(CMD_ADDR) },
	{ "configfs", OK_STR, OFF(configfs), 0, B(CMD_ADDR) },
};

static const struct {
	const char *name;
	enum cmd cmd;
	int npos;
} cmdspecs[] = {
	{ "join", CMD_JOIN, 1 },
	{ "leave", CMD_LEAVE, 1 },
	{ "torture", CMD_TORTURE, 1 },
	{ "lvb", CMD_LVB, 2 },
	{ "bench", CMD_BENCH, 1 },
	{ "hold", CMD_HOLD, 1 },
	{ "addr", CMD_ADDR, 2 },
	{ "selftest", CMD_SELFTEST, 0 },
	{ "help", CMD_HELP, 0 },
};

static const char usage_text[] =
"usage: dlmt COMMAND ARGS [--timeout SECS] [--dev DIR] [--verbose]\n"
"  join LS                     create or join lockspace LS\n"
"  leave LS [--force]          remove lockspace LS\n"
"  torture LS --res NAME --iters N [--tag T] [--convert] [--no-anchor]\n"
"                              [--allow-invalid] [--record DEV [--record-base B]]\n"
"  lvb LS NAME [--raw] [--allow-invalid]\n"
"  bench LS --prefix P --count M --lockers K --secs S [--mode EX|PR]\n"
"                              [--random] [--seed N]\n"
"  hold LS (--prefix P --count M | --res NAME) --mode NL|CR|CW|PR|PW|EX\n"
"                              [--secs S] [--valblk]\n"
"  addr NODEID IP [--port P] [--local] [--configfs DIR]\n"
"  selftest                    run the built-in unit tests\n"
"Result lines go to stdout as '<command> key=value ...'.\n"
"Exit codes: 0 ok, 1 failure, 2 usage error.\n";

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static const char *const mode_names[] = { "NL", "CR", "CW", "PR", "PW", "EX" };

static int parse_mode(const char *s)
{
	for (int i = 0; i < 6; i++)
		if (!strcasecmp(s, mode_names[i]))
			return i;
	return -1;
}

static const char *mode_name(int mode)
{
	if (mode >= 0 && mode < 6)
		return mode_names[mode];
	return "IV";
}

static void opts_init(struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->dev_dir = "/dev";
	o->configfs = "/sys/kernel/config/dlm/cluster";
	o->timeout_s = 120;
	o->port = DEFAULT_PORT;
	o->mode = DLM_LOCK_EX;
	o->seed = 1;
}

/*
 * Lockspace and resource names: the kernel accepts any bytes, but the
 * lockspace name becomes a device and a sysfs name, and both end up on
 * command lines, so keep to a safe set.
 */
static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(isalnum(c) || c == '_' || c == '-' || c == '.' ||
		      c == ':'))
			return false;
	}
	return true;
}

/* Returns 0 or writes a message to err and returns -1. */
static int parse_args(int argc, char **argv, struct opts *o, char *err,
		      size_t errlen)
{
	int want_pos = 0;

	opts_init(o);
	if (argc < 2) {
		snprintf(err, errlen, "missing command");
		return -1;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		o->cmd = CMD_HELP;
		o->cmd_name = "help";
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmdspecs) / sizeof(cmdspecs[0]); i++) {
		if (!strcmp(argv[1], cmdspecs[i].name)) {
			o->cmd = cmdspecs[i].cmd;
			o->cmd_name = cmdspecs[i].name;
			want_pos = cmdspecs[i].npos;
		}
	}
	if (o->cmd == CMD_NONE) {
		snprintf(err, errlen, "unknown command '%s'", argv[1]);
		return -1;
	}

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const struct optspec *spec = NULL;
		const char *val = NULL;
		char name[64];
		const char *eq;
		size_t nlen;

		if (!strcmp(a, "-v")) {
			o->verbose = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			o->cmd = CMD_HELP;
			return 0;
		}
		if (strncmp(a, "--", 2) || a[2] == '\0') {
			if (o->npos >= want_pos) {
				snprintf(err, errlen,
					 "%s: unexpected argument '%s'",
					 o->cmd_name, a);
				return -1;
			}
			o->pos[o->npos++] = a;
			continue;
		}
		eq = strchr(a + 2, '=');
		nlen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
		if (nlen >= sizeof(name)) {
			snprintf(err, errlen, "%s: unknown option '%s'",
				 o->cmd_name, a);
			return -1;
		}
		memcpy(name, a + 2, nlen);
		name[nlen] = '\0';
		for (size_t k = 0; k < sizeof(optspecs) / sizeof(optspecs[0]);
		     k++) {
			if (!strcmp(optspecs[k].name, name) &&
			    (optspecs[k].cmds & B(o->cmd))) {
				spec = &optspecs[k];
				break;
			}
		}
		if (!spec) {
			snprintf(err, errlen, "%s: unknown option '--%s'",
				 o->cmd_name, name);
			return -1;
		}
		if (spec->kind == OK_FLAG) {
			if (eq) {
				snprintf(err, errlen,
					 "%s: option '--%s' takes no value",
					 o->cmd_name, name);
				return -1;
			}
			*(bool *)((char *)o + spec->off) = true;
			continue;
		}
		if (eq) {
			val = eq + 1;
		} else {
			if (i + 1 >= argc) {
				snprintf(err, errlen,
					 "%s: option '--%s' needs a value",
					 o->cmd_name, name);
				return -1;
			}
			val = argv[++i];
		}
		switch (spec->kind) {
		case OK_STR:
			*(const char **)((char *)o + spec->off) = val;
			break;
		case OK_U64:
			if (parse_u64(val, (uint64_t *)((char *)o + spec->off))) {
				snprintf(err, errlen,
					 "%s: option '--%s' wants a decimal number, got '%s'",
					 o->cmd_name, name, val);
				return -1;
			}
			break;
		case OK_MODE: {
			int m = parse_mode(val);

			if (m < 0) {
				snprintf(err, errlen,
					 "%s: bad lock mode '%s' (NL CR CW PR PW EX)",
					 o->cmd_name, val);
				return -1;
			}
			*(int *)((char *)o + spec->off) = m;
			break;
		}
		case OK_FLAG:
			break;
		}
		if (spec->have_off)
			*(bool *)((char *)o + spec->have_off) = true;
	}

	if (o->npos < want_pos) {
		snprintf(err, errlen, "%s: missing %s", o->cmd_name,
			 o->cmd == CMD_ADDR ? (o->npos ? "IP" : "NODEID") :
			 o->cmd == CMD_LVB && o->npos ? "resource NAME" :
			 "lockspace name");
		return -1;
	}

	if (o->timeout_s == 0 || o->timeout_s > 86400) {
		snprintf(err, errlen, "%s: --timeout must be 1..86400 seconds",
			 o->cmd_name);
		return -1;
	}

	switch (o->cmd) {
	case CMD_JOIN:
	case CMD_LEAVE:
	case CMD_TORTURE:
	case CMD_LVB:
	case CMD_BENCH:
	case CMD_HOLD:
		if (!name_ok(o->pos[0], DLM_LOCKSPACE_LEN)) {
			snprintf(err, errlen,
				 "%s: bad lockspace name '%s' (1..%d of [A-Za-z0-9_.:-])",
				 o->cmd_name, o->pos[0], DLM_LOCKSPACE_LEN);
			return -1;
		}
		break;
	default:
		break;
	}

	switch (o->cmd) {
	case CMD_TORTURE:
		if (!o->res || !o->have_iters) {
			snprintf(err, errlen, "torture: --res and --iters are required");
			return -1;
		}
		if (!name_ok(o->res, DLM_RESNAME_MAXLEN)) {
			snprintf(err, errlen, "torture: bad resource name '%s'", o->res);
			return -1;
		}
		if (o->iters == 0 || o->iters > (1ULL << 40)) {
			snprintf(err, errlen, "torture: --iters must be >= 1");
			return -1;
		}
		if (o->tag && strlen(o->tag) > 16) {
			snprintf(err, errlen, "torture: --tag is at most 16 characters");
			return -1;
		}
		if (o->record_base && !o->record) {
			snprintf(err, errlen, "torture: --record-base needs --record");
			return -1;
		}
		break;
	case CMD_LVB:
		if (!name_ok(o->pos[1], DLM_RESNAME_MAXLEN)) {
			snprintf(err, errlen, "lvb: bad resource name '%s'", o->pos[1]);
			return -1;
		}
		break;
	case CMD_BENCH:
		if (!o->prefix || !o->have_count || !o->have_lockers ||
		    !o->have_secs) {
			snprintf(err, errlen,
				 "bench: --prefix, --count, --lockers and --secs are required");
			return -1;
		}
		if (o->count == 0 || o->count > 100000000 || o->lockers == 0 ||
		    o->lockers > MAX_LOCKERS || o->secs == 0 ||
		    o->secs > 86400) {
			snprintf(err, errlen,
				 "bench: need --count 1..1e8, --lockers 1..%d, --secs 1..86400",
				 MAX_LOCKERS);
			return -1;
		}
		if (o->mode != DLM_LOCK_EX && o->mode != DLM_LOCK_PR) {
			snprintf(err, errlen, "bench: --mode must be EX or PR");
			return -1;
		}
		break;
	case CMD_HOLD:
		if (!o->have_mode) {
			snprintf(err, errlen, "hold: --mode is required");
			return -1;
		}
		if (o->res && (o->prefix || o->have_count)) {
			snprintf(err, errlen,
				 "hold: use either --res or --prefix/--count");
			return -1;
		}
		if (!o->res && (!o->prefix || !o->have_count)) {
			snprintf(err, errlen,
				 "hold: --prefix and --count (or --res) are required");
			return -1;
		}
		if (o->res) {
			if (!name_ok(o->res, DLM_RESNAME_MAXLEN)) {
				snprintf(err, errlen, "hold: bad resource name '%s'", o->res);
				return -1;
			}
			o->count = 1;
		}
		if (o->count == 0 || o->count > MAX_HOLD) {
			snprintf(err, errlen, "hold: --count must be 1..%u", MAX_HOLD);
			return -1;
		}
		if (o->have_secs && o->secs > 30 * 86400ULL) {
			snprintf(err, errlen, "hold: --secs too large");
			return -1;
		}
		break;
	case CMD_ADDR: {
		uint64_t id;

		if (parse_u64(o->pos[0], &id) || id == 0 || id > UINT32_MAX) {
			snprintf(err, errlen, "addr: bad NODEID '%s'", o->pos[0]);
			return -1;
		}
		if (o->port > 65535) {
			snprintf(err, errlen, "addr: bad --port");
			return -1;
		}
		break;
	}
	default:
		break;
	}

	/* bench/hold build names "<prefix><index>": check the longest one */
	if ((o->cmd == CMD_BENCH || o->cmd == CMD_HOLD) && o->prefix) {
		char probe[128];

		snprintf(probe, sizeof(probe), "%s%" PRIu64, o->prefix,
			 o->count - 1);
		if (strlen(o->prefix) > DLM_RESNAME_MAXLEN ||
		    !name_ok(probe, DLM_RESNAME_MAXLEN)) {
			snprintf(err, errlen,
				 "%s: bad --prefix '%s' (resource names are at most %d of [A-Za-z0-9_.:-])",
				 o->cmd_name, o->prefix, DLM_RESNAME_MAXLEN);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static const char *g_cmd = "dlmt";
static struct opts g_o;

__attribute__((format(printf, 1, 2)))
static void errmsg(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "dlmt %s: %s\n", g_cmd, buf);
	fflush(stderr);
}

__attribute__((format(printf, 1, 2)))
static void vmsg(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!g_o.verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "dlmt %s: %s\n", g_cmd, buf);
	fflush(stderr);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static int64_t timeout_ns(void)
{
	return (int64_t)g_o.timeout_s * NSEC_PER_SEC;
}

static uint64_t rate(uint64_t ops, int64_t ns)
{
	if (ns <= 0)
		ns = 1;
	return (uint64_t)((double)ops * 1e9 / (double)ns + 0.5);
}

static const char *dlm_strerror(int err)
{
	/* err is a positive errno or DLM status */
	switch (err) {
	case DLM_EUNLOCK:
		return "unlocked (DLM_EUNLOCK)";
	case DLM_ECANCEL:
		return "cancelled (DLM_ECANCEL)";
	default:
		return strerror(err);
	}
}

static int read_small_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	buf[n] = '\0';
	return (int)n;
}

static bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/*
 * Stall watchdog: lock/unlock writes can block in the kernel without a
 * timeout (dlm_lock_recovery() while a lockspace recovers).  Each worker
 * marks the start of such a call; a thread fails the run loudly if one
 * stays blocked past --timeout.  The process may not be reapable until
 * the kernel wakes the blocked thread, but the failure is on stderr.
 */
#define WD_SLOTS (MAX_LOCKERS + 1)
static _Atomic int64_t wd_busy[WD_SLOTS];
static const char *wd_what[WD_SLOTS];

static void wd_enter(int slot, const char *what)
{
	wd_what[slot] = what;
	atomic_store(&wd_busy[slot], now_ns());
}

static void wd_leave(int slot)
{
	atomic_store(&wd_busy[slot], 0);
}

static void *wd_thread(void *arg)
{
	(void)arg;
	for (;;) {
		int64_t now;

		sleep(1);
		now = now_ns();
		for (int i = 0; i < WD_SLOTS; i++) {
			int64_t t = atomic_load(&wd_busy[i]);

			if (t && now - t > timeout_ns()) {
				errmsg("%s blocked in the kernel for more than %" PRIu64
				       " s (lockspace stuck in recovery?); giving up",
				       wd_what[i] ? wd_what[i] : "a dlm write",
				       g_o.timeout_s);
				fflush(stdout);
				_exit(1);
			}
		}
	}
	return NULL;
}

static void wd_start(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, wd_thread, NULL) == 0)
		pthread_detach(t);
}

/* ------------------------------------------------------------------ */
/* Device nodes                                                       */
/* ------------------------------------------------------------------ */

/*
 * Find the misc device <name> through /sys/class/misc/<name>/dev and make
 * sure <dev_dir>/<name> is a character node with that number.  devtmpfs
 * normally creates it; without devtmpfs (or with a stale node from an
 * earlier lockspace) we create it ourselves.  known_minor >= 0 is used
 * when sysfs is not there (yet).
 */
static int ensure_misc_node(const char *name, int known_minor, char *path,
			    size_t pathlen)
{
	char sys[PATH_MAX], buf[64];
	unsigned int maj = 10, min;
	struct stat st;
	int r;

	snprintf(sys, sizeof(sys), "/sys/class/misc/%s/dev", name);
	snprintf(path, pathlen, "%s/%s", g_o.dev_dir, name);
	r = read_small_file(sys, buf, sizeof(buf));
	if (r > 0 && sscanf(buf, "%u:%u", &maj, &min) == 2) {
		if (known_minor >= 0 && (unsigned int)known_minor != min) {
			errmsg("%s: sysfs says minor %u, kernel returned %d", name,
			       min, known_minor);
			return -EIO;
		}
	} else if (known_minor >= 0) {
		min = (unsigned int)known_minor;
	} else {
		return -ENOENT;
	}

	/* devtmpfs creates the node synchronously; allow a short grace */
	for (int i = 0; i < 20; i++) {
		if (stat(path, &st) == 0)
			break;
		usleep(10000);
	}
	if (stat(path, &st) == 0) {
		if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(maj, min))
			return 0;
		vmsg("replacing stale node %s", path);
		if (unlink(path) && errno != ENOENT) {
			r = -errno;
			errmsg("cannot remove stale %s: %s", path, strerror(-r));
			return r;
		}
	}
	if (mknod(path, S_IFCHR | 0600, makedev(maj, min)) && errno != EEXIST) {
		r = -errno;
		errmsg("mknod %s c %u %u: %s", path, maj, min, strerror(-r));
		return r;
	}
	vmsg("created %s c %u %u", path, maj, min);
	return 0;
}

static int open_control(void)
{
	char path[PATH_MAX];
	struct dlm_device_version v;
	int fd, r;
	ssize_t n;

	r = ensure_misc_node("dlm-control", -1, path, sizeof(path));
	if (r == -ENOENT) {
		errmsg("no /sys/class/misc/dlm-control: is dlm.ko loaded?");
		return -1;
	}
	if (r)
		return -1;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		errmsg("open %s: %s", path, strerror(errno));
		return -1;
	}
	/* version handshake: a read of exactly this size returns it */
	n = read(fd, &v, sizeof(v));
	if (n != (ssize_t)sizeof(v)) {
		errmsg("reading the device version from %s failed: %s", path,
		       n < 0 ? strerror(errno) : "short read");
		close(fd);
		return -1;
	}
	/*
	 * The kernel takes our requests if the major matches and our minor
	 * is not newer than its own; ours is 0, so the major decides.
	 */
	if (v.version[0] != DLM_DEVICE_VERSION_MAJOR) {
		errmsg("kernel device interface %u.%u.%u is not compatible with ours %d.%d.%d",
		       v.version[0], v.version[1], v.version[2],
		       DLM_DEVICE_VERSION_MAJOR, DLM_DEVICE_VERSION_MINOR,
		       DLM_DEVICE_VERSION_PATCH);
		close(fd);
		return -1;
	}
	vmsg("kernel device interface %u.%u.%u", v.version[0], v.version[1],
	     v.version[2]);
	return fd;
}

static int ls_misc_name(const char *ls, char *out, size_t len)
{
	return snprintf(out, len, "dlm_%s", ls) >= (int)len ? -1 : 0;
}

static int open_lockspace(const char *ls)
{
	char name[128], path[PATH_MAX];
	int fd, r;

	if (ls_misc_name(ls, name, sizeof(name)))
		return -1;
	r = ensure_misc_node(name, -1, path, sizeof(path));
	if (r == -ENOENT) {
		errmsg("lockspace %s is not joined on this node (no /sys/class/misc/%s); run 'dlmt join %s' first",
		       ls, name, ls);
		return -1;
	}
	if (r)
		return -1;
	fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		errmsg("open %s: %s", path, strerror(errno));
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------------ */
/* Requests and ASTs                                                  */
/* ------------------------------------------------------------------ */

union wreq {
	struct dlm_write_request r;
	unsigned char b[sizeof(struct dlm_write_request) + DLM_RESNAME_MAXLEN + 1];
};

union lresult {
	struct dlm_lock_result r;
	unsigned char b[sizeof(struct dlm_lock_result) + LVB_LEN];
};

/*
 * The kernel never calls castaddr/bastaddr; it only echoes them in the
 * result so the reader can tell a completion from a blocking AST.  These
 * markers are what we put there.  lksb must be non-NULL too and is echoed
 * back as well; we point it at a per-lock dlm_lksb.
 */
static char cast_marker;

static void wreq_init(union wreq *w, int cmd)
{
	memset(w, 0, sizeof(*w));
	w->r.version[0] = DLM_DEVICE_VERSION_MAJOR;
	w->r.version[1] = DLM_DEVICE_VERSION_MINOR;
	w->r.version[2] = DLM_DEVICE_VERSION_PATCH;
	w->r.cmd = (uint8_t)cmd;
	w->r.is64bit = sizeof(void *) == 8;
}

/*
 * Submit a new lock request (lkid == 0) or a conversion (DLM_LKF_CONVERT
 * in flags, lkid set).  Returns the lkid (new request), 0 (convert) or
 * -errno.
 */
static long submit_lock(int fd, int slot, int mode, uint32_t flags,
			const char *name, uint32_t lkid, const void *lvb,
			uint64_t cookie, struct dlm_lksb *lksb)
{
	union wreq w;
	size_t namelen = name ? strlen(name) : 0;
	ssize_t r;

	wreq_init(&w, DLM_USER_LOCK);
	w.r.i.lock.mode = (uint8_t)mode;
	w.r.i.lock.namelen = (uint8_t)namelen;
	w.r.i.lock.flags = flags;
	w.r.i.lock.lkid = lkid;
	w.r.i.lock.castparam = (void *)(uintptr_t)cookie;
	w.r.i.lock.castaddr = &cast_marker;
	w.r.i.lock.lksb = lksb;
	if (lvb)
		memcpy(w.r.i.lock.lvb, lvb, LVB_LEN);
	if (namelen)
		memcpy(w.r.i.lock.name, name, namelen);
	wd_enter(slot, "a lock request");
	r = write(fd, &w, sizeof(w.r) + namelen);
	wd_leave(slot);
	if (r < 0)
		return -errno;
	return (long)r;
}

static long submit_unlock(int fd, int slot, uint32_t lkid, uint32_t flags,
			  const void *lvb, uint64_t cookie,
			  struct dlm_lksb *lksb)
{
	union wreq w;
	ssize_t r;

	wreq_init(&w, DLM_USER_UNLOCK);
	w.r.i.lock.flags = flags;
	w.r.i.lock.lkid = lkid;
	w.r.i.lock.castparam = (void *)(uintptr_t)cookie;
	w.r.i.lock.castaddr = &cast_marker;
	w.r.i.lock.lksb = lksb;
	/*
	 * The kernel copies this LVB into the lock's LVB on every unlock of
	 * a lock that has one; it reaches the resource only if the lock is
	 * granted PW/EX with VALBLK.
	 */
	if (lvb)
		memcpy(w.r.i.lock.lvb, lvb, LVB_LEN);
	wd_enter(slot, "an unlock request");
	r = write(fd, &w, sizeof(w.r));
	wd_leave(slot);
	if (r < 0)
		return -errno;
	return 0;
}

struct ast {
	uint64_t cookie;
	int status;		/* sb_status: 0, -DLM_EUNLOCK, -EAGAIN, ... */
	uint32_t lkid;
	uint8_t sbflags;
	bool is_bast;
	int bast_mode;
	bool has_lvb;
	unsigned char lvb[LVB_LEN];
};

/*
 * Validate one record read from a lockspace device.  Split out so the
 * self-test can feed it crafted records.
 */
static int decode_result(const unsigned char *buf, size_t n, struct ast *a)
{
	struct dlm_lock_result r;

	if (n < sizeof(r))
		return -EPROTO;
	memcpy(&r, buf, sizeof(r));
	if (r.version[0] != DLM_DEVICE_VERSION_MAJOR)
		return -EPROTO;
	if (r.length < sizeof(r) || r.length > n)
		return -EPROTO;
	memset(a, 0, sizeof(*a));
	a->is_bast = r.user_astaddr != &cast_marker;
	a->bast_mode = r.bast_mode;
	a->cookie = (uint64_t)(uintptr_t)r.user_astparam;
	a->status = r.lksb.sb_status;
	a->lkid = r.lksb.sb_lkid;
	a->sbflags = (uint8_t)r.lksb.sb_flags;
	if (r.lvb_offset) {
		if (r.lvb_offset < sizeof(r) || r.lvb_offset + LVB_LEN > r.length)
			return -EPROTO;
		memcpy(a->lvb, buf + r.lvb_offset, LVB_LEN);
		a->has_lvb = true;
	}
	return 0;
}

/*
 * Read one AST from fd, waiting until deadline (CLOCK_MONOTONIC ns).
 * sigfd >= 0 makes a pending signal end the wait with -EINTR.
 */
static int read_ast(int fd, int64_t deadline, int sigfd, struct ast *a)
{
	union lresult u;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = sigfd, .events = POLLIN },
		};
		int64_t left = deadline - now_ns();
		ssize_t n;
		int r, ms;

		if (left <= 0)
			return -ETIMEDOUT;
		ms = left / 1000000 + 1;
		if (left / 1000000 + 1 > INT_MAX)
			ms = INT_MAX;
		r = poll(p, sigfd >= 0 ? 2 : 1, ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			continue;
		if (sigfd >= 0 && p[1].revents)
			return -EINTR;
		if (p[0].revents & (POLLERR | POLLNVAL))
			return -EIO;
		if (!(p[0].revents & POLLIN))
			continue;
		n = read(fd, u.b, sizeof(u.b));
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		r = decode_result(u.b, (size_t)n, a);
		if (r) {
			errmsg("malformed AST record from the kernel (%zd bytes)", n);
			return r;
		}
		if (a->is_bast) {
			/* we never ask for blocking ASTs; note and go on */
			vmsg("unexpected blocking AST mode %d for cookie %" PRIu64,
			     a->bast_mode, a->cookie);
			continue;
		}
		return 0;
	}
}

/*
 * Wait for the completion AST of the single outstanding operation on fd.
 * Any other cookie is a protocol error for our callers.
 */
static int wait_cast(int fd, uint64_t cookie, int sigfd, struct ast *a,
		     const char *what)
{
	int r = read_ast(fd, now_ns() + timeout_ns(), sigfd, a);

	if (r == -ETIMEDOUT) {
		errmsg("no completion AST for %s within %" PRIu64 " s", what,
		       g_o.timeout_s);
		return r;
	}
	if (r == -EINTR)
		return r;
	if (r) {
		errmsg("reading the AST for %s: %s", what, strerror(-r));
		return r;
	}
	if (a->cookie != cookie) {
		errmsg("AST for %s carries cookie %" PRIu64 ", expected %" PRIu64,
		       what, a->cookie, cookie);
		return -EPROTO;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* LVB layout written by torture                                      */
/* ------------------------------------------------------------------ */

/*
 * bytes 0..7   counter, little endian
 * bytes 8..15  bitwise NOT of the counter, little endian (corruption check)
 * bytes 16..31 tag of the last writer, NUL padded
 * An all-zero LVB (a fresh resource) reads as counter 0.
 */
static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void lvb_encode(unsigned char *lvb, uint64_t counter, const char *tag)
{
	memset(lvb, 0, LVB_LEN);
	put_le64(lvb, counter);
	put_le64(lvb + 8, ~counter);
	if (tag)
		strncpy((char *)lvb + 16, tag, 16);
}

/* 0 and the counter, or -1 if the LVB is not one torture wrote. */
static int lvb_decode(const unsigned char *lvb, uint64_t *counter)
{
	static const unsigned char zero[LVB_LEN];
	uint64_t c;

	if (!memcmp(lvb, zero, LVB_LEN)) {
		*counter = 0;
		return 0;
	}
	c = get_le64(lvb);
	if (get_le64(lvb + 8) != ~c)
		return -1;
	*counter = c;
	return 0;
}

static void lvb_hex(const unsigned char *lvb, char *out)
{
	for (int i = 0; i < LVB_LEN; i++)
		sprintf(out + 2 * i, "%02x", lvb[i]);
}

/* ------------------------------------------------------------------ */
/* Statistics                                                         */
/* ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Nearest-rank percentile of a sorted array: the smallest value such that
 * at least permille/1000 of the samples are <= it.
 */
static uint64_t percentile(const uint64_t *sorted, size_t n,
			   unsigned int permille)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)(((unsigned __int128)n * permille + 999) / 1000);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static uint64_t ns_to_us_round(uint64_t ns)
{
	return (ns + 500) / 1000;
}

/* ------------------------------------------------------------------ */
/* Control-device writes that may block without a kernel timeout     */
/* ------------------------------------------------------------------ */

/*
 * Lockspace create and remove block in the kernel until the membership
 * controller answers the uevent and recovery finishes, uninterruptibly
 * and without a timeout.  Do the write in a child so the parent can give
 * up after --timeout.  The child drops stdout/stderr so a caller reading
 * our output to EOF is not held up by a child stuck in the kernel.
 */
static int ctl_write_bounded(int ctl, const void *buf, size_t len,
			     const char *what, const char *hint, long *result)
{
	int pfd[2];
	pid_t pid;
	struct pollfd p;
	int64_t deadline;
	long res;
	int r;

	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(pfd[0]);
		close(pfd[1]);
		return r;
	}
	if (pid == 0) {
		int dn = open("/dev/null", O_RDWR);
		ssize_t n;

		if (dn >= 0) {
			dup2(dn, 1);
			dup2(dn, 2);
		}
		close(pfd[0]);
		n = write(ctl, buf, len);
		res = n < 0 ? -(long)errno : (long)n;
		if (write(pfd[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
			_exit(3);
		_exit(0);
	}
	close(pfd[1]);
	deadline = now_ns() + timeout_ns();
	for (;;) {
		int64_t left = deadline - now_ns();
		ssize_t n;

		if (left <= 0) {
			errmsg("%s did not complete within %" PRIu64 " s: %s",
			       what, g_o.timeout_s, hint);
			close(pfd[0]);
			return -ETIMEDOUT;
		}
		p.fd = pfd[0];
		p.events = POLLIN;
		r = poll(&p, 1, (int)(left / 1000000 + 1));
		if (r < 0 && errno != EINTR) {
			r = -errno;
			close(pfd[0]);
			return r;
		}
		if (r <= 0)
			continue;
		n = read(pfd[0], &res, sizeof(res));
		close(pfd[0]);
		waitpid(pid, NULL, 0);
		if (n != (ssize_t)sizeof(res)) {
			errmsg("%s: helper process failed", what);
			return -EIO;
		}
		*result = res;
		return 0;
	}
}

/* ------------------------------------------------------------------ */
/* join / leave                                                       */
/* ------------------------------------------------------------------ */

static const char *join_hint(int err)
{
	switch (err) {
	case EUNATCH:
		return " (no local node: configfs comms/<id>/local=1 missing, or /dev/dlm-monitor was opened and closed)";
	case ENOTCONN:
		return " (no local address: write comms/<id>/addr for the local node)";
	case EEXIST:
		return " (configfs spaces/<ls> missing when control=1 was written?)";
	case EPERM:
		return " (needs CAP_SYS_ADMIN)";
	default:
		return "";
	}
}

static int ls_sysfs_minor(const char *ls)
{
	char path[PATH_MAX], buf[64];
	unsigned int maj, min;

	snprintf(path, sizeof(path), "/sys/class/misc/dlm_%s/dev", ls);
	if (read_small_file(path, buf, sizeof(buf)) <= 0 ||
	    sscanf(buf, "%u:%u", &maj, &min) != 2)
		return -1;
	return (int)min;
}

static int cmd_join(void)
{
	const char *ls = g_o.pos[0];
	char sys[PATH_MAX], name[128], path[PATH_MAX];
	union wreq w;
	long res;
	int ctl, minor, r;

	/*
	 * Idempotent: if this node already has the user lockspace (its misc
	 * device exists), report it instead of taking another create
	 * reference, which would make a single 'leave' not remove it.
	 */
	snprintf(sys, sizeof(sys), "/sys/kernel/dlm/%s", ls);
	minor = ls_sysfs_minor(ls);
	if (minor >= 0 && path_exists(sys)) {
		if (ls_misc_name(ls, name, sizeof(name)) ||
		    ensure_misc_node(name, minor, path, sizeof(path)))
			return 1;
		vmsg("lockspace %s already joined", ls);
		printf("join ls=%s minor=%d\n", ls, minor);
		fflush(stdout);
		return 0;
	}

	ctl = open_control();
	if (ctl < 0)
		return 1;
	wreq_init(&w, DLM_USER_CREATE_LOCKSPACE);
	w.r.i.lspace.flags = 0;
	memcpy(w.r.i.lspace.name, ls, strlen(ls));
	r = ctl_write_bounded(ctl, &w, sizeof(w.r) + strlen(ls), "join",
			      "the kernel waits for the membership controller to answer the online uevent (id, spaces/<ls>/nodes, control=1, event_done) and for recovery with every configured member; see dmesg",
			      &res);
	close(ctl);
	if (r)
		return 1;
	if (res < 0) {
		errmsg("creating lockspace %s failed: %s%s", ls,
		       strerror((int)-res), join_hint((int)-res));
		return 1;
	}
	minor = (int)res;
	if (ls_misc_name(ls, name, sizeof(name)) ||
	    ensure_misc_node(name, minor, path, sizeof(path)))
		return 1;
	printf("join ls=%s minor=%d\n", ls, minor);
	fflush(stdout);
	return 0;
}

static int cmd_leave(void)
{
	const char *ls = g_o.pos[0];
	char path[PATH_MAX];
	union wreq w;
	long res;
	int ctl, minor, r;
	struct stat st;

	minor = ls_sysfs_minor(ls);
	if (minor < 0) {
		errmsg("lockspace %s is not joined on this node (no /sys/class/misc/dlm_%s)",
		       ls, ls);
		return 1;
	}
	ctl = open_control();
	if (ctl < 0)
		return 1;
	wreq_init(&w, DLM_USER_REMOVE_LOCKSPACE);
	w.r.i.lspace.minor = (uint32_t)minor;
	w.r.i.lspace.flags = g_o.force ? DLM_USER_LSFLG_FORCEFREE : 0;
	r = ctl_write_bounded(ctl, &w, sizeof(w.r), "leave",
			      "the kernel waits for the controller to answer the offline uevent (event_done) and for every process to close the lockspace device; the removal goes on in the background",
			      &res);
	close(ctl);
	if (r)
		return 1;
	if (res < 0) {
		errmsg("removing lockspace %s failed: %s%s", ls,
		       strerror((int)-res),
		       res == -EBUSY ? " (locks still exist; use --force)" : "");
		return 1;
	}
	/* a node we created by hand (no devtmpfs) is not removed for us */
	snprintf(path, sizeof(path), "%s/dlm_%s", g_o.dev_dir, ls);
	if (ls_sysfs_minor(ls) < 0 && lstat(path, &st) == 0 &&
	    S_ISCHR(st.st_mode))
		unlink(path);
	printf("leave ls=%s\n", ls);
	fflush(stdout);
	return 0;
}

/* ------------------------------------------------------------------ */
/* torture                                                            */
/* ------------------------------------------------------------------ */

/* Request a new lock and wait for its grant.  Returns lkid or -errno. */
static long lock_sync(int fd, int slot, int mode, uint32_t flags,
		      const char *name, uint64_t cookie, struct dlm_lksb *lksb,
		      struct ast *a, int sigfd, const char *what)
{
	long lkid = submit_lock(fd, slot, mode, flags, name, 0, NULL, cookie,
				lksb);
	int r;

	if (lkid < 0) {
		errmsg("%s: lock request failed: %s", what, strerror((int)-lkid));
		return lkid;
	}
	r = wait_cast(fd, cookie, sigfd, a, what);
	if (r)
		return r;
	if (a->status != 0) {
		errmsg("%s: lock completed with status %d (%s)", what,
		       a->status, dlm_strerror(-a->status));
		return -EPROTO;
	}
	if ((uint32_t)lkid != a->lkid) {
		errmsg("%s: grant AST for lkid %x, request returned %lx", what,
		       a->lkid, lkid);
		return -EPROTO;
	}
	return lkid;
}

static int unlock_sync(int fd, int slot, uint32_t lkid, uint32_t flags,
		       const void *lvb, uint64_t cookie, struct dlm_lksb *lksb,
		       struct ast *a, const char *what)
{
	long r = submit_unlock(fd, slot, lkid, flags, lvb, cookie, lksb);

	if (r < 0) {
		errmsg("%s: unlock request failed: %s", what, strerror((int)-r));
		return (int)r;
	}
	r = wait_cast(fd, cookie, -1, a, what);
	if (r)
		return (int)r;
	if (a->status != -DLM_EUNLOCK) {
		errmsg("%s: unlock completed with status %d (%s), expected -DLM_EUNLOCK",
		       what, a->status, dlm_strerror(-a->status));
		return -EPROTO;
	}
	return 0;
}

/* Convert lock lkid to mode (with VALBLK: lvb is written on a down-convert)
 * and wait for the completion, which must carry status 0. */
static int convert_sync(int fd, uint32_t lkid, int mode, const void *lvb,
			uint64_t cookie, struct dlm_lksb *lksb, struct ast *a,
			const char *what)
{
	long r = submit_lock(fd, 0, mode, DLM_LKF_CONVERT | DLM_LKF_VALBLK,
			     NULL, lkid, lvb, cookie, lksb);

	if (r < 0) {
		errmsg("%s failed: %s", what, strerror((int)-r));
		return (int)r;
	}
	r = wait_cast(fd, cookie, -1, a, what);
	if (r)
		return (int)r;
	if (a->status != 0) {
		errmsg("%s completed with status %d (%s)", what, a->status,
		       dlm_strerror(-a->status));
		return -EPROTO;
	}
	return 0;
}

/*
 * --record DEV: before each unlock that stores an increment, write
 * "dlmt-record tag=T count=N value=V" into the first 4096 bytes of DEV with
 * O_DIRECT (N counts this increment, starting after --record-base).  On a
 * QEMU virtio disk the write completes only once QEMU has written it into the
 * host's image file, so the host can read, after killing the guest, how many
 * increments may have reached the master: all N of them, or N - 1 if the guest
 * died before this unlock left it.
 */
#define RECORD_LEN 4096

static int record_open(const char *path, unsigned char **buf)
{
	int fd = open(path, O_WRONLY | O_DIRECT);

	if (fd < 0) {
		errmsg("--record %s: %s", path, strerror(errno));
		return -1;
	}
	if (posix_memalign((void **)buf, RECORD_LEN, RECORD_LEN)) {
		errmsg("--record: no memory");
		close(fd);
		return -1;
	}
	return fd;
}

static int record_write(int fd, unsigned char *buf, const char *tag,
			uint64_t count, uint64_t value)
{
	ssize_t n;

	memset(buf, 0, RECORD_LEN);
	snprintf((char *)buf, RECORD_LEN,
		 "dlmt-record tag=%s count=%" PRIu64 " value=%" PRIu64 "\n",
		 tag, count, value);
	n = pwrite(fd, buf, RECORD_LEN, 0);
	if (n != RECORD_LEN) {
		errmsg("--record: write: %s", n < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 0;
}

static int cmd_torture(void)
{
	const char *ls = g_o.pos[0], *res = g_o.res;
	char tagbuf[17], hex[2 * LVB_LEN + 1];
	struct dlm_lksb lksb_anchor, lksb;
	unsigned char lvb[LVB_LEN];
	uint64_t first = 0, last = 0, ok = 0, invalid = 0;
	uint64_t cookie = 1;
	long anchor = -1;
	unsigned char *recbuf = NULL;
	int recfd = -1;
	struct ast a;
	int64_t t0, t1;
	int fd, rc = 1;

	if (g_o.tag)
		snprintf(tagbuf, sizeof(tagbuf), "%s", g_o.tag);
	else
		snprintf(tagbuf, sizeof(tagbuf), "pid%ld", (long)getpid());

	if (g_o.record) {
		recfd = record_open(g_o.record, &recbuf);
		if (recfd < 0)
			return 1;
	}
	fd = open_lockspace(ls);
	if (fd < 0) {
		if (recfd >= 0)
			close(recfd);
		free(recbuf);
		return 1;
	}
	wd_start();
	memset(&lksb_anchor, 0, sizeof(lksb_anchor));
	memset(&lksb, 0, sizeof(lksb));

	/*
	 * The resource's LVB lives only while some lock exists on it: in 7.2
	 * deactivate_rsb() frees it when the last lock goes.  The anchor (an
	 * NL lock with VALBLK held for the whole run) keeps it alive between
	 * our own iterations.  With --convert the anchor is also the lock
	 * that is converted NL->EX->NL.
	 */
	if (!g_o.no_anchor || g_o.convert) {
		anchor = lock_sync(fd, 0, DLM_LOCK_NL, DLM_LKF_VALBLK, res,
				   cookie++, &lksb_anchor, &a, -1,
				   "anchor NL lock");
		if (anchor < 0)
			goto out;
	}

	t0 = now_ns();
	for (uint64_t i = 0; i < g_o.iters; i++) {
		uint64_t c, ck = cookie++;
		char what[64];
		long lkid;

		if (g_o.convert) {
			lkid = anchor;
			snprintf(what, sizeof(what),
				 "iteration %" PRIu64 ": convert NL->EX", i + 1);
			if (convert_sync(fd, (uint32_t)anchor, DLM_LOCK_EX, NULL,
					 ck, &lksb_anchor, &a, what))
				goto out;
		} else {
			lkid = lock_sync(fd, 0, DLM_LOCK_EX, DLM_LKF_VALBLK, res,
					 ck, &lksb, &a, -1, "EX lock");
			if (lkid < 0)
				goto out;
		}
		if (!a.has_lvb) {
			errmsg("iteration %" PRIu64 ": EX grant carried no LVB",
			       i + 1);
			goto out;
		}
		if (a.sbflags & DLM_SBF_VALNOTVALID) {
			invalid++;
			if (!g_o.allow_invalid) {
				errmsg("iteration %" PRIu64 ": LVB of %s marked not valid (DLM_SBF_VALNOTVALID) after recovery",
				       i + 1, res);
				goto out;
			}
		}
		if (lvb_decode(a.lvb, &c)) {
			lvb_hex(a.lvb, hex);
			errmsg("iteration %" PRIu64 ": LVB of %s is corrupt: %s",
			       i + 1, res, hex);
			goto out;
		}
		if (i == 0) {
			first = c;
		} else if (c < last) {
			errmsg("iteration %" PRIu64 ": LVB counter went back from %" PRIu64
			       " (written by us) to %" PRIu64 ": lost update",
			       i + 1, last, c);
			goto out;
		}
		if (c == UINT64_MAX) {
			errmsg("LVB counter overflow");
			goto out;
		}
		lvb_encode(lvb, c + 1, tagbuf);
		if (recfd >= 0 &&
		    record_write(recfd, recbuf, tagbuf, g_o.record_base + i + 1, c + 1))
			goto out;

		if (g_o.convert) {
			snprintf(what, sizeof(what),
				 "iteration %" PRIu64 ": convert EX->NL", i + 1);
			if (convert_sync(fd, (uint32_t)lkid, DLM_LOCK_NL, lvb,
					 cookie++, &lksb_anchor, &a, what))
				goto out;
		} else {
			/* unlock from EX with VALBLK stores the LVB */
			if (unlock_sync(fd, 0, (uint32_t)lkid, DLM_LKF_VALBLK,
					lvb, cookie++, &lksb, &a, "EX unlock"))
				goto out;
		}
		last = c + 1;
		ok++;
	}
	t1 = now_ns();

	if (anchor >= 0) {
		/* NL: the LVB we pass is not stored; pass ours anyway */
		if (unlock_sync(fd, 0, (uint32_t)anchor, 0, lvb, cookie++,
				&lksb_anchor, &a, "anchor unlock"))
			goto out;
		anchor = -1;
	}
	if (invalid)
		errmsg("warning: %" PRIu64 " grants had DLM_SBF_VALNOTVALID set",
		       invalid);
	printf("torture ls=%s res=%s iters=%" PRIu64 " ok=%" PRIu64
	       " first=%" PRIu64 " last=%" PRIu64 " invalid=%" PRIu64
	       " ops_per_sec=%" PRIu64 "\n",
	       ls, res, g_o.iters, ok, first, last, invalid, rate(ok, t1 - t0));
	fflush(stdout);
	rc = 0;
out:
	if (rc)
		errmsg("failed after %" PRIu64 " of %" PRIu64
		       " iterations (first=%" PRIu64 " last=%" PRIu64 ")",
		       ok, g_o.iters, first, last);
	close(fd);
	if (recfd >= 0)
		close(recfd);
	free(recbuf);
	return rc;
}

/* ------------------------------------------------------------------ */
/* lvb                                                                */
/* ------------------------------------------------------------------ */

static int cmd_lvb(void)
{
	const char *ls = g_o.pos[0], *res = g_o.pos[1];
	struct dlm_lksb lksb;
	char hex[2 * LVB_LEN + 1];
	unsigned char lvb[LVB_LEN];
	uint64_t value;
	uint8_t sbflags;
	struct ast a;
	long lkid;
	int fd, rc = 1;

	fd = open_lockspace(ls);
	if (fd < 0)
		return 1;
	wd_start();
	memset(&lksb, 0, sizeof(lksb));
	lkid = lock_sync(fd, 0, DLM_LOCK_PR, DLM_LKF_VALBLK, res, 1, &lksb, &a,
			 -1, "PR lock");
	if (lkid < 0)
		goto out;
	if (!a.has_lvb) {
		errmsg("PR grant of %s carried no LVB", res);
		goto out;
	}
	memcpy(lvb, a.lvb, LVB_LEN);
	sbflags = a.sbflags;
	lvb_hex(lvb, hex);
	vmsg("lvb of %s: %s%s", res, hex,
	     (sbflags & DLM_SBF_VALNOTVALID) ? " (VALNOTVALID)" : "");
	if (unlock_sync(fd, 0, (uint32_t)lkid, 0, lvb, 2, &lksb, &a,
			"PR unlock"))
		goto out;
	if (g_o.raw) {
		value = get_le64(lvb);
	} else if (lvb_decode(lvb, &value)) {
		errmsg("LVB of %s was not written by dlmt torture: %s (use --raw)",
		       res, hex);
		goto out;
	}
	if (sbflags & DLM_SBF_VALNOTVALID) {
		if (!g_o.allow_invalid) {
			errmsg("LVB of %s is marked not valid (DLM_SBF_VALNOTVALID, value %" PRIu64
			       "); --allow-invalid prints it anyway", res, value);
			goto out;
		}
		errmsg("warning: LVB of %s is marked not valid (DLM_SBF_VALNOTVALID)",
		       res);
	}
	printf("lvb ls=%s res=%s value=%" PRIu64 "\n", ls, res, value);
	fflush(stdout);
	rc = 0;
out:
	close(fd);
	return rc;
}

/* ------------------------------------------------------------------ */
/* bench                                                              */
/* ------------------------------------------------------------------ */

struct locker {
	int id;
	int fd;
	pthread_t thread;
	uint64_t *lat;
	size_t n, cap;
	int failed;
};

static pthread_barrier_t bench_barrier;
static atomic_int bench_stop;
static int64_t bench_start, bench_deadline;

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static void *bench_thread(void *arg)
{
	struct locker *l = arg;
	struct dlm_lksb lksb;
	uint64_t rng = g_o.seed * 0x9E3779B97F4A7C15ULL + (uint64_t)l->id + 1;
	uint64_t cookie = 1, i = 0;
	char name[DLM_RESNAME_MAXLEN + 1], what[128];
	struct ast a;

	memset(&lksb, 0, sizeof(lksb));
	if (!rng)
		rng = 1;
	pthread_barrier_wait(&bench_barrier);
	while (!atomic_load(&bench_stop) && now_ns() < bench_deadline) {
		uint64_t r;
		int64_t t0;
		long lkid;

		if (g_o.random)
			r = xorshift64(&rng) % g_o.count;
		else
			r = ((uint64_t)l->id + i * g_o.lockers) % g_o.count;
		snprintf(name, sizeof(name), "%s%" PRIu64, g_o.prefix, r);
		snprintf(what, sizeof(what), "locker %d %s", l->id, name);
		t0 = now_ns();
		lkid = lock_sync(l->fd, l->id + 1, g_o.mode, 0, name, cookie++,
				 &lksb, &a, -1, what);
		if (lkid < 0)
			goto fail;
		if (unlock_sync(l->fd, l->id + 1, (uint32_t)lkid, 0, NULL,
				cookie++, &lksb, &a, what))
			goto fail;
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 4096;
			uint64_t *p = realloc(l->lat, cap * sizeof(*p));

			if (!p) {
				errmsg("out of memory for latency samples");
				goto fail;
			}
			l->lat = p;
			l->cap = cap;
		}
		l->lat[l->n++] = (uint64_t)(now_ns() - t0);
		i++;
	}
	return NULL;
fail:
	l->failed = 1;
	atomic_store(&bench_stop, 1);
	return NULL;
}

/*
 * Latencies are only as good as CLOCK_MONOTONIC.  A guest whose TSC could
 * not be calibrated runs on the jiffies clocksource, which advances in
 * whole ticks (4 ms at HZ=250): measure the step and warn.
 */
static void check_clock_step(void)
{
	int64_t step = INT64_MAX, t0 = now_ns(), prev = t0;
	char cs[64] = "";

	while (now_ns() - t0 < 50 * 1000000LL) {
		int64_t t = now_ns();

		if (t != prev) {
			if (t - prev < step)
				step = t - prev;
			prev = t;
			if (step < 100000)
				return;
		}
	}
	if (read_small_file("/sys/devices/system/clocksource/clocksource0/current_clocksource",
			    cs, sizeof(cs)) > 0)
		cs[strcspn(cs, "\n")] = '\0';
	errmsg("warning: CLOCK_MONOTONIC advances in steps of %" PRId64
	       " us (clocksource '%s'); latencies below are quantized to that",
	       step == INT64_MAX ? -1 : step / 1000, cs);
}

static int cmd_bench(void)
{
	const char *ls = g_o.pos[0];
	size_t k = (size_t)g_o.lockers, total = 0, off = 0;
	struct locker *lk = calloc(k, sizeof(*lk));
	uint64_t *all = NULL;
	int64_t t_end;
	int rc = 1, failed = 0;
	size_t started = 0;

	if (!lk) {
		errmsg("out of memory");
		return 1;
	}
	for (size_t i = 0; i < k; i++)
		lk[i].fd = -1;
	for (size_t i = 0; i < k; i++) {
		lk[i].id = (int)i;
		lk[i].fd = open_lockspace(ls);
		if (lk[i].fd < 0)
			goto out;
	}
	wd_start();
	check_clock_step();
	if (pthread_barrier_init(&bench_barrier, NULL, (unsigned int)k + 1)) {
		errmsg("pthread_barrier_init failed");
		goto out;
	}
	for (size_t i = 0; i < k; i++) {
		if (pthread_create(&lk[i].thread, NULL, bench_thread, &lk[i])) {
			errmsg("cannot start locker thread %zu", i);
			/* release the barrier by failing hard: threads wait on it */
			_exit(1);
		}
		started++;
	}
	bench_start = now_ns();
	bench_deadline = bench_start + (int64_t)g_o.secs * NSEC_PER_SEC;
	pthread_barrier_wait(&bench_barrier);
	for (size_t i = 0; i < started; i++) {
		pthread_join(lk[i].thread, NULL);
		failed |= lk[i].failed;
		total += lk[i].n;
	}
	t_end = now_ns();
	if (failed) {
		errmsg("a locker failed; no result");
		goto out;
	}
	all = malloc((total ? total : 1) * sizeof(*all));
	if (!all) {
		errmsg("out of memory");
		goto out;
	}
	for (size_t i = 0; i < k; i++) {
		if (lk[i].n)
			memcpy(all + off, lk[i].lat, lk[i].n * sizeof(*all));
		off += lk[i].n;
	}
	qsort(all, total, sizeof(*all), cmp_u64);
	if (total == 0) {
		errmsg("no lock operation completed in %" PRIu64 " s", g_o.secs);
		goto out;
	}
	printf("bench ls=%s lockers=%zu ops=%zu ops_per_sec=%" PRIu64
	       " p50_us=%" PRIu64 " p99_us=%" PRIu64 " max_us=%" PRIu64 "\n",
	       ls, k, total, rate(total, t_end - bench_start),
	       ns_to_us_round(percentile(all, total, 500)),
	       ns_to_us_round(percentile(all, total, 990)),
	       ns_to_us_round(all[total - 1]));
	fflush(stdout);
	rc = 0;
out:
	for (size_t i = 0; i < k; i++) {
		if (lk[i].fd >= 0)
			close(lk[i].fd);
		free(lk[i].lat);
	}
	free(all);
	free(lk);
	return rc;
}

/* ------------------------------------------------------------------ */
/* hold                                                               */
/* ------------------------------------------------------------------ */

struct held {
	uint32_t lkid;
	bool granted;
	bool unlocked;
	struct dlm_lksb lksb;
	unsigned char lvb[LVB_LEN];
};

static int cmd_hold(void)
{
	const char *ls = g_o.pos[0];
	size_t m = (size_t)g_o.count, granted = 0, released = 0;
	uint32_t flags = g_o.valblk ? DLM_LKF_VALBLK : 0;
	struct held *h = calloc(m, sizeof(*h));
	char name[DLM_RESNAME_MAXLEN + 1];
	sigset_t set;
	int fd = -1, sigfd = -1, rc = 1;
	int64_t deadline;
	struct ast a;

	if (!h) {
		errmsg("out of memory");
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL)) {
		errmsg("cannot block signals");
		goto out;
	}
	sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0) {
		errmsg("signalfd: %s", strerror(errno));
		goto out;
	}
	fd = open_lockspace(ls);
	if (fd < 0)
		goto out;
	wd_start();

	/* cookie = index + 1; the kernel queues ASTs per open file */
	for (size_t i = 0; i < m; i++) {
		long lkid;

		if (g_o.res)
			snprintf(name, sizeof(name), "%s", g_o.res);
		else
			snprintf(name, sizeof(name), "%s%zu", g_o.prefix, i);
		lkid = submit_lock(fd, 0, g_o.mode, flags, name, 0, NULL, i + 1,
				   &h[i].lksb);
		if (lkid < 0) {
			errmsg("lock request for %s failed: %s", name,
			       strerror((int)-lkid));
			goto out;
		}
		h[i].lkid = (uint32_t)lkid;
	}
	deadline = now_ns() + timeout_ns();
	while (granted < m) {
		int r = read_ast(fd, deadline, sigfd, &a);

		if (r == -EINTR) {
			errmsg("signal before all locks were granted (%zu of %zu)",
			       granted, m);
			goto out;
		}
		if (r == -ETIMEDOUT) {
			errmsg("only %zu of %zu locks granted within %" PRIu64 " s",
			       granted, m, g_o.timeout_s);
			goto out;
		}
		if (r)
			goto out;
		if (a.cookie < 1 || a.cookie > m || h[a.cookie - 1].granted ||
		    h[a.cookie - 1].lkid != a.lkid) {
			errmsg("unexpected AST cookie %" PRIu64 " lkid %x",
			       a.cookie, a.lkid);
			goto out;
		}
		if (a.status != 0) {
			errmsg("lock %" PRIu64 " completed with status %d (%s)",
			       a.cookie - 1, a.status, dlm_strerror(-a.status));
			goto out;
		}
		h[a.cookie - 1].granted = true;
		if (a.has_lvb)
			memcpy(h[a.cookie - 1].lvb, a.lvb, LVB_LEN);
		granted++;
	}
	vmsg("%zu %s locks granted", m, mode_name(g_o.mode));
	printf("hold ls=%s count=%zu ready=1\n", ls, m);
	fflush(stdout);

	/* hold until --secs pass or a signal arrives */
	{
		int64_t end = g_o.have_secs ?
			now_ns() + (int64_t)g_o.secs * NSEC_PER_SEC : INT64_MAX;

		for (;;) {
			struct pollfd p = { .fd = sigfd, .events = POLLIN };
			int64_t left = end - now_ns();
			int ms;

			if (left <= 0)
				break;
			ms = left / 1000000 + 1 > 3600000 ?
				3600000 : (int)(left / 1000000 + 1);
			if (poll(&p, 1, ms) > 0) {
				struct signalfd_siginfo si;

				if (read(sigfd, &si, sizeof(si)) > 0)
					vmsg("signal %u: releasing", si.ssi_signo);
				break;
			}
		}
	}

	/* release: the LVB we pass back is the one we were granted */
	for (size_t i = 0; i < m; i++) {
		long r = submit_unlock(fd, 0, h[i].lkid, 0,
				       g_o.valblk ? h[i].lvb : NULL,
				       m + 1 + i, &h[i].lksb);

		if (r < 0) {
			errmsg("unlock of lock %zu failed: %s", i,
			       strerror((int)-r));
			goto out;
		}
	}
	deadline = now_ns() + timeout_ns();
	while (released < m) {
		int r = read_ast(fd, deadline, -1, &a);
		size_t i;

		if (r == -ETIMEDOUT) {
			errmsg("only %zu of %zu unlocks completed within %" PRIu64 " s",
			       released, m, g_o.timeout_s);
			goto out;
		}
		if (r)
			goto out;
		if (a.cookie < m + 1 || a.cookie > 2 * m) {
			errmsg("unexpected AST cookie %" PRIu64 " during release",
			       a.cookie);
			goto out;
		}
		i = a.cookie - m - 1;
		if (h[i].unlocked || a.status != -DLM_EUNLOCK) {
			errmsg("unlock of lock %zu completed with status %d (%s)",
			       i, a.status, dlm_strerror(-a.status));
			goto out;
		}
		h[i].unlocked = true;
		released++;
	}
	printf("hold ls=%s released=%zu\n", ls, released);
	fflush(stdout);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (sigfd >= 0)
		close(sigfd);
	free(h);
	return rc;
}

/* ------------------------------------------------------------------ */
/* addr                                                               */
/* ------------------------------------------------------------------ */

/* Build the 128-byte sockaddr_storage that configfs comms/<id>/addr wants. */
static int build_addr(const char *ip, uint16_t port,
		      struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1 ? 0 : -1;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		return inet_pton(AF_INET, ip, &s4->sin_addr) == 1 ? 0 : -1;
	}
}

static int write_whole(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		errmsg("open %s: %s", path, strerror(errno));
		return -1;
	}
	n = write(fd, buf, len);	/* one write: configfs stores per write */
	if (n != (ssize_t)len) {
		errmsg("write %s: %s", path, n < 0 ? strerror(errno) : "short write");
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int cmd_addr(void)
{
	const char *id = g_o.pos[0], *ip = g_o.pos[1];
	struct sockaddr_storage ss;
	char dir[PATH_MAX], path[PATH_MAX + 16];

	if (build_addr(ip, (uint16_t)g_o.port, &ss)) {
		errmsg("bad IP address '%s'", ip);
		return EXIT_USAGE;
	}
	if (g_o.port)
		errmsg("warning: port %" PRIu64 " in the address: the kernel will reject incoming connections from node %s (it matches peers with port 0)",
		       g_o.port, id);
	if (!path_exists(g_o.configfs)) {
		errmsg("%s does not exist (mount configfs, load dlm, mkdir the cluster)",
		       g_o.configfs);
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/comms/%s", g_o.configfs, id);
	if (mkdir(dir, 0755) && errno != EEXIST) {
		errmsg("mkdir %s: %s", dir, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/addr", dir);
	if (write_whole(path, &ss, sizeof(ss)))
		return 1;
	if (g_o.local) {
		snprintf(path, sizeof(path), "%s/local", dir);
		if (write_whole(path, "1", 1))
			return 1;
	}
	printf("addr nodeid=%s ip=%s\n", id, ip);
	fflush(stdout);
	return 0;
}

/* ------------------------------------------------------------------ */
/* selftest                                                           */
/* ------------------------------------------------------------------ */

static int st_fail;

#define ST_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "selftest: %s:%d: check failed: %s\n",	\
			__FILE__, __LINE__, #cond);			\
		st_fail++;						\
	}								\
} while (0)

static int st_parse(const char *line, struct opts *o, char *err, size_t len)
{
	char buf[512], *argv[32], *save = NULL, *t;
	int argc = 0;

	snprintf(buf, sizeof(buf), "dlmt %s", line);
	for (t = strtok_r(buf, " ", &save); t && argc < 31;
	     t = strtok_r(NULL, " ", &save))
		argv[argc++] = strdup(t);
	argv[argc] = NULL;
	{
		int r = parse_args(argc, argv, o, err, len);

		/* strings stay referenced by o; leak them in the test */
		return r;
	}
}

static void selftest_parse(void)
{
	struct opts o;
	char err[256];

	ST_CHECK(st_parse("join ls1", &o, err, sizeof(err)) == 0);
	ST_CHECK(o.cmd == CMD_JOIN && !strcmp(o.pos[0], "ls1"));
	ST_CHECK(o.timeout_s == 120);

	ST_CHECK(st_parse("leave ls1 --force", &o, err, sizeof(err)) == 0);
	ST_CHECK(o.force);
	ST_CHECK(st_parse("join ls1 --force", &o, err, sizeof(err)) != 0);

	ST_CHECK(st_parse("torture t --res R --iters 100 --tag n1", &o, err,
			  sizeof(err)) == 0);
	ST_CHECK(o.iters == 100 && !strcmp(o.res, "R") && !strcmp(o.tag, "n1"));
	ST_CHECK(st_parse("torture t --res=R --iters=5 --timeout=7", &o, err,
			  sizeof(err)) == 0);
	ST_CHECK(o.iters == 5 && o.timeout_s == 7);
	ST_CHECK(st_parse("torture --res R --iters 5 t", &o, err,
			  sizeof(err)) == 0);
	ST_CHECK(!strcmp(o.pos[0], "t"));
	ST_CHECK(st_parse("torture t --res R --iters 5 --record /dev/vda --record-base 40",
			  &o, err, sizeof(err)) == 0);
	ST_CHECK(!strcmp(o.record, "/dev/vda") && o.record_base == 40);
	ST_CHECK(st_parse("torture t --res R --iters 5 --record-base 40", &o, err,
			  sizeof(err)) != 0);
	ST_CHECK(st_parse("lvb t R --record /dev/vda", &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("torture t --res R", &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("torture t --res R --iters 0", &o, err,
			  sizeof(err)) != 0);
	ST_CHECK(st_parse("torture t --res R --iters -3", &o, err,
			  sizeof(err)) != 0);
	ST_CHECK(st_parse("torture t --res R --iters 12x", &o, err,
			  sizeof(err)) != 0);
	ST_CHECK(st_parse("torture t --res R --iters", &o, err,
			  sizeof(err)) != 0);
	ST_CHECK(st_parse("torture t u --res R --iters 1", &o, err,
			  sizeof(err)) != 0);

	ST_CHECK(st_parse("lvb t R", &o, err, sizeof(err)) == 0);
	ST_CHECK(!strcmp(o.pos[1], "R"));
	ST_CHECK(st_parse("lvb t", &o, err, sizeof(err)) != 0);

	ST_CHECK(st_parse("bench t --prefix b --count 64 --lockers 8 --secs 5",
			  &o, err, sizeof(err)) == 0);
	ST_CHECK(o.count == 64 && o.lockers == 8 && o.secs == 5 &&
		 o.mode == DLM_LOCK_EX);
	ST_CHECK(st_parse("bench t --prefix b --count 64 --lockers 8 --secs 5 --mode pr",
			  &o, err, sizeof(err)) == 0);
	ST_CHECK(o.mode == DLM_LOCK_PR);
	ST_CHECK(st_parse("bench t --prefix b --count 64 --lockers 8 --secs 5 --mode NL",
			  &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("bench t --prefix b --count 64 --lockers 0 --secs 5",
			  &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("bench t --prefix b --count 64 --secs 5", &o, err,
			  sizeof(err)) != 0);

	ST_CHECK(st_parse("hold t --prefix h --count 10 --mode NL", &o, err,
			  sizeof(err)) == 0);
	ST_CHECK(o.mode == DLM_LOCK_NL && !o.have_secs);
	ST_CHECK(st_parse("hold t --prefix h --count 10 --mode CR --secs 3",
			  &o, err, sizeof(err)) == 0);
	ST_CHECK(o.mode == DLM_LOCK_CR && o.have_secs && o.secs == 3);
	ST_CHECK(st_parse("hold t --prefix h --count 10", &o, err,
			  sizeof(err)) != 0);
	ST_CHECK(st_parse("hold t --res R --mode NL", &o, err,
			  sizeof(err)) == 0);
	ST_CHECK(o.count == 1);
	ST_CHECK(st_parse("hold t --res R --prefix h --count 2 --mode NL", &o,
			  err, sizeof(err)) != 0);
	ST_CHECK(st_parse("hold t --prefix h/x --count 2 --mode NL", &o, err,
			  sizeof(err)) != 0);

	ST_CHECK(st_parse("addr 3 192.0.2.3", &o, err, sizeof(err)) == 0);
	ST_CHECK(o.port == 0);
	ST_CHECK(st_parse("addr 3 192.0.2.3 --port 21064 --local", &o, err,
			  sizeof(err)) == 0);
	ST_CHECK(o.port == 21064 && o.local);
	ST_CHECK(st_parse("addr 3 192.0.2.3 --port 65536", &o, err,
			  sizeof(err)) != 0);
	ST_CHECK(st_parse("addr 0 192.0.2.3", &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("addr x 192.0.2.3", &o, err, sizeof(err)) != 0);

	ST_CHECK(st_parse("join bad/name", &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("frobnicate x", &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("join ls --timeout 0", &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("join ls --bogus", &o, err, sizeof(err)) != 0);
	ST_CHECK(st_parse("join ls -v", &o, err, sizeof(err)) == 0 && o.verbose);
}

static void selftest_stats(void)
{
	uint64_t one[] = { 7 };
	uint64_t hundred[100], ten[10];

	for (int i = 0; i < 100; i++)
		hundred[i] = (uint64_t)i + 1;	/* 1..100 */
	for (int i = 0; i < 10; i++)
		ten[i] = (uint64_t)(i + 1) * 10;	/* 10..100 */

	ST_CHECK(percentile(one, 1, 500) == 7);
	ST_CHECK(percentile(one, 1, 990) == 7);
	ST_CHECK(percentile(hundred, 100, 500) == 50);
	ST_CHECK(percentile(hundred, 100, 990) == 99);
	ST_CHECK(percentile(hundred, 100, 1000) == 100);
	ST_CHECK(percentile(ten, 10, 500) == 50);
	ST_CHECK(percentile(ten, 10, 990) == 100);	/* rank ceil(9.9)=10 */
	ST_CHECK(percentile(ten, 10, 900) == 90);
	ST_CHECK(percentile(ten, 0, 500) == 0);

	{
		uint64_t v[] = { 5, 1, 4, 2, 3 };

		qsort(v, 5, sizeof(v[0]), cmp_u64);
		ST_CHECK(v[0] == 1 && v[4] == 5);
		ST_CHECK(percentile(v, 5, 500) == 3);
	}
	ST_CHECK(rate(1000, NSEC_PER_SEC) == 1000);
	ST_CHECK(rate(1, 3 * NSEC_PER_SEC) == 0);
	ST_CHECK(rate(3, 2 * NSEC_PER_SEC) == 2);	/* 1.5 rounds up */
	ST_CHECK(ns_to_us_round(1499) == 1 && ns_to_us_round(1500) == 2);
}

static void selftest_lvb(void)
{
	unsigned char lvb[LVB_LEN];
	uint64_t c;

	memset(lvb, 0, sizeof(lvb));
	ST_CHECK(lvb_decode(lvb, &c) == 0 && c == 0);
	lvb_encode(lvb, 12345, "node1");
	ST_CHECK(lvb[0] == (12345 & 0xff) && lvb[1] == (12345 >> 8));
	ST_CHECK(lvb_decode(lvb, &c) == 0 && c == 12345);
	ST_CHECK(!strcmp((char *)lvb + 16, "node1"));
	lvb[3] ^= 1;
	ST_CHECK(lvb_decode(lvb, &c) != 0);
	lvb_encode(lvb, 0, NULL);
	ST_CHECK(lvb_decode(lvb, &c) == 0 && c == 0);
	lvb_encode(lvb, UINT64_MAX - 1, "0123456789abcdef");
	ST_CHECK(lvb_decode(lvb, &c) == 0 && c == UINT64_MAX - 1);
}

static void selftest_wire(void)
{
	union lresult u;
	struct ast a;
	struct sockaddr_storage ss;
	const unsigned char *b = (const unsigned char *)&ss;

	/* request layout: the resource name starts where the struct ends */
	ST_CHECK(offsetof(struct dlm_write_request, i.lock.name) ==
		 sizeof(struct dlm_write_request));
	ST_CHECK(sizeof(struct dlm_write_request) == 120);
	ST_CHECK(sizeof(struct dlm_lock_result) == 72);

	memset(&u, 0, sizeof(u));
	u.r.version[0] = DLM_DEVICE_VERSION_MAJOR;
	u.r.length = sizeof(u.r) + LVB_LEN;
	u.r.user_astaddr = &cast_marker;
	u.r.user_astparam = (void *)(uintptr_t)42;
	u.r.lksb.sb_status = -DLM_EUNLOCK;
	u.r.lksb.sb_lkid = 0x10003;
	u.r.lksb.sb_flags = DLM_SBF_VALNOTVALID;
	u.r.lvb_offset = sizeof(u.r);
	u.b[sizeof(u.r)] = 0x2a;
	ST_CHECK(decode_result(u.b, sizeof(u.b), &a) == 0);
	ST_CHECK(!a.is_bast && a.cookie == 42 && a.status == -DLM_EUNLOCK);
	ST_CHECK(a.lkid == 0x10003 && a.has_lvb && a.lvb[0] == 0x2a);
	ST_CHECK(a.sbflags & DLM_SBF_VALNOTVALID);
	ST_CHECK(decode_result(u.b, sizeof(u.r) - 1, &a) != 0);
	u.r.lvb_offset = sizeof(u.r) + 1;
	ST_CHECK(decode_result(u.b, sizeof(u.b), &a) != 0);
	u.r.lvb_offset = 0;
	u.r.length = sizeof(u.r);
	ST_CHECK(decode_result(u.b, sizeof(u.r), &a) == 0 && !a.has_lvb);
	u.r.version[0] = 5;
	ST_CHECK(decode_result(u.b, sizeof(u.r), &a) != 0);

	ST_CHECK(build_addr("192.0.2.1", 21064, &ss) == 0);
	ST_CHECK(sizeof(ss) == 128);
	ST_CHECK(b[0] == AF_INET && b[1] == 0);		/* LE family */
	ST_CHECK(b[2] == (21064 >> 8) && b[3] == (21064 & 0xff));
	ST_CHECK(b[4] == 192 && b[5] == 0 && b[6] == 2 && b[7] == 1);
	for (int i = 8; i < 128; i++)
		ST_CHECK(b[i] == 0);
	ST_CHECK(build_addr("192.0.2.2", 0, &ss) == 0);
	ST_CHECK(b[2] == 0 && b[3] == 0 && b[7] == 2);
	ST_CHECK(build_addr("fd00::3", 21064, &ss) == 0 && b[0] == AF_INET6);
	ST_CHECK(build_addr("192.0.2.300", 21064, &ss) != 0);
	ST_CHECK(build_addr("nope", 21064, &ss) != 0);
}

static int cmd_selftest(void)
{
	selftest_parse();
	selftest_stats();
	selftest_lvb();
	selftest_wire();
	if (st_fail) {
		fprintf(stderr, "selftest: %d checks failed\n", st_fail);
		return 1;
	}
	printf("selftest ok=1\n");
	return 0;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	char err[512];

	if (parse_args(argc, argv, &g_o, err, sizeof(err))) {
		fprintf(stderr, "dlmt: %s\n%s", err, usage_text);
		return EXIT_USAGE;
	}
	g_cmd = g_o.cmd_name;
	signal(SIGPIPE, SIG_IGN);

	switch (g_o.cmd) {
	case CMD_HELP:
		fputs(usage_text, stdout);
		return 0;
	case CMD_JOIN:
		return cmd_join();
	case CMD_LEAVE:
		return cmd_leave();
	case CMD_TORTURE:
		return cmd_torture();
	case CMD_LVB:
		return cmd_lvb();
	case CMD_BENCH:
		return cmd_bench();
	case CMD_HOLD:
		return cmd_hold();
	case CMD_ADDR:
		return cmd_addr();
	case CMD_SELFTEST:
		return cmd_selftest();
	case CMD_NONE:
		break;
	}
	return EXIT_USAGE;
}
