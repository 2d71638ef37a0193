// SPDX-License-Identifier: GPL-2.0-only
/*
 * dlmbu - the user-space half of the dlm-rs benchmark (`make bench`), run
 * inside the test guests next to the dlmbench module.  See README.rst.
 *
 *   dlmbu rstwait --peer IP --count N --res NAME [--ctl PATH] [--progress F]
 *                 [--timeout S]
 *   dlmbu tcprecv --port P [--timeout S]
 *   dlmbu tcpsend --to IP --port P --secs S
 *   dlmbu memwatch [--interval-ms M]
 *   dlmbu clock
 *
 * Every command prints one result line "<command> key=value ..." on stdout;
 * errors go to stderr; exit code 0 on success, 1 on failure, 2 on misuse.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define DLM_PORT 21064
#define NSEC 1000000000LL

static const char *cmd = "dlmbu";

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "dlmbu %s: ", cmd);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

/*
 * The TSC: the guests' clocks move in 4 ms jiffies (tsc=unstable, no
 * calibration under TCG), but under TCG the TSC is the host's and counts
 * on; the host converts cycles with the rate it measures (dlmbu clock).
 */
static int64_t cycles(void)
{
	return (int64_t)__rdtsc();
}

static int64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 2; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return def;
}

static long num(int argc, char **argv, const char *name, long def)
{
	const char *v = opt(argc, argv, name, NULL);
	char *end;
	long n;

	if (!v)
		return def;
	n = strtol(v, &end, 10);
	if (*end || n < 0)
		die("bad number for %s", name);
	return n;
}

/* --- rstwait ------------------------------------------------------------ */

/*
 * Is this frame a TCP RST from peer on the DLM port?  Frames come from a
 * packet socket, so they start with the Ethernet header.
 */
static bool is_dlm_rst(const unsigned char *f, size_t n, struct in_addr peer)
{
	const struct iphdr *ip;
	const struct tcphdr *tcp;
	size_t ihl;

	if (n < 14 + sizeof(*ip) || f[12] != 0x08 || f[13] != 0x00)
		return false;
	ip = (const struct iphdr *)(f + 14);
	ihl = ip->ihl * 4u;
	if (ip->version != 4 || ip->protocol != IPPROTO_TCP || ihl < 20 ||
	    n < 14 + ihl + sizeof(*tcp) || ip->saddr != peer.s_addr)
		return false;
	tcp = (const struct tcphdr *)(f + 14 + ihl);
	if (ntohs(tcp->source) != DLM_PORT && ntohs(tcp->dest) != DLM_PORT)
		return false;
	return tcp->rst;
}

/*
 * Wait for the next RST from peer that arrived after `after` (CLOCK_REALTIME
 * ns); its kernel receive timestamp (CLOCK_REALTIME) in *ts.
 */
static int wait_rst(int fd, struct in_addr peer, int64_t after, int64_t deadline,
		    int64_t *ts, int64_t *cyc)
{
	unsigned char frame[2048];
	char cbuf[256];

	for (;;) {
		struct sockaddr_ll from;
		struct iovec iov = { frame, sizeof(frame) };
		struct msghdr m = {
			.msg_name = &from, .msg_namelen = sizeof(from),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - clock_ns(CLOCK_MONOTONIC);
		struct cmsghdr *c;
		int64_t t = 0;
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(left / 1000000) + 1) <= 0)
			continue;
		n = recvmsg(fd, &m, MSG_DONTWAIT);
		*cyc = cycles();
		if (n < 0)
			continue;
		if (from.sll_pkttype != PACKET_HOST ||
		    !is_dlm_rst(frame, (size_t)n, peer))
			continue;
		for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
				struct timespec tsp;

				memcpy(&tsp, CMSG_DATA(c), sizeof(tsp));
				t = (int64_t)tsp.tv_sec * NSEC + tsp.tv_nsec;
			}
		}
		if (!t)
			die("%s", "a frame came without its receive timestamp");
		if (t <= after)
			continue;
		*ts = t;
		return 0;
	}
}

