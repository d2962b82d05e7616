// SPDX-License-Identifier: GPL-2.0

//! Status output, byte-exact with dm-raid1's `mirror_status()` and dm-log's
//! `core_status()`/`disk_status()` (Linux 7.3).
//!
//! `STATUSTYPE_TABLE` is the log part followed by the mirror part:
//!
//! ```text
//! core 1 1024 2 7:0 0 7:1 0 1 handle_errors
//! `--log part-^`-------- mirror part -------'
//! ```
//!
//! The log part ends with a space ([`write_core_log_table`],
//! [`write_disk_log_table`]); the mirror part ([`write_table_mirror_part`])
//! prints features only if there are any, and `io_balance` words only if the
//! table had them.
//!
//! `STATUSTYPE_INFO` is the mirror part followed by the log part:
//!
//! ```text
//! 2 7:0 7:1 37/128 1 AA 1 core
//! 3 7:0 7:1 7:2 128/128 1 AAD 3 disk 253:2 A
//! ```
//!
//! [`write_info_mirror_part`] ends with a space; [`write_core_log_info`] and
//! [`write_disk_log_info`] append the log part. A kernel using a C dirty
//! log prints the log part with the log's own `status` method instead.

use core::fmt::{self, Write};

use super::legs::MAX_LEGS;
use super::table::{Features, LegSpec, LogSpec, MirrorTable, RegionLogParams};

/// The kinds of error dm-raid1 records per leg (`enum dm_raid1_error`).
// INVARIANT: only the four `LegErrors::*` bits are ever set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LegErrors(u8);

impl LegErrors {
    /// No error recorded.
    pub const NONE: LegErrors = LegErrors(0);
    /// `DM_RAID1_WRITE_ERROR`: a write failed, the leg is out of sync (`D`).
    pub const WRITE: LegErrors = LegErrors(1 << 0);
    /// `DM_RAID1_FLUSH_ERROR`: a flush failed (`F`).
    pub const FLUSH: LegErrors = LegErrors(1 << 1);
    /// `DM_RAID1_SYNC_ERROR`: resynchronisation failed (`S`).
    pub const SYNC: LegErrors = LegErrors(1 << 2);
    /// `DM_RAID1_READ_ERROR`: a read failed, data unaffected (`R`).
    pub const READ: LegErrors = LegErrors(1 << 3);

    const ALL_BITS: u8 = 0b1111;

    /// Builds from raw bits (`1 << enum dm_raid1_error`); unknown bits are
    /// dropped.
    pub const fn from_bits(bits: u8) -> LegErrors {
        LegErrors(bits & Self::ALL_BITS)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Both sets of errors.
    #[must_use]
    pub const fn union(self, other: LegErrors) -> LegErrors {
        LegErrors(self.0 | other.0)
    }

    /// Whether every error in `other` is recorded.
    pub const fn contains(self, other: LegErrors) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What the status needs to know about one leg's health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LegHealth {
    /// The leg's `error_count` is non-zero.
    pub has_errors: bool,
    /// The kinds of error recorded.
    pub errors: LegErrors,
}

impl LegHealth {
    /// A leg without errors.
    pub const ALIVE: LegHealth = LegHealth {
        has_errors: false,
        errors: LegErrors::NONE,
    };

    /// A failed leg with the given kinds of error.
    pub const fn failed(errors: LegErrors) -> LegHealth {
        LegHealth {
            has_errors: true,
            errors,
        }
    }

    /// dm-raid1's `device_status_char()`: `A` (alive) without errors, else
    /// the first of `F` (flush), `D` (write), `S` (sync), `R` (read)
    /// recorded, else `U` (unknown).
    pub fn status_char(&self) -> char {
        if !self.has_errors {
            'A'
        } else if self.errors.contains(LegErrors::FLUSH) {
            'F'
        } else if self.errors.contains(LegErrors::WRITE) {
            'D'
        } else if self.errors.contains(LegErrors::SYNC) {
            'S'
        } else if self.errors.contains(LegErrors::READ) {
            'R'
        } else {
            'U'
        }
    }
}

/// Health of a `disk` log's device, as `disk_status()` prints it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogDeviceHealth {
    /// `A`: working.
    #[default]
    Alive,
    /// `D`: an I/O to the log device failed.
    Failed,
    /// `F`: a flush of the log device failed (takes precedence).
    FlushFailed,
}

