//! The container tier's seccomp-bpf policy and its compiler.
//!
//! An allowlist in the spirit of Docker's default profile: the syscalls an ordinary program
//! needs pass; a named deny list (kernel keyrings, bpf, perf, userfaultfd, io_uring, module
//! loading, kexec, mount, namespace creation and entry, ptrace, handle-based opens, clock
//! setting, ...) fails with EPERM; anything unknown fails with ENOSYS so that libc falls back to
//! an older call. A few syscalls are allowed only with safe arguments: `socket` (no packet, raw,
//! AF_ALG or AF_VSOCK sockets), `ioctl` (no TIOCSTI/TIOCLINUX terminal injection), `clone` (no
//! namespace flags), `personality` (only the harmless personas). `clone3` returns ENOSYS since
//! its flags live in memory a filter cannot read; libc then uses `clone`.
//!
//! Allowed syscalls without argument checks are constant for the kernel's seccomp action cache,
//! so they cost no filter run at all on Linux >= 5.11.

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

/// What a filter does with a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u16),
    KillProcess,
    KillThread,
    /// Deliver SIGSYS to the thread.
    Trap,
    /// Allow, and log through the audit subsystem.
    Log,
    /// Suspend the syscall and hand it to the supervisor listening on the filter's
    /// notification fd (seccomp user notification).
    Notify,
}

impl Action {
    fn ret(self) -> u32 {
        match self {
            Action::Allow => SECCOMP_RET_ALLOW,
            Action::Errno(e) => SECCOMP_RET_ERRNO | u32::from(e),
            Action::KillProcess => SECCOMP_RET_KILL_PROCESS,
            Action::KillThread => 0,
            Action::Trap => 0x0003_0000,
            Action::Log => 0x7ffc_0000,
            Action::Notify => 0x7fc0_0000,
        }
    }
}

/// How a 64-bit syscall argument is compared (the OCI runtime spec's `SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// One condition on one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub arg: u8,
    pub op: CmpOp,
    pub value: u64,
}

/// A rule for one syscall: when every condition holds (all of them: AND), take `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRule {
    pub conds: Vec<Cond>,
    pub action: Action,
}

/// An errno action from a libc constant (all errno values fit in 16 bits).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const fn errno(e: libc::c_int) -> Action {
    Action::Errno(e as u16)
}

/// A check on one 32-bit argument (the low half; the kernel truncates these to int).
#[derive(Debug, Clone, Copy)]
pub enum ArgRule {
    /// Allow only if `arg` is one of `values`, else `deny`.
    OneOf {
        arg: u32,
        values: &'static [u32],
        deny: Action,
    },
    /// Deny if `arg` equals any of `values`, else allow.
    NoneOf {
        arg: u32,
        values: &'static [u32],
        deny: Action,
    },
    /// Deny if `arg & mask` equals any of `values`, else allow.
    MaskedNoneOf {
        arg: u32,
        mask: u32,
        values: &'static [u32],
        deny: Action,
    },
    /// Deny if any bit of `mask` is set in `arg`, else allow.
    NoBits { arg: u32, mask: u32, deny: Action },
}

/// A whole policy: rules per syscall number, and what happens to the rest.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allow: Vec<i64>,
    pub deny: Vec<(i64, Action)>,
    pub conditional: Vec<(i64, Vec<ArgRule>)>,
    /// Syscalls decided by the first matching rule (in order); none matching means `default`.
    /// Used for profiles given in the OCI format.
    pub matched: Vec<(i64, Vec<MatchRule>)>,
    pub default: Action,
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn nr(n: i64) -> u32 {
    u32::try_from(n).expect("syscall numbers are small and positive")
}

/// Where a range of syscall numbers ends up in the compiled program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Return(u32),
    /// Jump to the argument-check block with this index.
    Block(usize),
}

const BPF_JA: u16 = 0x05; // BPF_JMP | BPF_JA

impl Policy {
    /// [`Self::compile`], as the bytes of the kernel's `struct sock_filter` array (8 bytes an
    /// instruction, native endian): what `bwrap --seccomp FD` reads, and what the microvm
    /// agent installs in the guest.
    pub fn compile_bytes(&self) -> Vec<u8> {
        let prog = self.compile();
        let mut bytes = Vec::with_capacity(prog.len() * 8);
        for ins in prog {
            bytes.extend_from_slice(&ins.code.to_ne_bytes());
            bytes.push(ins.jt);
            bytes.push(ins.jf);
            bytes.extend_from_slice(&ins.k.to_ne_bytes());
        }
        bytes
    }