/* Run one command through the dlmbench control file; its result line. */
static int ctl_run(const char *ctl, const char *line, char *out, size_t len)
{
	int fd = open(ctl, O_RDWR);
	ssize_t n;

	if (fd < 0)
		return -errno;
	if (write(fd, line, strlen(line)) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	n = pread(fd, out, len - 1, 0);
	close(fd);
	if (n < 0)
		return -errno;
	out[n] = '\0';
	return 0;
}

static int64_t kv(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(line, pat);
	if (!p)
		die("no %s in the module's answer", key);
	return strtoll(p + strlen(pat), NULL, 10);
}

static int cmd_rstwait(int argc, char **argv)
{
	const char *peer_s = opt(argc, argv, "--peer", NULL);
	const char *res = opt(argc, argv, "--res", NULL);
	const char *ctl = opt(argc, argv, "--ctl", "/sys/kernel/debug/dlmbench/ctl");
	const char *progress = opt(argc, argv, "--progress", NULL);
	long count = num(argc, argv, "--count", 20);
	long timeout = num(argc, argv, "--timeout", 120);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	int64_t after, *lat, *lcyc, sum = 0, worst = 0;
	struct in_addr peer;
	char line[128], out[512];
	int fd, on = 1;

	if (!peer_s || !res || inet_pton(AF_INET, peer_s, &peer) != 1 || count < 1)
		die("%s", "need --peer IPv4, --res NAME and --count >= 1");
	lat = calloc((size_t)count, sizeof(*lat));
	lcyc = calloc((size_t)count, sizeof(*lcyc));
	fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	if (fd < 0 || !lat || !lcyc)
		die("packet socket: %s", strerror(errno));
	if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)))
		die("SO_TIMESTAMPNS: %s", strerror(errno));
	sll.sll_protocol = htons(ETH_P_IP);
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)))
		die("bind: %s", strerror(errno));
	snprintf(line, sizeof(line), "op %s NL", res);
	after = clock_ns(CLOCK_REALTIME);
	if (progress) {
		FILE *f = fopen(progress, "w");

		if (f)
			fclose(f);
	}
	for (long i = 0; i < count; i++) {
		int64_t t0, c0, grant;
		int r = wait_rst(fd, peer, after,
				 clock_ns(CLOCK_MONOTONIC) + timeout * NSEC, &t0, &c0);

		if (r)
			die("no RST from the peer within %s s", opt(argc, argv, "--timeout", "120"));
		r = ctl_run(ctl, line, out, sizeof(out));
		if (r)
			die("dlmbench op failed: %s", strerror(-r));
		grant = kv(out, "grant_ns");
		lat[i] = grant - t0;
		lcyc[i] = kv(out, "grant_cyc") - c0;
		sum += lat[i];
		if (lat[i] > worst)
			worst = lat[i];
		/* Later RSTs of the same reset (each connection, retries) are old. */
		after = clock_ns(CLOCK_REALTIME);
		if (progress) {
			FILE *f = fopen(progress, "a");

			if (f) {
				fprintf(f, "rst %ld us=%" PRId64 "\n", i + 1, lat[i] / 1000);
				fclose(f);
			}
		}
	}
	printf("rstwait count=%ld mean_us=%" PRId64 " max_us=%" PRId64 " us=", count,
	       sum / count / 1000, worst / 1000);
	for (long i = 0; i < count; i++)
		printf("%s%" PRId64, i ? "," : "", lat[i] / 1000);
	printf(" cyc=");
	for (long i = 0; i < count; i++)
		printf("%s%" PRId64, i ? "," : "", lcyc[i]);
	printf("\n");
	return 0;
}

/* --- raw TCP stream ----------------------------------------------------- */

static int cmd_tcprecv(int argc, char **argv)
{
	long port = num(argc, argv, "--port", 5001);
	long timeout = num(argc, argv, "--timeout", 120);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	static char buf[1 << 16];
	int64_t first = 0, last = 0, bytes = 0;
	struct timeval tv = { .tv_sec = timeout };
	int ls, s, on = 1;
	ssize_t n;

	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1))
		die("listen: %s", strerror(errno));
	setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	printf("tcprecv listening=1\n");
	fflush(stdout);
	s = accept(ls, NULL, NULL);
	if (s < 0)
		die("accept: %s", strerror(errno));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while ((n = read(s, buf, sizeof(buf))) > 0) {
		last = clock_ns(CLOCK_MONOTONIC);
		if (!first)
			first = last;
		bytes += n;
	}
	if (n < 0)
		die("read: %s", strerror(errno));
	printf("tcprecv bytes=%" PRId64 " ns=%" PRId64 " bytes_per_sec=%" PRId64 "\n",
	       bytes, last - first,
	       last > first ? (int64_t)((double)bytes * NSEC / (double)(last - first)) : 0);
	return 0;
}

