//! `cgroup::set_frozen` and `is_frozen` (the OCI front's `pause` and `resume`) on both cgroup
//! versions: a shell counting into a file stops counting while its group is frozen and goes on
//! once thawed. v2 through `cgroup.freeze` (on a hybrid host, the cgroup2 mount at
//! /sys/fs/cgroup/unified), v1 through a freezer group created beside the memory group.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cordon_container::cgroup;
use cordon_testkit::{cgroup2_mount, require_root};

/// A shell that writes an increasing count to a file, in the cgroup `dir`; killed on drop.
struct Counter {
    child: Child,
    file: PathBuf,
}

impl Counter {
    fn start(dir: &Path, tag: &str) -> Counter {
        let file = std::env::temp_dir().join(format!("cordon-freeze-{tag}-{}", std::process::id()));
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "i=0; while :; do i=$((i+1)); echo $i > {}; sleep 0.01; done",
                file.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sh");
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).expect("joining the cgroup");
        let c = Counter { child, file };
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.count() == 0 {
            assert!(Instant::now() < deadline, "the counter never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        c
    }

    fn count(&self) -> u64 {
        fs::read_to_string(&self.file)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Whether the count grows within `window` (a frozen group's does not; a running one's
    /// does within milliseconds, so a busy host only delays the answer).
    fn advances(&self, window: Duration) -> bool {
        let before = self.count();
        let deadline = Instant::now() + window;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            if self.count() > before {
                return true;
            }
        }
        false
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.file);
    }
}

fn wait_frozen(dirs: &[PathBuf], want: bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while cgroup::is_frozen(dirs) != want {
        assert!(
            Instant::now() < deadline,
            "{dirs:?} never became frozen={want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn freeze_and_thaw_on_cgroup_v2() {
    require_root!();
    let root = match cgroup2_mount() {
        Ok(root) => root,
        Err(why) => {
            eprintln!("SKIPPED: {}: {why}", module_path!());
            return;
        }
    };
    let dir = root.join(format!("cordon-freeze-test-{}", std::process::id()));
    fs::create_dir(&dir).unwrap();
    let _leftovers = Leftovers(vec![dir.clone()]);
    let dirs = vec![dir.clone()];
    {
        let counter = Counter::start(&dir, "v2");
        assert_eq!(
            cgroup::set_frozen(Path::new("/sys/fs/cgroup"), &dirs, true).unwrap(),
            None
        );
        wait_frozen(&dirs, true);
        assert!(
            !counter.advances(Duration::from_millis(300)),
            "the counter ran while frozen (v2)"
        );
        cgroup::set_frozen(Path::new("/sys/fs/cgroup"), &dirs, false).unwrap();
        wait_frozen(&dirs, false);
        assert!(
            counter.advances(Duration::from_secs(5)),
            "the counter stayed frozen (v2)"
        );
    }
    remove(&dirs);
}

/// Removes the test's groups once the counter's last `sleep` has left them.
fn remove(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let deadline = Instant::now() + Duration::from_secs(3);
        while fs::remove_dir(d).is_err() {
            assert!(Instant::now() < deadline, "{} stayed busy", d.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Thaws and removes whatever a failed test left (a passing test removes its groups itself).
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for d in self.0.iter().rev().filter(|d| d.exists()) {
            let _ = fs::write(d.join("cgroup.freeze"), "0");
            let _ = fs::write(d.join("freezer.state"), "THAWED");
            for _ in 0..100 {
                if fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn freeze_and_thaw_on_cgroup_v1() {
    require_root!();
    let v1 = Path::new("/sys/fs/cgroup");
    if !v1.join("memory/cgroup.procs").exists() || !v1.join("freezer/cgroup.procs").exists() {
        eprintln!(
            "SKIPPED: {}: no v1 memory and freezer hierarchies",
            module_path!()
        );
        return;
    }
    let name = format!("cordon-freeze-test-{}", std::process::id());
    let memory = v1.join("memory").join(&name);
    fs::create_dir(&memory).unwrap();
    let _leftovers = Leftovers(vec![memory.clone(), v1.join("freezer").join(&name)]);
    let mut dirs = vec![memory.clone()];
    {
        let counter = Counter::start(&memory, "v1");
        let created = cgroup::set_frozen(v1, &dirs, true).unwrap();
        assert_eq!(created, Some(v1.join("freezer").join(&name)));
        dirs.extend(created);
        wait_frozen(&dirs, true);
        assert!(
            !counter.advances(Duration::from_millis(300)),
            "the counter ran while frozen (v1)"
        );
        // A second freeze finds the group in place and moves nothing new.
        assert_eq!(cgroup::set_frozen(v1, &dirs, true).unwrap(), None);
        cgroup::set_frozen(v1, &dirs, false).unwrap();
        wait_frozen(&dirs, false);
        assert!(
            counter.advances(Duration::from_secs(5)),
            "the counter stayed frozen (v1)"
        );
    }
    remove(&dirs);
}
