// SPDX-License-Identifier: GPL-2.0
/*
 * dlmbench: a test module that drives the DLM through its exported kernel
 * API (dlm_new_lockspace, dlm_lock, dlm_unlock, dlm_release_lockspace) for
 * `make bench`.  It uses nothing but that API, so it runs unchanged on the
 * stock dlm.ko and on ours, and it reaches what user space cannot: a kernel
 * lockspace may have an LVB of any multiple of 8 bytes, so lock traffic
 * with VALBLK carries messages of almost 4 KiB (user lockspaces have a
 * 32-byte LVB), and requests can be issued far faster than through
 * /dev/dlm_<ls> (the burst of a million requests).
 *
 * One command at a time is written to /sys/kernel/debug/dlmbench/ctl; the
 * write returns when the command is done (or fails with its error), and a
 * read returns its one-line result, "key=value ...".  Commands:
 *
 *   join LS CLUSTER LVBLEN     create/join kernel lockspace LS
 *   leave                      release it (no locks may be held)
 *   hold PREFIX COUNT NRES MODE [valblk]
 *                              COUNT locks, lock i on PREFIX<i % NRES>, in
 *                              MODE; returns when all are granted
 *   convert MODE [nowait]      convert every held lock to MODE; nowait
 *                              returns once all are issued (see "wait")
 *   wait SECS                  wait for the conversions issued by nowait
 *   release                    unlock every held lock
 *   bench PREFIX COUNT THREADS SECS MODE [valblk]
 *                              THREADS kernel threads lock and unlock
 *                              PREFIX<(t + i*THREADS) % COUNT> for SECS
 *   burst PREFIX NRES TOTAL    issue TOTAL NL requests on PREFIX<i % NRES>
 *                              back to back, each unlocked as soon as it
 *                              is granted; returns when all are unlocked
 *   op NAME MODE               one lock + unlock; CLOCK_REALTIME and cycle
 *                              stamps
 *   clock                      the resolution of ktime_get_ns(), local_clock()
 *                              and get_cycles(), and their values now
 *
 * Latencies are timed with get_cycles() (the TSC): the test kernel cannot
 * calibrate the TSC under TCG (no HPET or ACPI PM timer), boots with
 * tsc=unstable and keeps time on the jiffies clocksource, so ktime_get_ns()
 * and local_clock() both move in steps of a tick (4 ms at HZ=250).  The TSC
 * itself still counts (under TCG it is the host's TSC); the host converts
 * cycles to time with the rate it measures against its own clock
 * (scripts/cluster/bench.py).
 *
 * A lock whose AST does not come within a minute leaves the module pinned
 * (its lksb may still be written by the DLM) and every later command fails.
 */

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/dlm.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/llist.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/sched/clock.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <asm/timex.h>

#define AST_WAIT	(60 * HZ)
#define RESULT_LEN	1024
#define MAX_THREADS	256
/* Latency samples kept per bench run (the rest are counted, not kept). */
#define MAX_SAMPLES	(1 << 20)

static DEFINE_MUTEX(cmd_mutex);
static struct dentry *dbg_dir;
static char result[RESULT_LEN];
static dlm_lockspace_t *ls;
static int ls_lvblen;
static bool wedged;

static void wedge(const char *what)
{
	if (!wedged) {
		wedged = true;
		__module_get(THIS_MODULE);
		pr_err("dlmbench: no AST for %s within %d s; module pinned\n",
		       what, AST_WAIT / HZ);
	}
}

static int parse_mode(const char *s)
{
	static const char *const names[] = { "NL", "CR", "CW", "PR", "PW", "EX" };
	int i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i]))
			return i;
	return -EINVAL;
}

/* --- one synchronous lock ------------------------------------------------ */

struct sync_lock {
	struct dlm_lksb lksb;
	struct completion done;
};

static void sync_ast(void *arg)
{
	struct sync_lock *s = arg;

	complete(&s->done);
}

