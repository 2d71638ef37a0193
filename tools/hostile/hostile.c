// SPDX-License-Identifier: GPL-2.0-only
/*
 * hostile: send adversarial DLM frames to a node's DLM port (test guests
 * only).  See README.rst.
 *
 * Each TCP connection carries a body of frames that keep the stream's
 * framing intact (valid h_version and an h_length in [16, 4096] that
 * matches the bytes sent) but are wrong in every other way the receiver
 * must survive, then at most one terminal frame that breaks the stream or
 * may make the receiver reset the connection; then the sender half-closes
 * and waits until the receiver closes its end, reading and discarding
 * whatever it sends.  A frame counts as sent once send() took all of it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER_LEN 16
#define OPTS_LEN 24
#define MAX_LEN 4096
#define V32 0x00030002u
#define V31 0x00030001u

enum { CMD_MSG = 1, CMD_RCOM = 2, CMD_OPTS = 3, CMD_ACK = 4, CMD_FIN = 5 };

/* Body frames: framing stays valid, the receiver drops each one. */
enum body {
	B_UNKNOWN_CMD,   /* h_cmd 0 or 6..255 */
	B_OPTS_INNER,    /* DLM_OPTS whose inner h_length disagrees with the envelope */
	B_OPTS_OPTLEN,   /* DLM_OPTS whose o_optlen leaves no room for the inner header */
	B_OPTS_NEXTCMD,  /* DLM_OPTS with an unknown o_nextcmd or one != inner h_cmd */
	B_ACK_SEQ,       /* DLM_ACK, random seq */
	B_ACK_LEN,       /* DLM_ACK longer than 16 bytes, random seq */
	B_MSG_SHORT,     /* unwrapped DLM_MSG shorter than struct dlm_message */
	B_RCOM_SHORT,    /* unwrapped DLM_RCOM shorter than struct dlm_rcom */
	B_NODEID,        /* DLM_ACK with another h_nodeid */
	B_COUNT
};

/* Terminal frames: the last of a connection. */
enum term {
	T_NONE,          /* clean end of stream */
	T_LEN_SHORT,     /* h_length below 16 */
	T_LEN_LONG,      /* h_length above 4096 */
	T_LEN_LIE_LONG,  /* h_length longer than what follows, then end of stream */
	T_LEN_LIE_SHORT, /* h_length shorter than the frame: the rest is read as a header */
	T_VERSION,       /* h_version neither 3.1 nor 3.2 */
	T_RANDOM,        /* random bytes */
	T_FIN_SEQ,       /* DLM_OPTS + DLM_FIN with a random seq */
	T_COUNT
};

