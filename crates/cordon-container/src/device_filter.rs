//! Device access rules on cgroup v2: the v2 hierarchy has no `devices` controller, so the
//! rules become an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the
//! sandbox's group. The kernel runs it on every open/mknod of a device node by a member of the
//! group; it returns 1 to allow and 0 to deny.
//!
//! Semantics (those of v1's `devices.allow`/`devices.deny` and of the OCI runtime spec):
//! everything is denied, then the rules apply in order and the **last** rule that matches the
//! request decides. A rule matches when its type is `a` or equals the device's, its major and
//! minor are wildcards or equal, and the requested access (r, w, m) is a subset of the rule's.
//! The program tests the rules from last to first and returns at the first match.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::config::DeviceRule;
use crate::sys;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes used here (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: r1 holds the context on entry; r0 the return value.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const SCRATCH: u8 = 6;

// struct bpf_cgroup_dev_ctx: access_type (device type in the low 16 bits, access in the
// high 16), major, minor.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1; // BPF_DEVCG_ACC_MKNOD
const ACC_READ: i32 = 2; // BPF_DEVCG_ACC_READ
const ACC_WRITE: i32 = 4; // BPF_DEVCG_ACC_WRITE

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// Why a rule set cannot become a program.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error("device rule type {0:?} is not one of a, b, c")]
    Kind(char),
    #[error("device rule access {0:?} has letters other than r, w, m")]
    Access(String),
    #[error("device number {0} does not fit the program's 32-bit immediate")]
    Number(u32),
    #[error("too many device rules ({0})")]
    TooMany(usize),
    #[error("loading the device program: {0}")]
    Load(#[source] io::Error),
    #[error("attaching the device program to the cgroup")]
    Attach(#[source] io::Error),
}

fn access_bits(access: &str) -> Result<i32, DeviceFilterError> {
    access.chars().try_fold(0, |acc, c| match c {
        'r' => Ok(acc | ACC_READ),
        'w' => Ok(acc | ACC_WRITE),
        'm' => Ok(acc | ACC_MKNOD),
        _ => Err(DeviceFilterError::Access(access.to_string())),
    })
}

fn imm(n: u32) -> Result<i32, DeviceFilterError> {
    i32::try_from(n).map_err(|_| DeviceFilterError::Number(n))
}

/// Compiles `rules` (in the order v1 would apply them, after an implicit deny of everything).
pub fn compile(rules: &[DeviceRule]) -> Result<Vec<Insn>, DeviceFilterError> {
    // One block per rule, last rule first: its tests are conditional jumps past the end of the
    // block (offsets fixed once the block is complete), then the verdict.
    let mut blocks: Vec<Vec<Insn>> = Vec::with_capacity(rules.len());
    for rule in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        match rule.kind {
            'a' => {}
            'b' => block.push(insn(JMP_JNE_K, TYPE, 0, 0, DEV_BLOCK)),
            'c' => block.push(insn(JMP_JNE_K, TYPE, 0, 0, DEV_CHAR)),
            other => return Err(DeviceFilterError::Kind(other)),
        }
        let allowed = access_bits(&rule.access)?;
        if allowed & 7 != 7 {
            // (requested & !allowed) != 0: the request wants something the rule does not cover.
            block.push(insn(ALU32_MOV_X, SCRATCH, ACCESS, 0, 0));
            block.push(insn(ALU32_AND_K, SCRATCH, 0, 0, !allowed));
            block.push(insn(JMP_JNE_K, SCRATCH, 0, 0, 0));
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, MAJOR, 0, 0, imm(major)?));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, MINOR, 0, 0, imm(minor)?));
        }
        block.push(insn(ALU64_MOV_K, R0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        // Every conditional jump goes to the instruction after this block.
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K {
                ins.off = i16::try_from(len - i - 1)
                    .map_err(|_| DeviceFilterError::TooMany(rules.len()))?;
            }
        }
        blocks.push(block);
    }
    let mut prog = vec![
        insn(LDX_MEM_W, TYPE, R1, CTX_ACCESS_TYPE, 0),
        insn(ALU32_AND_K, TYPE, 0, 0, 0xffff),
        insn(LDX_MEM_W, ACCESS, R1, CTX_ACCESS_TYPE, 0),
        insn(ALU32_RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, R1, CTX_MAJOR, 0),
        insn(LDX_MEM_W, MINOR, R1, CTX_MINOR, 0),
    ];
    for b in blocks {
        prog.extend(b);
    }
    // No rule matched: deny.
    prog.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    if prog.len() > 4096 {
        return Err(DeviceFilterError::TooMany(rules.len()));
    }
    Ok(prog)
}