    /// Compiles the policy to classic BPF for `SECCOMP_MODE_FILTER`.
    ///
    /// The syscall number is looked up in a balanced binary tree of number ranges (about nine
    /// comparisons for any syscall), and argument checks live in blocks after the tree. A short
    /// program matters twice: on every syscall the cache cannot decide, and when the filter is
    /// attached, as the kernel then evaluates it for every syscall number to fill its cache.
    pub fn compile(&self) -> Vec<libc::sock_filter> {
        let mut leaves: std::collections::BTreeMap<u32, Leaf> = std::collections::BTreeMap::new();
        for &n in &self.allow {
            leaves.insert(nr(n), Leaf::Return(SECCOMP_RET_ALLOW));
        }
        for &(n, action) in &self.deny {
            leaves.entry(nr(n)).or_insert(Leaf::Return(action.ret()));
        }
        for (i, (n, _)) in self.conditional.iter().enumerate() {
            leaves.insert(nr(*n), Leaf::Block(i));
        }
        for (i, (n, _)) in self.matched.iter().enumerate() {
            leaves.insert(nr(*n), Leaf::Block(self.conditional.len() + i));
        }
        // Ranges [start, next start) with one leaf each; gaps get the default.
        let default = Leaf::Return(self.default.ret());
        let mut ranges: Vec<(u32, Leaf)> = vec![(0, default)];
        for (&n, &leaf) in &leaves {
            if ranges.last().is_some_and(|&(start, _)| start == n) {
                ranges.pop();
            }
            if ranges.last().map(|r| r.1) != Some(leaf) {
                ranges.push((n, leaf));
            }
            if !leaves.contains_key(&(n + 1)) {
                ranges.push((n + 1, default));
            }
        }
        ranges.dedup_by(|b, a| a.1 == b.1);

        let mut p = vec![
            stmt(BPF_LD_W_ABS, OFF_ARCH),
            jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
            stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
            stmt(BPF_LD_W_ABS, OFF_NR),
            // x32 syscalls share the arch value; refuse them outright.
            jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
            stmt(BPF_RET_K, errno(libc::EPERM).ret()),
        ];
        let mut fixups = Vec::new();
        emit_tree(&ranges, &mut p, &mut fixups);
        let mut block_starts = Vec::new();
        for (_, rules) in &self.conditional {
            block_starts.push(p.len());
            for rule in rules {
                p.extend(compile_rule(rule));
            }
            p.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
        }
        for (_, rules) in &self.matched {
            block_starts.push(p.len());
            for rule in rules {
                p.extend(compile_match(rule));
            }
            p.push(stmt(BPF_RET_K, self.default.ret()));
        }
        for (pc, block) in fixups {
            p[pc].k = u32::try_from(block_starts[block] - pc - 1).expect("program is short");
        }
        p
    }
}

fn tree_size(ranges: &[(u32, Leaf)]) -> usize {
    if ranges.len() == 1 {
        return 1;
    }
    let mid = ranges.len() / 2;
    let left = tree_size(&ranges[..mid]);
    1 + usize::from(left > 255) + left + tree_size(&ranges[mid..])
}

fn emit_tree(
    ranges: &[(u32, Leaf)],
    p: &mut Vec<libc::sock_filter>,
    fixups: &mut Vec<(usize, usize)>,
) {
    if let [(_, leaf)] = ranges {
        match *leaf {
            Leaf::Return(k) => p.push(stmt(BPF_RET_K, k)),
            Leaf::Block(b) => {
                fixups.push((p.len(), b));
                p.push(stmt(BPF_JA, 0));
            }
        }
        return;
    }
    let mid = ranges.len() / 2;
    let left = tree_size(&ranges[..mid]);
    match u8::try_from(left) {
        Ok(jt) => p.push(jump(BPF_JGE_K, ranges[mid].0, jt, 0)),
        Err(_) => {
            p.push(jump(BPF_JGE_K, ranges[mid].0, 0, 1));
            p.push(stmt(BPF_JA, u32::try_from(left).expect("program is short")));
        }
    }
    emit_tree(&ranges[..mid], p, fixups);
    emit_tree(&ranges[mid..], p, fixups);
}

