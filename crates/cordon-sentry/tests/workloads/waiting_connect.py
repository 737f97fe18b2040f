"""A connect that has to wait (the listener's backlog is full) must not hold up the sandbox's
other supervised calls: each listener below opens a file (a trapped call) before it accepts,
so a supervisor that performed the connect blocking would never see that open."""
import socket
import threading
import time


def check(name, family, addr):
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind(addr)
    srv.listen(0)
    if family != socket.AF_UNIX:
        addr = srv.getsockname()  # the port chosen
    first = socket.socket(family, socket.SOCK_STREAM)
    first.connect(addr)  # fills the backlog of 0
    done = {}

    def late():
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect(addr)  # waits until the listener accepts
        done["sock"] = s

    t = threading.Thread(target=late, daemon=True)
    t.start()
    time.sleep(0.5)
    if "sock" in done:
        print(f"{name}: the second connect did not wait: nothing tested")
        return
    with open(f"/tmp/{name}-opened-while-waiting", "w") as f:
        f.write("x")
    srv.accept()
    srv.accept()
    t.join(20)
    print(f"{name}: ok" if "sock" in done else f"{name}: the connect never completed")


check("unix", socket.AF_UNIX, "/tmp/waiting.sock")
check("tcp", socket.AF_INET, ("127.0.0.1", 0))
