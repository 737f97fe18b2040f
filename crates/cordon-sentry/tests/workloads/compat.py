"""Ordinary work a sandboxed program does; prints one `ok <name>` line per part."""
import json, os, shutil, signal, socket, sqlite3, subprocess, sys, tempfile, threading, time

failed = []

def part(name):
    """Runs one part; a failure is reported and counted, and the next part still runs."""
    def wrap(f):
        try:
            f()
        except Exception as e:
            failed.append(name)
            print("FAIL", name, repr(e), flush=True)
            return
        print("ok", name, flush=True)
    return wrap

@part("files")
def _():
    d = tempfile.mkdtemp(dir="/tmp")
    p = os.path.join(d, "a.txt")
    with open(p, "w") as f:
        f.write("hello\n")
    with open(p, "a") as f:
        f.write("more\n")
    assert open(p).read() == "hello\nmore\n"
    os.rename(p, p + ".2")
    os.symlink("a.txt.2", os.path.join(d, "link"))
    assert os.readlink(os.path.join(d, "link")) == "a.txt.2"
    assert open(os.path.join(d, "link")).read().startswith("hello")
    os.link(p + ".2", p + ".3")
    assert os.stat(p + ".3").st_nlink == 2
    os.chmod(p + ".3", 0o600)
    assert os.stat(p + ".3").st_mode & 0o777 == 0o600
    os.utime(p + ".3", (1, 2))
    assert os.stat(p + ".3").st_mtime == 2
    os.truncate(p + ".3", 2)
    assert os.path.getsize(p + ".2") == 2
    assert os.access(p + ".2", os.R_OK) and not os.path.exists(p)
    os.makedirs(os.path.join(d, "x/y/z"))
    shutil.copytree(os.path.join(d, "x"), os.path.join(d, "x2"))
    os.chdir(d)
    assert sorted(os.listdir(".")) == ["a.txt.2", "a.txt.3", "link", "x", "x2"], os.listdir(".")
    fd = os.open("x", os.O_RDONLY | os.O_DIRECTORY)
    with open("newfile", "w", opener=lambda n, fl: os.open(n, fl, dir_fd=fd)) as f:
        f.write("rel")
    assert os.stat("newfile", dir_fd=fd).st_size == 3
    os.close(fd)
    assert open("x/newfile").read() == "rel"
    shutil.rmtree(d)
    assert not os.path.exists(d)

@part("json")
def _():
    data = {"a": [1, 2, {"b": None}], "c": "é"}
    with open("/tmp/j.json", "w") as f:
        json.dump(data, f)
    assert json.load(open("/tmp/j.json")) == data

@part("sqlite3")
def _():
    db = sqlite3.connect("/tmp/t.db")
    db.execute("create table t (k integer primary key, v text)")
    db.executemany("insert into t (v) values (?)", [(str(i),) for i in range(1000)])
    db.commit()
    assert db.execute("select count(*) from t").fetchone()[0] == 1000
    db.close()
    db = sqlite3.connect("/tmp/t.db")
    assert db.execute("select v from t where k = 500").fetchone()[0] == "499"

@part("subprocess")
def _():
    out = subprocess.run(["sh", "-c", "echo $((6*7)); ls / >/dev/null"], capture_output=True, text=True, check=True)
    assert out.stdout == "42\n"
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    assert int(out.stdout) > 1

@part("threads")
def _():
    results = []
    def work(i):
        with open(f"/tmp/thread{i}", "w") as f:
            f.write(str(i) * 1000)
        results.append(len(open(f"/tmp/thread{i}").read()))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert results == [1000] * 8

@part("signals")
def _():
    got = []
    signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    os.kill(os.getpid(), signal.SIGUSR1)
    signal.signal(signal.SIGALRM, lambda s, f: got.append(s))
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    time.sleep(0.2)
    assert got == [signal.SIGUSR1, signal.SIGALRM], got
    p = subprocess.Popen(["sleep", "10"])
    p.send_signal(signal.SIGTERM)
    assert p.wait() == -signal.SIGTERM

@part("unix-sockets")
def _():
    path = "/tmp/sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()
    def serve():
        c, _ = srv.accept()
        c.sendall(c.recv(100).upper())
        c.close()
    t = threading.Thread(target=serve)
    t.start()
    cl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cl.connect(path)
    cl.sendall(b"ping")
    assert cl.recv(100) == b"PING"
    t.join()
    a, b = socket.socketpair()
    a.sendall(b"x")
    assert b.recv(1) == b"x"

if os.environ.get("NET") == "loopback":
    @part("tcp-loopback")
    def _():
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        def serve():
            c, _ = srv.accept()
            c.sendall(c.recv(100)[::-1])
            c.close()
        t = threading.Thread(target=serve)
        t.start()
        cl = socket.create_connection(("127.0.0.1", port))
        cl.sendall(b"abc")
        assert cl.recv(100) == b"cba"
        t.join()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v.sendto(b"d", u.getsockname())
        assert u.recv(10) == b"d"

if failed:
    sys.exit(1)
print("all ok", flush=True)