const BPF_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K

/// A jump whose target is patched once the rule's length is known.
#[derive(Clone, Copy)]
enum Target {
    Next,
    /// The start of the next rule (the condition failed).
    Fail,
    /// Skip this many instructions (the condition is already decided true).
    Skip(u8),
}

fn compile_match(rule: &MatchRule) -> Vec<libc::sock_filter> {
    // (instruction, jt, jf) with symbolic targets.
    let mut code: Vec<(libc::sock_filter, Target, Target)> = Vec::new();
    let lo = |c: &Cond| 16 + 8 * u32::from(c.arg);
    let hi = |c: &Cond| 20 + 8 * u32::from(c.arg);
    let plain = |ins| (ins, Target::Next, Target::Next);
    for c in &rule.conds {
        #[allow(clippy::cast_possible_truncation)]
        let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
        let ld_hi = stmt(BPF_LD_W_ABS, hi(c));
        let ld_lo = stmt(BPF_LD_W_ABS, lo(c));
        match c.op {
            CmpOp::Eq => code.extend([
                plain(ld_hi),
                (jump(BPF_JEQ_K, vhi, 0, 0), Target::Next, Target::Fail),
                plain(ld_lo),
                (jump(BPF_JEQ_K, vlo, 0, 0), Target::Next, Target::Fail),
            ]),
            CmpOp::Ne => code.extend([
                plain(ld_hi),
                (jump(BPF_JEQ_K, vhi, 0, 0), Target::Next, Target::Skip(2)),
                plain(ld_lo),
                (jump(BPF_JEQ_K, vlo, 0, 0), Target::Fail, Target::Next),
            ]),
            CmpOp::MaskedEq(mask) => {
                #[allow(clippy::cast_possible_truncation)]
                let (mhi, mlo) = ((mask >> 32) as u32, mask as u32);
                code.extend([
                    plain(ld_hi),
                    plain(stmt(BPF_AND_K, mhi)),
                    (jump(BPF_JEQ_K, vhi & mhi, 0, 0), Target::Next, Target::Fail),
                    plain(ld_lo),
                    plain(stmt(BPF_AND_K, mlo)),
                    (jump(BPF_JEQ_K, vlo & mlo, 0, 0), Target::Next, Target::Fail),
                ])
            }
            // hi > vhi decides true, hi < vhi false, equal high words compare the low words.
            CmpOp::Gt | CmpOp::Ge => code.extend([
                plain(ld_hi),
                (jump(BPF_JGT_K, vhi, 0, 0), Target::Skip(3), Target::Next),
                (jump(BPF_JEQ_K, vhi, 0, 0), Target::Next, Target::Fail),
                plain(ld_lo),
                (
                    jump(
                        if c.op == CmpOp::Gt {
                            BPF_JGT_K
                        } else {
                            BPF_JGE_K
                        },
                        vlo,
                        0,
                        0,
                    ),
                    Target::Next,
                    Target::Fail,
                ),
            ]),
            // Lt is !Ge and Le is !Gt.
            CmpOp::Lt | CmpOp::Le => code.extend([
                plain(ld_hi),
                (jump(BPF_JGT_K, vhi, 0, 0), Target::Fail, Target::Next),
                (jump(BPF_JEQ_K, vhi, 0, 0), Target::Next, Target::Skip(2)),
                plain(ld_lo),
                (
                    jump(
                        if c.op == CmpOp::Lt {
                            BPF_JGE_K
                        } else {
                            BPF_JGT_K
                        },
                        vlo,
                        0,
                        0,
                    ),
                    Target::Fail,
                    Target::Next,
                ),
            ]),
        }
    }
    code.push(plain(stmt(BPF_RET_K, rule.action.ret())));
    let end = code.len();
    code.iter()
        .enumerate()
        .map(|(pc, &(mut ins, jt, jf))| {
            let resolve = |t: Target| match t {
                Target::Next => 0,
                Target::Skip(n) => n,
                Target::Fail => u8::try_from(end - pc - 1).expect("a rule fits short jumps"),
            };
            if ins.code & 0x07 == 0x05 {
                ins.jt = resolve(jt);
                ins.jf = resolve(jf);
            }
            ins
        })
        .collect()
}

