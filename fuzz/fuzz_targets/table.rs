// SPDX-License-Identifier: GPL-2.0

//! Fuzzes the constructor-line parser: the first 8 bytes (little endian) are
//! the target length in sectors, the rest is split into whitespace-separated
//! words. Accepted tables must format to a line that parses back to the same
//! table, and the status writers must not fail on them.

#![no_main]

use dm_mirror_core::status::{
    write_info_mirror_part, write_table, write_table_mirror_part, LegHealth,
};
use dm_mirror_core::table::MirrorTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (len_bytes, text) = data.split_at(data.len().min(8));
    let mut len = [0u8; 8];
    len[..len_bytes.len()].copy_from_slice(len_bytes);
    let target_len = u64::from_le_bytes(len);
    let text = String::from_utf8_lossy(text);
    let words: Vec<&str> = text.split_whitespace().collect();

    let Ok(table) = MirrorTable::parse(&words, target_len) else {
        return;
    };
    let mut line = String::new();
    write_table(&mut line, &table).expect("formatting into a String cannot fail");
    let again: Vec<&str> = line.split(' ').collect();
    let reparsed = MirrorTable::parse(&again, target_len).expect("formatted table must parse");
    assert_eq!(reparsed, table, "{line}");

    let mut out = String::new();
    write_table_mirror_part(&mut out, table.legs(), &table.features).unwrap();
    let names: Vec<&str> = table.legs().iter().map(|leg| leg.device).collect();
    let health = vec![LegHealth::ALIVE; names.len()];
    write_info_mirror_part(&mut out, &names, &health, 0, table.region_count(target_len)).unwrap();
});
