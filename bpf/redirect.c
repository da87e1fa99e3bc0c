/* redirect: send every frame to one of ntargets devices through a devmap (bulk queue, flush at 16). */
#include "fanout.h"
BPF_DEVMAP(xs_devmap, XS_MAX_TARGETS);

static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
{
    struct xs_conf *conf = xs_config();
    if (!conf)
        return XDP_ABORTED;
    u32 s = xs_pick(ctx, conf);
    *slot = s;
    return xs_devmap.redirect_map(s, 0);
}
