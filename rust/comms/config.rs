// SPDX-License-Identifier: GPL-2.0

//! The dlm configfs tree and the cluster tunables: fs/dlm/config.c of Linux 7.2.
//!
//! ```text
//! /sys/kernel/config/dlm/                      subsystem; mkdir makes a cluster
//!     <cluster>/                               13 tunables (the global `dlm_config`)
//!         spaces/                              default group; mkdir makes a lockspace
//!             <ls>/                            no attributes
//!                 nodes/                       default group; mkdir makes a member
//!                     <nodeid>/                nodeid, weight, release_recover
//!         comms/                               default group; mkdir makes a comm
//!             <nodeid>/                        nodeid, local, addr, addr_list, mark
//! ```
//!
//! dlm_controld (or the test guests' controller) fills it: the cluster tunables, one comm per
//! cluster node with its addresses (`local` on our own), and one `spaces/<ls>` per lockspace
//! with its members, which the lock manager reads back through [`Clusters::nodes`] when the
//! lockspace is started.  Modes, defaults, ranges, the text read back and every error are those
//! of config.c (Documentation/configuration.rst).
//!
//! Like config.c, only the last cluster made is looked at by the lookups (`space_list` and
//! `comm_list` there), removing any cluster forgets it, and the tunables are global.
//!
//! Unlike config.c, a node removed from a space and never reported by a lockspace start is freed
//! with its space (config.c leaks a `dlm_member_gone` for it), recording a removed node cannot
//! fail (its room is reserved when the node is made), and [`our_nodeid`] is 0 instead of a NULL
//! dereference when no comm is local.

use core::sync::atomic::{AtomicI32, AtomicU16, AtomicU32, AtomicU8, Ordering::Relaxed};
use kernel::{
    alloc::kvec::PushError,
    fmt::Write,
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    str::{CString, Formatter},
    sync::{Arc, ArcBorrow, Mutex},
};

use super::{
    configfs::{
        configfs_attrs, AttributeOperations, Group, GroupOperations, Item, ItemType, Subsystem,
    },
    exports, ffi, lowcomms,
    sock::SockAddr,
    sync::NofsScope,
};
use crate::proto::text::{self, ParseError};

/// `DLM_LOCKSPACE_LEN`: the size of `ci_cluster_name`.
const CLUSTER_NAME_LEN: usize = 64;
/// `DLM_MAX_SOCKET_BUFSIZE`: the smallest `buffer_size`.
const MAX_SOCKET_BUFSIZE: u32 = 4096;
/// `DLM_MAX_ADDR_COUNT`: addresses per comm.
const MAX_ADDR_COUNT: usize = 8;
/// `sizeof(struct sockaddr_storage)`: the size of an `addr` write.
const SOCKADDR_STORAGE_LEN: usize = 128;

const DEFAULT_TCP_PORT: u16 = 21064;
const DEFAULT_RSBTBL_SIZE: u32 = 1024;
const DEFAULT_RECOVER_TIMER: u32 = 5;
const DEFAULT_TOSS_SECS: u32 = 10;
const DEFAULT_SCAN_SECS: u32 = 5;
const DEFAULT_LOG_DEBUG: u32 = 0;
const DEFAULT_LOG_INFO: u32 = 1;
const DEFAULT_PROTOCOL: u32 = 0;
const DEFAULT_MARK: u32 = 0;
const DEFAULT_NEW_RSB_COUNT: u32 = 128;
const DEFAULT_RECOVER_CALLBACKS: u32 = 0;

/// `struct dlm_config_info` (fs/dlm/config.h): the cluster tunables, read by the C lock manager
/// (`dlm_config.ci_*`, plain loads) and by the comms layer.
///
/// Every field is an atomic of the C field's size and alignment, so the layout is C's, and
/// configfs stores from any thread are sound for Rust readers.  `ci_tcp_port` holds the port in
/// network byte order, as C's `__be16` does.
#[repr(C)]
pub(crate) struct ConfigInfo {
    ci_tcp_port: AtomicU16,
    ci_buffer_size: AtomicU32,
    ci_rsbtbl_size: AtomicU32,
    ci_recover_timer: AtomicU32,
    ci_toss_secs: AtomicU32,
    ci_scan_secs: AtomicU32,
    ci_log_debug: AtomicU32,
    ci_log_info: AtomicU32,
    ci_protocol: AtomicU32,
    ci_mark: AtomicU32,
    ci_new_rsb_count: AtomicU32,
    ci_recover_callbacks: AtomicU32,
    ci_cluster_name: [AtomicU8; CLUSTER_NAME_LEN],
}

