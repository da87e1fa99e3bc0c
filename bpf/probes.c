/* xdpscope tracepoint probes. Each is compiled only when the running kernel has its tracepoint
 * (XS_TP_* defined by backend/probes.py). XS_IFINDEX filters to the observed interface (0 = all).
 * All maps are per-CPU: no atomics on the hot path, user space sums the CPUs. */

#ifndef XS_IFINDEX
#define XS_IFINDEX 0
#endif
#define XS_MINE(ifindex) (XS_IFINDEX == 0 || (ifindex) == XS_IFINDEX)

/* Flush and NAPI stats are keyed by a kernel pointer (the target net_device, the napi_struct):
 * it comes with the event, so the hot path reads no kernel memory; the device's ifindex or name
 * is read once, when the key is first seen, into the value (of that CPU: user space takes the
 * non-empty one). Without raw tracepoints the keys are the ifindex and the napi pointer. */
struct xs_dev_val { int ifindex; int pad; u64 sent; u64 drops; u64 flush[32]; };  /* flush[17]: > 16 */
struct xs_err_key { int ifindex; int err; };
struct xs_napi_val { char dev[16]; u64 polls; u64 work; u64 budget; u64 full; u64 hist[9]; };

BPF_PERCPU_HASH(xs_devtx, u64, struct xs_dev_val, 1024);  /* one lookup per flush */
BPF_PERCPU_ARRAY(xs_from, u64, 1);   /* the observed device's pointer, once recognised */
BPF_PERCPU_HASH(xs_rerr, struct xs_err_key, u64, 1024);
BPF_PERCPU_ARRAY(xs_exc, u64, 6);          /* index = verdict, 5 = invalid */
BPF_PERCPU_ARRAY(xs_cpumap_bulk, u64, 10); /* 0..8 bulk sizes, 9 = dropped frames */
BPF_PERCPU_HASH(xs_napi, u64, struct xs_napi_val, 256);
BPF_PERCPU_HASH(xs_redir, int, u64, 1024); /* per-packet xdp_redirect successes, by target */

static __always_inline void xs_add_err(int ifindex, int err, u64 n)
{
    struct xs_err_key k = {.ifindex = ifindex, .err = err};
    u64 zero = 0, *v = xs_rerr.lookup_or_try_init(&k, &zero);
    if (v)
        *v += n;
}

/* One event per bulk-queue flush (bq_xmit_all): sent + drops is the flush size. */
static __always_inline void xs_devmap_flush(struct xs_dev_val *d, int sent, int drops, int err)
{
    u32 size = sent + drops;
    if (d) {
        d->sent += sent;
        d->drops += drops;
        u32 bin = size > 16 ? 17 : size;
        asm volatile("" : "+r"(bin));  /* keep clang from bound-checking a copy (verifier) */
        d->flush[bin & 31]++;
    }
    if (d && err && drops)
        xs_add_err(d->ifindex, err, drops);
}

/* Stats of a target seen for the first time. */
static __always_inline struct xs_dev_val *xs_devtx_new(u64 key, int ifindex)
{
    struct xs_dev_val z = {.ifindex = ifindex};
    xs_devtx.update(&key, &z);
    return xs_devtx.lookup(&key);
}

#if defined(XS_TP_XDP_DEVMAP_XMIT) && defined(XS_RAW)
/* Raw tracepoint: no trace record is built, so it costs far less per flush.
 * args: from_dev, to_dev, sent, drops, err; ifindex read at the running kernel's BTF offset. */
static __always_inline int xs_ifindex_of(u64 dev)
{
    int ifindex = 0;
    bpf_probe_read_kernel(&ifindex, sizeof(ifindex), (void *)dev + XS_OFF_NETDEV_IFINDEX);
    return ifindex;
}

RAW_TRACEPOINT_PROBE(xdp_devmap_xmit)
{
    u64 from = ctx->args[0], to = ctx->args[1];
#if XS_IFINDEX
    int k = 0;
    u64 *mine = xs_from.lookup(&k);
    if (!mine)
        return 0;
    if (*mine != from) {  /* not yet recognised, or another device's flush */
        if (xs_ifindex_of(from) != XS_IFINDEX)
            return 0;
        *mine = from;
    }
#endif
    struct xs_dev_val *d = xs_devtx.lookup(&to);
    if (!d)
        d = xs_devtx_new(to, xs_ifindex_of(to));
    xs_devmap_flush(d, (int)ctx->args[2], (int)ctx->args[3], (int)ctx->args[4]);
    return 0;
}
#elif defined(XS_TP_XDP_DEVMAP_XMIT)
TRACEPOINT_PROBE(xdp, xdp_devmap_xmit)
{
    if (!XS_MINE(args->from_ifindex))
        return 0;
    u64 to = args->to_ifindex;
    struct xs_dev_val *d = xs_devtx.lookup(&to);
    xs_devmap_flush(d ? d : xs_devtx_new(to, args->to_ifindex), args->sent, args->drops, args->err);
    return 0;
}
#endif