static int sync_wait(struct sync_lock *s, const char *what)
{
	if (!wait_for_completion_timeout(&s->done, AST_WAIT)) {
		wedge(what);
		return -ETIMEDOUT;
	}
	return 0;
}

static int lock_sync(struct sync_lock *s, int mode, u32 flags, const char *name,
		     int len)
{
	int err;

	reinit_completion(&s->done);
	err = dlm_lock(ls, mode, &s->lksb, flags, name, len, 0, sync_ast, s, NULL);
	if (err)
		return err;
	err = sync_wait(s, "a lock request");
	return err ?: s->lksb.sb_status;
}

static int unlock_sync(struct sync_lock *s)
{
	int err;

	reinit_completion(&s->done);
	err = dlm_unlock(ls, s->lksb.sb_lkid, 0, &s->lksb, s);
	if (err)
		return err;
	err = sync_wait(s, "an unlock");
	if (err)
		return err;
	return s->lksb.sb_status == -DLM_EUNLOCK ? 0 : s->lksb.sb_status ?: -EPROTO;
}

/* --- held locks (hold, convert, wait, release) -------------------------- */

struct hlock {
	struct dlm_lksb lksb;
	int status;
};

static struct hlock *held;
static char *held_lvb;
static unsigned int nheld;
static u32 held_flags;
static atomic_t hold_pending;
static atomic_t hold_errors;
static DECLARE_WAIT_QUEUE_HEAD(hold_wq);

static void hold_ast(void *arg)
{
	struct hlock *h = arg;

	h->status = h->lksb.sb_status;
	if (h->status && h->status != -DLM_EUNLOCK)
		atomic_inc(&hold_errors);
	if (atomic_dec_and_test(&hold_pending))
		wake_up(&hold_wq);
}

static int hold_wait(unsigned long timeout)
{
	if (!wait_event_timeout(hold_wq, !atomic_read(&hold_pending), timeout)) {
		wedge("held locks");
		return -ETIMEDOUT;
	}
	return atomic_read(&hold_errors) ? -EIO : 0;
}

static void free_held(void)
{
	kvfree(held);
	kvfree(held_lvb);
	held = NULL;
	held_lvb = NULL;
	nheld = 0;
}

static int cmd_hold(char **argv, int argc)
{
	unsigned int count, nres, i;
	char name[DLM_RESNAME_MAXLEN + 1];
	int mode, err = 0, len;
	u64 t0;

	if (argc < 5 || argc > 6 || kstrtouint(argv[2], 0, &count) ||
	    kstrtouint(argv[3], 0, &nres) || !count || !nres || count > (1 << 22))
		return -EINVAL;
	mode = parse_mode(argv[4]);
	if (mode < 0)
		return mode;
	if (nheld)
		return -EBUSY;
	held_flags = 0;
	if (argc == 6) {
		if (strcmp(argv[5], "valblk"))
			return -EINVAL;
		held_flags = DLM_LKF_VALBLK;
	}
	held = kvcalloc(count, sizeof(*held), GFP_KERNEL);
	if (!held)
		return -ENOMEM;
	if (held_flags) {
		held_lvb = kvzalloc(array_size(count, ls_lvblen), GFP_KERNEL);
		if (!held_lvb) {
			free_held();
			return -ENOMEM;
		}
	}
	atomic_set(&hold_errors, 0);
	atomic_set(&hold_pending, 1);
	t0 = ktime_get_ns();
	for (i = 0; i < count; i++) {
		len = snprintf(name, sizeof(name), "%s%u", argv[1], i % nres);
		if (held_lvb)
			held[i].lksb.sb_lvbptr = held_lvb + (size_t)i * ls_lvblen;
		atomic_inc(&hold_pending);
		err = dlm_lock(ls, mode, &held[i].lksb, held_flags, name, len, 0,
			       hold_ast, &held[i], NULL);
		if (err) {
			atomic_dec(&hold_pending);
			break;
		}
		nheld = i + 1;
		cond_resched();
	}
	atomic_dec(&hold_pending);
	err = hold_wait(AST_WAIT + count / 100 * HZ) ?: err;
	scnprintf(result, RESULT_LEN, "hold count=%u granted=%u errors=%d ms=%llu err=%d\n",
		  count, nheld - atomic_read(&hold_errors), atomic_read(&hold_errors),
		  (ktime_get_ns() - t0) / NSEC_PER_MSEC, err);
	return err;
}

