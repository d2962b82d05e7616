// SPDX-License-Identifier: GPL-2.0

//! Bios as the target sees them: in `map`, in `end_io`, and back from dm-io.

use super::{bindings, target::Device, TargetOperations};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    alloc::KVVec,
    error::{code::EINVAL, Result},
};

/// What a bio asks for, as far as a mirror cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BioKind {
    /// Read data.
    Read,
    /// Write data (possibly with FUA or a preflush).
    Write,
    /// An empty flush (`REQ_PREFLUSH` without data).
    Flush,
    /// Discard sectors.
    Discard,
    /// Anything else (write-zeroes and friends): dm does not send these to a
    /// target that does not ask for them.
    Other,
}

/// A completion status (`blk_status_t`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Status(u8);

impl Status {
    /// Success.
    pub(crate) const fn ok() -> Self {
        Self(bindings::BLK_STS_OK)
    }
    /// `BLK_STS_IOERR`.
    pub(crate) const fn io_error() -> Self {
        Self(bindings::BLK_STS_IOERR)
    }
    /// `BLK_STS_NOTSUPP`.
    pub(crate) const fn not_supported() -> Self {
        Self(bindings::BLK_STS_NOTSUPP)
    }
    /// `BLK_STS_DM_REQUEUE`: dm core holds the bio and sends it again after
    /// the (noflush) suspend.
    pub(crate) const fn dm_requeue() -> Self {
        Self(bindings::BLK_STS_DM_REQUEUE)
    }
    /// `BLK_STS_INVAL`.
    pub(crate) const fn invalid() -> Self {
        Self(bindings::BLK_STS_INVAL)
    }
    pub(super) fn from_u8(s: u8) -> Self {
        Self(s)
    }
    pub(super) fn to_u8(self) -> u8 {
        self.0
    }
    /// True for success.
    pub(crate) fn is_ok(self) -> bool {
        self == Self::ok()
    }
    /// True for errors that say "the leg cannot do this", not "the leg is broken".
    pub(crate) fn is_unsupported(self) -> bool {
        self == Self::not_supported() || self == Self::invalid()
    }
}

/// The per-bio data dm core reserves for every bio of the target: where to
/// find the target again from a dm-io completion, and the target's own record.
#[repr(C)]
pub(super) struct PerBioData<P> {
    pub(super) ti: *mut bindings::dm_target,
    pub(super) record: P,
}

/// The answer of `map`: only obtainable by handing the bio on, so a bio is
/// never both remapped and owned by the target.
pub(crate) struct Mapped(pub(super) i32);

/// The answer of `end_io`: done with a status, or kept by the target for
/// another attempt (it then completes the bio itself, later).
pub(crate) struct EndIo(pub(super) Option<Status>);

/// What `dm_bio_record` saves of a bio, so that a failed read can be
/// restored and sent again (kept in the per-bio record), and which bio it
/// was saved from: [`Bio::retry`] restores only that one.
#[derive(Clone, Copy, Default)]
pub(crate) struct BioDetails {
    saved: bindings::dmmr_bio_details,
    /// The address of the bio (0: nothing saved).
    bio: usize,
}

/// A bio inside `map` or `end_io`.
///
/// # Invariants
///
/// `bio` is a live bio of the target `ti`, with per-bio data of type
/// `PerBioData<T::PerBio>` initialised by the `map` trampoline; it stays live
/// for `'a`.
pub(crate) struct Bio<'a, T: TargetOperations> {
    bio: NonNull<bindings::bio>,
    begin: u64,
    _p: PhantomData<(&'a mut bindings::bio, T)>,
}

