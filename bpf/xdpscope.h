/* xdpscope instrumentation, included before every XDP program (built-in or user's).
 *
 * A program provides  static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
 * returning its verdict and, on redirect, setting *slot to the chosen target slot.
 * The entry point xdp_main() counts both in one per-CPU value: one map lookup per packet.
 * Built with -DXS_NO_COUNT the counting is compiled out (the benchmark's baseline).
 */
#include <uapi/linux/bpf.h>
/* uapi headers only: the kernel-internal <linux/ip.h> & co. pull in skbuff.h and most of the
 * networking stack, which makes each compile 4x slower (2.6 s -> 0.6 s here; 92 s -> ~20 s in
 * the TCG guest). A user's program may still include <linux/...> itself. */
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/in.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/tcp.h>

/* XS_VERDICTS, XS_VERDICT_MASK, XS_MAX_TARGETS (a power of two): -D constants from
 * backend/data/schema.py (schema.cflags()) */
#define XS_NO_SLOT 0xffffffff

struct xs_counters {
    u64 verdict[XS_VERDICTS];       /* ABORTED DROP PASS TX REDIRECT */
    u64 invalid;                    /* verdicts outside them */
    u64 target[XS_MAX_TARGETS];     /* redirects per target slot */
};
BPF_PERCPU_ARRAY(xs_counters, struct xs_counters, 1);

static __always_inline int xs_count(int act, u32 slot)
{
#ifndef XS_NO_COUNT
    u32 key = 0;
    struct xs_counters *c = xs_counters.lookup(&key);
    if (!c)
        return act;
    u32 a = act;
    if (a < XS_VERDICTS) {
        asm volatile("" : "+r"(a));  /* clang would bound-check a copy; the verifier needs this one */
        c->verdict[a & XS_VERDICT_MASK]++;
    } else {
        c->invalid++;
    }
    if (act == XDP_REDIRECT && slot < XS_MAX_TARGETS) {
        asm volatile("" : "+r"(slot));  /* clang would bound-check a copy; the verifier needs this one */
        c->target[slot & (XS_MAX_TARGETS - 1)]++;
    }
#endif
    return act;
}