static int cmd_convert(char **argv, int argc)
{
	bool nowait = argc == 3 && !strcmp(argv[2], "nowait");
	unsigned int i;
	int mode, err = 0;
	u64 t0;

	if (argc < 2 || (argc == 3 && !nowait) || argc > 3)
		return -EINVAL;
	mode = parse_mode(argv[1]);
	if (mode < 0)
		return mode;
	if (!nheld)
		return -ENOENT;
	atomic_set(&hold_errors, 0);
	atomic_set(&hold_pending, 1);
	t0 = ktime_get_ns();
	for (i = 0; i < nheld; i++) {
		atomic_inc(&hold_pending);
		err = dlm_lock(ls, mode, &held[i].lksb, held_flags | DLM_LKF_CONVERT,
			       NULL, 0, 0, hold_ast, &held[i], NULL);
		if (err) {
			atomic_dec(&hold_pending);
			break;
		}
		cond_resched();
	}
	atomic_dec(&hold_pending);
	if (!nowait && !err)
		err = hold_wait(AST_WAIT + nheld / 100 * HZ);
	scnprintf(result, RESULT_LEN, "convert count=%u issued=%u ms=%llu err=%d\n",
		  nheld, i, (ktime_get_ns() - t0) / NSEC_PER_MSEC, err);
	return err;
}

static int cmd_wait(char **argv, int argc)
{
	unsigned int secs;
	u64 t0 = ktime_get_ns();
	int err;

	if (argc != 2 || kstrtouint(argv[1], 0, &secs))
		return -EINVAL;
	err = hold_wait(secs * HZ);
	scnprintf(result, RESULT_LEN, "wait pending=%d errors=%d ms=%llu err=%d\n",
		  atomic_read(&hold_pending), atomic_read(&hold_errors),
		  (ktime_get_ns() - t0) / NSEC_PER_MSEC, err);
	return err;
}

static int release_held(void)
{
	unsigned int i;
	int err = 0;

	if (!nheld)
		return 0;
	atomic_set(&hold_errors, 0);
	atomic_set(&hold_pending, 1);
	for (i = 0; i < nheld; i++) {
		atomic_inc(&hold_pending);
		err = dlm_unlock(ls, held[i].lksb.sb_lkid, 0, &held[i].lksb, &held[i]);
		if (err) {
			atomic_dec(&hold_pending);
			break;
		}
		cond_resched();
	}
	atomic_dec(&hold_pending);
	err = hold_wait(AST_WAIT + nheld / 100 * HZ) ?: err;
	if (!err)
		free_held();
	return err;
}

static int cmd_release(char **argv, int argc)
{
	unsigned int n = nheld;
	int err = release_held();

	scnprintf(result, RESULT_LEN, "release count=%u err=%d\n", n, err);
	return err;
}

/* --- bench ---------------------------------------------------------------- */

struct bthread {
	struct sync_lock sl;
	unsigned int idx;
	char *lvb;
	u64 *lat;		/* cycles */
	unsigned int cap, nlat;
	u64 ops;
	int err;
};

static struct {
	const char *prefix;
	unsigned int count, threads;
	int mode;
	u32 flags;
	u64 deadline;
	atomic_t running;
	struct completion done;
} bench;