// The layout of config.h (7.2); rust/shim/dlm_shim.c asserts the same numbers against the C
// declaration.
const _: () = {
    assert!(core::mem::offset_of!(ConfigInfo, ci_buffer_size) == 4);
    assert!(core::mem::offset_of!(ConfigInfo, ci_recover_callbacks) == 44);
    assert!(core::mem::offset_of!(ConfigInfo, ci_cluster_name) == 48);
    assert!(core::mem::size_of::<ConfigInfo>() == 112);
};

/// The global `dlm_config` of config.h, with config.c's defaults.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub(crate) static dlm_config: ConfigInfo = ConfigInfo {
    ci_tcp_port: AtomicU16::new(DEFAULT_TCP_PORT.to_be()),
    ci_buffer_size: AtomicU32::new(MAX_SOCKET_BUFSIZE),
    ci_rsbtbl_size: AtomicU32::new(DEFAULT_RSBTBL_SIZE),
    ci_recover_timer: AtomicU32::new(DEFAULT_RECOVER_TIMER),
    ci_toss_secs: AtomicU32::new(DEFAULT_TOSS_SECS),
    ci_scan_secs: AtomicU32::new(DEFAULT_SCAN_SECS),
    ci_log_debug: AtomicU32::new(DEFAULT_LOG_DEBUG),
    ci_log_info: AtomicU32::new(DEFAULT_LOG_INFO),
    ci_protocol: AtomicU32::new(DEFAULT_PROTOCOL),
    ci_mark: AtomicU32::new(DEFAULT_MARK),
    ci_new_rsb_count: AtomicU32::new(DEFAULT_NEW_RSB_COUNT),
    ci_recover_callbacks: AtomicU32::new(DEFAULT_RECOVER_CALLBACKS),
    ci_cluster_name: [const { AtomicU8::new(0) }; CLUSTER_NAME_LEN],
};

/// `dlm_config.ci_tcp_port`, in network byte order.
pub(crate) fn tcp_port_be() -> u16 {
    dlm_config.ci_tcp_port.load(Relaxed)
}

/// `dlm_config.ci_buffer_size`.
pub(crate) fn buffer_size() -> u32 {
    dlm_config.ci_buffer_size.load(Relaxed)
}

/// `dlm_config.ci_protocol`.
pub(crate) fn protocol() -> u32 {
    dlm_config.ci_protocol.load(Relaxed)
}

/// `dlm_config.ci_mark`.
pub(crate) fn mark() -> u32 {
    dlm_config.ci_mark.load(Relaxed)
}

/// Our node id: that of the first comm written `local`, 0 while there is none.  Lockless, for
/// any context (`dlm_our_nodeid()`).
pub(crate) fn our_nodeid() -> i32 {
    LOCAL_NODEID.load(Relaxed)
}

/// The node id of the local comm, kept next to [`State::local`] for lockless readers.
static LOCAL_NODEID: AtomicI32 = AtomicI32::new(0);

/// `struct dlm_config_node` (fs/dlm/config.h): one entry of what `dlm_config_nodes()` returns.
#[repr(C)]
pub(crate) struct ConfigNode {
    nodeid: i32,
    weight: i32,
    gone: bool,
    new: i32,
    comm_seq: u32,
    release_recover: u32,
}

const _: () = {
    assert!(core::mem::offset_of!(ConfigNode, gone) == 8);
    assert!(core::mem::offset_of!(ConfigNode, new) == 12);
    assert!(core::mem::offset_of!(ConfigNode, release_recover) == 20);
    assert!(core::mem::size_of::<ConfigNode>() == 24);
};

fn parse_error(e: ParseError) -> Error {
    match e {
        ParseError::Invalid => EINVAL,
        ParseError::Range => ERANGE,
    }
}

/// The configfs page of a `show`, as a formatter.
fn page_writer(page: &mut [u8; PAGE_SIZE]) -> Formatter<'_> {
    Formatter::new(&mut page[..])
}

fn show_u32(page: &mut [u8; PAGE_SIZE], v: u32) -> Result<usize> {
    let mut f = page_writer(page);
    writeln!(f, "{v}")?;
    Ok(f.bytes_written())
}