impl LogDeviceHealth {
    /// The status character.
    pub fn status_char(self) -> char {
        match self {
            LogDeviceHealth::Alive => 'A',
            LogDeviceHealth::Failed => 'D',
            LogDeviceHealth::FlushFailed => 'F',
        }
    }
}

fn write_region_log_params(out: &mut dyn Write, params: &RegionLogParams) -> fmt::Result {
    write!(out, "{} ", params.region_size)?;
    if let Some(word) = params.sync.word() {
        write!(out, "{word} ")?;
    }
    Ok(())
}

/// `core_status(STATUSTYPE_TABLE)`: `core <1|2> <region_size> [sync|nosync] `
/// (note the trailing space).
pub fn write_core_log_table(out: &mut dyn Write, params: &RegionLogParams) -> fmt::Result {
    let argc = if params.sync.word().is_some() { 2 } else { 1 };
    write!(out, "core {argc} ")?;
    write_region_log_params(out, params)
}

/// `disk_status(STATUSTYPE_TABLE)`:
/// `disk <2|3> <log_dev> <region_size> [sync|nosync] ` (trailing space).
pub fn write_disk_log_table(
    out: &mut dyn Write,
    log_device: &str,
    params: &RegionLogParams,
) -> fmt::Result {
    let argc = if params.sync.word().is_some() { 3 } else { 2 };
    write!(out, "disk {argc} {log_device} ")?;
    write_region_log_params(out, params)
}

/// The log part of `STATUSTYPE_TABLE` for either log type; for `disk` the
/// device is printed as given in `log` (pass the `dm_dev` name there).
pub fn write_log_table(out: &mut dyn Write, log: &LogSpec<'_>) -> fmt::Result {
    match log {
        LogSpec::Core(params) => write_core_log_table(out, params),
        LogSpec::Disk { device, params } => write_disk_log_table(out, device, params),
    }
}

/// `core_status(STATUSTYPE_INFO)`: `1 core`.
pub fn write_core_log_info(out: &mut dyn Write) -> fmt::Result {
    out.write_str("1 core")
}

/// `disk_status(STATUSTYPE_INFO)`: `3 disk <log_dev> <A|D|F>`.
pub fn write_disk_log_info(
    out: &mut dyn Write,
    log_device: &str,
    health: LogDeviceHealth,
) -> fmt::Result {
    write!(out, "3 disk {log_device} {}", health.status_char())
}