static int bench_fn(void *arg)
{
	struct bthread *t = arg;
	char name[DLM_RESNAME_MAXLEN + 1];
	u64 i, t0, t1;
	int len, err;

	for (i = 0; ktime_get_ns() < bench.deadline; i++) {
		len = snprintf(name, sizeof(name), "%s%llu", bench.prefix,
			       (t->idx + i * bench.threads) % bench.count);
		t0 = get_cycles();
		err = lock_sync(&t->sl, bench.mode, bench.flags, name, len);
		if (err) {
			t->err = err;
			break;
		}
		if (t->lvb)
			memcpy(t->lvb, &i, sizeof(i));
		err = unlock_sync(&t->sl);
		if (err) {
			t->err = err;
			break;
		}
		t1 = get_cycles();
		if (t->nlat < t->cap)
			t->lat[t->nlat++] = t1 - t0;
		t->ops++;
	}
	if (atomic_dec_and_test(&bench.running))
		complete(&bench.done);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

static u64 pct(const u64 *v, unsigned int n, unsigned int permille)
{
	unsigned int rank;

	if (!n)
		return 0;
	rank = clamp((unsigned int)div_u64((u64)n * permille + 999, 1000), 1u, n);
	return v[rank - 1];
}

static int cmd_bench(char **argv, int argc)
{
	unsigned int secs, i, n = 0, started = 0;
	struct bthread *ts;
	u64 *all, ops = 0, t0, ns, c0, cyc;
	char *lvbs = NULL;
	int err = 0;

	if (argc < 6 || argc > 7 || kstrtouint(argv[2], 0, &bench.count) ||
	    kstrtouint(argv[3], 0, &bench.threads) || kstrtouint(argv[4], 0, &secs) ||
	    !bench.count || !bench.threads || bench.threads > MAX_THREADS || !secs ||
	    secs > 600)
		return -EINVAL;
	bench.mode = parse_mode(argv[5]);
	if (bench.mode < 0)
		return bench.mode;
	bench.flags = 0;
	if (argc == 7) {
		if (strcmp(argv[6], "valblk"))
			return -EINVAL;
		bench.flags = DLM_LKF_VALBLK;
	}
	bench.prefix = argv[1];
	ts = kcalloc(bench.threads, sizeof(*ts), GFP_KERNEL);
	all = vmalloc(array_size(MAX_SAMPLES, sizeof(u64)));
	if (bench.flags)
		lvbs = kvzalloc(array_size(bench.threads, ls_lvblen), GFP_KERNEL);
	if (!ts || !all || (bench.flags && !lvbs)) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < bench.threads; i++) {
		ts[i].idx = i;
		init_completion(&ts[i].sl.done);
		ts[i].cap = MAX_SAMPLES / bench.threads;
		ts[i].lat = all + (size_t)i * ts[i].cap;
		if (lvbs) {
			ts[i].lvb = lvbs + (size_t)i * ls_lvblen;
			ts[i].sl.lksb.sb_lvbptr = ts[i].lvb;
		}
	}
	atomic_set(&bench.running, 1);
	init_completion(&bench.done);
	t0 = ktime_get_ns();
	c0 = get_cycles();
	bench.deadline = t0 + (u64)secs * NSEC_PER_SEC;
	for (i = 0; i < bench.threads; i++) {
		struct task_struct *k;

		atomic_inc(&bench.running);
		k = kthread_run(bench_fn, &ts[i], "dlmbench/%u", i);
		if (IS_ERR(k)) {
			atomic_dec(&bench.running);
			err = PTR_ERR(k);
			bench.deadline = 0;
			break;
		}
		started++;
	}
	if (!atomic_dec_and_test(&bench.running))
		wait_for_completion(&bench.done);
	ns = ktime_get_ns() - t0;
	cyc = get_cycles() - c0;
	/* Gather the samples of every thread at the front, then sort. */
	for (i = 0; i < started; i++) {
		if (ts[i].err && !err)
			err = ts[i].err;
		ops += ts[i].ops;
		memmove(all + n, ts[i].lat, ts[i].nlat * sizeof(u64));
		n += ts[i].nlat;
	}
	sort(all, n, sizeof(u64), cmp_u64, NULL);
	scnprintf(result, RESULT_LEN,
		  "bench threads=%u ops=%llu ns=%llu cycles=%llu ops_per_sec=%llu p50_cyc=%llu p99_cyc=%llu max_cyc=%llu lvblen=%d valblk=%d err=%d\n",
		  bench.threads, ops, ns, cyc, div64_u64(ops * NSEC_PER_SEC, ns ?: 1),
		  pct(all, n, 500), pct(all, n, 990), n ? all[n - 1] : 0,
		  ls_lvblen, !!bench.flags, err);
out:
	vfree(all);
	if (!wedged) {
		/* Otherwise an AST may still come for a thread's lksb or LVB. */
		kvfree(lvbs);
		kfree(ts);
	}
	return err;
}