fn show_i32(page: &mut [u8; PAGE_SIZE], v: i32) -> Result<usize> {
    let mut f = page_writer(page);
    writeln!(f, "{v}")?;
    Ok(f.bytes_written())
}

fn lowcomms_running() -> bool {
    lowcomms::comms().is_some_and(|c| c.is_running())
}

// ---- shared state -------------------------------------------------------------------------------

/// What config.c keeps in file-scope variables, shared by every object of the tree.
#[pin_data]
pub(crate) struct Shared {
    #[pin]
    state: Mutex<State>,
}

struct State {
    /// `space_list` and `comm_list`: the default groups of the cluster made last, until any
    /// cluster is removed.
    cluster: Option<CurrentCluster>,
    /// `local_comm`: the first comm written a non-zero `local`, until it is removed.
    local: Option<Arc<CommState>>,
    /// `dlm_comm_count`: the sequence number of the next comm (never 0).
    comm_count: u32,
}

#[derive(Clone)]
struct CurrentCluster {
    spaces: Arc<Group<Spaces>>,
    comms: Arc<Group<Comms>>,
}

impl Shared {
    fn current(&self) -> Option<CurrentCluster> {
        self.state.lock().cluster.clone()
    }

    /// `dlm_comm_seq()`: the sequence number of the first comm of the current cluster for
    /// `nodeid`.
    fn comm_seq(&self, nodeid: i32) -> Result<u32> {
        let current = self.current().ok_or(ENOENT)?;
        let list = current.comms.data().list.lock();
        list.iter()
            .find(|c| c.nodeid as i32 == nodeid)
            .map(|c| c.seq)
            .ok_or(ENOENT)
    }
}

// ---- dlm/ (the subsystem) -----------------------------------------------------------------------

/// The data of the subsystem root `dlm/`: mkdir makes a cluster.
#[pin_data]
pub(crate) struct Clusters {
    shared: Arc<Shared>,
}

/// The `dlm` configfs subsystem, registered while it lives (`dlm_config_init()`).
pub(crate) fn subsystem() -> Result<impl PinInit<Subsystem<Clusters>, Error>> {
    let shared = Arc::pin_init(
        try_pin_init!(Shared {
            state <- new_mutex!(State {
                cluster: None,
                local: None,
                comm_count: 0,
            }),
        }),
        GFP_KERNEL,
    )?;
    let item_type = configfs_attrs! {
        container: Subsystem<Clusters>,
        data: Clusters,
        child: true,
        attributes: [],
    };
    Ok(Subsystem::new(
        c"dlm",
        item_type,
        try_pin_init!(Clusters { shared }),
    ))
}

impl Clusters {
    /// `dlm_config_nodes()`: the members of lockspace `lsname` for a lockspace start, newest
    /// first, then the nodes removed since the last start (`gone`), which are forgotten now.
    /// The `new` mark of each member is cleared.
    pub(crate) fn nodes(&self, lsname: &CStr) -> Result<KVec<ConfigNode>> {
        let space = self.find_space(lsname).ok_or(EEXIST)?;
        let mut m = space.members.lock();
        if m.members.is_empty() {
            pr_err!("zero members_count\n");
            return Err(EINVAL);
        }
        let count = m.members.len() + m.gone.len();
        let mut out = {
            let _nofs = NofsScope::enter();
            KVec::with_capacity(count, GFP_KERNEL)?
        };
        for member in m.members.iter_mut().rev() {
            out.push_within_capacity(ConfigNode {
                nodeid: member.node.nodeid as i32,
                weight: member.node.weight.load(Relaxed),
                gone: false,
                new: i32::from(member.new),
                comm_seq: member.node.comm_seq,
                release_recover: 0,
            })
            .map_err(|_| ENOMEM)?;
            member.new = false;
        }
        for gone in m.gone.iter().rev() {
            out.push_within_capacity(ConfigNode {
                nodeid: gone.nodeid as i32,
                weight: 0,
                gone: true,
                new: 0,
                comm_seq: 0,
                release_recover: gone.release_recover,
            })
            .map_err(|_| ENOMEM)?;
        }
        // The room for removed nodes stays reserved (see `Members`).
        m.gone.clear();
        Ok(out)
    }

    /// `dlm_comm_seq()`.
    pub(crate) fn comm_seq(&self, nodeid: i32) -> Result<u32> {
        self.shared.comm_seq(nodeid)
    }

