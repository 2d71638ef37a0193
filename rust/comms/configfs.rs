// SPDX-License-Identifier: GPL-2.0

//! configfs with items and default groups.
//!
//! The `kernel::configfs` module of 7.2 covers subsystems, groups whose children are groups, and
//! attributes of mode 0660.  The dlm tree also needs
//!
//! - items: directories that hold attributes but no subdirectories (`comms/<nodeid>`,
//!   `spaces/<ls>/nodes/<nodeid>`), made by a group's `make_item`;
//! - default groups: subdirectories that configfs creates and removes together with their parent
//!   (`<cluster>/spaces`, `<cluster>/comms`, `spaces/<ls>/nodes`);
//! - the modes of C's `CONFIGFS_ATTR()`, `CONFIGFS_ATTR_RO()` and `CONFIGFS_ATTR_WO()`: 0644,
//!   0444 and 0200, derived here from which of `show` and `store` an attribute implements, and an
//!   attribute owner, so that an open attribute file pins the module as in C.
//!
//! This module follows the kernel crate's design and could replace it: [`Subsystem`], [`Group`]
//! and [`Item`] embed their C object next to their data; an object made by `mkdir(2)` lives in an
//! [`Arc`] whose reference configfs owns from `make_group`/`make_item` until the object's
//! `release`; attributes and item types are statics declared by [`configfs_attrs!`].  The
//! differences: [`GroupOperations::Child`] names the container (`Group<D>` or `Item<D>`), not the
//! data, and [`GroupOperations::make`] serves both `make_group` and `make_item`; an
//! [`Attribute`] knows its container type, so `show` and `store` find the data without testing
//! at run time whether the item is the root of its subsystem.
//!
//! All `unsafe` of the configfs tree of dlm.ko is here; `config.rs` has none.
//!
//! C header: [`include/linux/configfs.h`](srctree/include/linux/configfs.h)

use core::marker::PhantomData;
use kernel::{
    bindings, container_of,
    ffi::{c_char, c_void},
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, ArcBorrow},
    types::Opaque,
    ThisModule,
};

use super::ffi;

/// An object that embeds a `struct config_item` next to data of type [`HasItem::Data`]:
/// a [`Subsystem`], a [`Group`] or an [`Item`].
///
/// # Safety
///
/// `raw_item` and `from_raw_item` must convert between a `Self` and the `config_item` embedded in
/// it, and that `config_item` must be initialised with an item type of `Self`
/// ([`ItemType<Self>`]).
pub(crate) unsafe trait HasItem: Sized {
    /// The data the attributes of this object show and store.
    type Data;

    /// The callbacks configfs calls when the last reference to the item is gone.
    const RELEASE: Option<unsafe extern "C" fn(*mut bindings::config_item)>;

    /// The address of the `config_item` embedded in `*this`.
    ///
    /// # Safety
    ///
    /// `this` must point to an allocation of at least the size of `Self`.
    unsafe fn raw_item(this: *const Self) -> *mut bindings::config_item;

    /// The object a `config_item` is embedded in.
    ///
    /// # Safety
    ///
    /// `item` must point to the `config_item` embedded in a `Self`.
    unsafe fn from_raw_item(item: *const bindings::config_item) -> *const Self;

    /// The data of this object.
    fn data(&self) -> &Self::Data;
}

/// An object that embeds a `struct config_group`: a [`Subsystem`] (its root group) or a
/// [`Group`].
///
/// # Safety
///
/// `raw_group` and `from_raw_group` must convert between a `Self` and the `config_group`
/// embedded in it, whose `cg_item` is the item of [`HasItem`].
pub(crate) unsafe trait HasGroup: HasItem {
    /// The address of the `config_group` embedded in `*this`.
    ///
    /// # Safety
    ///
    /// `this` must point to an allocation of at least the size of `Self`.
    unsafe fn raw_group(this: *const Self) -> *mut bindings::config_group;

    /// The object a `config_group` is embedded in.
    ///
    /// # Safety
    ///
    /// `group` must point to the `config_group` embedded in a `Self`.
    unsafe fn from_raw_group(group: *const bindings::config_group) -> *const Self;
}

mod private {
    pub(crate) trait Sealed {}
}