#ifdef XS_TP_XDP_REDIRECT_ERR
/* A redirect that failed before reaching a bulk queue (bad slot, device cannot take XDP, ...). */
TRACEPOINT_PROBE(xdp, xdp_redirect_err)
{
    if (XS_MINE(args->ifindex))
        xs_add_err(args->to_ifindex, args->err, 1);
    return 0;
}
#endif

#ifdef XS_TP_XDP_EXCEPTION
TRACEPOINT_PROBE(xdp, xdp_exception)
{
    if (!XS_MINE(args->ifindex))
        return 0;
    u32 k = args->act < 5 ? args->act : 5;
    u64 *v = xs_exc.lookup(&k);
    if (v)
        (*v)++;
    return 0;
}
#endif

#ifdef XS_TP_XDP_CPUMAP_ENQUEUE
TRACEPOINT_PROBE(xdp, xdp_cpumap_enqueue)
{
#ifdef XS_CPUMAP_ID
    if (args->map_id != XS_CPUMAP_ID)  /* another program's cpumap */
        return 0;
#endif
    u32 k = args->processed + args->drops;
    if (k > 8)
        k = 8;
    u64 *v = xs_cpumap_bulk.lookup(&k);
    if (v)
        (*v)++;
    k = 9;
    v = xs_cpumap_bulk.lookup(&k);
    if (v)
        *v += args->drops;
    return 0;
}
#endif

/* Work done per NAPI poll against the budget, per device (log2 histogram of work). */
static __always_inline void xs_napi_poll(struct xs_napi_val *v, int work, int budget)
{
    if (!v)
        return;
    v->polls++;
    v->work += work;
    v->budget += budget;
    if (work >= budget)
        v->full++;
    /* log2 bins 0, 1, 2-3, 4-7, ... 64-127, >=128 (no __builtin_clz: it crashes bcc's clang) */
    u32 bin = work <= 0 ? 0 : work < 2 ? 1 : work < 4 ? 2 : work < 8 ? 3 : work < 16 ? 4 :
              work < 32 ? 5 : work < 64 ? 6 : work < 128 ? 7 : 8;
    v->hist[bin]++;
}

#if defined(XS_TP_NAPI_POLL) && defined(XS_RAW)
/* args: napi, work, budget; the device name read through napi->dev at BTF offsets. */
RAW_TRACEPOINT_PROBE(napi_poll)
{
    u64 napi = ctx->args[0];
    struct xs_napi_val *v = xs_napi.lookup(&napi);
    if (!v) {  /* first poll of this napi instance: read its device's name once */
        struct xs_napi_val z = {};
        void *dev = 0;
        bpf_probe_read_kernel(&dev, sizeof(dev), (void *)napi + XS_OFF_NAPI_DEV);
        if (dev)
            bpf_probe_read_kernel_str(z.dev, sizeof(z.dev), dev + XS_OFF_NETDEV_NAME);
        xs_napi.update(&napi, &z);
        v = xs_napi.lookup(&napi);
    }
    xs_napi_poll(v, (int)ctx->args[1], (int)ctx->args[2]);
    return 0;
}
#elif defined(XS_TP_NAPI_POLL)
TRACEPOINT_PROBE(napi, napi_poll)
{
    u64 napi = (u64)args->napi;
    struct xs_napi_val *v = xs_napi.lookup(&napi);
    if (!v) {
        struct xs_napi_val z = {};
        bpf_probe_read_kernel_str(z.dev, sizeof(z.dev), (char *)args + (args->data_loc_dev_name & 0xFFFF));
        xs_napi.update(&napi, &z);
        v = xs_napi.lookup(&napi);
    }
    xs_napi_poll(v, args->work, args->budget);
    return 0;
}
#endif

#ifdef XS_TP_XDP_REDIRECT
/* Per packet: costly (~29% of live redirect throughput), only on request. */
TRACEPOINT_PROBE(xdp, xdp_redirect)
{
    if (!XS_MINE(args->ifindex))
        return 0;
    int to = args->to_ifindex;
    u64 zero = 0, *v = xs_redir.lookup_or_try_init(&to, &zero);
    if (v)
        (*v)++;
    return 0;
}
#endif
