"""The only code that touches the kernel: BPF syscalls, compile, attach, probes, NICs."""
