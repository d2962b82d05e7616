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
//! # Public API
//!
//! ## [`legs`]
//!
//! ```text
//! pub const MAX_LEGS: usize = 9;  pub const MIN_LEGS: usize = 2;
//! pub struct LegSet(u16);          // bit i = leg i
//!   from_bits(u16) first_n(n) single(leg) bits() contains(leg) with(leg) without(leg)
//!   intersection(set) len() is_empty() first() only_member() next_after(leg)
//!   at_or_before(leg)  // dm-raid1 choose_mirror() order
//!   iter()
//! ```
//!
//! ## [`table`]: constructor
//!
//! ```text
//! MirrorTable::parse(args: &'a [&'a str], target_len_sectors: u64)
//!     -> Result<MirrorTable<'a>, TableError<'a>>
//! MirrorTable { pub log: LogSpec<'a>, pub log_args: &'a [&'a str], pub features: Features, .. }
//!   .legs() -> &[LegSpec<'a>]   .nr_legs() -> usize   .region_count(target_len) -> u64
//! MirrorTable::new(log, legs: &[LegSpec], features) -> Option<MirrorTable>
//! enum LogSpec<'a> { Core(RegionLogParams), Disk { device: &'a str, params: RegionLogParams } }
//! struct RegionLogParams { region_size: u32, sync: SyncMode }
//! enum SyncMode { Default, Sync, NoSync }
//! struct LegSpec<'a> { device: &'a str, offset: u64 }
//! struct Features { handle_errors: bool, keep_log: bool, io_balance: IoBalanceConfig }  // Copy
//! struct IoBalanceConfig  // Copy; default_leg() weight(leg) policy() is_empty() apply(&Command)
//! enum TableError<'a>: Display (detailed text), ti_error() -> &'static CStr (dm's ti->error),
//!   is_log_error() -> bool (dm-log would have DMWARNed the Display text)
//! fn region_count(target_len: u64, region_size: u32) -> Option<u64>
//! ```
//!
//! ## [`message`]: `dmsetup message <dev> 0 io_balance ...`
//!
//! ```text
//! parse_message(args: &[&'a str], leg_names: &[&str]) -> Result<Command, MessageError<'a>>
//! enum Command { SetPolicy(PolicySpec), SetDefaultLeg(LegRef), SetWeight { leg, weight }, Show, ResetStats }
//!   .is_report() -> bool   .write_message(out, leg_names)
//! enum PolicySpec { RoundRobin { ios: u32 }, Weighted, Adaptive(AdaptiveParams) }
//! struct AdaptiveParams { tolerance_pct: Option<u16>, probe_ms: Option<u32> }
//! struct LegRef  // .index() -> usize, .is_by_name() -> bool
//! enum MessageError<'a>: Display
//! parse_io_balance_words(words, leg_names, Source::{Message, Table}) -> Result<(Command, usize), _>
//! ```
//!
//! ## [`policy`]: read balancing
//!
//! ```text
//! Balancer::new(nr_legs) / Balancer::from_config(nr_legs, &IoBalanceConfig)
//!     -> Result<Balancer, BalancerError>
//! .choose(&mut self, usable: LegSet, read: &ReadRequest) -> Option<usize>
//! .complete(&mut self, leg: usize, latency_ns: u64, ok: bool)
//! .cancel(&mut self, leg: usize)
//! .apply(&mut self, &Command, &MirrorState) -> Result<(), BalancerError>
//! .set_default_leg(&mut self, leg) -> Result<(), BalancerError>
//! .write_report(&self, out: &mut dyn fmt::Write, leg_names: &[&str], usable: LegSet, stale_regions: &[u64]) -> fmt::Result
//! .default_leg() .nr_legs() .weight(leg) .policy() -> PolicySpec .stats(leg) -> Option<&LegStats>
//! struct ReadRequest { sector: u64, nr_sectors: u32, now_ns: u64 }
//! struct MirrorState { usable: LegSet, fresh_everywhere: LegSet }
//! trait ReadPolicy; enum Policy { RoundRobin, Weighted, Adaptive }
//! ```
//!
//! ## [`status`]: byte-exact `mirror_status()`
//!
//! ```text
//! write_core_log_table(out, &RegionLogParams)           "core 1 1024 "
//! write_disk_log_table(out, log_dev, &RegionLogParams)  "disk 2 253:2 1024 "
//! write_table_mirror_part(out, legs: &[LegSpec], &Features)  "2 7:0 0 7:1 0 1 handle_errors"
//! write_table(out, &MirrorTable)
//! write_info_mirror_part(out, leg_names, health: &[LegHealth], sync_count, region_count)
//!                                                       "2 7:0 7:1 37/128 1 AA "
//! write_core_log_info(out)                              "1 core"
//! write_disk_log_info(out, log_dev, LogDeviceHealth)    "3 disk 253:2 A"
//! write_ima_mirror_part(out, [1, 15, 0], leg_names, health, &Features)
//! struct LegHealth { has_errors: bool, errors: LegErrors }  .status_char()
//! struct LegErrors  // WRITE FLUSH SYNC READ = 1 << enum dm_raid1_error
//! struct BufWriter<'b>  // fmt::Write over a byte buffer, NUL-terminated
//! ```
//!
//! ## [`write_mostly`] and [`write_behind`]: write-mostly legs (issue 13)
//!
//! ```text
//! WriteBehindConfig  // write_mostly <leg>, max_write_behind <sectors>: parse, check, print
//! Backlog<S, B>      // admit / next_ready / complete / behind(region) / stats(leg)
//! ```
//!
//! Host-tested bookkeeping; the target does not use them yet.
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
//! - **message**: `parse_message(argv, leg_names)`; on error log `Display`
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
pub mod legs;
pub mod message;
pub mod number;
pub mod policy;
pub mod ratelimit;
pub mod status;
pub mod table;
pub mod write_behind;
pub mod write_mostly;

#[cfg(test)]
mod kernel_constraints;

#[cfg(test)]
pub mod freshness_model;
