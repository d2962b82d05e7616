// SPDX-License-Identifier: GPL-2.0

//! Host tests that the core still builds and behaves as kernel code must:
//! compiled as a module of a `#![no_std]` crate with the kernel's lint flags,
//! and free of constructs the kernel forbids (std/alloc, floats, `unsafe`,
//! panicking helpers, 128-bit integers, crate-root paths).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::String;
use std::vec::Vec;

fn core_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Builds `src/core` the way the kernel module includes it, with `rustc`.
fn build_as_kernel_module(rustc: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("dm-mirror-core-kcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join(format!("root-{}.rs", rustc.replace('/', "_")));
    let lib = core_dir().join("lib.rs");
    std::fs::write(
        &root,
        format!(
            "//! Kernel-like crate root.\n#![no_std]\n#[path = {:?}]\npub mod mcore;\n",
            lib
        ),
    )
    .unwrap();
    let output = Command::new(rustc)
        .args([
            "--edition=2021",
            "--crate-type=rlib",
            "--emit=metadata",
            "--crate-name=kcheck",
        ])
        .args(["-Coverflow-checks=on", "-Cpanic=abort"])
        // The kernel's rust_common_flags lints, as errors (CONFIG_WERROR).
        .args([
            "-Dwarnings",
            "-Dnon_ascii_idents",
            "-Dunsafe_op_in_unsafe_fn",
        ])
        .args(["-Wmissing_docs", "-Wrust_2018_idioms", "-Wunreachable_pub"])
        .arg("-o")
        .arg(dir.join("kcheck.rmeta"))
        .arg(&root)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|error| format!("cannot run {rustc}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn builds_as_no_std_module_with_kernel_lints() {
    build_as_kernel_module("rustc").unwrap_or_else(|error| panic!("{error}"));
}

/// The kernel build uses a distribution rustc (`/usr/bin/rustc`, 1.96 on
/// the project's machines); check with it too when it is there, or with
/// `$DMMR_KERNEL_RUSTC`.
#[test]
fn builds_with_the_kernel_rustc_if_present() {
    let rustc =
        std::env::var("DMMR_KERNEL_RUSTC").unwrap_or_else(|_| String::from("/usr/bin/rustc"));
    if !Path::new(&rustc).exists() {
        return;
    }
    build_as_kernel_module(&rustc).unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn no_forbidden_constructs_outside_tests() {
    const FORBIDDEN: &[&str] = &[
        "std::",
        "alloc::",
        "extern crate",
        "f32",
        "f64",
        "unsafe",
        ".unwrap()",
        ".expect(",
        "panic!",
        "unreachable!",
        "todo!",
        "unimplemented!",
        "assert",
        "u128",
        "i128",
        "Box<",
        "Vec<",
        "String",
        "format!",
        "#![",
        "crate::",
        "mod core",
        "fn core",
        "Rc<",
        "Arc<",
        "thread_local",
        "static mut",
    ];
    let mut files = Vec::new();
    sources(&core_dir(), &mut files);
    assert!(files.len() >= 10);
    let mut problems = Vec::new();
    for file in files {
        if file.ends_with("kernel_constraints.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Test modules come last in every file.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (number, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for pattern in FORBIDDEN {
                if line.contains(pattern) {
                    problems.push(format!(
                        "{}:{}: {pattern}: {line}",
                        file.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn lib_rs_has_only_modules_and_docs() {
    let text = std::fs::read_to_string(core_dir().join("lib.rs")).unwrap();
    for line in text.lines() {
        let line = line.trim();
        let ok = line.is_empty()
            || line.starts_with("//")
            || (line.starts_with("pub mod ") && line.ends_with(';'))
            || line == "#[cfg(test)]"
            || line == "mod kernel_constraints;";
        assert!(ok, "unexpected line in lib.rs: {line}");
    }
}