    /// `dlm_our_addr()`: address `num` of the local comm.
    pub(crate) fn our_addr(&self, num: usize) -> Option<SockAddr> {
        let local = self.shared.state.lock().local.clone()?;
        let addrs = local.addrs.lock();
        addrs.get(num).copied()
    }

    /// `get_space()`: the space `name` of the current cluster.
    fn find_space(&self, name: &CStr) -> Option<Arc<SpaceState>> {
        let current = self.shared.current()?;
        let list = current.spaces.data().list.lock();
        list.iter()
            .find(|s| s.name.to_bytes() == name.to_bytes())
            .cloned()
    }
}

#[vtable]
impl GroupOperations for Clusters {
    type Child = Group<Cluster>;

    /// `make_cluster()`: the cluster with its default groups `spaces` and `comms`, which become
    /// the current ones.
    fn make(&self, name: &CStr) -> Result<impl PinInit<Group<Cluster>, Error>> {
        let spaces = Arc::pin_init(
            Group::new(
                c"spaces",
                spaces_type(),
                try_pin_init!(Spaces {
                    shared: self.shared.clone(),
                    list <- new_mutex!(KVec::new()),
                }),
            ),
            GFP_KERNEL,
        )?;
        let comms = Arc::pin_init(
            Group::new(
                c"comms",
                comms_type(),
                try_pin_init!(Comms {
                    shared: self.shared.clone(),
                    list <- new_mutex!(KVec::new()),
                }),
            ),
            GFP_KERNEL,
        )?;
        let shared = &self.shared;
        Ok(
            Group::new(name, cluster_type(), try_pin_init!(Cluster {})).pin_chain(
                move |mut group| {
                    shared.state.lock().cluster = Some(CurrentCluster {
                        spaces: spaces.clone(),
                        comms: comms.clone(),
                    });
                    group.as_mut().add_default_group(spaces);
                    group.add_default_group(comms);
                    Ok(())
                },
            ),
        )
    }

    /// `drop_cluster()`: whichever cluster goes, the lookups find nothing any more.
    fn drop_item(&self, _child: ArcBorrow<'_, Group<Cluster>>) {
        self.shared.state.lock().cluster = None;
    }
}

// ---- dlm/<cluster>/ -----------------------------------------------------------------------------

/// A cluster directory; its attributes are the global tunables.
#[pin_data]
pub(crate) struct Cluster {}

fn cluster_type() -> &'static ItemType<Group<Cluster>> {
    configfs_attrs! {
        container: Group<Cluster>,
        data: Cluster,
        attributes: [
            tcp_port: 0,
            buffer_size: 1,
            rsbtbl_size: 2,
            recover_timer: 3,
            toss_secs: 4,
            scan_secs: 5,
            log_debug: 6,
            log_info: 7,
            protocol: 8,
            mark: 9,
            new_rsb_count: 10,
            recover_callbacks: 11,
            cluster_name: 12,
        ],
    }
}

/// `cluster_set()`: a privileged write of an unsigned tunable that `check` accepts.
fn cluster_set(field: &AtomicU32, check: fn(u32) -> Result, page: &[u8]) -> Result {
    if !ffi::capable_sys_admin() {
        return Err(EPERM);
    }
    let x = text::parse_u32(page).map_err(parse_error)?;
    check(x)?;
    field.store(x, Relaxed);
    Ok(())
}

fn check_none(_x: u32) -> Result {
    Ok(())
}

fn check_zero(x: u32) -> Result {
    if x == 0 {
        return Err(EINVAL);
    }
    Ok(())
}

fn check_buffer_size(x: u32) -> Result {
    if x < MAX_SOCKET_BUFSIZE {
        return Err(EINVAL);
    }
    Ok(())
}

/// `dlm_check_protocol_and_dlm_running()`: TCP, or SCTP where the kernel has it; not while
/// the comms layer runs.
fn check_protocol(x: u32) -> Result {
    match x {
        0 => {}
        1 if cfg!(CONFIG_IP_SCTP) => {}
        1 => return Err(Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32))),
        _ => return Err(EINVAL),
    }
    if lowcomms_running() {
        return Err(EBUSY);
    }
    Ok(())
}