impl<'a, T: TargetOperations> Bio<'a, T> {
    /// # Safety
    ///
    /// `bio` must be live for `'a` and its per-bio data initialised as a
    /// `PerBioData<T::PerBio>`; `begin` is the target's first sector.
    pub(super) unsafe fn from_raw(bio: NonNull<bindings::bio>, begin: u64) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self {
            bio,
            begin,
            _p: PhantomData,
        }
    }

    fn raw(&self) -> *mut bindings::bio {
        self.bio.as_ptr()
    }

    /// What the bio asks for.
    pub(crate) fn kind(&self) -> BioKind {
        // SAFETY: `bio` is live by the type invariant.
        unsafe { kind_of(self.raw()) }
    }

    /// True for read-ahead, which may be failed instead of waited for.
    pub(crate) fn is_readahead(&self) -> bool {
        // SAFETY: `bio` is live by the type invariant.
        unsafe { (*self.raw()).bi_opf & bindings::REQ_RAHEAD != 0 }
    }

    /// First sector, relative to the start of the target.
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: `bio` is live by the type invariant.
        let s = unsafe { (*self.raw()).bi_iter.bi_sector };
        s.saturating_sub(self.begin)
    }

    /// Length in sectors.
    pub(crate) fn sectors(&self) -> u32 {
        // SAFETY: `bio` is live by the type invariant.
        unsafe { sectors_of(self.raw()) }
    }

    /// The target's record for this bio.
    pub(crate) fn record(&mut self) -> &mut T::PerBio {
        // SAFETY: per-bio data of this type was initialised by the map
        // trampoline (type invariant), and `&mut self` makes this the only
        // reference to it.
        unsafe { &mut (*per_bio::<T>(self.raw())).record }
    }

    /// Sends the bio to `dev` at `sector` (relative to the device): dm core submits it.
    pub(crate) fn remap(self, dev: &Device, sector: u64) -> Mapped {
        // SAFETY: `bio` is live and, in `map`, still ours to redirect; `bdev`
        // is held open by `dev`.
        unsafe { bindings::dmmr_bio_remap(self.raw(), dev.bdev(), sector) };
        Mapped(bindings::DM_MAPIO_REMAPPED as i32)
    }

    /// Fails the bio with an I/O error.
    pub(crate) fn kill(self) -> Mapped {
        Mapped(bindings::DM_MAPIO_KILL as i32)
    }

    /// In `map`: keeps the bio (`DM_MAPIO_SUBMITTED`); the target completes
    /// it later through the [`OwnedBio`].
    pub(crate) fn submitted(self) -> (OwnedBio<T>, Mapped) {
        // INVARIANT: returning DM_MAPIO_SUBMITTED makes the target the bio's
        // owner until it calls `bio_endio`.
        let owned = OwnedBio {
            bio: self.bio,
            _p: PhantomData,
        };
        (owned, Mapped(bindings::DM_MAPIO_SUBMITTED as i32))
    }

    /// Saves what a retry needs to restore (`dm_bio_record`).
    pub(crate) fn save_details(&self) -> BioDetails {
        // SAFETY: `bio` is live by the type invariant.
        unsafe { save_details(self.raw()) }
    }

    /// In `end_io`: completes the bio with `status`.
    pub(crate) fn done(self, status: Status) -> EndIo {
        EndIo(Some(status))
    }

    /// In `end_io`: keeps the bio (`DM_ENDIO_INCOMPLETE`) after restoring it
    /// from `details`; the target sends it again or completes it later.
    /// Details saved from another bio give the bio back untouched.
    pub(crate) fn retry(self, details: &BioDetails) -> Result<(OwnedBio<T>, EndIo), Self> {
        if details.bio != self.raw() as usize {
            return Err(self);
        }
        let mut d = *details;
        // SAFETY: `bio` is live and its I/O is over. `details` were saved
        // from a bio at this address (checked above): this one, before it
        // was sent, as long as details are kept only in their bio's per-bio
        // record, which the target does and which dies with the bio (a copy
        // kept elsewhere could name a freed bio whose address was reused).
        // Restoring them makes the bio what it was then, ready to be sent
        // again.
        unsafe {
            bindings::dmmr_bio_restore(&mut d.saved, self.raw());
            (*self.raw()).bi_status = Status::ok().0;
        }
        // INVARIANT: returning DM_ENDIO_INCOMPLETE leaves the bio's
        // completion to the target.
        let owned = OwnedBio {
            bio: self.bio,
            _p: PhantomData,
        };
        Ok((owned, EndIo(None)))
    }
}

