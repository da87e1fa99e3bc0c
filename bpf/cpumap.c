/* cpumap: move every frame to one of XS_NTARGETS CPUs (slot = CPU id), where it becomes an skb. */
#include "fanout.h"
BPF_CPUMAP(xs_cpumap, XS_MAX_TARGETS);

static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
{
    u32 s = xs_pick(ctx);
    *slot = s;
    return xs_cpumap.redirect_map(s, 0);
}