/// What `mkdir(2)` in a group makes: a [`Group`] (`make_group`) or an [`Item`] (`make_item`).
///
/// Such an object lives in an [`Arc`]: configfs owns one reference from the `make` callback
/// until the item's `release`.
pub(crate) trait ChildObject: HasItem + private::Sealed + Send + Sync + 'static {
    /// A group (`make_group`), not an item (`make_item`).
    const IS_GROUP: bool;
}

// ---- subsystem ----------------------------------------------------------------------------------

/// A configfs subsystem: the directory `/sys/kernel/config/<name>`, registered while the value
/// lives.
///
/// # Invariants
///
/// `subsystem` is initialised with an `ItemType<Self>` and registered with configfs, from the
/// end of [`Subsystem::new`] until `drop`.
#[pin_data(PinnedDrop)]
pub(crate) struct Subsystem<Data> {
    #[pin]
    subsystem: Opaque<bindings::configfs_subsystem>,
    #[pin]
    data: Data,
}

// SAFETY: The C subsystem is only used through configfs, which serialises with its own
// `su_mutex`; `Data` is shared between the threads that call the callbacks, hence the bound.
unsafe impl<Data: Sync> Sync for Subsystem<Data> {}

// SAFETY: Nothing in the subsystem is tied to the thread that created it.
unsafe impl<Data: Send> Send for Subsystem<Data> {}

impl<Data> Subsystem<Data> {
    /// Creates and registers the subsystem `name` with the root item type `item_type`.
    pub(crate) fn new(
        name: &'static CStr,
        item_type: &'static ItemType<Subsystem<Data>>,
        data: impl PinInit<Data, Error>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            subsystem <- pin_init::init_zeroed().chain(
                |place: &mut Opaque<bindings::configfs_subsystem>| {
                    // SAFETY: `place` is zeroed memory we own; this sets up its root group.
                    unsafe {
                        bindings::config_group_init_type_name(
                            &raw mut (*place.get()).su_group,
                            name.as_char_ptr(),
                            item_type.as_ptr(),
                        )
                    };
                    // SAFETY: `su_mutex` is zeroed memory we own, initialised once here with a
                    // static lock class and a static name.
                    unsafe {
                        bindings::__mutex_init(
                            &raw mut (*place.get()).su_mutex,
                            kernel::optional_name!().as_char_ptr(),
                            kernel::static_lock_class!().as_ptr(),
                        )
                    };
                    Ok(())
                }
            ),
            data <- data,
        })
        .pin_chain(|this| {
            // INVARIANT: Registered here, unregistered by `drop`.
            // SAFETY: The subsystem is initialised above and pinned; it stays registered until
            // `drop`.
            kernel::error::to_result(unsafe {
                bindings::configfs_register_subsystem(this.subsystem.get())
            })
        })
    }

    /// The data of the root group.
    pub(crate) fn data(&self) -> &Data {
        &self.data
    }
}

#[pinned_drop]
impl<Data> PinnedDrop for Subsystem<Data> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `new` registered the subsystem; configfs refuses to unload the module while any
        // directory below it exists, so nothing of ours is left in it.
        unsafe { bindings::configfs_unregister_subsystem(self.subsystem.get()) };
        // SAFETY: `new` initialised the mutex; the subsystem is unregistered, nobody uses it.
        unsafe { bindings::mutex_destroy(&raw mut (*self.subsystem.get()).su_mutex) };
    }
}

// SAFETY: `su_group.cg_item` is the embedded item, initialised with an `ItemType<Self>` by `new`.
unsafe impl<Data> HasItem for Subsystem<Data> {
    type Data = Data;

    // The subsystem is not reference counted by configfs.
    const RELEASE: Option<unsafe extern "C" fn(*mut bindings::config_item)> = None;

    unsafe fn raw_item(this: *const Self) -> *mut bindings::config_item {
        // SAFETY: In bounds of `*this` by the function's safety requirement.
        unsafe { &raw mut (*Self::raw_group(this)).cg_item }
    }

    unsafe fn from_raw_item(item: *const bindings::config_item) -> *const Self {
        // SAFETY: `item` is the `cg_item` of the `su_group` of a `Self`, so the group is too.
        let group = unsafe { container_of!(item.cast_mut(), bindings::config_group, cg_item) };
        // SAFETY: As above.
        unsafe { Self::from_raw_group(group) }
    }

