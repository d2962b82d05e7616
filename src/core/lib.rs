// SPDX-License-Identifier: GPL-2.0

//! Kernel-independent core of dm-mirror-rs: the `mirror` target's table,
//! message and status grammar, and read balancing.
//!
//! The same files build as the host crate `dm_mirror_core` (tests, property
//! tests, fuzzing) and inside the kernel module as a plain module:
//!
//! ```text
//! #[path = "core/lib.rs"]
//! pub mod mcore;
//! ```
//!
//! Make that module `pub`: the kernel builds with `-Wunreachable_pub` and
//! `-Wmissing_docs` (errors under `CONFIG_WERROR`), and a private module
//! turns every `pub` item here into an "unreachable pub" or dead-code
//! warning. Everything here uses `core::` only: no allocation, no floating
//! point, no `unsafe`, no panics (checked or saturating arithmetic, no
//! indexing), no `u128` (the kernel's compiler builtins panic on it). `u64`
//! division appears only in the adaptive policy's prediction and in status
//! formatting, which is fine on 64-bit kernels (32-bit ARM would need
//! `div_u64`).
//!
//! # Modules
//!
//! The API is what rustdoc shows (`cargo doc --open`); in short:
//!
//! - [`legs`]: the leg-count limits, [`legs::LegSet`], [`legs::LegRef`].
//! - [`table`]: the constructor line, [`table::MirrorTable::parse`].
//! - [`message`]: `dmsetup message` dispatch; [`io_balance`]: the read
//!   balancing vocabulary (messages and table features).
//! - [`policy`]: the read policies behind [`policy::Balancer`].
//! - [`freshness`]: which legs hold each region's latest data.
//! - [`status`]: byte-exact `mirror_status()` output, and the bounded
//!   writer dm's result buffers go through.
//! - [`write_mostly`], [`write_behind`]: write-mostly legs and their
//!   backlog (issue 13).
//! - [`hot_regions`]: regions whose log mark is on disk, written to from
//!   `map` without the worker.
//! - [`region_bits`]: the per-leg region bitmaps freshness and the backlog
//!   keep.
//! - [`ratelimit`], [`number`]: log-line rate limits, number parsing.
//!
//! # Kernel wiring
//!
//! - **ctr**: collect `argv` as `&str`s, `MirrorTable::parse(&args, ti->len)`;
//!   on error log `Display` (with `pr_warn` when `is_log_error()`) and set
//!   `ti->error = err.ti_error()`. Keep `features` (it is `Copy`), the log
//!   params and the legs' offsets; build the balancer with
//!   `Balancer::from_config(nr_legs, &features.io_balance)` and put it under
//!   the mirror set's spinlock. The default leg from the table is also the
//!   resync source (dm-raid1's default mirror).
//! - **map** (read, region in sync) and **do_reads** (kmirrord):
//!   `freshness::Freshness::route_read(balancer, region, healthy, &read)`:
//!   `healthy` = legs with `error_count == 0`, and only those that hold the
//!   region's latest data are offered to `choose`; `None` means
//!   fail the read (`DM_MAPIO_KILL` / `bio_io_error`). Store leg and start
//!   time in the per-bio data.
//! - **end_io** (read): `complete(leg, ktime_get_ns() - start, ok)`;
//!   exactly once per successful `choose` (or `cancel(leg)` if the bio was
//!   never sent). A retry on another leg calls `choose` again.
//! - **fail_mirror** of the default leg: after picking a new default like
//!   dm-raid1's `get_valid_mirror()`, call `set_default_leg(new)`; and use
//!   `default_leg()` as the recovery source and for writes' bookkeeping.
//! - **message**: `message::parse_message(argv, leg_names)`; on error log `Display`
//!   and return `-EINVAL`. `Command::Show` → `write_report` into `result`
//!   (e.g. through `BufWriter`) and return 1 (dm then copies the text out).
//!   Otherwise `apply(&cmd, &freshness.mirror_state(healthy))`; on error
//!   log `Display`, return `-EINVAL` (nothing changed).
//! - **freshness** ([`freshness`]): per leg, the regions whose latest data
//!   it does not hold; updated by write, copy and resume, consulted by
//!   reads, resync sources and the default leg. **ratelimit**
//!   ([`ratelimit`]): the I/O paths' log lines.
//! - **status**: TABLE = log part (`write_core_log_table`, or the C log's
//!   status) + `write_table_mirror_part(legs with dm_dev names, &features)`;
//!   INFO = `write_info_mirror_part(...)` + `write_core_log_info` (or the C
//!   log's status); IMA = `write_ima_mirror_part` + log IMA status + `;`.

pub mod freshness;
pub mod hot_regions;
pub mod io_balance;
pub mod legs;
pub mod message;
pub mod number;
pub mod policy;
pub mod ratelimit;
pub mod region_bits;
pub mod status;
pub mod table;
pub mod write_behind;
pub mod write_mostly;

#[cfg(test)]
mod kernel_constraints;

#[cfg(test)]
pub mod freshness_model;