/// An unsigned tunable: `show` prints it, `store` is [`cluster_set`] with a check.
macro_rules! cluster_attr {
    ($id:literal, $field:ident, $check:expr) => {
        #[vtable]
        impl AttributeOperations<$id> for Cluster {
            type Data = Cluster;

            fn show(_data: &Cluster, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
                show_u32(page, dlm_config.$field.load(Relaxed))
            }

            fn store(_data: &Cluster, page: &[u8]) -> Result {
                cluster_set(&dlm_config.$field, $check, page)
            }
        }
    };
}

cluster_attr!(1, ci_buffer_size, check_buffer_size);
cluster_attr!(2, ci_rsbtbl_size, check_zero);
cluster_attr!(3, ci_recover_timer, check_zero);
cluster_attr!(4, ci_toss_secs, check_zero);
cluster_attr!(5, ci_scan_secs, check_zero);
cluster_attr!(6, ci_log_debug, check_none);
cluster_attr!(7, ci_log_info, check_none);
cluster_attr!(8, ci_protocol, check_protocol);
cluster_attr!(9, ci_mark, check_none);
cluster_attr!(10, ci_new_rsb_count, check_none);
cluster_attr!(11, ci_recover_callbacks, check_none);

/// `tcp_port`: a non-zero 16-bit port, not while the comms layer runs.
#[vtable]
impl AttributeOperations<0> for Cluster {
    type Data = Cluster;

    fn show(_data: &Cluster, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        show_u32(page, u16::from_be(tcp_port_be()).into())
    }

    fn store(_data: &Cluster, page: &[u8]) -> Result {
        if !ffi::capable_sys_admin() {
            return Err(EPERM);
        }
        let x = text::parse_u16(page).map_err(parse_error)?;
        if x == 0 {
            return Err(EINVAL);
        }
        if lowcomms_running() {
            return Err(EBUSY);
        }
        dlm_config.ci_tcp_port.store(x.to_be(), Relaxed);
        Ok(())
    }
}

/// `cluster_name`: any text, cut at its first NUL and at 63 bytes, a trailing newline kept; no
/// privilege needed (as in C).
#[vtable]
impl AttributeOperations<12> for Cluster {
    type Data = Cluster;

    fn show(_data: &Cluster, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        let name = &dlm_config.ci_cluster_name;
        let mut n = 0;
        while n < CLUSTER_NAME_LEN - 1 {
            let c = name[n].load(Relaxed);
            if c == 0 {
                break;
            }
            page[n] = c;
            n += 1;
        }
        page[n] = b'\n';
        Ok(n + 1)
    }

    fn store(_data: &Cluster, page: &[u8]) -> Result {
        let n = text::strscpy_len(CLUSTER_NAME_LEN, page);
        let name = &dlm_config.ci_cluster_name;
        for (dst, &src) in name.iter().zip(&page[..n]) {
            dst.store(src, Relaxed);
        }
        name[n].store(0, Relaxed);
        Ok(())
    }
}

// ---- dlm/<cluster>/spaces/ ----------------------------------------------------------------------

/// `spaces/`: mkdir makes a lockspace's configuration.
#[pin_data]
pub(crate) struct Spaces {
    shared: Arc<Shared>,
    /// The spaces, for `dlm_config_nodes()` to find by name.
    #[pin]
    list: Mutex<KVec<Arc<SpaceState>>>,
}

fn spaces_type() -> &'static ItemType<Group<Spaces>> {
    configfs_attrs! {
        container: Group<Spaces>,
        data: Spaces,
        child: true,
        attributes: [],
    }
}

#[vtable]
impl GroupOperations for Spaces {
    type Child = Group<Space>;

    /// `make_space()`: the space with its default group `nodes`.
    fn make(&self, name: &CStr) -> Result<impl PinInit<Group<Space>, Error>> {
        let state = Arc::pin_init(
            try_pin_init!(SpaceState {
                name: CString::try_from(name)?,
                members <- new_mutex!(Members {
                    members: KVec::new(),
                    gone: KVec::new(),
                }),
            }),
            GFP_KERNEL,
        )?;
        let (shared, space) = (self.shared.clone(), state.clone());
        let nodes = Arc::pin_init(
            Group::new(
                c"nodes",
                nodes_type(),
                try_pin_init!(Nodes { shared, space }),
            ),
            GFP_KERNEL,
        )?;
        let list = &self.list;
        let space = state.clone();
        Ok(
            Group::new(name, space_type(), try_pin_init!(Space { state: space })).pin_chain(
                move |group| {
                    list.lock().push(state, GFP_KERNEL)?;
                    group.add_default_group(nodes);
                    Ok(())
                },
            ),
        )
    }