    fn data(&self) -> &Data {
        &self.data
    }
}

// SAFETY: `su_group` is the embedded group.
unsafe impl<Data> HasGroup for Subsystem<Data> {
    unsafe fn raw_group(this: *const Self) -> *mut bindings::config_group {
        // SAFETY: In bounds of `*this` by the function's safety requirement.
        unsafe { &raw mut (*(*this).subsystem.get()).su_group }
    }

    unsafe fn from_raw_group(group: *const bindings::config_group) -> *const Self {
        let subsys =
            // SAFETY: `group` is the `su_group` of the `configfs_subsystem` in a `Self`.
            unsafe { container_of!(group.cast_mut(), bindings::configfs_subsystem, su_group) };
        let opaque = subsys.cast::<Opaque<bindings::configfs_subsystem>>();
        // SAFETY: `opaque` is the `subsystem` field of a `Self`.
        unsafe { container_of!(opaque, Self, subsystem) }
    }
}

// ---- group --------------------------------------------------------------------------------------

/// A configfs group: a directory that may hold attributes, default groups and (if its data
/// implements [`GroupOperations`]) directories made by `mkdir(2)`.
///
/// # Invariants
///
/// `group` is initialised with an `ItemType<Self>`.  While configfs knows the group (from the
/// `make` callback that returned it, or from [`Group::add_default_group`], until its `release`),
/// the group lives in an [`Arc`] of which configfs owns exactly one reference.
#[pin_data(PinnedDrop)]
pub(crate) struct Group<Data> {
    #[pin]
    data: Data,
    #[pin]
    group: Opaque<bindings::config_group>,
}

// SAFETY: configfs serialises its use of the C group; `Data` is shared between the threads that
// call the callbacks.
unsafe impl<Data: Sync> Sync for Group<Data> {}

// SAFETY: Nothing in the group is tied to the thread that created it.
unsafe impl<Data: Send> Send for Group<Data> {}

impl<Data> Group<Data> {
    /// Creates a group named `name` of type `item_type`.
    ///
    /// Return its initialiser from [`GroupOperations::make`] for a directory made by `mkdir(2)`,
    /// or allocate it with `Arc::pin_init` and pass it to [`Group::add_default_group`] of its
    /// parent.
    pub(crate) fn new<'a>(
        name: &'a CStr,
        item_type: &'static ItemType<Group<Data>>,
        data: impl PinInit<Data, Error> + 'a,
    ) -> impl PinInit<Self, Error> + 'a {
        // The data goes first: nothing can fail once the C group holds a copy of the name.
        try_pin_init!(Self {
            data <- data,
            group <- pin_init::init_zeroed().chain(move |v: &mut Opaque<bindings::config_group>| {
                // SAFETY: `v` is zeroed memory we own; the C function copies `name`.
                unsafe {
                    bindings::config_group_init_type_name(
                        v.get(),
                        name.as_char_ptr(),
                        item_type.as_ptr(),
                    )
                };
                Ok(())
            }),
        })
    }

    /// The data of this group.
    pub(crate) fn data(&self) -> &Data {
        &self.data
    }

    /// Makes `child` a default group of `self`: configfs creates its directory inside `self`'s
    /// and removes it with `self`'s.
    ///
    /// Call it last in the initialiser of a group returned from [`GroupOperations::make`] (for
    /// example in `pin_chain`); configfs only looks at default groups when it attaches the
    /// parent.  The reference in `child` becomes the one configfs owns: it is released when the
    /// parent's `drop_item` removes the default groups and configfs lets go of the child.
    pub(crate) fn add_default_group<D>(self: Pin<&mut Self>, child: Arc<Group<D>>) {
        // INVARIANT: The reference configfs owns from now on; `release` takes it back.
        let child = Arc::into_raw(child);
        // SAFETY: `child` is a live, initialised group whose reference we hand to configfs;
        // `self` is initialised, pinned and not yet visible to configfs.
        unsafe { ffi::dlm_rs_configfs_add_default_group(Group::raw_group(child), self.group.get()) }
    }
}

