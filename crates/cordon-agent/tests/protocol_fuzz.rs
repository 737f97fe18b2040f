//! The host decodes what the guest sends, and a guest runs untrusted code: a compromised guest
//! controls every byte on the channel. These tests feed the frame decoder valid streams split
//! at random points (every message must come back intact) and mutated or random streams (it
//! must return messages or an error, never panic, and never buffer a frame larger than the
//! protocol's limit). Seeded xorshift; `CORDON_FUZZ_ITERS` runs longer.

use cordon_testkit::Xorshift;

use cordon_agent::protocol::{ExecRequest, ExitReport, FrameBuffer, GuestMsg, HostMsg, RunRequest};

type Rng = Xorshift;

fn iters(default: u64) -> u64 {
    std::env::var("CORDON_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn guest_messages(rng: &mut Rng) -> Vec<GuestMsg> {
    let n = 1 + rng.below(6);
    (0..n)
        .map(|_| match rng.below(12) {
            0 => GuestMsg::Ready {
                kernel_release: "6.1.0-cloud-amd64".into(),
            },
            1 => GuestMsg::Stdout(rng.blob(300)),
            2 => GuestMsg::Stderr(rng.blob(300)),
            3 => GuestMsg::Exit(ExitReport::Exited(
                i32::try_from(rng.below(256)).unwrap_or(0),
            )),
            4 => GuestMsg::Exit(ExitReport::Signaled {
                signal: 9,
                oom: rng.below(2) == 0,
            }),
            5 => GuestMsg::Exit(ExitReport::NotFound("nosuch".into())),
            6 => GuestMsg::Exit(ExitReport::SetupFailed("mount: \u{1f4a5}".into())),
            7 => GuestMsg::ExecStdout {
                id: u32::try_from(rng.below(4)).unwrap_or(0),
                data: rng.blob(300),
            },
            8 => GuestMsg::ExecStderr {
                id: u32::MAX,
                data: rng.blob(300),
            },
            9 => GuestMsg::ExecExit {
                id: 1,
                report: ExitReport::Signaled {
                    signal: 15,
                    oom: false,
                },
            },
            10 => GuestMsg::ExecExit {
                id: 2,
                report: ExitReport::NotExecutable("x: EACCES".into()),
            },
            _ => GuestMsg::Heartbeat,
        })
        .collect()
}

/// Pushes `stream` in random-sized chunks, draining messages after each push.
fn decode_chunked(
    stream: &[u8],
    rng: &mut Rng,
    next: fn(&mut FrameBuffer) -> Result<Option<String>, String>,
) -> (Vec<String>, Option<String>) {
    let mut fb = FrameBuffer::default();
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = 1 + rng.below(64);
        let end = (at + n).min(stream.len());
        fb.push(&stream[at..end]);
        at = end;
        loop {
            match next(&mut fb) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn next_guest(fb: &mut FrameBuffer) -> Result<Option<String>, String> {
    fb.next_guest()
        .map(|m| m.map(|m| format!("{m:?}")))
        .map_err(|e| e.to_string())
}

fn next_host(fb: &mut FrameBuffer) -> Result<Option<String>, String> {
    fb.next_host()
        .map(|m| m.map(|m| format!("{m:?}")))
        .map_err(|e| e.to_string())
}

#[test]
fn valid_guest_streams_survive_any_split() {
    let mut rng = Rng::new(0x5eed_0001);
    for _ in 0..iters(2000) {
        let msgs = guest_messages(&mut rng);
        let stream: Vec<u8> = msgs.iter().flat_map(GuestMsg::encode).collect();
        let (got, err) = decode_chunked(&stream, &mut rng, next_guest);
        assert_eq!(err, None);
        let want: Vec<String> = msgs.iter().map(|m| format!("{m:?}")).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn hostile_guest_streams_never_panic() {
    let mut rng = Rng::new(0x5eed_0002);
    for i in 0..iters(5000) {
        let mut stream: Vec<u8> = guest_messages(&mut rng)
            .iter()
            .flat_map(GuestMsg::encode)
            .collect();
        match rng.below(4) {
            // Random bytes.
            0 => stream = rng.blob(200),
            // Flipped bits.
            1 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(stream.len());
                    stream[at] ^= 1 << rng.below(8);
                }
            }
            // A forged length: zero, just past the limit, the maximum.
            2 => {
                let len: u32 = [0, 1, 2, 1 << 20, (1 << 24) + 1, u32::MAX][rng.below(6)];
                let mut forged = len.to_le_bytes().to_vec();
                forged.extend(rng.blob(16));
                stream.splice(0..0, forged);
            }
            // Truncated.
            _ => stream.truncate(rng.below(stream.len())),
        }
        let result = std::panic::catch_unwind(|| {
            let mut r = Rng::new(i + 7);
            decode_chunked(&stream, &mut r, next_guest)
        });
        assert!(
            result.is_ok(),
            "input {i} panicked the decoder: {stream:02x?}"
        );
    }
}

#[test]
fn hostile_host_streams_never_panic_the_agent() {
    let mut rng = Rng::new(0x5eed_0003);
    let run = HostMsg::Run(RunRequest {
        argv: vec!["/bin/true".into()],
        env: vec![("A".into(), "b".into())],
        workdir: "/".into(),
        hostname: "cordon".into(),
        seed: vec![1; 64],
        ..RunRequest::default()
    })
    .encode();
    for i in 0..iters(3000) {
        let mut stream = run.clone();
        stream.extend(HostMsg::Stdin(rng.blob(100)).encode());
        stream.extend(HostMsg::Signal(15).encode());
        stream.extend(
            HostMsg::ExecStart {
                id: 3,
                req: ExecRequest {
                    argv: vec!["cat".into()],
                    env: vec![("PATH".into(), "/bin".into())],
                    workdir: "/tmp".into(),
                    uid: 1,
                    gid: 1,
                },
            }
            .encode(),
        );
        stream.extend(
            HostMsg::ExecStdin {
                id: 3,
                data: rng.blob(50),
            }
            .encode(),
        );
        stream.extend(HostMsg::ExecStdinEof { id: 3 }.encode());
        stream.extend(HostMsg::ExecSignal { id: 3, signal: 9 }.encode());
        for _ in 0..=rng.below(6) {
            let at = rng.below(stream.len());
            stream[at] = rng.bytes(1)[0];
        }
        let result = std::panic::catch_unwind(|| {
            let mut r = Rng::new(i + 11);
            decode_chunked(&stream, &mut r, next_host)
        });
        assert!(
            result.is_ok(),
            "input {i} panicked the decoder: {stream:02x?}"
        );
    }
}

/// Valid host streams with the exec frames come back intact whatever the split (the agent's
/// and the keeper's decoders read these).
#[test]
fn valid_host_exec_streams_survive_any_split() {
    let mut rng = Rng::new(0x5eed_0004);
    for _ in 0..iters(1000) {
        let msgs = [
            HostMsg::ExecStart {
                id: u32::try_from(rng.below(1000)).unwrap_or(0),
                req: ExecRequest {
                    argv: vec!["sh".into(), "-c".into(), "echo \u{e9}".into()],
                    env: vec![("K".into(), String::from_utf8_lossy(&rng.blob(20)).into())],
                    workdir: "/".into(),
                    uid: u32::try_from(rng.below(70000)).unwrap_or(0),
                    gid: 0,
                },
            },
            HostMsg::ExecStdin {
                id: 1,
                data: rng.blob(400),
            },
            HostMsg::ExecStdinEof { id: 1 },
            HostMsg::ExecSignal {
                id: 1,
                signal: i32::try_from(rng.below(65)).unwrap_or(0),
            },
        ];
        let stream: Vec<u8> = msgs.iter().flat_map(HostMsg::encode).collect();
        let (got, err) = decode_chunked(&stream, &mut rng, next_host);
        assert_eq!(err, None);
        let want: Vec<String> = msgs.iter().map(|m| format!("{m:?}")).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn a_frame_over_the_limit_is_refused_before_it_is_buffered() {
    use cordon_agent::protocol::MAX_FRAME;
    for len in [
        MAX_FRAME + 1,
        1 << 24,
        usize::try_from(u32::MAX).unwrap_or(usize::MAX),
    ] {
        let mut fb = FrameBuffer::default();
        let header = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
        fb.push(&header);
        fb.push(&[0x10]);
        let err = fb
            .next_guest()
            .expect_err("an oversized frame was accepted");
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
    // At the limit, the frame is awaited, not refused.
    let mut fb = FrameBuffer::default();
    fb.push(&u32::try_from(MAX_FRAME).unwrap_or(0).to_le_bytes());
    assert!(matches!(fb.next_guest(), Ok(None)));
}