    /// `drop_space()`: configfs removes a space only once its nodes are gone.
    fn drop_item(&self, child: ArcBorrow<'_, Group<Space>>) {
        let state = &child.data().state;
        self.list.lock().retain(|s| !Arc::ptr_eq(s, state));
    }
}

// ---- dlm/<cluster>/spaces/<ls>/ -----------------------------------------------------------------

/// `spaces/<ls>/`: no attributes, the default group `nodes`.
#[pin_data]
pub(crate) struct Space {
    state: Arc<SpaceState>,
}

/// What a lockspace start reads: the members of the space and the nodes removed since.
#[pin_data]
struct SpaceState {
    /// The directory name, which is the lockspace name.
    name: CString,
    #[pin]
    members: Mutex<Members>,
}

struct Member {
    node: Arc<NodeState>,
    /// Not reported by a lockspace start yet.
    new: bool,
}

/// A node removed from the space, reported once by the next lockspace start.
struct Gone {
    nodeid: u32,
    release_recover: u32,
}

/// The members of a space, oldest first, and the nodes removed since the last start.
///
/// Invariant: `gone.capacity() >= members.len() + gone.len()`, so that removing a member never
/// allocates.
struct Members {
    members: KVec<Member>,
    gone: KVec<Gone>,
}

fn space_type() -> &'static ItemType<Group<Space>> {
    configfs_attrs! {
        container: Group<Space>,
        data: Space,
        attributes: [],
    }
}

// ---- dlm/<cluster>/spaces/<ls>/nodes/ -----------------------------------------------------------

/// `spaces/<ls>/nodes/`: mkdir `<nodeid>` makes a member.
#[pin_data]
pub(crate) struct Nodes {
    shared: Arc<Shared>,
    space: Arc<SpaceState>,
}

fn nodes_type() -> &'static ItemType<Group<Nodes>> {
    configfs_attrs! {
        container: Group<Nodes>,
        data: Nodes,
        child: true,
        attributes: [],
    }
}

#[vtable]
impl GroupOperations for Nodes {
    type Child = Item<Node>;

    /// `make_node()`: a member of weight 1, new, with the sequence number of its comm (0 if
    /// there is none).
    fn make(&self, name: &CStr) -> Result<impl PinInit<Item<Node>, Error>> {
        let nodeid = text::parse_u32(name.to_bytes()).map_err(parse_error)?;
        let comm_seq = self.shared.comm_seq(nodeid as i32).unwrap_or(0);
        let node = Arc::new(
            NodeState {
                nodeid,
                weight: AtomicI32::new(1),
                release_recover: AtomicU32::new(0),
                comm_seq,
            },
            GFP_KERNEL,
        )?;
        let space = &self.space;
        let state = node.clone();
        Ok(
            Item::new(name, node_type(), try_pin_init!(Node { state })).pin_chain(move |_item| {
                let mut m = space.members.lock();
                m.members.push(Member { node, new: true }, GFP_KERNEL)?;
                // INVARIANT: Room for every member to be removed before the next start.
                let room = m.members.len();
                if let Err(e) = m.gone.reserve(room, GFP_KERNEL) {
                    m.members.pop();
                    return Err(e.into());
                }
                Ok(())
            }),
        )
    }

    /// `drop_node()`: the member becomes a removed node for the next start, with its
    /// `release_recover` of now.
    fn drop_item(&self, child: ArcBorrow<'_, Item<Node>>) {
        let node = &child.data().state;
        let mut m = self.space.members.lock();
        let Some(i) = m.members.iter().position(|x| Arc::ptr_eq(&x.node, node)) else {
            return;
        };
        let _ = m.members.remove(i);
        let gone = Gone {
            nodeid: node.nodeid,
            release_recover: node.release_recover.load(Relaxed),
        };
        // The room is reserved (`Members`); should that ever not hold, allocate.
        if let Err(PushError(gone)) = m.gone.push_within_capacity(gone) {
            if m.gone.push(gone, GFP_KERNEL).is_err() {
                pr_err!("cannot record removed node {}\n", node.nodeid);
            }
        }
    }
}

// ---- dlm/<cluster>/spaces/<ls>/nodes/<nodeid>/ --------------------------------------------------

/// A member directory.
#[pin_data]
pub(crate) struct Node {
    state: Arc<NodeState>,
}