#[pinned_drop]
impl<Data> PinnedDrop for Group<Data> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: A value is only dropped once fully initialised, so the item is.
        unsafe { free_unreleased_name(&raw mut (*self.group.get()).cg_item) };
    }
}

impl<Data> private::Sealed for Group<Data> {}

impl<Data: Send + Sync + 'static> ChildObject for Group<Data> {
    const IS_GROUP: bool = true;
}

// SAFETY: `group.cg_item` is the embedded item, initialised with an `ItemType<Self>` by `new`.
unsafe impl<Data> HasItem for Group<Data> {
    type Data = Data;

    const RELEASE: Option<unsafe extern "C" fn(*mut bindings::config_item)> = Some(release::<Self>);

    unsafe fn raw_item(this: *const Self) -> *mut bindings::config_item {
        // SAFETY: In bounds of `*this` by the function's safety requirement.
        unsafe { &raw mut (*Self::raw_group(this)).cg_item }
    }

    unsafe fn from_raw_item(item: *const bindings::config_item) -> *const Self {
        // SAFETY: `item` is the `cg_item` of the group of a `Self`.
        let group = unsafe { container_of!(item.cast_mut(), bindings::config_group, cg_item) };
        // SAFETY: As above.
        unsafe { Self::from_raw_group(group) }
    }

    fn data(&self) -> &Data {
        &self.data
    }
}

// SAFETY: `group` is the embedded group.
unsafe impl<Data> HasGroup for Group<Data> {
    unsafe fn raw_group(this: *const Self) -> *mut bindings::config_group {
        // SAFETY: In bounds of `*this` by the function's safety requirement.
        Opaque::cast_into(unsafe { &raw const (*this).group })
    }

    unsafe fn from_raw_group(group: *const bindings::config_group) -> *const Self {
        let opaque = group.cast::<Opaque<bindings::config_group>>();
        // SAFETY: `opaque` is the `group` field of a `Self`.
        unsafe { container_of!(opaque.cast_mut(), Self, group) }
    }
}

// ---- item ---------------------------------------------------------------------------------------

/// A configfs item: a directory with attributes only, made by `mkdir(2)` in a group whose
/// [`GroupOperations::Child`] is an `Item`.
///
/// # Invariants
///
/// `item` is initialised with an `ItemType<Self>`.  While configfs knows the item (from the
/// `make` callback that returned it until its `release`), the item lives in an [`Arc`] of which
/// configfs owns exactly one reference.
#[pin_data(PinnedDrop)]
pub(crate) struct Item<Data> {
    #[pin]
    data: Data,
    #[pin]
    item: Opaque<bindings::config_item>,
}

// SAFETY: configfs serialises its use of the C item; `Data` is shared between the threads that
// call the callbacks.
unsafe impl<Data: Sync> Sync for Item<Data> {}

// SAFETY: Nothing in the item is tied to the thread that created it.
unsafe impl<Data: Send> Send for Item<Data> {}

impl<Data> Item<Data> {
    /// Creates an item named `name` of type `item_type`; return it from
    /// [`GroupOperations::make`].
    pub(crate) fn new<'a>(
        name: &'a CStr,
        item_type: &'static ItemType<Item<Data>>,
        data: impl PinInit<Data, Error> + 'a,
    ) -> impl PinInit<Self, Error> + 'a {
        // The data goes first: nothing can fail once the C item holds a copy of the name.
        try_pin_init!(Self {
            data <- data,
            item <- pin_init::init_zeroed().chain(move |v: &mut Opaque<bindings::config_item>| {
                // SAFETY: `v` is zeroed memory we own; the C function copies `name`.
                unsafe {
                    bindings::config_item_init_type_name(
                        v.get(),
                        name.as_char_ptr(),
                        item_type.as_ptr(),
                    )
                };
                Ok(())
            }),
        })
    }

    /// The data of this item.
    pub(crate) fn data(&self) -> &Data {
        &self.data
    }
}

#[pinned_drop]
impl<Data> PinnedDrop for Item<Data> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: A value is only dropped once fully initialised, so the item is.
        unsafe { free_unreleased_name(self.item.get()) };
    }
}

impl<Data> private::Sealed for Item<Data> {}

impl<Data: Send + Sync + 'static> ChildObject for Item<Data> {
    const IS_GROUP: bool = false;
}

