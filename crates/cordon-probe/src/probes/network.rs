//! Network: socket families a sandbox has no business with, the host's loopback and abstract
//! UNIX sockets, and the cloud metadata address. Sockets are created and closed; connections
//! send nothing.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr as InetAddr, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

use super::{clip, ename, refused};
use crate::context::{abstract_socket_name, Context};
use crate::sys;
use crate::verdict::Outcome;

const AF_ALG: libc::c_int = 38;
const AF_VSOCK: libc::c_int = 40;
const ETH_P_ALL: u16 = 0x0003;

fn socket_probe(
    ctx: &Context,
    what: &str,
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
    gained: &str,
) -> Outcome {
    match sys::socket(domain, ty, proto) {
        Ok(_) => Outcome::escaped(format!("{what} succeeded: {gained}")),
        Err(e) => refused(ctx, what, &e),
    }
}

/// socket(AF_PACKET, SOCK_RAW): sniff and inject link-layer frames.
pub(crate) fn af_packet(ctx: &Context) -> Outcome {
    socket_probe(
        ctx,
        "socket(AF_PACKET, SOCK_RAW)",
        libc::AF_PACKET,
        libc::SOCK_RAW,
        libc::c_int::from(ETH_P_ALL.to_be()),
        "can sniff and forge link-layer frames",
    )
}

/// socket(AF_INET, SOCK_RAW, ICMP): forge IP packets.
pub(crate) fn raw_socket(ctx: &Context) -> Outcome {
    socket_probe(
        ctx,
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
        libc::AF_INET,
        libc::SOCK_RAW,
        libc::IPPROTO_ICMP,
        "can forge IP packets",
    )
}

/// socket(AF_ALG): the kernel crypto API, a recurring source of kernel bugs.
pub(crate) fn af_alg(ctx: &Context) -> Outcome {
    socket_probe(
        ctx,
        "socket(AF_ALG, SOCK_SEQPACKET)",
        AF_ALG,
        libc::SOCK_SEQPACKET,
        0,
        "the kernel crypto API is reachable",
    )
}

/// socket(AF_VSOCK): the channel to the hypervisor when the host is itself a VM (nothing is
/// connected: the hypervisor's services are not the probe's to touch).
pub(crate) fn af_vsock(ctx: &Context) -> Outcome {
    socket_probe(
        ctx,
        "socket(AF_VSOCK, SOCK_STREAM)",
        AF_VSOCK,
        libc::SOCK_STREAM,
        0,
        "the hypervisor's vsock transport is reachable",
    )
}

/// What the harness's listener said on connect, as a detail suffix ("" if nothing came).
fn greeting(mut conn: impl Read) -> String {
    let mut buf = [0u8; 80];
    match conn.read(&mut buf) {
        Ok(n) if n > 0 => format!(
            "; it said {:?}",
            clip(String::from_utf8_lossy(&buf[..n]).trim(), 50)
        ),
        _ => String::new(),
    }
}

/// Judges a failed TCP connect: no route or no usable interface is BLOCKED; a refusal means
/// packets reached something.
fn connect_failed(ctx: &Context, what: &str, e: &std::io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Outcome::blocked(format!(
            "{what}: ECONNREFUSED (reached a network stack, but not the host's listener)"
        )),
        _ if e.kind() == std::io::ErrorKind::TimedOut => {
            Outcome::blocked(format!("{what}: no answer within 1 s"))
        }
        _ => refused(ctx, what, e),
    }
}

/// TCP connect to the listener the harness runs on the host's 127.0.0.1.
pub(crate) fn host_loopback(ctx: &Context) -> Outcome {
    let Some(port) = ctx.host_port else {
        return Outcome::error("needs --host-port (the harness's listener on the host)");
    };
    let addr = InetAddr::from((Ipv4Addr::LOCALHOST, port));
    let what = format!("connect(127.0.0.1:{port})");
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let greeting = greeting(s);
            Outcome::escaped(format!("{what} connected to the host's listener{greeting}"))
        }
        Err(e) => connect_failed(ctx, &what, &e),
    }
}

/// connect to the harness's abstract UNIX socket (abstract sockets are scoped by network
/// namespace: X11, D-Bus and container daemons listen on such sockets on many hosts).
pub(crate) fn host_abstract_unix(ctx: &Context) -> Outcome {
    let Some(port) = ctx.host_port else {
        return Outcome::error("needs --host-port (names the harness's abstract socket)");
    };
    let name = abstract_socket_name(port);
    let what = format!("connect(@{name})");
    let conn = SocketAddr::from_abstract_name(&name).and_then(|a| UnixStream::connect_addr(&a));
    match conn {
        Ok(s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let greeting = greeting(s);
            Outcome::escaped(format!(
                "{what} reached the host's abstract socket{greeting}"
            ))
        }
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Outcome::blocked(format!(
            "{what}: ECONNREFUSED (the sandbox has its own abstract socket namespace)"
        )),
        Err(e) => refused(ctx, &what, &e),
    }
}

/// TCP connect to the cloud metadata address 169.254.169.254:80 (1 s timeout, nothing sent).
/// A route to it is checked first with a UDP connect, which sends no packet.
pub(crate) fn metadata(ctx: &Context) -> Outcome {
    let addr = InetAddr::from((Ipv4Addr::new(169, 254, 169, 254), 80));
    let route = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|s| s.connect(addr));
    if let Err(e) = route {
        let what = "route to 169.254.169.254";
        return match e.raw_os_error() {
            Some(libc::ENETUNREACH) if ctx.confinement.unconfined() => Outcome::unsupported(
                format!("{what}: ENETUNREACH: the host itself has no route there"),
            ),
            _ => refused(ctx, what, &e),
        };
    }
    let what = "connect(169.254.169.254:80)";
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(_) => Outcome::escaped(format!("{what} connected (nothing sent)")),
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED | libc::EHOSTUNREACH) => Outcome::escaped(format!(
                "{what}: {}: packets leave the sandbox towards the metadata address",
                ename(&e)
            )),
            _ if e.kind() == std::io::ErrorKind::TimedOut => Outcome::escaped(format!(
                "{what}: routed, but nothing answered within 1 s (no metadata service here; egress is open)"
            )),
            _ => refused(ctx, what, &e),
        },
    }
}
