/* mix: verdicts in chosen percentages, exact over every 100 frames of a CPU (a counter, not a dice).
 * xs_conf's mix[] holds the percentages of DROP, PASS, TX, REDIRECT (they sum to at most 100); the
 * rest of every 100 frames is ABORTED; redirects go round-robin. */
#include "fanout.h"
BPF_DEVMAP(xs_devmap, XS_MAX_TARGETS);
BPF_PERCPU_ARRAY(xs_mix_seq, u32, 1);

static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
{
    u32 key = 0;
    u32 *seq = xs_mix_seq.lookup(&key);
    struct xs_conf *conf = xs_config();
    if (!seq || !conf)
        return XDP_ABORTED;
    u32 r = *seq;
    *seq = r + 1 >= 100 ? 0 : r + 1;

    if (r < conf->mix[XDP_DROP])
        return XDP_DROP;
    r -= conf->mix[XDP_DROP];
    if (r < conf->mix[XDP_PASS])
        return XDP_PASS;
    r -= conf->mix[XDP_PASS];
    if (r < conf->mix[XDP_TX]) {
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
    r -= conf->mix[XDP_TX];
    if (r < conf->mix[XDP_REDIRECT]) {
        u32 s = xs_pick(ctx, conf);
        *slot = s;
        return xs_devmap.redirect_map(s, 0);
    }
    return XDP_ABORTED;
}