// SAFETY: `item` is the embedded item, initialised with an `ItemType<Self>` by `new`.
unsafe impl<Data> HasItem for Item<Data> {
    type Data = Data;

    const RELEASE: Option<unsafe extern "C" fn(*mut bindings::config_item)> = Some(release::<Self>);

    unsafe fn raw_item(this: *const Self) -> *mut bindings::config_item {
        // SAFETY: In bounds of `*this` by the function's safety requirement.
        Opaque::cast_into(unsafe { &raw const (*this).item })
    }

    unsafe fn from_raw_item(item: *const bindings::config_item) -> *const Self {
        let opaque = item.cast::<Opaque<bindings::config_item>>();
        // SAFETY: `opaque` is the `item` field of a `Self`.
        unsafe { container_of!(opaque.cast_mut(), Self, item) }
    }

    fn data(&self) -> &Data {
        &self.data
    }
}

/// `ct_item_ops->release` of a [`Group`] or an [`Item`]: configfs dropped its last reference, so
/// the one it owned of our `Arc` goes too.
///
/// # Safety
///
/// `item` must be embedded in a `C` whose configfs reference came from `Arc::into_raw` (in
/// [`GroupOperations`]'s `make` callback or in [`Group::add_default_group`]).
unsafe extern "C" fn release<C: HasItem>(item: *mut bindings::config_item) {
    // SAFETY: `item` is embedded in a `C`, by the function's safety requirement.
    let this = unsafe { C::from_raw_item(item) };
    // SAFETY: That `C` is owned by an `Arc` whose configfs reference ends here.
    drop(unsafe { Arc::from_raw(this) });
}

/// Frees the name of an item that configfs never released: one whose initialiser failed after
/// the name was set, or that was never handed to configfs.  (configfs frees the name itself, and
/// clears `ci_name`, before it calls `release`.)
///
/// # Safety
///
/// `item` must point to an initialised `config_item` that configfs no longer uses.
unsafe fn free_unreleased_name(item: *mut bindings::config_item) {
    // SAFETY: `item` is initialised, by the function's safety requirement.
    let (name, buf) = unsafe { ((*item).ci_name, &raw mut (*item).ci_namebuf) };
    if !name.is_null() && name != buf.cast::<c_char>() {
        // SAFETY: A name that does not fit `ci_namebuf` was allocated by
        // `config_item_set_name()`, and nothing else refers to it.
        unsafe { bindings::kfree(name.cast::<c_void>()) };
    }
}

// ---- group operations ---------------------------------------------------------------------------

/// What a group does on `mkdir(2)` and `rmdir(2)` of a directory in it.  Implement it for the
/// data of a [`Subsystem`] or a [`Group`] and declare its item type with a `child:`
/// ([`configfs_attrs!`]).
#[vtable]
pub(crate) trait GroupOperations {
    /// What `mkdir(2)` makes here: `Group<D>` or `Item<D>`.
    type Child: ChildObject;

    /// Makes the object for the directory `name` (`make_group` or `make_item`), or fails the
    /// `mkdir(2)` with an error.
    fn make(&self, name: &CStr) -> Result<impl PinInit<Self::Child, Error>>;

    /// Called when `child` is removed (`drop_item`), before configfs drops its reference.
    ///
    /// "drop" is C's name for the callback, not Rust's drop.  The default groups of a group
    /// child are removed after this returns.
    fn drop_item(&self, _child: ArcBorrow<'_, Self::Child>) {
        kernel::build_error!(kernel::error::VTABLE_DEFAULT_ERROR)
    }
}

struct GroupOperationsVTable<P>(PhantomData<P>);

