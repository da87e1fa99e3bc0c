/* cpumap: move every frame to one of ntargets CPUs (slot = CPU id), where it becomes an skb. */
#include "fanout.h"
BPF_CPUMAP(xs_cpumap, XS_MAX_TARGETS);

static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
{
    struct xs_conf *conf = xs_config();
    if (!conf)
        return XDP_ABORTED;
    u32 s = xs_pick(ctx, conf);
    *slot = s;
    return xs_cpumap.redirect_map(s, 0);
}