/* --- burst ---------------------------------------------------------------- */

struct bop {
	struct dlm_lksb lksb;
	struct llist_node node;
};

static struct kmem_cache *bop_cache;
static LLIST_HEAD(unlock_list);
static DECLARE_WAIT_QUEUE_HEAD(unlocker_wq);
static atomic_long_t burst_outstanding;
static atomic_t burst_errors;
static DECLARE_COMPLETION(burst_done);

static void burst_finish(struct bop *b)
{
	kmem_cache_free(bop_cache, b);
	if (atomic_long_dec_and_test(&burst_outstanding))
		complete(&burst_done);
}

static void burst_ast(void *arg)
{
	struct bop *b = arg;

	if (!b->lksb.sb_status) {
		llist_add(&b->node, &unlock_list);
		wake_up(&unlocker_wq);
		return;
	}
	if (b->lksb.sb_status != -DLM_EUNLOCK)
		atomic_inc(&burst_errors);
	burst_finish(b);
}

static int unlocker_fn(void *arg)
{
	struct llist_node *list;
	struct bop *b, *tmp;

	while (!kthread_should_stop()) {
		wait_event_interruptible(unlocker_wq, !llist_empty(&unlock_list) ||
					 kthread_should_stop());
		list = llist_del_all(&unlock_list);
		llist_for_each_entry_safe(b, tmp, list, node) {
			if (dlm_unlock(ls, b->lksb.sb_lkid, 0, &b->lksb, b)) {
				atomic_inc(&burst_errors);
				burst_finish(b);
			}
			cond_resched();
		}
	}
	return 0;
}

static int cmd_burst(char **argv, int argc)
{
	char name[DLM_RESNAME_MAXLEN + 1];
	unsigned int nres, total, i;
	struct task_struct *unlocker;
	long peak = 0, cur;
	u64 t0, t_issued, ns;
	struct bop *b;
	int err = 0, len;

	if (argc != 4 || kstrtouint(argv[2], 0, &nres) ||
	    kstrtouint(argv[3], 0, &total) || !nres || !total)
		return -EINVAL;
	atomic_set(&burst_errors, 0);
	atomic_long_set(&burst_outstanding, 1);
	reinit_completion(&burst_done);
	unlocker = kthread_run(unlocker_fn, NULL, "dlmbench/unlock");
	if (IS_ERR(unlocker))
		return PTR_ERR(unlocker);
	t0 = ktime_get_ns();
	for (i = 0; i < total; i++) {
		b = kmem_cache_zalloc(bop_cache, GFP_KERNEL);
		if (!b) {
			err = -ENOMEM;
			break;
		}
		len = snprintf(name, sizeof(name), "%s%u", argv[1], i % nres);
		cur = atomic_long_inc_return(&burst_outstanding);
		if (cur > peak)
			peak = cur;
		err = dlm_lock(ls, DLM_LOCK_NL, &b->lksb, 0, name, len, 0, burst_ast,
			       b, NULL);
		if (err) {
			burst_finish(b);
			break;
		}
		cond_resched();
	}
	t_issued = ktime_get_ns();
	if (!atomic_long_dec_and_test(&burst_outstanding) &&
	    !wait_for_completion_timeout(&burst_done, AST_WAIT + total / 1000 * HZ)) {
		/* The unlocker and the requests still in flight use our memory. */
		wedge("the burst");
		err = -ETIMEDOUT;
	} else {
		kthread_stop(unlocker);
	}
	ns = ktime_get_ns() - t0;
	scnprintf(result, RESULT_LEN,
		  "burst total=%u issued=%u issue_ms=%llu ms=%llu per_sec=%llu peak_outstanding=%ld errors=%d err=%d\n",
		  total, i, (t_issued - t0) / NSEC_PER_MSEC, ns / NSEC_PER_MSEC,
		  div64_u64((u64)i * NSEC_PER_SEC, ns ?: 1), peak,
		  atomic_read(&burst_errors), err);
	return err ?: atomic_read(&burst_errors) ? -EIO : 0;
}