fn compile_rule(rule: &ArgRule) -> Vec<libc::sock_filter> {
    let mut out = Vec::new();
    match *rule {
        ArgRule::OneOf { arg, values, deny } => {
            out.push(stmt(BPF_LD_W_ABS, off_arg_lo(arg)));
            let n = values.len();
            for (i, &v) in values.iter().enumerate() {
                // On match jump past the remaining compares and the deny return.
                let jt = u8::try_from(n - i).expect("short value list");
                out.push(jump(BPF_JEQ_K, v, jt, 0));
            }
            out.push(stmt(BPF_RET_K, deny.ret()));
        }
        ArgRule::NoneOf { arg, values, deny } => {
            out.push(stmt(BPF_LD_W_ABS, off_arg_lo(arg)));
            deny_on_match(&mut out, values, deny);
        }
        ArgRule::MaskedNoneOf {
            arg,
            mask,
            values,
            deny,
        } => {
            out.push(stmt(BPF_LD_W_ABS, off_arg_lo(arg)));
            out.push(stmt(BPF_AND_K, mask));
            deny_on_match(&mut out, values, deny);
        }
        ArgRule::NoBits { arg, mask, deny } => {
            out.push(stmt(BPF_LD_W_ABS, off_arg_lo(arg)));
            out.push(jump(BPF_JSET_K, mask, 0, 1));
            out.push(stmt(BPF_RET_K, deny.ret()));
        }
    }
    out
}

fn deny_on_match(out: &mut Vec<libc::sock_filter>, values: &[u32], deny: Action) {
    for &v in values {
        out.push(jump(BPF_JEQ_K, v, 0, 1));
        out.push(stmt(BPF_RET_K, deny.ret()));
    }
}

const EPERM: Action = errno(libc::EPERM);

/// Syscalls the workload may make freely.
const WORKLOAD_ALLOW: &[i64] = &[
    // The hottest first: they are tested first when the action cache does not apply.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_futex,
    libc::SYS_close,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_lseek,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_clock_gettime,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_create,
    libc::SYS_epoll_create1,
    libc::SYS_select,
    libc::SYS_pselect6,
    // Files and directories.
    libc::SYS_open,
    libc::SYS_openat2,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_sendfile,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_vmsplice,
    libc::SYS_copy_file_range,
    libc::SYS_getdents,
    libc::SYS_getdents64,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rmdir,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_chown,
    libc::SYS_fchown,
    libc::SYS_lchown,
    libc::SYS_fchownat,
    libc::SYS_umask,
    libc::SYS_truncate,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_sync,
    libc::SYS_syncfs,
    libc::SYS_sync_file_range,
    libc::SYS_fadvise64,
    libc::SYS_readahead,
    libc::SYS_flock,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_pipe,
    libc::SYS_pipe2,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_utimensat,
    libc::SYS_futimesat,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    libc::SYS_inotify_init,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_close_range,
    libc::SYS_name_to_handle_at,
    libc::SYS_memfd_create,
    libc::SYS_fchmodat2,
    // Memory.
    libc::SYS_mremap,
    libc::SYS_msync,
    libc::SYS_mincore,
    libc::SYS_madvise,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_munlock,
    libc::SYS_mlockall,
    libc::SYS_munlockall,
    libc::SYS_remap_file_pages,
    libc::SYS_pkey_mprotect,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_membarrier,
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semctl,
    libc::SYS_semtimedop,
    libc::SYS_msgget,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
    libc::SYS_mq_open,
    libc::SYS_mq_unlink,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_notify,
    libc::SYS_mq_getsetattr,
    // Processes, threads, signals.
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_kill,
    libc::SYS_tkill,
    libc::SYS_tgkill,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_rt_sigsuspend,
    libc::SYS_sigaltstack,
    libc::SYS_pause,
    libc::SYS_signalfd,
    libc::SYS_signalfd4,
    libc::SYS_set_tid_address,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_futex_waitv,
    libc::SYS_rseq,
    libc::SYS_arch_prctl,
    libc::SYS_prctl,
    libc::SYS_restart_syscall,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_setparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_getattr,
    libc::SYS_sched_setattr,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_getcpu,
    libc::SYS_seccomp,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    // Identity (the kernel still checks capabilities, and there are none).
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setgroups,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_getpgid,
    libc::SYS_setpgid,
    libc::SYS_getpgrp,
    libc::SYS_getsid,
    libc::SYS_setsid,
    // Time, limits, system information.
    libc::SYS_gettimeofday,
    libc::SYS_time,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_alarm,
    libc::SYS_getitimer,
    libc::SYS_setitimer,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_delete,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_eventfd,
    libc::SYS_eventfd2,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_prlimit64,
    libc::SYS_getrusage,
    libc::SYS_times,
    libc::SYS_sysinfo,
    libc::SYS_uname,
    libc::SYS_getrandom,
    // Asynchronous I/O of the classic kind (io_uring is denied below).
    libc::SYS_io_setup,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    333, // io_pgetevents
    libc::SYS_io_submit,
    libc::SYS_io_cancel,
    // Sockets (socket and socketpair themselves are argument-checked).
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
];