/// A bio the target owns after returning `DM_MAPIO_SUBMITTED`; it must be
/// completed with [`OwnedBio::end`] (dropping it fails the bio).
///
/// # Invariants
///
/// As for [`Bio`], and nobody else completes the bio.
pub(crate) struct OwnedBio<T: TargetOperations> {
    bio: NonNull<bindings::bio>,
    _p: PhantomData<fn() -> T>,
}

impl<T: TargetOperations> OwnedBio<T> {
    /// # Safety
    ///
    /// As for [`Bio::from_raw`], and the caller passes on the ownership of a
    /// submitted bio.
    pub(super) unsafe fn from_raw(bio: NonNull<bindings::bio>) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self {
            bio,
            _p: PhantomData,
        }
    }

    pub(super) fn raw(&self) -> *mut bindings::bio {
        self.bio.as_ptr()
    }

    /// Gives up ownership to C (dm-io, the region hash), which completes it.
    pub(super) fn into_raw(self) -> *mut bindings::bio {
        let raw = self.raw();
        core::mem::forget(self);
        raw
    }

    /// What the bio asks for.
    pub(crate) fn kind(&self) -> BioKind {
        // SAFETY: `bio` is live by the type invariant.
        unsafe { kind_of(self.raw()) }
    }

    /// First sector, relative to the start of the target.
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: `bio` is live and its per-bio data holds its target, which
        // is live while the target owns one of its bios.
        unsafe {
            let begin = (*(*per_bio::<T>(self.raw())).ti).begin;
            (*self.raw()).bi_iter.bi_sector.saturating_sub(begin)
        }
    }

    /// Length in sectors.
    pub(crate) fn sectors(&self) -> u32 {
        // SAFETY: `bio` is live by the type invariant.
        unsafe { sectors_of(self.raw()) }
    }

    /// The target's record for this bio.
    pub(crate) fn record(&mut self) -> &mut T::PerBio {
        // SAFETY: initialised by the map trampoline; `&mut self` is unique.
        unsafe { &mut (*per_bio::<T>(self.raw())).record }
    }

    /// Saves what [`Bio::retry`] restores (`dm_bio_record`), for a bio
    /// that is sent by [`OwnedBio::submit_to`] and may come back to
    /// `end_io` failed.
    pub(crate) fn save_details(&self) -> BioDetails {
        // SAFETY: `bio` is live by the type invariant.
        unsafe { save_details(self.raw()) }
    }

    /// A copy of the data a write carries (its `sectors()` worth), in
    /// memory allocated with `flags`.
    pub(crate) fn copy_data(&self, flags: kernel::alloc::Flags) -> Result<KVVec<u8>> {
        let len = usize::try_from(self.sectors())
            .ok()
            .and_then(|s| s.checked_mul(512))
            .ok_or(EINVAL)?;
        if self.kind() != BioKind::Write || len == 0 {
            return Err(EINVAL);
        }
        let mut buf = KVVec::<u8>::with_capacity(len, flags)?;
        // SAFETY: a live write bio (type invariant) of `len` bytes: the copy
        // walks its segments from its iterator and writes exactly `len`
        // bytes into `buf`, which has room for them; they are then
        // initialised, so the length may cover them.
        unsafe {
            bindings::dmmr_bio_copy_data(self.raw(), buf.as_mut_ptr().cast());
            buf.inc_len(len);
        }
        Ok(buf)
    }

    /// Sends the bio to `dev` at `sector`: its completion goes through
    /// `end_io` like a remapped bio's.
    pub(crate) fn submit_to(self, dev: &Device, sector: u64) {
        let raw = self.into_raw();
        // SAFETY: we owned the bio; it is redirected to a device the target
        // holds open and handed to the block layer, which completes it.
        unsafe {
            bindings::dmmr_bio_remap(raw, dev.bdev(), sector);
            bindings::submit_bio_noacct(raw);
        }
    }

    /// Completes the bio with `status`.
    pub(crate) fn end(self, status: Status) {
        let bio = self.raw();
        core::mem::forget(self);
        // SAFETY: we own the bio (type invariant) and complete it exactly once:
        // `forget` keeps `drop` from completing it again.
        unsafe {
            (*bio).bi_status = status.0;
            bindings::bio_endio(bio);
        }
    }
}