/* --- single operation, lockspace ------------------------------------------ */

/* Static: after a timeout the DLM may still write it (the module is pinned). */
static struct sync_lock op_lock;

static int cmd_op(char **argv, int argc)
{
	u64 t0, t1, t2, c1;
	int mode, err;

	if (argc != 3)
		return -EINVAL;
	mode = parse_mode(argv[2]);
	if (mode < 0)
		return mode;
	memset(&op_lock.lksb, 0, sizeof(op_lock.lksb));
	init_completion(&op_lock.done);
	t0 = ktime_get_real_ns();
	err = lock_sync(&op_lock, mode, 0, argv[1], strlen(argv[1]));
	c1 = get_cycles();
	t1 = ktime_get_real_ns();
	if (!err)
		err = unlock_sync(&op_lock);
	t2 = ktime_get_real_ns();
	scnprintf(result, RESULT_LEN, "op req_ns=%llu grant_ns=%llu done_ns=%llu grant_cyc=%llu err=%d\n",
		  t0, t1, t2, c1, err);
	return err;
}

/*
 * The smallest step each clock takes while it is read back to back for
 * 20 ms of ktime (at least three steps of the coarsest), in ns for ktime
 * and local_clock and in cycles for get_cycles.
 */
static int cmd_clock(char **argv, int argc)
{
	u64 kt0 = ktime_get_ns(), k = kt0, l = local_clock(), c = get_cycles();
	u64 ks = U64_MAX, ls_ = U64_MAX, cs = U64_MAX, x;
	unsigned int ksteps = 0, lsteps = 0;

	while (ktime_get_ns() - kt0 < 20 * NSEC_PER_MSEC || ksteps < 3 || lsteps < 3) {
		x = ktime_get_ns();
		if (x != k) {
			ks = min(ks, x - k);
			ksteps++;
			k = x;
		}
		x = local_clock();
		if (x != l) {
			ls_ = min(ls_, x - l);
			lsteps++;
			l = x;
		}
		x = get_cycles();
		if (x != c)
			cs = min(cs, x - c);
		c = x;
		if (ktime_get_ns() - kt0 > NSEC_PER_SEC)
			break;
		cpu_relax();
	}
	scnprintf(result, RESULT_LEN,
		  "clock ktime_step_ns=%llu local_clock_step_ns=%llu cycles_step=%llu ktime_ns=%llu cycles=%llu\n",
		  ks, ls_, cs, ktime_get_ns(), get_cycles());
	return 0;
}