impl<P> GroupOperationsVTable<P>
where
    P: HasGroup,
    P::Data: GroupOperations,
{
    /// Makes the child and returns its item, configfs's reference included.
    ///
    /// # Safety
    ///
    /// `this` must be the group embedded in a `P`, and `name` a NUL-terminated string.
    unsafe fn make(
        this: *mut bindings::config_group,
        name: *const c_char,
    ) -> Result<*mut bindings::config_item> {
        // SAFETY: `this` is embedded in a live `P` while configfs calls into its group.
        let parent = unsafe { &*P::from_raw_group(this) };
        // SAFETY: configfs passes the NUL-terminated name of the new directory.
        let name = unsafe { CStr::from_char_ptr(name) };
        let init = parent.data().make(name)?;
        let child = Arc::pin_init(init, GFP_KERNEL)?;
        // INVARIANT: The reference configfs owns from now on; `release` takes it back.
        let child = Arc::into_raw(child);
        // SAFETY: `child` points to the live object just allocated.
        Ok(unsafe { <<P::Data as GroupOperations>::Child as HasItem>::raw_item(child) })
    }

    /// # Safety
    ///
    /// `this` must be the group embedded in a `P`, and `name` a NUL-terminated string.
    unsafe extern "C" fn make_group(
        this: *mut bindings::config_group,
        name: *const c_char,
    ) -> *mut bindings::config_group {
        // SAFETY: By the function's safety requirements.
        match unsafe { Self::make(this, name) } {
            // SAFETY: This callback is only installed when the child is a group, whose item is
            // the `cg_item` of its `config_group`.
            Ok(item) => unsafe { container_of!(item, bindings::config_group, cg_item) },
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// `this` must be the group embedded in a `P`, and `name` a NUL-terminated string.
    unsafe extern "C" fn make_item(
        this: *mut bindings::config_group,
        name: *const c_char,
    ) -> *mut bindings::config_item {
        // SAFETY: By the function's safety requirements.
        match unsafe { Self::make(this, name) } {
            Ok(item) => item,
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// `this` must be the group embedded in a `P`, and `item` the item of a child made by
    /// `make`.
    unsafe extern "C" fn drop_item(
        this: *mut bindings::config_group,
        item: *mut bindings::config_item,
    ) {
        // SAFETY: `this` is embedded in a live `P` while configfs calls into its group.
        let parent = unsafe { &*P::from_raw_group(this) };
        if <P::Data as GroupOperations>::HAS_DROP_ITEM {
            let child =
                // SAFETY: `item` is embedded in a child made by `make`.
                unsafe { <<P::Data as GroupOperations>::Child as HasItem>::from_raw_item(item) };
            // SAFETY: `child` came from `Arc::into_raw` in `make`, and configfs's reference is
            // only put below, after the borrow ends.
            let child = unsafe { ArcBorrow::from_raw(child) };
            parent.data().drop_item(child);
        }
        if <P::Data as GroupOperations>::Child::IS_GROUP {
            // SAFETY: The child is a group, whose item is the `cg_item` of its `config_group`;
            // this puts the references of its default groups, as every C `drop_item` of a group
            // with default groups does.
            unsafe {
                bindings::configfs_remove_default_groups(container_of!(
                    item,
                    bindings::config_group,
                    cg_item
                ))
            };
        }
        // SAFETY: `drop_item` must put the reference `make` handed to configfs.
        unsafe { bindings::config_item_put(item) };
    }

    const VTABLE: bindings::configfs_group_operations = bindings::configfs_group_operations {
        make_item: if <P::Data as GroupOperations>::Child::IS_GROUP {
            None
        } else {
            Some(Self::make_item)
        },
        make_group: if <P::Data as GroupOperations>::Child::IS_GROUP {
            Some(Self::make_group)
        } else {
            None
        },
        disconnect_notify: None,
        drop_item: Some(Self::drop_item),
        is_visible: None,
        is_bin_visible: None,
    };

    const fn vtable_ptr() -> *const bindings::configfs_group_operations {
        &Self::VTABLE
    }
}

struct ItemOperationsVTable<C>(PhantomData<C>);

impl<C: HasItem> ItemOperationsVTable<C> {
    const VTABLE: bindings::configfs_item_operations = bindings::configfs_item_operations {
        release: C::RELEASE,
        allow_link: None,
        drop_link: None,
    };

    const fn vtable_ptr() -> *const bindings::configfs_item_operations {
        &Self::VTABLE
    }
}

// ---- attributes ---------------------------------------------------------------------------------

/// The operations of attribute `ID` of a container whose data is [`AttributeOperations::Data`].
///
/// Implement `show`, `store` or both; the file's mode follows as in C: both 0644
/// (`CONFIGFS_ATTR`), `show` only 0444 (`CONFIGFS_ATTR_RO`), `store` only 0200
/// (`CONFIGFS_ATTR_WO`).
#[vtable]
pub(crate) trait AttributeOperations<const ID: u64 = 0> {
    /// The data of the container the attribute belongs to.
    type Data;

    /// Renders the attribute into `page` and returns the number of bytes written.
    fn show(_data: &Self::Data, _page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        kernel::build_error!(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Takes the bytes of one `write(2)` (configfs puts a NUL after them, which `page` does not
    /// include).  On success the whole write is consumed.
    fn store(_data: &Self::Data, _page: &[u8]) -> Result {
        kernel::build_error!(kernel::error::VTABLE_DEFAULT_ERROR)
    }
}

/// A configfs attribute: the file `name` in the directory of a `C`.
#[repr(transparent)]
pub(crate) struct Attribute<const ID: u64, O, C> {
    attribute: Opaque<bindings::configfs_attribute>,
    _p: PhantomData<(O, C)>,
}

// SAFETY: The C attribute is immutable after construction.
unsafe impl<const ID: u64, O, C> Sync for Attribute<ID, O, C> {}

// SAFETY: As above.
unsafe impl<const ID: u64, O, C> Send for Attribute<ID, O, C> {}

impl<const ID: u64, O, C> Attribute<ID, O, C>
where
    C: HasItem,
    O: AttributeOperations<ID, Data = C::Data>,
{
    /// # Safety
    ///
    /// `item` must be embedded in a live `C`, and `page` writable for [`PAGE_SIZE`] bytes.
    unsafe extern "C" fn show(item: *mut bindings::config_item, page: *mut c_char) -> isize {
        // SAFETY: By the function's safety requirements.
        let this = unsafe { &*C::from_raw_item(item) };
        // SAFETY: configfs passes a page of its own, writable for `PAGE_SIZE` bytes.
        let page = unsafe { &mut *page.cast::<[u8; PAGE_SIZE]>() };
        match O::show(this.data(), page) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// `item` must be embedded in a live `C`, and `page` readable for `size` bytes.
    unsafe extern "C" fn store(
        item: *mut bindings::config_item,
        page: *const c_char,
        size: usize,
    ) -> isize {
        // SAFETY: By the function's safety requirements.
        let this = unsafe { &*C::from_raw_item(item) };
        // SAFETY: configfs passes the `size` bytes written, in a buffer of its own.
        let page = unsafe { core::slice::from_raw_parts(page.cast::<u8>(), size) };
        match O::store(this.data(), page) {
            Ok(()) => size as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// Creates the attribute `name`, owned by `owner`; use [`configfs_attrs!`].
    pub(crate) const fn new(name: &'static CStr, owner: &'static ThisModule) -> Self {
        let mode = match (O::HAS_SHOW, O::HAS_STORE) {
            (true, true) => 0o644,
            (true, false) => 0o444,
            (false, true) => 0o200,
            (false, false) => panic!("a configfs attribute needs show or store"),
        };
        Self {
            attribute: Opaque::new(bindings::configfs_attribute {
                ca_name: kernel::str::as_char_ptr_in_const_context(name),
                ca_owner: owner.as_ptr(),
                ca_mode: mode,
                show: if O::HAS_SHOW { Some(Self::show) } else { None },
                store: if O::HAS_STORE {
                    Some(Self::store)
                } else {
                    None
                },
            }),
            _p: PhantomData,
        }
    }

    /// The C attribute, for an [`AttributeList`].
    pub(crate) const fn as_ptr(&'static self) -> *mut c_void {
        self.attribute.get().cast()
    }
}

/// The NULL-terminated array of attributes of an [`ItemType`] (`ct_attrs`).
#[repr(transparent)]
pub(crate) struct AttributeList<const N: usize>([*mut c_void; N]);

// SAFETY: The array and the attributes it points to are immutable.
unsafe impl<const N: usize> Sync for AttributeList<N> {}

// SAFETY: As above.
unsafe impl<const N: usize> Send for AttributeList<N> {}

impl<const N: usize> AttributeList<N> {
    /// Creates the list from attribute pointers ([`Attribute::as_ptr`]) and a final null.
    pub(crate) const fn new(attrs: [*mut c_void; N]) -> Self {
        assert!(
            N > 0 && attrs[N - 1].is_null(),
            "the list ends with a null pointer"
        );
        Self(attrs)
    }
}

/// The type of a [`Subsystem`], [`Group`] or [`Item`] `C`: its attributes, its group operations
/// and its owner (`struct config_item_type`).  Declare it with [`configfs_attrs!`].
#[repr(transparent)]
pub(crate) struct ItemType<C> {
    item_type: Opaque<bindings::config_item_type>,
    _p: PhantomData<C>,
}

// SAFETY: The C item type is immutable after construction.
unsafe impl<C> Sync for ItemType<C> {}

// SAFETY: As above.
unsafe impl<C> Send for ItemType<C> {}

impl<C: HasItem> ItemType<C> {
    /// An item type without group operations: `mkdir(2)` in it fails with `EPERM`.
    pub(crate) const fn new<const N: usize>(
        owner: &'static ThisModule,
        attributes: &'static AttributeList<N>,
    ) -> Self {
        Self::with_group_ops(owner, attributes, core::ptr::null())
    }

    /// An item type whose `mkdir(2)` and `rmdir(2)` go to `C::Data`'s [`GroupOperations`].
    pub(crate) const fn new_with_child_ctor<const N: usize>(
        owner: &'static ThisModule,
        attributes: &'static AttributeList<N>,
    ) -> Self
    where
        C: HasGroup,
        C::Data: GroupOperations,
    {
        Self::with_group_ops(owner, attributes, GroupOperationsVTable::<C>::vtable_ptr())
    }

    const fn with_group_ops<const N: usize>(
        owner: &'static ThisModule,
        attributes: &'static AttributeList<N>,
        group_ops: *const bindings::configfs_group_operations,
    ) -> Self {
        Self {
            item_type: Opaque::new(bindings::config_item_type {
                ct_owner: owner.as_ptr(),
                ct_item_ops: ItemOperationsVTable::<C>::vtable_ptr(),
                ct_group_ops: group_ops,
                ct_attrs: core::ptr::from_ref(attributes).cast_mut().cast(),
                ct_bin_attrs: core::ptr::null_mut(),
            }),
            _p: PhantomData,
        }
    }

    fn as_ptr(&self) -> *const bindings::config_item_type {
        self.item_type.get()
    }
}

/// Declares the item type of a configfs container and its attributes, as statics.
///
/// ```ignore
/// let item_type: &'static ItemType<Group<Cluster>> = configfs_attrs! {
///     container: Group<Cluster>,
///     data: Cluster,
///     attributes: [
///         tcp_port: 0,
///         buffer_size: 1,
///     ],
/// };
/// ```
///
/// Attribute `name: ID` is the file `name`, served by `AttributeOperations<ID>` of the data
/// type.  The files appear in the order given.  With `child: true` the container's data must
/// implement [`GroupOperations`], which serves `mkdir(2)` and `rmdir(2)` in it.
macro_rules! configfs_attrs {
    (
        container: $container:ty,
        data: $data:ty,
        $(child: $child:tt,)?
        attributes: [
            $($name:ident: $id:literal),* $(,)?
        ] $(,)?
    ) => {{
        $(
            #[allow(non_upper_case_globals)]
            static $name: $crate::comms::configfs::Attribute<$id, $data, $container> =
                $crate::comms::configfs::Attribute::new(
                    kernel::c_str!(::core::stringify!($name)),
                    &$crate::THIS_MODULE,
                );
        )*
        const N: usize = [$(::core::stringify!($name),)* ""].len();
        static ATTRS: $crate::comms::configfs::AttributeList<N> =
            $crate::comms::configfs::AttributeList::new([
                $($name.as_ptr(),)* ::core::ptr::null_mut()
            ]);
        static TYPE: $crate::comms::configfs::ItemType<$container> =
            $crate::comms::configfs::configfs_attrs!(@ctor $container, N, $($child)?)(
                &$crate::THIS_MODULE,
                &ATTRS,
            );
        &TYPE
    }};
    (@ctor $container:ty, $n:ident, true) => {
        $crate::comms::configfs::ItemType::<$container>::new_with_child_ctor::<$n>
    };
    (@ctor $container:ty, $n:ident, ) => {
        $crate::comms::configfs::ItemType::<$container>::new::<$n>
    };
}
pub(crate) use configfs_attrs;