static int cmd_tcpsend(int argc, char **argv)
{
	const char *to = opt(argc, argv, "--to", NULL);
	long port = num(argc, argv, "--port", 5001);
	long secs = num(argc, argv, "--secs", 3);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	static char buf[1 << 16];
	int64_t end, bytes = 0;
	int s = -1;

	if (!to || inet_pton(AF_INET, to, &a.sin_addr) != 1)
		die("%s", "need --to IPv4");
	for (int i = 0; i < 100; i++) {
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (!connect(s, (struct sockaddr *)&a, sizeof(a)))
			break;
		close(s);
		s = -1;
		usleep(100000);
	}
	if (s < 0)
		die("connect: %s", strerror(errno));
	end = clock_ns(CLOCK_MONOTONIC) + secs * NSEC;
	while (clock_ns(CLOCK_MONOTONIC) < end) {
		ssize_t n = write(s, buf, sizeof(buf));

		if (n < 0)
			die("write: %s", strerror(errno));
		bytes += n;
	}
	close(s);
	printf("tcpsend bytes=%" PRId64 "\n", bytes);
	return 0;
}

/* --- memwatch ----------------------------------------------------------- */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* MemTotal - MemFree in KiB: every page in use, by anyone. */
static long used_kb(void)
{
	char buf[4096], *p;
	long total = -1, freekb = -1;
	int fd = open("/proc/meminfo", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "MemTotal:");
	if (p)
		total = strtol(p + 9, NULL, 10);
	p = strstr(buf, "MemFree:");
	if (p)
		freekb = strtol(p + 8, NULL, 10);
	return total < 0 || freekb < 0 ? -1 : total - freekb;
}

static int cmd_memwatch(int argc, char **argv)
{
	long ms = num(argc, argv, "--interval-ms", 20);
	long base = used_kb(), peak = base, cur, samples = 0;
	struct sigaction sa = { .sa_handler = on_signal };

	if (base < 0)
		die("%s", "cannot read /proc/meminfo");
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("memwatch started=1 base_kb=%ld\n", base);
	fflush(stdout);
	while (!stop) {
		usleep((useconds_t)ms * 1000);
		cur = used_kb();
		samples++;
		if (cur > peak)
			peak = cur;
	}
	printf("memwatch base_kb=%ld peak_kb=%ld end_kb=%ld samples=%ld\n", base, peak,
	       used_kb(), samples);
	return 0;
}

/* --- clock ------------------------------------------------------------- */

/*
 * The smallest step CLOCK_MONOTONIC takes in 50 ms of reading it (4 ms on
 * the jiffies clocksource at HZ=250, well under a microsecond on the TSC),
 * the clocksource, and the clock itself for the host to compare.
 */
static int cmd_clock(void)
{
	int64_t t0 = clock_ns(CLOCK_MONOTONIC), prev = t0, step = INT64_MAX;
	char cs[64] = "?";
	int fd;

	while (prev - t0 < 50 * 1000000LL) {
		int64_t t = clock_ns(CLOCK_MONOTONIC);

		if (t != prev && t - prev < step)
			step = t - prev;
		prev = t;
	}
	fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, cs, sizeof(cs) - 1);

		cs[n > 0 ? n : 0] = '\0';
		cs[strcspn(cs, "\n")] = '\0';
		close(fd);
	}
	printf("clock step_ns=%" PRId64 " clocksource=%s mono_ns=%" PRId64 " tsc=%" PRId64 "\n",
	       step, cs, clock_ns(CLOCK_MONOTONIC), cycles());
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: dlmbu rstwait|tcprecv|tcpsend|memwatch|clock|tsc [options]\n");
		return 2;
	}
	cmd = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(cmd, "rstwait"))
		return cmd_rstwait(argc, argv);
	if (!strcmp(cmd, "tcprecv"))
		return cmd_tcprecv(argc, argv);
	if (!strcmp(cmd, "tcpsend"))
		return cmd_tcpsend(argc, argv);
	if (!strcmp(cmd, "memwatch"))
		return cmd_memwatch(argc, argv);
	if (!strcmp(cmd, "clock"))
		return cmd_clock();
	if (!strcmp(cmd, "tsc")) {
		printf("tsc=%" PRId64 "\n", cycles());
		return 0;
	}
	fprintf(stderr, "dlmbu: unknown command '%s'\n", cmd);
	return 2;
}
