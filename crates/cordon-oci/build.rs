//! Generates the x86_64 syscall name table (for seccomp profiles given by name in OCI
//! bundles) from the kernel's UAPI header, so the numbers always match the build's headers.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    println!("cargo:rerun-if-changed={header}");
    let text = std::fs::read_to_string(header)
        .unwrap_or_else(|e| panic!("reading {header} (install linux-libc-dev): {e}"));
    let mut table = String::from("/// (name, number) of every x86_64 syscall, from the kernel's UAPI header.\npub const SYSCALLS: &[(&str, i64)] = &[\n");
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#define"), Some(name), Some(num)) = (words.next(), words.next(), words.next())
        {
            if let (Some(name), Ok(num)) = (name.strip_prefix("__NR_"), num.parse::<i64>()) {
                writeln!(table, "    ({name:?}, {num}),").unwrap();
            }
        }
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("syscalls.rs");
    std::fs::write(out, table).unwrap();
}
