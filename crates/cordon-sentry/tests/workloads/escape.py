"""Path tricks that must stay inside the sandbox under --tier sentry. argv[1] is the name of a
file that exists on the host's /tmp (the sandbox has its own /tmp). Prints one line per check."""
import errno, os, sys

secret = sys.argv[1]
def must_fail(name, f):
    try:
        f()
    except OSError as e:
        print("ok", name, errno.errorcode[e.errno])
        return
    print("FAIL", name, "succeeded")

os.chdir("/tmp")
must_fail("absolute", lambda: open("/tmp/" + secret))
must_fail("dotdot", lambda: open("../../../../tmp/" + secret))
os.symlink("/../../../tmp/" + secret, "/tmp/abs-link")
must_fail("absolute symlink", lambda: open("/tmp/abs-link"))
os.symlink("../../../../../tmp/" + secret, "/tmp/rel-link")
must_fail("relative symlink", lambda: open("/tmp/rel-link"))
os.symlink("/proc/iomem", "/tmp/hidden-link")
must_fail("symlink to a hidden path", lambda: open("/tmp/hidden-link"))
must_fail("hidden via dotdot", lambda: open("/tmp/../proc/./iomem"))
must_fail("stat hidden", lambda: os.stat("/proc/iomem"))
must_fail("proc root magic link", lambda: open("/proc/self/root/tmp/" + secret))
must_fail("proc cwd magic link", lambda: open("/proc/1/cwd/../tmp/" + secret))
d = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
must_fail("dirfd to hidden", lambda: os.open("iomem", os.O_RDONLY, dir_fd=d))
fd = os.open("/etc/hostname", os.O_RDONLY)
must_fail("fd reopen with more access", lambda: os.open(f"/proc/self/fd/{fd}", os.O_RDWR))
must_fail("fd reopen via /dev/fd", lambda: os.open(f"/dev/fd/{fd}", os.O_WRONLY))
assert os.read(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY), 1), "same-access reopen works"
print("ok same-access reopen")
must_fail("write under /proc", lambda: open("/proc/self/coredump_filter", "w"))
must_fail("another process's oom_score_adj", lambda: open("/proc/1/oom_score_adj", "w"))
must_fail("mkdir under /sys", lambda: os.mkdir("/sys/x"))
