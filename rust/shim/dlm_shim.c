// SPDX-License-Identifier: GPL-2.0
/*
 * Thin C shim for the Rust comms layer of dlm.ko.  Every function wraps one
 * static inline or macro-only kernel API (spin_lock_bh, page_address,
 * kmem_cache_create, write_lock_bh on sk_callback_lock plus the struct sock
 * fields it guards, lock_sock, socket flag bits, sctp_sock_set_nodelay,
 * request_module, configfs_add_default_group)
 * so that the Rust crate can use it.  The logic stays in Rust.
 *
 * It also holds the one definition of config.c that is not configuration:
 * the rhashtable parameters of the lock manager's resource table, which
 * depend on the layout of struct dlm_rsb.
 */

#include <linux/configfs.h>
#include <linux/debugfs.h>
#include <linux/fault-inject.h>
#include <linux/kmod.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/srcu.h>
#include <net/sock.h>
#include <net/sctp/sctp.h>

#include "dlm_internal.h"
#include <trace/events/dlm.h>

#include "dlm_shim.h"

/*
 * The Rust config (rust/comms/config.rs) defines dlm_config and fills the
 * dlm_config_node array of dlm_config_nodes(); it asserts this layout too.
 */
static_assert(offsetof(struct dlm_config_info, ci_buffer_size) == 4);
static_assert(offsetof(struct dlm_config_info, ci_recover_callbacks) == 44);
static_assert(offsetof(struct dlm_config_info, ci_cluster_name) == 48);
static_assert(sizeof(struct dlm_config_info) == 112);
static_assert(offsetof(struct dlm_config_node, gone) == 8);
static_assert(offsetof(struct dlm_config_node, new) == 12);
static_assert(offsetof(struct dlm_config_node, release_recover) == 20);
static_assert(sizeof(struct dlm_config_node) == 24);

const struct rhashtable_params dlm_rhash_rsb_params = {
	.nelem_hint = 3, /* start small */
	.key_len = DLM_RESNAME_MAXLEN,
	.key_offset = offsetof(struct dlm_rsb, res_name),
	.head_offset = offsetof(struct dlm_rsb, res_node),
	.automatic_shrinking = true,
};

void dlm_rs_configfs_add_default_group(struct config_group *new_group,
				       struct config_group *group)
{
	configfs_add_default_group(new_group, group);
}

void dlm_rs_spin_lock_bh(spinlock_t *lock)
{
	spin_lock_bh(lock);
}

void dlm_rs_spin_unlock_bh(spinlock_t *lock)
{
	spin_unlock_bh(lock);
}

int dlm_rs_spin_trylock_bh(spinlock_t *lock)
{
	return spin_trylock_bh(lock);
}

void *dlm_rs_page_address(struct page *page)
{
	return page_address(page);
}

struct kmem_cache *dlm_rs_kmem_cache_create(const char *name, unsigned int size)
{
	return kmem_cache_create(name, size, 0, 0, NULL);
}

void dlm_rs_sock_save_callbacks(struct socket *sock, struct dlm_rs_sk_cbs *cbs)
{
	struct sock *sk = sock->sk;

	read_lock_bh(&sk->sk_callback_lock);
	cbs->data_ready = sk->sk_data_ready;
	cbs->write_space = sk->sk_write_space;
	cbs->state_change = sk->sk_state_change;
	cbs->error_report = sk->sk_error_report;
	read_unlock_bh(&sk->sk_callback_lock);
}

/* Installs @cbs and @user; NULL members of @cbs leave that callback alone. */
void dlm_rs_sock_set_callbacks(struct socket *sock, void *user,
			       const struct dlm_rs_sk_cbs *cbs)
{
	struct sock *sk = sock->sk;

	lock_sock(sk);
	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = user;
	if (cbs->data_ready)
		sk->sk_data_ready = cbs->data_ready;
	if (cbs->write_space)
		sk->sk_write_space = cbs->write_space;
	if (cbs->state_change)
		sk->sk_state_change = cbs->state_change;
	if (cbs->error_report)
		sk->sk_error_report = cbs->error_report;
	sk->sk_allocation = GFP_NOFS;
	sk->sk_use_task_frag = false;
	write_unlock_bh(&sk->sk_callback_lock);
	release_sock(sk);
}

/* Puts back @cbs and clears sk_user_data; no callback of ours runs after. */
void dlm_rs_sock_restore_callbacks(struct socket *sock,
				   const struct dlm_rs_sk_cbs *cbs)
{
	struct sock *sk = sock->sk;

	lock_sock(sk);
	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = NULL;
	sk->sk_data_ready = cbs->data_ready;
	sk->sk_write_space = cbs->write_space;
	sk->sk_state_change = cbs->state_change;
	sk->sk_error_report = cbs->error_report;
	write_unlock_bh(&sk->sk_callback_lock);
	release_sock(sk);
}

void *dlm_rs_sk_user_data(struct sock *sk)
{
	return READ_ONCE(sk->sk_user_data);
}

struct socket *dlm_rs_sk_socket(struct sock *sk)
{
	return sk->sk_socket;
}

int dlm_rs_sk_err(struct sock *sk)
{
	return READ_ONCE(sk->sk_err);
}