struct NodeState {
    /// From the directory name.
    nodeid: u32,
    weight: AtomicI32,
    release_recover: AtomicU32,
    /// The sequence number of the node's comm when the member was made.
    comm_seq: u32,
}

fn node_type() -> &'static ItemType<Item<Node>> {
    configfs_attrs! {
        container: Item<Node>,
        data: Node,
        attributes: [
            nodeid: 0,
            weight: 1,
            release_recover: 2,
        ],
    }
}

/// `nodeid`: the id of the directory name; writes are accepted and ignored.
#[vtable]
impl AttributeOperations<0> for Node {
    type Data = Node;

    fn show(data: &Node, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        show_u32(page, data.state.nodeid)
    }

    fn store(_data: &Node, _page: &[u8]) -> Result {
        Ok(())
    }
}

/// `weight`: an int, the node's share of resource mastery.
#[vtable]
impl AttributeOperations<1> for Node {
    type Data = Node;

    fn show(data: &Node, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        show_i32(page, data.state.weight.load(Relaxed))
    }

    fn store(data: &Node, page: &[u8]) -> Result {
        let x = text::parse_i32(page).map_err(parse_error)?;
        data.state.weight.store(x, Relaxed);
        Ok(())
    }
}

/// `release_recover`: reported with the node when it is removed.
#[vtable]
impl AttributeOperations<2> for Node {
    type Data = Node;

    fn show(data: &Node, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        show_u32(page, data.state.release_recover.load(Relaxed))
    }

    fn store(data: &Node, page: &[u8]) -> Result {
        let x = text::parse_u32(page).map_err(parse_error)?;
        data.state.release_recover.store(x, Relaxed);
        Ok(())
    }
}

// ---- dlm/<cluster>/comms/ -----------------------------------------------------------------------

/// `comms/`: mkdir `<nodeid>` makes a comm.
#[pin_data]
pub(crate) struct Comms {
    shared: Arc<Shared>,
    /// The comms in the order they were made, for `dlm_comm_seq()`.
    #[pin]
    list: Mutex<KVec<Arc<CommState>>>,
}

fn comms_type() -> &'static ItemType<Group<Comms>> {
    configfs_attrs! {
        container: Group<Comms>,
        data: Comms,
        child: true,
        attributes: [],
    }
}

#[vtable]
impl GroupOperations for Comms {
    type Child = Item<Comm>;

    /// `make_comm()`: a comm with the next sequence number.
    fn make(&self, name: &CStr) -> Result<impl PinInit<Item<Comm>, Error>> {
        let nodeid = text::parse_u32(name.to_bytes()).map_err(parse_error)?;
        let comm = {
            let mut st = self.shared.state.lock();
            let seq = st.comm_count.max(1);
            let comm = Arc::pin_init(
                try_pin_init!(CommState {
                    nodeid,
                    seq,
                    local: AtomicI32::new(0),
                    mark: AtomicU32::new(0),
                    addrs <- new_mutex!(KVec::new()),
                }),
                GFP_KERNEL,
            )?;
            st.comm_count = comm.seq.wrapping_add(1);
            comm
        };
        let shared = self.shared.clone();
        let list = &self.list;
        let state = comm.clone();
        Ok(
            Item::new(name, comm_type(), try_pin_init!(Comm { state, shared })).pin_chain(
                move |_item| {
                    list.lock().push(comm, GFP_KERNEL)?;
                    Ok(())
                },
            ),
        )
    }

    /// `drop_comm()`: the comm stops being local, and the connection to its node is closed.
    fn drop_item(&self, child: ArcBorrow<'_, Item<Comm>>) {
        let comm = &child.data().state;
        {
            let mut st = self.shared.state.lock();
            if st.local.as_ref().is_some_and(|l| Arc::ptr_eq(l, comm)) {
                st.local = None;
                LOCAL_NODEID.store(0, Relaxed);
            }
        }
        self.list.lock().retain(|c| !Arc::ptr_eq(c, comm));
        let _ = exports::dlm_midcomms_close(comm.nodeid as i32);
        comm.addrs.lock().clear();
    }
}

// ---- dlm/<cluster>/comms/<nodeid>/ --------------------------------------------------------------

/// A comm directory: where a cluster node lives.
#[pin_data]
pub(crate) struct Comm {
    state: Arc<CommState>,
    shared: Arc<Shared>,
}