static int cmd_join(char **argv, int argc)
{
	int lvblen, ops_result = 0, err;

	if (argc != 4 || kstrtoint(argv[3], 0, &lvblen) || lvblen <= 0 ||
	    lvblen % 8)
		return -EINVAL;
	if (ls)
		return -EBUSY;
	err = dlm_new_lockspace(argv[1], argv[2], 0, lvblen, NULL, NULL,
				&ops_result, &ls);
	if (err)
		ls = NULL;
	else
		ls_lvblen = lvblen;
	scnprintf(result, RESULT_LEN, "join ls=%s lvblen=%d err=%d\n", argv[1],
		  lvblen, err);
	return err;
}

static int cmd_leave(char **argv, int argc)
{
	int err;

	if (!ls)
		return -ENOENT;
	err = release_held();
	if (!err)
		err = dlm_release_lockspace(ls, DLM_RELEASE_NORMAL);
	if (!err)
		ls = NULL;
	scnprintf(result, RESULT_LEN, "leave err=%d\n", err);
	return err;
}

/* --- control file ------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*fn)(char **argv, int argc);
	bool needs_ls;
} cmds[] = {
	{ "join", cmd_join, false },
	{ "leave", cmd_leave, true },
	{ "hold", cmd_hold, true },
	{ "convert", cmd_convert, true },
	{ "wait", cmd_wait, true },
	{ "release", cmd_release, true },
	{ "bench", cmd_bench, true },
	{ "burst", cmd_burst, true },
	{ "op", cmd_op, true },
	{ "clock", cmd_clock, false },
};

static ssize_t ctl_write(struct file *file, const char __user *ubuf, size_t len,
			 loff_t *ppos)
{
	char buf[256], *argv[8], *p;
	int argc = 0, err = -EINVAL, i;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	p = strim(buf);
	while (p && *p && argc < ARRAY_SIZE(argv))
		argv[argc++] = strsep(&p, " \t");
	if (!argc)
		return -EINVAL;
	for (i = 0; i < argc; i++)
		if (strlen(argv[i]) > DLM_RESNAME_MAXLEN - 8)
			return -EINVAL;

	mutex_lock(&cmd_mutex);
	if (wedged) {
		err = -EIO;
		goto out;
	}
	scnprintf(result, RESULT_LEN, "%s err=%d\n", argv[0], -EINVAL);
	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(argv[0], cmds[i].name))
			continue;
		if (cmds[i].needs_ls && !ls) {
			err = -ENOENT;
			break;
		}
		err = cmds[i].fn(argv, argc);
		break;
	}
out:
	mutex_unlock(&cmd_mutex);
	return err ?: len;
}

static ssize_t ctl_read(struct file *file, char __user *ubuf, size_t len,
			loff_t *ppos)
{
	ssize_t n;

	mutex_lock(&cmd_mutex);
	n = simple_read_from_buffer(ubuf, len, ppos, result, strlen(result));
	mutex_unlock(&cmd_mutex);
	return n;
}

static const struct file_operations ctl_fops = {
	.owner = THIS_MODULE,
	.write = ctl_write,
	.read = ctl_read,
	.llseek = default_llseek,
};

static int __init dlmbench_init(void)
{
	bop_cache = KMEM_CACHE(bop, 0);
	if (!bop_cache)
		return -ENOMEM;
	dbg_dir = debugfs_create_dir("dlmbench", NULL);
	debugfs_create_file("ctl", 0600, dbg_dir, NULL, &ctl_fops);
	return 0;
}

static void __exit dlmbench_exit(void)
{
	debugfs_remove(dbg_dir);
	mutex_lock(&cmd_mutex);
	if (ls) {
		release_held();
		dlm_release_lockspace(ls, DLM_RELEASE_NORMAL);
		ls = NULL;
	}
	mutex_unlock(&cmd_mutex);
	kmem_cache_destroy(bop_cache);
}

module_init(dlmbench_init);
module_exit(dlmbench_exit);
MODULE_DESCRIPTION("DLM benchmark driver for dlm-rs (kernel API, any dlm.ko)");
MODULE_LICENSE("GPL");