/// Compiles `rules`, loads the program and attaches it to the cgroup2 directory `cgroup`
/// (`BPF_F_ALLOW_MULTI`, so programs of the parents keep applying too). The attachment lives
/// as long as the cgroup; the program fd is not needed afterwards.
pub fn attach(cgroup: BorrowedFd<'_>, rules: &[DeviceRule]) -> Result<(), DeviceFilterError> {
    let prog = compile(rules)?;
    let fd: OwnedFd = sys::bpf_load_cgroup_device(&prog).map_err(DeviceFilterError::Load)?;
    sys::bpf_attach_cgroup_device(cgroup, fd.as_fd()).map_err(DeviceFilterError::Attach)
}

/// An interpreter for the programs [`compile`] emits, so the rules' semantics are testable
/// without the kernel.
#[cfg(test)]
fn run(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
    let ctx = [(access << 16 | kind).cast_unsigned(), major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = (usize::from(i.regs & 0x0f), usize::from(i.regs >> 4));
        pc += 1;
        match i.code {
            LDX_MEM_W => {
                assert_eq!(src, usize::from(R1));
                r[dst] = u64::from(ctx[usize::try_from(i.off / 4).unwrap()]);
            }
            ALU32_MOV_X => r[dst] = r[src] & 0xffff_ffff,
            ALU32_AND_K => r[dst] = (r[dst] & u64::from(i.imm.cast_unsigned())) & 0xffff_ffff,
            ALU32_RSH_K => r[dst] = (r[dst] & 0xffff_ffff) >> i.imm,
            ALU64_MOV_K => r[dst] = i64::from(i.imm).cast_unsigned(),
            JMP_JNE_K => {
                if r[dst] != i64::from(i.imm).cast_unsigned() {
                    pc += usize::try_from(i.off).unwrap();
                }
            }
            JMP_EXIT => return r[0],
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<u32>,
        minor: Option<u32>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.to_string(),
        }
    }

    #[test]
    fn nothing_is_allowed_without_rules() {
        let p = compile(&[]).unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn last_matching_rule_wins() {
        let rules = [
            rule(true, 'a', None, None, "rwm"),
            rule(false, 'c', Some(1), Some(5), "rwm"),
            rule(true, 'c', Some(1), None, "r"),
        ];
        let p = compile(&rules).unwrap();
        // /dev/zero: denied by the second rule for writes, allowed again for reads by the third.
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 5), 0);
        // Anything else: the first rule.
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 1);
    }

    #[test]
    fn access_must_be_a_subset_and_types_must_match() {
        let p = compile(&[rule(true, 'c', Some(136), None, "rw")]).unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 4), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 136, 4), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 136, 4), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 137, 4), 0);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(matches!(
            compile(&[rule(true, 'x', None, None, "r")]),
            Err(DeviceFilterError::Kind('x'))
        ));
        assert!(matches!(
            compile(&[rule(true, 'c', None, None, "rq")]),
            Err(DeviceFilterError::Access(_))
        ));
        assert!(matches!(
            compile(&[rule(true, 'c', Some(u32::MAX), None, "r")]),
            Err(DeviceFilterError::Number(_))
        ));
    }
}