/* Nothing to read now: no data queued, no end of stream, no error (a later one calls
 * sk_data_ready or sk_error_report). */
bool dlm_rs_sk_rx_idle(struct sock *sk)
{
	return skb_queue_empty_lockless(&sk->sk_receive_queue) &&
	       !(READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) && !READ_ONCE(sk->sk_err);
}

void dlm_rs_lock_sock(struct sock *sk)
{
	lock_sock(sk);
}

bool dlm_rs_sock_async_nospace(struct socket *sock)
{
	return test_bit(SOCKWQ_ASYNC_NOSPACE, &sock->flags);
}

/* Tells TCP that we are limited by the application window (see write_space). */
void dlm_rs_sock_wait_write_space(struct socket *sock)
{
	set_bit(SOCK_NOSPACE, &sock->flags);
	sock->sk->sk_write_pending++;
}

void dlm_rs_sock_write_space(struct socket *sock, bool app_limited)
{
	clear_bit(SOCK_NOSPACE, &sock->flags);
	if (app_limited) {
		sock->sk->sk_write_pending--;
		clear_bit(SOCKWQ_ASYNC_NOSPACE, &sock->flags);
	}
}

void dlm_rs_sctp_sock_set_nodelay(struct sock *sk)
{
	sctp_sock_set_nodelay(sk);
}

int dlm_rs_request_module(const char *name)
{
	return request_module("%s", name);
}

unsigned int dlm_rs_memalloc_nofs_save(void)
{
	return memalloc_nofs_save();
}

void dlm_rs_memalloc_nofs_restore(unsigned int flags)
{
	memalloc_nofs_restore(flags);
}

/* With lockdep the class comes from the caller, as for the Rust locks. */
int dlm_rs_init_srcu_struct(struct srcu_struct *ssp, const char *name,
			    struct lock_class_key *key)
{
#ifdef CONFIG_DEBUG_LOCK_ALLOC
	return __init_srcu_struct(ssp, name, key);
#else
	return init_srcu_struct(ssp);
#endif
}

int dlm_rs_srcu_read_lock(struct srcu_struct *ssp)
{
	return srcu_read_lock(ssp);
}

void dlm_rs_srcu_read_unlock(struct srcu_struct *ssp, int idx)
{
	srcu_read_unlock(ssp, idx);
}

/* The comms tracepoints of include/trace/events/dlm.h (defined in main.c). */

void dlm_rs_trace_send(int nodeid, int ret)
{
	trace_dlm_send(nodeid, ret);
}

void dlm_rs_trace_recv(int nodeid, int ret)
{
	trace_dlm_recv(nodeid, ret);
}

void dlm_rs_trace_send_message(u32 dst, u32 seq, const void *ms,
			       const void *name, int namelen)
{
	trace_dlm_send_message(dst, seq, ms, name, namelen);
}

void dlm_rs_trace_send_rcom(u32 dst, u32 seq, const void *rc)
{
	trace_dlm_send_rcom(dst, seq, rc);
}

void dlm_rs_trace_recv_message(u32 dst, u32 seq, const void *ms)
{
	trace_dlm_recv_message(dst, seq, ms);
}

void dlm_rs_trace_recv_rcom(u32 dst, u32 seq, const void *rc)
{
	trace_dlm_recv_rcom(dst, seq, rc);
}

/*
 * Test-only fault points (kernels with CONFIG_FAULT_INJECTION_DEBUG_FS, i.e.
 * the debug test kernel).  Each is a standard fault attribute under
 * /sys/kernel/debug/<name>/ (probability, interval, times, verbose, ...),
 * off until a test arms it.  They widen race windows that a single-vCPU
 * guest cannot otherwise open; see Documentation/testing.rst.
 */
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static DECLARE_FAULT_ATTR(dlm_rs_accept_stall_attr);
static DECLARE_FAULT_ATTR(dlm_rs_rx_hold_attr);
static struct dentry *dlm_rs_fault_dirs[2];

void dlm_rs_fault_init(void)
{
	struct dentry *d;

	d = fault_create_debugfs_attr("dlm_accept_stall", NULL,
				      &dlm_rs_accept_stall_attr);
	dlm_rs_fault_dirs[0] = IS_ERR(d) ? NULL : d;
	d = fault_create_debugfs_attr("dlm_rx_hold", NULL,
				      &dlm_rs_rx_hold_attr);
	dlm_rs_fault_dirs[1] = IS_ERR(d) ? NULL : d;
}

void dlm_rs_fault_exit(void)
{
	debugfs_remove_recursive(dlm_rs_fault_dirs[0]);
	debugfs_remove_recursive(dlm_rs_fault_dirs[1]);
	dlm_rs_fault_dirs[0] = NULL;
	dlm_rs_fault_dirs[1] = NULL;
}

bool dlm_rs_fault_accept_stall(void)
{
	return should_fail(&dlm_rs_accept_stall_attr, 1);
}

bool dlm_rs_fault_rx_hold(void)
{
	return should_fail(&dlm_rs_rx_hold_attr, 1);
}
#else
void dlm_rs_fault_init(void)
{
}

void dlm_rs_fault_exit(void)
{
}

bool dlm_rs_fault_accept_stall(void)
{
	return false;
}

bool dlm_rs_fault_rx_hold(void)
{
	return false;
}
#endif