/// Syscalls refused with EPERM, named so that the policy says what it stops.
const WORKLOAD_DENY: &[i64] = &[
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_settimeofday,
    libc::SYS_adjtimex,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_lookup_dcookie,
    libc::SYS_fanotify_init,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_vhangup,
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_personality,
    libc::SYS_modify_ldt,
    libc::SYS_mbind,
    libc::SYS_set_mempolicy,
    libc::SYS_get_mempolicy,
    libc::SYS_migrate_pages,
    libc::SYS_move_pages,
    libc::SYS_memfd_secret,
];

const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

const SOCKET_FAMILIES: &[u32] = &[
    libc::AF_UNIX as u32,
    libc::AF_INET as u32,
    libc::AF_INET6 as u32,
    libc::AF_NETLINK as u32,
];
const UNIX_ONLY: &[u32] = &[libc::AF_UNIX as u32];
const RAW_SOCKET_TYPES: &[u32] = &[libc::SOCK_RAW as u32, 10 /* SOCK_PACKET */];
// ioctl request numbers are 32-bit in the kernel ABI.
#[allow(clippy::cast_possible_truncation)]
const TTY_INJECTION: &[u32] = &[libc::TIOCSTI as u32, libc::TIOCLINUX as u32];
// PER_LINUX, PER_LINUX32, UNAME26 and the query value 0xffffffff.
const SAFE_PERSONAS: &[u32] = &[0x0, 0x8, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// The default policy for workloads in the container tier.
pub fn workload_policy() -> Policy {
    // personality is listed as denied for documentation but gets an argument check below.
    let mut deny: Vec<(i64, Action)> = WORKLOAD_DENY
        .iter()
        .filter(|&&n| n != libc::SYS_personality)
        .map(|&n| (n, EPERM))
        .collect();
    deny.push((libc::SYS_clone3, errno(libc::ENOSYS)));
    Policy {
        allow: WORKLOAD_ALLOW.to_vec(),
        deny,
        conditional: vec![
            (
                libc::SYS_socket,
                vec![
                    ArgRule::OneOf {
                        arg: 0,
                        values: SOCKET_FAMILIES,
                        deny: errno(libc::EAFNOSUPPORT),
                    },
                    ArgRule::MaskedNoneOf {
                        arg: 1,
                        mask: 0xf,
                        values: RAW_SOCKET_TYPES,
                        deny: EPERM,
                    },
                ],
            ),
            (
                libc::SYS_socketpair,
                vec![ArgRule::OneOf {
                    arg: 0,
                    values: UNIX_ONLY,
                    deny: errno(libc::EAFNOSUPPORT),
                }],
            ),
            (
                libc::SYS_ioctl,
                vec![ArgRule::NoneOf {
                    arg: 1,
                    values: TTY_INJECTION,
                    deny: EPERM,
                }],
            ),
            (
                libc::SYS_clone,
                vec![ArgRule::NoBits {
                    arg: 0,
                    mask: CLONE_NAMESPACE_FLAGS,
                    deny: EPERM,
                }],
            ),
            (
                libc::SYS_personality,
                vec![ArgRule::OneOf {
                    arg: 0,
                    values: SAFE_PERSONAS,
                    deny: EPERM,
                }],
            ),
        ],
        matched: Vec::new(),
        default: errno(libc::ENOSYS),
    }
}

/// The policy cordon's own in-sandbox init runs under once the workload is started: it only
/// waits for signals and children, forwards signals and reports one status. Anything else
/// kills it, which tears the sandbox down.
pub fn init_policy() -> Policy {
    Policy {
        allow: vec![
            libc::SYS_rt_sigtimedwait,
            libc::SYS_wait4,
            libc::SYS_waitid,
            libc::SYS_kill,
            libc::SYS_write,
            libc::SYS_close,
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_rt_sigreturn,
            libc::SYS_rt_sigprocmask,
            libc::SYS_restart_syscall,
            libc::SYS_munmap,
            libc::SYS_brk,
            libc::SYS_mmap,
            libc::SYS_futex,
        ],
        deny: Vec::new(),
        conditional: Vec::new(),
        matched: Vec::new(),
        default: Action::KillProcess,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter, enough to check the compiled programs' decisions.
    fn run(prog: &[libc::sock_filter], nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            match ins.code {
                BPF_LD_W_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                BPF_AND_K => acc &= ins.k,
                BPF_JA => pc += ins.k as usize,
                BPF_RET_K => return ins.k,
                BPF_JEQ_K | BPF_JGE_K | BPF_JGT_K | BPF_JSET_K => {
                    let hit = match ins.code {
                        BPF_JEQ_K => acc == ins.k,
                        BPF_JGE_K => acc >= ins.k,
                        BPF_JGT_K => acc > ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += usize::from(if hit { ins.jt } else { ins.jf });
                }
                other => panic!("unknown opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    fn n(x: i64) -> u32 {
        nr(x)
    }

    #[test]
    fn workload_decisions() {
        let prog = workload_policy().compile();
        assert!(prog.len() < 4096);
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        assert_eq!(run(&prog, n(libc::SYS_read), [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(run(&prog, n(libc::SYS_bpf), [0; 6]), eperm);
        assert_eq!(run(&prog, n(libc::SYS_mount), [0; 6]), eperm);
        assert_eq!(run(&prog, n(libc::SYS_io_uring_setup), [0; 6]), eperm);
        assert_eq!(
            run(&prog, n(libc::SYS_clone3), [0; 6]),
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run(&prog, 999, [0; 6]),
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        // socket: families and types.
        let sock = n(libc::SYS_socket);
        let inet = libc::AF_INET as u64;
        assert_eq!(
            run(&prog, sock, [inet, libc::SOCK_STREAM as u64, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(
                &prog,
                sock,
                [
                    inet,
                    (libc::SOCK_RAW | libc::SOCK_CLOEXEC) as u64,
                    0,
                    0,
                    0,
                    0
                ]
            ),
            eperm
        );
        assert_eq!(
            run(&prog, sock, [libc::AF_PACKET as u64, 3, 0, 0, 0, 0]),
            SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32
        );
        assert_eq!(
            run(&prog, sock, [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        // ioctl, clone, personality.
        let ioctl = n(libc::SYS_ioctl);
        assert_eq!(run(&prog, ioctl, [0, libc::TIOCSTI, 0, 0, 0, 0]), eperm);
        assert_eq!(
            run(&prog, ioctl, [0, libc::TCGETS, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        let clone = n(libc::SYS_clone);
        assert_eq!(
            run(&prog, clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&prog, clone, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]),
            eperm
        );
        let pers = n(libc::SYS_personality);
        assert_eq!(
            run(&prog, pers, [0xffff_ffff, 0, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(run(&prog, pers, [0x0040_0000, 0, 0, 0, 0, 0]), eperm);
        // Checks after a conditional block still see the syscall number.
        assert_eq!(run(&prog, n(libc::SYS_write), [0; 6]), SECCOMP_RET_ALLOW);
    }

    #[test]
    fn every_syscall_number_gets_its_listed_action() {
        let policy = workload_policy();
        let prog = policy.compile();
        assert!(
            prog.len() < 400,
            "tree program unexpectedly long: {}",
            prog.len()
        );
        let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        for nr_ in 0..600u32 {
            let want = if policy.allow.iter().any(|&a| nr(a) == nr_) {
                Some(SECCOMP_RET_ALLOW)
            } else if let Some((_, act)) = policy.deny.iter().find(|(d, _)| nr(*d) == nr_) {
                Some(act.ret())
            } else if policy.conditional.iter().any(|(c, _)| nr(*c) == nr_) {
                None
            } else {
                Some(enosys)
            };
            if let Some(want) = want {
                assert_eq!(run(&prog, nr_, [0; 6]), want, "syscall {nr_}");
            }
        }
    }

    #[test]
    fn matched_rules_compare_64_bit_arguments() {
        let cases: [(CmpOp, u64); 7] = [
            (CmpOp::Eq, 0x1_0000_0005),
            (CmpOp::Ne, 0x1_0000_0005),
            (CmpOp::Lt, 0x1_0000_0005),
            (CmpOp::Le, 0x1_0000_0005),
            (CmpOp::Gt, 0x1_0000_0005),
            (CmpOp::Ge, 0x1_0000_0005),
            (CmpOp::MaskedEq(0xff_0000_00ff), 0x12_0000_0034),
        ];
        let probes: [u64; 9] = [
            0,
            5,
            6,
            0x1_0000_0004,
            0x1_0000_0005,
            0x1_0000_0006,
            0x2_0000_0000,
            u64::MAX,
            0x12_ffff_ff34,
        ];
        for (op, value) in cases {
            let policy = Policy {
                allow: vec![],
                deny: vec![],
                conditional: vec![],
                matched: vec![(
                    libc::SYS_getpid,
                    vec![MatchRule {
                        conds: vec![Cond { arg: 2, op, value }],
                        action: Action::Allow,
                    }],
                )],
                default: errno(libc::EPERM),
            };
            let prog = policy.compile();
            for &x in &probes {
                let want = match op {
                    CmpOp::Eq => x == value,
                    CmpOp::Ne => x != value,
                    CmpOp::Lt => x < value,
                    CmpOp::Le => x <= value,
                    CmpOp::Gt => x > value,
                    CmpOp::Ge => x >= value,
                    CmpOp::MaskedEq(m) => x & m == value & m,
                };
                let got = run(&prog, n(libc::SYS_getpid), [0, 0, x, 0, 0, 0]) == SECCOMP_RET_ALLOW;
                assert_eq!(got, want, "{op:?} {value:#x} against {x:#x}");
            }
        }
    }

    #[test]
    fn matched_rules_are_tried_in_order_and_anded() {
        let policy = Policy {
            allow: vec![],
            deny: vec![],
            conditional: vec![],
            matched: vec![(
                libc::SYS_socket,
                vec![
                    MatchRule {
                        conds: vec![
                            Cond {
                                arg: 0,
                                op: CmpOp::Eq,
                                value: 2,
                            },
                            Cond {
                                arg: 1,
                                op: CmpOp::Eq,
                                value: 3,
                            },
                        ],
                        action: errno(libc::EACCES),
                    },
                    MatchRule {
                        conds: vec![Cond {
                            arg: 0,
                            op: CmpOp::Ne,
                            value: 40,
                        }],
                        action: Action::Allow,
                    },
                ],
            )],
            default: errno(libc::EPERM),
        };
        let prog = policy.compile();
        let s = n(libc::SYS_socket);
        assert_eq!(
            run(&prog, s, [2, 3, 0, 0, 0, 0]),
            SECCOMP_RET_ERRNO | libc::EACCES as u32
        );
        assert_eq!(run(&prog, s, [2, 1, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&prog, s, [40, 1, 0, 0, 0, 0]),
            SECCOMP_RET_ERRNO | libc::EPERM as u32
        );
        assert_eq!(
            run(&prog, n(libc::SYS_read), [0; 6]),
            SECCOMP_RET_ERRNO | libc::EPERM as u32
        );
    }

    #[test]
    fn init_policy_kills_the_rest() {
        let prog = init_policy().compile();
        assert_eq!(run(&prog, n(libc::SYS_wait4), [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&prog, n(libc::SYS_openat), [0; 6]),
            SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn allow_and_deny_lists_are_disjoint() {
        let policy = workload_policy();
        for (d, _) in &policy.deny {
            assert!(
                !policy.allow.contains(d),
                "syscall {d} both allowed and denied"
            );
        }
    }
}
