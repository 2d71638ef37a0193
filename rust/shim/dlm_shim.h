/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Thin C shim for the Rust comms layer of dlm.ko: one small function per
 * kernel API that exists only as a static inline or a macro (and so is not
 * reachable from an out-of-tree Rust crate).  No logic lives here.
 */
#ifndef DLM_RS_SHIM_H
#define DLM_RS_SHIM_H

#include <linux/types.h>
#include <linux/spinlock_types.h>

struct socket;
struct sock;
struct page;
struct kmem_cache;
struct config_group;
struct srcu_struct;
struct lock_class_key;

/* The four socket callbacks dlm replaces, saved and restored as one. */
struct dlm_rs_sk_cbs {
	void (*data_ready)(struct sock *sk);
	void (*write_space)(struct sock *sk);
	void (*state_change)(struct sock *sk);
	void (*error_report)(struct sock *sk);
};

void dlm_rs_spin_lock_bh(spinlock_t *lock);
void dlm_rs_spin_unlock_bh(spinlock_t *lock);
int dlm_rs_spin_trylock_bh(spinlock_t *lock);

void *dlm_rs_page_address(struct page *page);
struct kmem_cache *dlm_rs_kmem_cache_create(const char *name, unsigned int size);

void dlm_rs_sock_save_callbacks(struct socket *sock, struct dlm_rs_sk_cbs *cbs);
void dlm_rs_sock_set_callbacks(struct socket *sock, void *user,
			       const struct dlm_rs_sk_cbs *cbs);
void dlm_rs_sock_restore_callbacks(struct socket *sock,
				   const struct dlm_rs_sk_cbs *cbs);
void *dlm_rs_sk_user_data(struct sock *sk);
struct socket *dlm_rs_sk_socket(struct sock *sk);
int dlm_rs_sk_err(struct sock *sk);
bool dlm_rs_sk_rx_idle(struct sock *sk);
void dlm_rs_lock_sock(struct sock *sk);
bool dlm_rs_sock_async_nospace(struct socket *sock);
void dlm_rs_sock_wait_write_space(struct socket *sock);
void dlm_rs_sock_write_space(struct socket *sock, bool app_limited);
void dlm_rs_sctp_sock_set_nodelay(struct sock *sk);
int dlm_rs_request_module(const char *name);
unsigned int dlm_rs_memalloc_nofs_save(void);
void dlm_rs_memalloc_nofs_restore(unsigned int flags);
int dlm_rs_init_srcu_struct(struct srcu_struct *ssp, const char *name,
			    struct lock_class_key *key);
int dlm_rs_srcu_read_lock(struct srcu_struct *ssp);
void dlm_rs_srcu_read_unlock(struct srcu_struct *ssp, int idx);
void dlm_rs_configfs_add_default_group(struct config_group *new_group,
				       struct config_group *group);

void dlm_rs_trace_send(int nodeid, int ret);
void dlm_rs_trace_recv(int nodeid, int ret);
void dlm_rs_trace_send_message(u32 dst, u32 seq, const void *ms,
			       const void *name, int namelen);
void dlm_rs_trace_send_rcom(u32 dst, u32 seq, const void *rc);
void dlm_rs_trace_recv_message(u32 dst, u32 seq, const void *ms);
void dlm_rs_trace_recv_rcom(u32 dst, u32 seq, const void *rc);

void dlm_rs_fault_init(void);
void dlm_rs_fault_exit(void);
bool dlm_rs_fault_accept_stall(void);
bool dlm_rs_fault_rx_hold(void);

#endif /* DLM_RS_SHIM_H */