impl<T: TargetOperations> Drop for OwnedBio<T> {
    fn drop(&mut self) {
        // A bio must never be lost: failing it is the safe default.
        // SAFETY: we own the bio and this is its only completion.
        unsafe {
            (*self.raw()).bi_status = Status::io_error().0;
            bindings::bio_endio(self.raw());
        }
    }
}

// SAFETY: a bio the target owns may be completed from any context.
unsafe impl<T: TargetOperations> Send for OwnedBio<T> {}

/// The per-bio data of `bio`.
///
/// # Safety
///
/// `bio` is a live bio that dm core handed to a target of type `T`, so that
/// it carries per-bio data of the size the constructor registered.
pub(super) unsafe fn per_bio<T: TargetOperations>(
    bio: *mut bindings::bio,
) -> *mut PerBioData<T::PerBio> {
    // dm core puts the data right before the bio's `dm_target_io` (or
    // `dm_io`), which it aligns for its own type (dm-table.c rounds the
    // front pad up to it); our size is a multiple of our alignment, so the
    // data is aligned when that alignment is no larger than the bio's (which
    // those structs contain).
    const {
        assert!(
            core::mem::align_of::<PerBioData<T::PerBio>>()
                <= core::mem::align_of::<bindings::bio>(),
            "per-bio record aligned beyond what dm core guarantees"
        )
    };
    // SAFETY: per the function's contract; `dm_per_bio_data` reads the
    // bio's target I/O flags to find the data, nothing else.
    unsafe { bindings::dm_per_bio_data(bio, core::mem::size_of::<PerBioData<T::PerBio>>()) }.cast()
}

/// Length of `bio` in sectors (`bio_sectors`).
///
/// # Safety
///
/// `bio` is a live bio.
unsafe fn sectors_of(bio: *mut bindings::bio) -> u32 {
    // SAFETY: per the function's contract.
    unsafe { (*bio).bi_iter.bi_size >> 9 }
}

/// The flags of `bio`'s operation that `keep` names.
///
/// # Safety
///
/// `bio` is a live bio.
pub(super) unsafe fn flags_of(bio: *mut bindings::bio, keep: OpFlags) -> OpFlags {
    // SAFETY: per the function's contract.
    OpFlags(unsafe { (*bio).bi_opf } & keep.0)
}

/// What `bio` asks for.
///
/// # Safety
///
/// `bio` is a live bio.
unsafe fn kind_of(bio: *mut bindings::bio) -> BioKind {
    // SAFETY: per the function's contract.
    let (opf, sectors) = unsafe { ((*bio).bi_opf, sectors_of(bio)) };
    let op = opf & bindings::REQ_OP_MASK;
    // `op_is_write()`: write operations have odd numbers.
    let write = op & 1 != 0;
    let flush = opf & bindings::REQ_PREFLUSH != 0;
    if op == bindings::req_op_REQ_OP_DISCARD {
        BioKind::Discard
    } else if op == bindings::req_op_REQ_OP_READ {
        BioKind::Read
    } else if op == bindings::req_op_REQ_OP_WRITE && flush && sectors == 0 {
        BioKind::Flush
    } else if op == bindings::req_op_REQ_OP_WRITE && write {
        BioKind::Write
    } else {
        BioKind::Other
    }
}

/// What `dm_bio_record` saves of `bio`, and `bio`'s address.
///
/// # Safety
///
/// `bio` is a live bio.
unsafe fn save_details(bio: *mut bindings::bio) -> BioDetails {
    let mut d = BioDetails {
        saved: Default::default(),
        bio: bio as usize,
    };
    // SAFETY: `bio` is live (the function's contract); `d.saved` is
    // storage for a `dm_bio_details`.
    unsafe { bindings::dmmr_bio_record(&mut d.saved, bio) };
    d
}

/// Request flags (`REQ_FUA`, `REQ_PREFLUSH`, ...) of a bio or of an I/O the
/// target sends, as a set.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct OpFlags(bindings::blk_opf_t);