#[pin_data]
struct CommState {
    /// From the directory name.
    nodeid: u32,
    /// Order of creation, never 0: tells a node that failed and came back from one that
    /// stayed.
    seq: u32,
    local: AtomicI32,
    mark: AtomicU32,
    /// The addresses written, at most [`MAX_ADDR_COUNT`].
    #[pin]
    addrs: Mutex<KVec<SockAddr>>,
}

fn comm_type() -> &'static ItemType<Item<Comm>> {
    configfs_attrs! {
        container: Item<Comm>,
        data: Comm,
        attributes: [
            nodeid: 0,
            local: 1,
            addr: 2,
            addr_list: 3,
            mark: 4,
        ],
    }
}

/// `nodeid`: the id of the directory name; writes are accepted and ignored.
#[vtable]
impl AttributeOperations<0> for Comm {
    type Data = Comm;

    fn show(data: &Comm, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        show_u32(page, data.state.nodeid)
    }

    fn store(_data: &Comm, _page: &[u8]) -> Result {
        Ok(())
    }
}

/// `local`: non-zero makes this comm ours, if no comm is yet; zero does not undo that.
#[vtable]
impl AttributeOperations<1> for Comm {
    type Data = Comm;

    fn show(data: &Comm, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        show_i32(page, data.state.local.load(Relaxed))
    }

    fn store(data: &Comm, page: &[u8]) -> Result {
        let x = text::parse_i32(page).map_err(parse_error)?;
        data.state.local.store(x, Relaxed);
        if x != 0 {
            let mut st = data.shared.state.lock();
            if st.local.is_none() {
                st.local = Some(data.state.clone());
                LOCAL_NODEID.store(data.state.nodeid as i32, Relaxed);
            }
        }
        Ok(())
    }
}

/// `addr`: one binary `struct sockaddr_storage` per write; the comms layer learns it at once.
#[vtable]
impl AttributeOperations<2> for Comm {
    type Data = Comm;

    fn store(data: &Comm, page: &[u8]) -> Result {
        let bytes: &[u8; SOCKADDR_STORAGE_LEN] = page.try_into().map_err(|_| EINVAL)?;
        let mut addrs = data.state.addrs.lock();
        if addrs.len() >= MAX_ADDR_COUNT {
            return Err(ENOSPC);
        }
        // Room first: once the comms layer has the address, recording it must not fail.
        addrs.reserve(1, GFP_KERNEL)?;
        let addr = SockAddr::from_bytes(bytes);
        exports::midcomms_addr(data.state.nodeid as i32, &addr)?;
        addrs.push_within_capacity(addr).map_err(|_| ENOMEM)?;
        Ok(())
    }
}

/// `addr_list`: one line per address, `AF_INET<TAB>a.b.c.d`, `AF_INET6<TAB>` and eight groups
/// of four hex digits, or `<UNKNOWN>`.
#[vtable]
impl AttributeOperations<3> for Comm {
    type Data = Comm;

    fn show(data: &Comm, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        let addrs = data.state.addrs.lock();
        let mut f = page_writer(page);
        for a in addrs.iter() {
            let b = a.as_bytes();
            match a.family() {
                kernel::bindings::AF_INET => {
                    writeln!(f, "AF_INET\t{}.{}.{}.{}", b[4], b[5], b[6], b[7])?;
                }
                kernel::bindings::AF_INET6 => {
                    f.write_str("AF_INET6\t")?;
                    for (i, pair) in b[8..24].chunks(2).enumerate() {
                        let sep = if i == 7 { "\n" } else { ":" };
                        write!(f, "{:02x}{:02x}{}", pair[0], pair[1], sep)?;
                    }
                }
                _ => f.write_str("<UNKNOWN>\n")?,
            }
        }
        Ok(f.bytes_written())
    }
}

/// `mark`: the socket mark for this node's connections; 0 means the cluster's `mark`.
#[vtable]
impl AttributeOperations<4> for Comm {
    type Data = Comm;

    fn show(data: &Comm, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        show_u32(page, data.state.mark.load(Relaxed))
    }

    fn store(data: &Comm, page: &[u8]) -> Result {
        let mut x = text::parse_u32(page).map_err(parse_error)?;
        if x == 0 {
            x = mark();
        }
        let rc = exports::dlm_lowcomms_nodes_set_mark(data.state.nodeid as i32, x);
        if rc != 0 {
            return Err(Error::from_errno(rc));
        }
        data.state.mark.store(x, Relaxed);
        Ok(())
    }
}
