//! `cordon-agent`: PID 1 of a cordon microVM (the `/init` of the initramfs cordon builds).

fn main() {
    cordon_agent::guest::main()
}
