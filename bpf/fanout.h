/* Target choice for devmap/cpumap redirects, from the session's configuration (xs_conf, filled by
 * the loader before attach: backend/kernel/programs.py _fill_maps), so one build serves every
 * target count, policy and mix. policy 0 = round-robin, 1 = flow hash, 2 = by CPU; ntargets is
 * the number of populated slots (0..ntargets-1); mix: percent per verdict (mix.c). */
struct xs_conf {
    u32 ntargets;
    u32 policy;
    u32 mix[XS_VERDICTS];
};
BPF_ARRAY(xs_conf, struct xs_conf, 1);
BPF_PERCPU_ARRAY(xs_rr, u32, 1);

/* The session's configuration; NULL only if the map were gone (it has one entry). */
static __always_inline struct xs_conf *xs_config(void)
{
    u32 key = 0;
    return xs_conf.lookup(&key);
}

/* Hash of the IPv4/IPv6 5-tuple (ports for TCP/UDP); frames without one hash to 0. */
static __always_inline u32 xs_flow_hash(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    u32 h = 0, ports = 0;
    u8 proto = 0;
    void *l4;

    if ((void *)(eth + 1) > data_end)
        return 0;
    if (eth->h_proto == htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end)
            return 0;
        h = ip->saddr ^ (ip->daddr * 31);
        proto = ip->protocol;
        l4 = (void *)ip + ip->ihl * 4;
    } else if (eth->h_proto == htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end)
            return 0;
        h = ip6->saddr.s6_addr32[3] ^ (ip6->daddr.s6_addr32[3] * 31);
        proto = ip6->nexthdr;
        l4 = ip6 + 1;
    } else {
        return 0;
    }
    if (proto == IPPROTO_UDP || proto == IPPROTO_TCP) {
        if (l4 + 4 > data_end)
            return 0;
        ports = *(u32 *)l4;
    }
    h ^= ports * 0x9E3779B1u;
    h ^= proto;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    return h;
}

static __always_inline u32 xs_pick(struct xdp_md *ctx, const struct xs_conf *conf)
{
    u32 n = conf->ntargets;
    if (n == 0 || n > XS_MAX_TARGETS)   /* never a division by zero, never past the map */
        n = 1;
    if (conf->policy == 1)
        return xs_flow_hash(ctx) % n;
    if (conf->policy == 2)
        return bpf_get_smp_processor_id() % n;
    u32 key = 0;
    u32 *next = xs_rr.lookup(&key);
    if (!next)
        return 0;
    u32 s = *next;
    *next = s + 1 >= n ? 0 : s + 1;
    return s;
}
