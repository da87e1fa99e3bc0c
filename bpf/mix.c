/* mix: verdicts in chosen percentages, exact over every 100 frames of a CPU (a counter, not a dice).
 * XS_MIX_ABORTED, _DROP, _PASS, _TX, _REDIRECT are percentages summing to 100; redirects go round-robin. */
#include "fanout.h"
BPF_DEVMAP(xs_devmap, XS_MAX_TARGETS);
BPF_PERCPU_ARRAY(xs_mix_seq, u32, 1);

static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
{
    u32 key = 0;
    u32 *seq = xs_mix_seq.lookup(&key);
    if (!seq)
        return XDP_ABORTED;
    u32 r = *seq;
    *seq = r + 1 >= 100 ? 0 : r + 1;

    if (r < XS_MIX_DROP)
        return XDP_DROP;
    r -= XS_MIX_DROP;
    if (r < XS_MIX_PASS)
        return XDP_PASS;
    r -= XS_MIX_PASS;
    if (r < XS_MIX_TX) {
        void *data = (void *)(long)ctx->data;
        struct ethhdr *eth = data;
        if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
            return XDP_ABORTED;
        unsigned char tmp[ETH_ALEN];
        __builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
        __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
        __builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
        return XDP_TX;
    }
    r -= XS_MIX_TX;
    if (r < XS_MIX_REDIRECT) {
        u32 s = xs_pick(ctx);
        *slot = s;
        return xs_devmap.redirect_map(s, 0);
    }
    return XDP_ABORTED;
}