impl OpFlags {
    /// `REQ_FUA`: the data is durable when the I/O completes.
    pub(crate) const FUA: Self = Self(bindings::REQ_FUA);
    /// `REQ_PREFLUSH`: the device's cache is flushed first.
    pub(crate) const PREFLUSH: Self = Self(bindings::REQ_PREFLUSH);
    /// `REQ_ATOMIC`: written untorn or not at all.
    pub(crate) const ATOMIC: Self = Self(bindings::REQ_ATOMIC);
    /// `REQ_SYNC`: someone waits for it.
    pub(crate) const SYNC: Self = Self(bindings::REQ_SYNC);

    /// Both sets.
    #[must_use]
    pub(crate) const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub(super) const fn raw(self) -> bindings::blk_opf_t {
        self.0
    }
}

/// A list of bios the target owns (`struct bio_list`).
///
/// # Invariants
///
/// `list` is a well-formed bio list of bios owned by the target (each with
/// per-bio data of `T`); dropping the list fails the bios left on it.
pub(crate) struct BioList<T: TargetOperations> {
    list: bindings::bio_list,
    // Not `PhantomData<T>`: the list holds bios, not a `T`, and must stay
    // `Unpin` whatever `T` is.
    _p: PhantomData<fn() -> T>,
}

impl<T: TargetOperations> BioList<T> {
    /// An empty list.
    pub(crate) fn new() -> Self {
        // INVARIANT: the empty list.
        Self {
            list: bindings::bio_list {
                head: core::ptr::null_mut(),
                tail: core::ptr::null_mut(),
            },
            _p: PhantomData,
        }
    }

    /// Takes over the bios of a C list and empties it.
    ///
    /// # Safety
    ///
    /// `raw` is a valid list of bios owned by the caller and targeted at `T`.
    pub(super) unsafe fn take_raw(raw: *mut bindings::bio_list) -> Self {
        let mut l = Self::new();
        // SAFETY: per the contract, `raw` is valid and ours to empty.
        unsafe {
            l.list = *raw;
            (*raw).head = core::ptr::null_mut();
            (*raw).tail = core::ptr::null_mut();
        }
        l
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.head.is_null()
    }

    /// Adds a bio at the tail.
    pub(crate) fn push(&mut self, bio: OwnedBio<T>) {
        let raw = bio.into_raw();
        // SAFETY: `raw` is ours (it was an `OwnedBio`); linking it through
        // `bi_next` is how `bio_list_add` does it.
        unsafe {
            (*raw).bi_next = core::ptr::null_mut();
            if self.list.tail.is_null() {
                self.list.head = raw;
            } else {
                (*self.list.tail).bi_next = raw;
            }
        }
        self.list.tail = raw;
    }

    /// Takes the bio at the head.
    pub(crate) fn pop(&mut self) -> Option<OwnedBio<T>> {
        let head = NonNull::new(self.list.head)?;
        // SAFETY: `head` is on the list, owned by the target (type invariant).
        unsafe {
            self.list.head = (*head.as_ptr()).bi_next;
            if self.list.head.is_null() {
                self.list.tail = core::ptr::null_mut();
            }
            (*head.as_ptr()).bi_next = core::ptr::null_mut();
            Some(OwnedBio::from_raw(head))
        }
    }

    /// Moves every bio of `other` to the tail of this list.
    pub(crate) fn append(&mut self, other: &mut Self) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            self.list = other.list;
        } else {
            // SAFETY: `tail` is the last bio of a non-empty list we own.
            unsafe { (*self.list.tail).bi_next = other.list.head };
            self.list.tail = other.list.tail;
        }
        other.list.head = core::ptr::null_mut();
        other.list.tail = core::ptr::null_mut();
    }
}

impl<T: TargetOperations> Drop for BioList<T> {
    fn drop(&mut self) {
        // Never lose a bio: fail what is left (`OwnedBio`'s drop does that).
        while self.pop().is_some() {}
    }
}

// SAFETY: the bios are owned by the target and may be handled on any thread.
unsafe impl<T: TargetOperations> Send for BioList<T> {}