static const char *body_name[B_COUNT] = {
	"unknown_cmd", "opts_inner_len", "opts_optlen", "opts_nextcmd", "ack_seq",
	"ack_len", "msg_short", "rcom_short", "nodeid",
};
static const char *term_name[T_COUNT] = {
	"eof", "len_short", "len_long", "len_lie_long", "len_lie_short", "version",
	"random", "fin_seq",
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static uint32_t rnd_range(uint32_t lo, uint32_t hi)
{
	return lo + (uint32_t)(rnd() % ((uint64_t)hi - lo + 1));
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static void fill_random(uint8_t *p, size_t n)
{
	while (n--)
		*p++ = rnd();
}

static void header(uint8_t *p, uint32_t version, uint32_t lsseq, uint32_t nodeid,
		   uint16_t len, uint8_t cmd)
{
	put32(p, version);
	put32(p + 4, lsseq);
	put32(p + 8, nodeid);
	put16(p + 12, len);
	p[14] = cmd;
	p[15] = 0;
}

static uint32_t nodeid;

/* DLM_OPTS envelope of total length len with an inner header of inner_len. */
static size_t opts(uint8_t *p, size_t len, uint8_t nextcmd, uint16_t optlen,
		   uint8_t inner_cmd, uint16_t inner_len)
{
	fill_random(p, len);
	header(p, V32, rnd(), nodeid, len, CMD_OPTS);
	p[16] = nextcmd;
	p[17] = 0;
	put16(p + 18, optlen);
	put32(p + 20, 0);
	if (OPTS_LEN + (size_t)optlen + HEADER_LEN <= len)
		header(p + OPTS_LEN + optlen, V32, rnd(), nodeid, inner_len, inner_cmd);
	return len;
}

static size_t make_body(uint8_t *p, enum body k)
{
	size_t len;
	uint8_t cmd;

	switch (k) {
	case B_UNKNOWN_CMD:
		len = rnd_range(HEADER_LEN, 256);
		fill_random(p, len);
		cmd = rnd() & 1 ? 0 : rnd_range(6, 255);
		header(p, V32, rnd(), nodeid, len, cmd);
		return len;
	case B_OPTS_INNER: {
		/* Room for an inner header; its length is anything but the truth. */
		uint8_t c = (uint8_t[]){CMD_MSG, CMD_RCOM, CMD_FIN}[rnd() % 3];
		uint16_t inner;

		len = rnd_range(OPTS_LEN + HEADER_LEN, 512);
		do {
			inner = rnd() & 1 ? rnd_range(0, 65535) : rnd_range(0, MAX_LEN);
		} while (inner == len - OPTS_LEN);
		return opts(p, len, c, 0, c, inner);
	}
	case B_OPTS_OPTLEN:
		len = rnd_range(OPTS_LEN + HEADER_LEN, 256);
		return opts(p, len, CMD_MSG, rnd_range(len - OPTS_LEN - HEADER_LEN + 1, 65535),
			    CMD_MSG, HEADER_LEN);
	case B_OPTS_NEXTCMD: {
		uint8_t next = rnd_range(0, 255), inner = rnd_range(0, 255);

		if ((next == CMD_MSG || next == CMD_RCOM || next == CMD_FIN) && next == inner)
			inner = next == CMD_FIN ? CMD_MSG : CMD_FIN;
		len = OPTS_LEN + 88;
		return opts(p, len, next, 0, inner, len - OPTS_LEN);
	}
	case B_ACK_SEQ:
		header(p, V32, rnd(), nodeid, HEADER_LEN, CMD_ACK);
		return HEADER_LEN;
	case B_ACK_LEN:
		len = rnd_range(HEADER_LEN + 1, 64);
		fill_random(p, len);
		header(p, V32, rnd(), nodeid, len, CMD_ACK);
		return len;
	case B_MSG_SHORT:
		len = rnd_range(HEADER_LEN, 87);
		fill_random(p, len);
		header(p, rnd() & 1 ? V32 : V31, rnd(), nodeid, len, CMD_MSG);
		return len;
	case B_RCOM_SHORT:
		len = rnd_range(HEADER_LEN, 47);
		fill_random(p, len);
		header(p, rnd() & 1 ? V32 : V31, rnd(), nodeid, len, CMD_RCOM);
		return len;
	case B_NODEID: {
		uint32_t other;

		do {
			other = rnd();
		} while (other == nodeid);
		header(p, V32, rnd(), other, HEADER_LEN, CMD_ACK);
		return HEADER_LEN;
	}
	default:
		return 0;
	}
}

static size_t make_term(uint8_t *p, enum term k)
{
	size_t len;
	uint32_t v;

	switch (k) {
	case T_NONE:
		return 0;
	case T_LEN_SHORT:
		header(p, V32, rnd(), nodeid, rnd_range(0, HEADER_LEN - 1), CMD_MSG);
		return HEADER_LEN;
	case T_LEN_LONG:
		header(p, V32, rnd(), nodeid, rnd_range(MAX_LEN + 1, 65535), CMD_MSG);
		return HEADER_LEN;
	case T_LEN_LIE_LONG:
		/* Claims up to 4096 bytes, sends fewer, then ends the stream. */
		len = rnd_range(HEADER_LEN + 1, MAX_LEN);
		fill_random(p, len);
		header(p, V32, rnd(), nodeid, len, CMD_MSG);
		return rnd_range(HEADER_LEN, len - 1);
	case T_LEN_LIE_SHORT:
		/* Claims 16..31 bytes of a longer random frame. */
		len = rnd_range(64, 512);
		fill_random(p, len);
		header(p, V32, rnd(), nodeid, rnd_range(HEADER_LEN, 31), CMD_RCOM);
		return len;
	case T_VERSION:
		do {
			v = rnd();
		} while (v == V31 || v == V32);
		header(p, v, rnd(), nodeid, HEADER_LEN, CMD_ACK);
		return HEADER_LEN;
	case T_RANDOM:
		len = rnd_range(1, 2048);
		fill_random(p, len);
		return len;
	case T_FIN_SEQ:
		header(p, V32, rnd(), nodeid, OPTS_LEN + HEADER_LEN, CMD_OPTS);
		p[16] = CMD_FIN;
		p[17] = 0;
		put16(p + 18, 0);
		put32(p + 20, 0);
		header(p + OPTS_LEN, V32, 0, nodeid, HEADER_LEN, CMD_FIN);
		return OPTS_LEN + HEADER_LEN;
	default:
		return 0;
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("hostile: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* How a connection ended, from the sender's side. */
enum end {
	E_EOF,        /* the receiver closed its end (orderly) */
	E_RST,        /* the receiver reset the connection */
	E_TIMEOUT,    /* the receiver kept the connection open: we reset it */
	E_CONNFAIL,   /* connect() failed */
	E_COUNT
};

static const char *end_name[E_COUNT] = {"eof", "rst", "timeout", "connfail"};

struct stats {
	unsigned long frames, body[B_COUNT], term[T_COUNT], conns, ends[E_COUNT];
	unsigned long long bytes_sent, bytes_received;
	unsigned long conns_with_data; /* the receiver sent us something */
};

/*
 * One connection: connect from `from` to `to`, send buf[0..len) (frame
 * boundaries in bounds[0..nframes)), half-close, wait up to wait_s for the
 * receiver's close.  Returns how it ended; *sent_frames is the number of
 * whole frames send() took.
 */
static enum end one_conn(const struct sockaddr_in *from, const struct sockaddr_in *to,
			 const uint8_t *buf, size_t len, const size_t *bounds, size_t nframes,
			 double wait_s, size_t *sent_frames, struct stats *st)
{
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	size_t off = 0, f = 0;
	unsigned long long got = 0;
	double deadline;
	enum end end = E_TIMEOUT;
	uint8_t rx[4096];
	struct linger lg = {1, 0};
	struct timeval tv = {3, 0};

	*sent_frames = 0;
	if (s < 0)
		die("socket: %s", strerror(errno));
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (bind(s, (const struct sockaddr *)from, sizeof(*from)) < 0)
		die("bind %s: %s", inet_ntoa(from->sin_addr), strerror(errno));
	if (connect(s, (const struct sockaddr *)to, sizeof(*to)) < 0) {
		close(s);
		return E_CONNFAIL;
	}
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	deadline = now() + wait_s;
	for (;;) {
		struct pollfd p = {s, POLLIN | (off < len ? POLLOUT : 0), 0};
		int left = (int)((deadline - now()) * 1000), r;

		if (left <= 0)
			break;
		r = poll(&p, 1, left);
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (r <= 0)
			continue;
		if (p.revents & POLLIN || p.revents & (POLLERR | POLLHUP)) {
			ssize_t n = recv(s, rx, sizeof(rx), 0);

			if (n > 0) {
				got += n;
				continue;
			}
			if (n == 0) {
				end = E_EOF;
				break;
			}
			if (errno != EAGAIN && errno != EINTR) {
				end = E_RST;
				break;
			}
		}
		if (p.revents & POLLOUT && off < len) {
			ssize_t n = send(s, buf + off, len - off, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				end = E_RST;
				break;
			}
			off += n;
			st->bytes_sent += n;
			while (f < nframes && bounds[f] <= off)
				f++;
			if (off == len)
				shutdown(s, SHUT_WR);
		}
	}
	*sent_frames = f;
	st->bytes_received += got;
	if (got)
		st->conns_with_data++;
	if (end == E_TIMEOUT)
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(s);
	return end;
}

static void usage(void)
{
	fputs("usage: hostile --to ADDR --from ADDR --nodeid N [--port P] [--frames N]\n"
	      "               [--conns N] [--batch MIN-MAX] [--secs S] [--wait S] [--seed S]\n"
	      "               [--body-only]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"to", 1, 0, 't'}, {"from", 1, 0, 'f'}, {"nodeid", 1, 0, 'n'},
		{"port", 1, 0, 'p'}, {"frames", 1, 0, 'F'}, {"conns", 1, 0, 'c'},
		{"batch", 1, 0, 'b'}, {"secs", 1, 0, 's'}, {"wait", 1, 0, 'w'},
		{"seed", 1, 0, 'S'}, {"body-only", 0, 0, 'B'}, {0, 0, 0, 0},
	};
	struct sockaddr_in from = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
	unsigned long want_frames = 100000, want_conns = 0, bmin = 100, bmax = 400;
	double secs = 60, wait_s = 5, t0;
	uint64_t seed = 1;
	int port = 21064, have_to = 0, have_from = 0, body_only = 0, c;
	struct stats st = {0};
	uint8_t *buf;
	size_t *bounds, cap;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			have_to = inet_pton(AF_INET, optarg, &to.sin_addr) == 1;
			break;
		case 'f':
			have_from = inet_pton(AF_INET, optarg, &from.sin_addr) == 1;
			break;
		case 'n':
			nodeid = strtoul(optarg, NULL, 0);
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'F':
			want_frames = strtoul(optarg, NULL, 0);
			break;
		case 'c':
			want_conns = strtoul(optarg, NULL, 0);
			break;
		case 'b':
			if (sscanf(optarg, "%lu-%lu", &bmin, &bmax) != 2 || !bmin || bmin > bmax)
				usage();
			break;
		case 's':
			secs = atof(optarg);
			break;
		case 'w':
			wait_s = atof(optarg);
			break;
		case 'S':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'B':
			body_only = 1;
			break;
		default:
			usage();
		}
	}
	if (!have_to || !have_from || !nodeid)
		usage();
	to.sin_port = htons(port);
	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
	cap = (bmax + 1) * 1024;
	buf = malloc(cap);
	bounds = malloc((bmax + 1) * sizeof(*bounds));
	if (!buf || !bounds)
		die("out of memory");

	t0 = now();
	while ((want_conns ? st.conns < want_conns : st.frames < want_frames) &&
	       now() - t0 < secs) {
		unsigned long n = rnd_range(bmin, bmax), i;
		enum body kinds[bmax];
		enum term t = body_only ? T_NONE : (enum term)(st.conns % T_COUNT);
		size_t len = 0, sent;
		enum end e;

		for (i = 0; i < n; i++) {
			kinds[i] = rnd() % B_COUNT;
			len += make_body(buf + len, kinds[i]);
			bounds[i] = len;
		}
		if (t != T_NONE) {
			len += make_term(buf + len, t);
			bounds[n] = len;
		}
		e = one_conn(&from, &to, buf, len, bounds, n + (t != T_NONE), wait_s, &sent, &st);
		st.conns++;
		st.ends[e]++;
		for (i = 0; i < sent && i < n; i++)
			st.body[kinds[i]]++;
		if (sent > n)
			st.term[t]++;
		st.frames += sent;
	}

	printf("hostile frames=%lu conns=%lu secs=%.1f bytes_sent=%llu bytes_received=%llu "
	       "conns_with_data=%lu seed=%llu", st.frames, st.conns, now() - t0,
	       st.bytes_sent, st.bytes_received, st.conns_with_data, (unsigned long long)seed);
	for (c = 0; c < E_COUNT; c++)
		printf(" end_%s=%lu", end_name[c], st.ends[c]);
	for (c = 0; c < B_COUNT; c++)
		printf(" %s=%lu", body_name[c], st.body[c]);
	for (c = 1; c < T_COUNT; c++)
		printf(" t_%s=%lu", term_name[c], st.term[c]);
	printf("\n");
	return 0;
}