/// The mirror part of `STATUSTYPE_TABLE`:
/// `<#legs> {<dev> <offset>}... [<#features> <features>...]`, no trailing
/// space. `legs` carries the `dm_dev` names; `io_balance` words refer to
/// legs given by name through these names.
pub fn write_table_mirror_part(
    out: &mut dyn Write,
    legs: &[LegSpec<'_>],
    features: &Features,
) -> fmt::Result {
    write!(out, "{}", legs.len())?;
    let mut names = [""; MAX_LEGS];
    for (name, leg) in names.iter_mut().zip(legs) {
        write!(out, " {} {}", leg.device, leg.offset)?;
        *name = leg.device;
    }
    let count = features.word_count();
    if count != 0 {
        write!(out, " {count}")?;
        if features.handle_errors {
            out.write_str(" handle_errors")?;
        }
        if features.keep_log {
            out.write_str(" keep_log")?;
        }
        let names = names.get(..legs.len()).unwrap_or(&[]);
        features.io_balance.write_words(out, names)?;
        features.write_behind.write_words(out, names)?;
    }
    Ok(())
}

/// The whole `STATUSTYPE_TABLE` line for `table`: parsing the output gives
/// `table` back (up to `log_args`).
pub fn write_table(out: &mut dyn Write, table: &MirrorTable<'_>) -> fmt::Result {
    write_log_table(out, &table.log)?;
    write_table_mirror_part(out, table.legs(), &table.features)
}

/// The mirror part of `STATUSTYPE_INFO`:
/// `<#legs> <dev>... <in_sync>/<regions> 1 <health chars> ` (trailing
/// space). `leg_names` and `health` must have the same length, at most
/// [`MAX_LEGS`]; otherwise `Err` is returned.
pub fn write_info_mirror_part(
    out: &mut dyn Write,
    leg_names: &[&str],
    health: &[LegHealth],
    sync_count: u64,
    region_count: u64,
) -> fmt::Result {
    if leg_names.len() != health.len() || leg_names.len() > MAX_LEGS {
        return Err(fmt::Error);
    }
    write!(out, "{} ", leg_names.len())?;
    for name in leg_names {
        write!(out, "{name} ")?;
    }
    write!(out, "{sync_count}/{region_count} 1 ")?;
    for leg in health {
        out.write_char(leg.status_char())?;
    }
    out.write_char(' ')
}

/// The mirror part of `STATUSTYPE_IMA` (dm-raid1 1.15.0), from
/// `target_name=` up to and including `,log_type_status=`; the caller
/// appends the log's IMA status (empty for `core` and `disk`) and `;`.
pub fn write_ima_mirror_part(
    out: &mut dyn Write,
    version: [u32; 3],
    leg_names: &[&str],
    health: &[LegHealth],
    features: &Features,
) -> fmt::Result {
    if leg_names.len() != health.len() || leg_names.len() > MAX_LEGS {
        return Err(fmt::Error);
    }
    let [major, minor, patch] = version;
    write!(
        out,
        "target_name=mirror,target_version={major}.{minor}.{patch},nr_mirrors={}",
        leg_names.len()
    )?;
    for (index, (name, leg)) in leg_names.iter().zip(health).enumerate() {
        write!(out, ",mirror_device_{index}={name}")?;
        write!(out, ",mirror_device_{index}_status={}", leg.status_char())?;
    }
    let yes_no = |flag: bool| if flag { 'y' } else { 'n' };
    write!(
        out,
        ",handle_errors={},keep_log={},log_type_status=",
        yes_no(features.handle_errors),
        yes_no(features.keep_log)
    )
}

/// A `core::fmt::Write` sink over a byte buffer, for callers that have a
/// plain buffer (like dm's `result`/`maxlen`). Keeps the text
/// NUL-terminated after every write.
///
/// Like `DMEMIT` (`scnprintf`), a write that does not fit copies what fits
/// and fills the buffer, so dm's `dm_message_test_buffer_overflow()`
/// (`strlen(result) + 1 >= maxlen`) sees it is full and sets
/// `DM_BUFFER_FULL_FLAG`, and dmsetup retries with a larger buffer; the
/// write then returns `Err` and [`BufWriter::overflowed`] is true.
// INVARIANT: if `buf` is non-empty, `len < buf.len()` and `buf[len] == 0`.
#[derive(Debug)]
pub struct BufWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'b> BufWriter<'b> {
    /// Wraps `buf` (its first byte becomes NUL); an empty buffer takes only
    /// empty writes.
    pub fn new(buf: &'b mut [u8]) -> BufWriter<'b> {
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        BufWriter {
            buf,
            len: 0,
            overflowed: false,
        }
    }

    /// Bytes written so far (without the NUL).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some write did not fit (the text is truncated).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The unwritten rest of the buffer (the NUL's byte included), for a C
    /// function that writes a NUL-terminated string there, like a dirty
    /// log's status method; then call [`BufWriter::take_nul_terminated`].
    pub fn spare(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.len..).unwrap_or(&mut [])
    }

    /// Takes what was written into [`BufWriter::spare`] up to its first NUL.
    /// Without a NUL (the writer filled the rest), the text is cut to keep
    /// the last byte a NUL, and counts as overflowed.
    pub fn take_nul_terminated(&mut self) {
        let spare = self.buf.get(self.len..).unwrap_or(&[]);
        match spare.iter().position(|&byte| byte == 0) {
            Some(written) => self.len = self.len.saturating_add(written),
            None => {
                self.overflowed = true;
                self.len = self.buf.len().saturating_sub(1);
                if let Some(nul) = self.buf.get_mut(self.len) {
                    *nul = 0;
                }
            }
        }
    }
}

impl Write for BufWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Room for text, keeping one byte for the NUL.
        let room = self.buf.len().saturating_sub(1).saturating_sub(self.len);
        let (fits, result) = if text.len() <= room {
            (text.len(), Ok(()))
        } else {
            self.overflowed = true;
            (room, Err(fmt::Error))
        };
        let end = self.len.saturating_add(fits);
        if let (Some(dest), Some(src)) =
            (self.buf.get_mut(self.len..end), text.as_bytes().get(..fits))
        {
            dest.copy_from_slice(src);
            self.len = end;
        }
        if let Some(nul) = self.buf.get_mut(self.len) {
            *nul = 0;
        }
        result
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    use super::super::io_balance::{AdaptiveParams, Command, PolicySpec};
    use super::super::legs::LegRef;
    use super::super::table::{IoBalanceConfig, SyncMode};
    use super::*;

    /// What `out` holds so far (up to the last whole character, if a
    /// truncated write split one).
    fn written<'b>(out: &'b BufWriter<'_>) -> &'b str {
        let bytes = &out.buf[..out.len];
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap(),
        }
    }
    use std::string::String;

    fn core_log(region_size: u32, sync: SyncMode) -> RegionLogParams {
        RegionLogParams { region_size, sync }
    }

    fn legs2() -> [LegSpec<'static>; 2] {
        [
            LegSpec {
                device: "7:0",
                offset: 0,
            },
            LegSpec {
                device: "7:1",
                offset: 0,
            },
        ]
    }

    fn text(write: impl FnOnce(&mut String) -> fmt::Result) -> String {
        let mut out = String::new();
        write(&mut out).unwrap();
        out
    }

    #[test]
    fn table_status_is_byte_exact() {
        let features = Features {
            handle_errors: true,
            ..Features::default()
        };
        let line = text(|out| {
            write_core_log_table(out, &core_log(1024, SyncMode::Default))?;
            write_table_mirror_part(out, &legs2(), &features)
        });
        assert_eq!(line, "core 1 1024 2 7:0 0 7:1 0 1 handle_errors");

        let line = text(|out| {
            write_core_log_table(out, &core_log(1024, SyncMode::NoSync))?;
            write_table_mirror_part(out, &legs2(), &Features::default())
        });
        assert_eq!(line, "core 2 1024 nosync 2 7:0 0 7:1 0");

        let features = Features {
            handle_errors: true,
            keep_log: true,
            ..Features::default()
        };
        let line = text(|out| {
            write_disk_log_table(out, "253:2", &core_log(8, SyncMode::Sync))?;
            write_table_mirror_part(out, &legs2(), &features)
        });
        assert_eq!(
            line,
            "disk 3 253:2 8 sync 2 7:0 0 7:1 0 2 handle_errors keep_log"
        );

        assert_eq!(
            text(|out| write_disk_log_table(out, "253:2", &core_log(1024, SyncMode::Default))),
            "disk 2 253:2 1024 "
        );
        assert_eq!(
            text(|out| write_core_log_table(out, &core_log(2, SyncMode::Sync))),
            "core 2 2 sync "
        );
    }

    #[test]
    fn table_status_prints_io_balance_only_when_given() {
        let mut features = Features::default();
        let plain = text(|out| write_table_mirror_part(out, &legs2(), &features));
        assert_eq!(plain, "2 7:0 0 7:1 0");

        let mut io_balance = IoBalanceConfig::default();
        io_balance.apply(&Command::SetDefaultLeg(LegRef::by_name(1).unwrap()));
        io_balance.apply(&Command::SetPolicy(PolicySpec::Adaptive(AdaptiveParams {
            tolerance_pct: Some(10),
            probe_ms: None,
        })));
        features.io_balance = io_balance;
        features.handle_errors = true;
        let line = text(|out| write_table_mirror_part(out, &legs2(), &features));
        assert_eq!(
            line,
            "2 7:0 0 7:1 0 8 handle_errors io_balance default 7:1 io_balance adaptive tolerance 10"
        );
    }

    #[test]
    fn info_status_is_byte_exact() {
        let line = text(|out| {
            write_info_mirror_part(out, &["7:0", "7:1"], &[LegHealth::ALIVE; 2], 37, 128)?;
            write_core_log_info(out)
        });
        assert_eq!(line, "2 7:0 7:1 37/128 1 AA 1 core");

        let health = [
            LegHealth::ALIVE,
            LegHealth::failed(LegErrors::READ),
            LegHealth::failed(LegErrors::WRITE.union(LegErrors::READ)),
        ];
        let line = text(|out| {
            write_info_mirror_part(out, &["7:0", "7:1", "7:2"], &health, 128, 128)?;
            write_disk_log_info(out, "253:2", LogDeviceHealth::Alive)
        });
        assert_eq!(line, "3 7:0 7:1 7:2 128/128 1 ARD 3 disk 253:2 A");

        assert!(write_info_mirror_part(&mut String::new(), &["7:0"], &[], 0, 0).is_err());
    }

    #[test]
    fn health_chars_follow_device_status_char() {
        let failed = |bits| LegHealth::failed(LegErrors::from_bits(bits)).status_char();
        assert_eq!(LegHealth::ALIVE.status_char(), 'A');
        // Errors recorded but error_count 0 still prints 'A' (as upstream).
        let stale = LegHealth {
            has_errors: false,
            errors: LegErrors::WRITE,
        };
        assert_eq!(stale.status_char(), 'A');
        assert_eq!(failed(0), 'U');
        assert_eq!(failed(0b1111), 'F');
        assert_eq!(
            failed(LegErrors::WRITE.bits() | LegErrors::SYNC.bits()),
            'D'
        );
        assert_eq!(failed(LegErrors::SYNC.bits() | LegErrors::READ.bits()), 'S');
        assert_eq!(failed(LegErrors::READ.bits()), 'R');
        assert_eq!(LegErrors::from_bits(0xff).bits(), 0b1111);
        assert_eq!(LogDeviceHealth::Failed.status_char(), 'D');
        assert_eq!(LogDeviceHealth::FlushFailed.status_char(), 'F');
    }

    #[test]
    fn ima_status() {
        let features = Features {
            handle_errors: true,
            ..Features::default()
        };
        let health = [LegHealth::ALIVE, LegHealth::failed(LegErrors::FLUSH)];
        let line = text(|out| {
            write_ima_mirror_part(out, [1, 15, 0], &["7:0", "7:1"], &health, &features)?;
            out.write_char(';')
        });
        assert_eq!(
            line,
            "target_name=mirror,target_version=1.15.0,nr_mirrors=2,\
             mirror_device_0=7:0,mirror_device_0_status=A,\
             mirror_device_1=7:1,mirror_device_1_status=F,\
             handle_errors=y,keep_log=n,log_type_status=;"
        );
    }

    #[test]
    fn buf_writer_keeps_a_nul_and_fills_on_overflow() {
        let mut buf = [0xffu8; 8];
        let mut out = BufWriter::new(&mut buf);
        assert!(out.is_empty());
        out.write_str("1 core").unwrap();
        assert_eq!(written(&out), "1 core");
        out.write_str("x").unwrap();
        assert!(!out.overflowed());
        assert!(out.write_str("yz").is_err());
        assert!(out.overflowed());
        assert_eq!(out.len(), 7);
        assert_eq!(&buf, b"1 corex\0");

        // Full like scnprintf leaves it: strlen + 1 == maxlen.
        let mut buf = [0xffu8; 6];
        let mut out = BufWriter::new(&mut buf);
        assert!(write!(out, "leg 0 253:3").is_err());
        assert_eq!(written(&out), "leg 0");
        assert_eq!(&buf, b"leg 0\0");

        // A split character is not returned by as_str.
        let mut buf = [0u8; 4];
        let mut out = BufWriter::new(&mut buf);
        assert!(out.write_str("aé€").is_err());
        assert_eq!(out.len(), 3);
        assert_eq!(written(&out), "aé");
        let mut buf = [0u8; 3];
        let mut out = BufWriter::new(&mut buf);
        assert!(out.write_str("€").is_err());
        assert_eq!(written(&out), "");

        assert!(BufWriter::new(&mut []).write_str("").is_ok());
        assert!(BufWriter::new(&mut []).write_str("x").is_err());
    }

    /// What a C status method (`scnprintf` into `spare`) does to the
    /// writer: the text up to its NUL is kept; one that filled the rest
    /// without a NUL is cut, the last byte kept NUL.
    #[test]
    fn buf_writer_takes_what_c_wrote_into_the_spare_bytes() {
        let mut buf = [0xffu8; 12];
        let mut out = BufWriter::new(&mut buf);
        out.write_str("2 ").unwrap();
        let spare = out.spare();
        assert_eq!(spare.len(), 10);
        spare[..7].copy_from_slice(b"1 core\0");
        out.take_nul_terminated();
        assert_eq!(written(&out), "2 1 core");
        assert!(!out.overflowed());
        out.write_str(" x").unwrap();
        assert_eq!(written(&out), "2 1 core x");

        // Nothing written: an empty string stays.
        let mut buf = [0u8; 4];
        let mut out = BufWriter::new(&mut buf);
        out.take_nul_terminated();
        assert_eq!(written(&out), "");

        // No NUL in the spare bytes: cut to keep the NUL.
        let mut buf = [0u8; 6];
        let mut out = BufWriter::new(&mut buf);
        out.write_str("a").unwrap();
        out.spare().copy_from_slice(b"bcdef");
        out.take_nul_terminated();
        assert!(out.overflowed());
        assert_eq!(written(&out), "abcde");
        assert_eq!(&buf, b"abcde\0");

        let mut empty: [u8; 0] = [];
        let mut out = BufWriter::new(&mut empty);
        assert!(out.spare().is_empty());
        out.take_nul_terminated();
        assert_eq!(written(&out), "");
    }
}
