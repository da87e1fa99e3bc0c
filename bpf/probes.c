/* xdpscope tracepoint probes. Each is compiled only when the running kernel has its tracepoint
 * (XS_TP_* defined by backend/probes.py). XS_IFINDEX filters to the observed interface (0 = all).
 * All maps are per-CPU: no atomics on the hot path, user space sums the CPUs. */

#ifndef XS_IFINDEX
#define XS_IFINDEX 0
#endif
#define XS_MINE(ifindex) (XS_IFINDEX == 0 || (ifindex) == XS_IFINDEX)

struct xs_flush_key { int ifindex; u32 size; };
struct xs_dev_val { u64 sent; u64 drops; };
struct xs_err_key { int ifindex; int err; };
struct xs_napi_key { char dev[16]; };
struct xs_napi_val { u64 polls; u64 work; u64 budget; u64 full; u64 hist[9]; };

BPF_PERCPU_HASH(xs_flush, struct xs_flush_key, u64, 4096);
BPF_PERCPU_HASH(xs_devtx, int, struct xs_dev_val, 1024);
BPF_PERCPU_HASH(xs_rerr, struct xs_err_key, u64, 1024);
BPF_PERCPU_ARRAY(xs_exc, u64, 6);          /* index = verdict, 5 = invalid */
BPF_PERCPU_ARRAY(xs_cpumap_bulk, u64, 10); /* 0..8 bulk sizes, 9 = dropped frames */
BPF_PERCPU_HASH(xs_napi, struct xs_napi_key, struct xs_napi_val, 256);
BPF_PERCPU_HASH(xs_redir, int, u64, 1024); /* per-packet xdp_redirect successes, by target */

static __always_inline void xs_add_err(int ifindex, int err, u64 n)
{
    struct xs_err_key k = {.ifindex = ifindex, .err = err};
    u64 zero = 0, *v = xs_rerr.lookup_or_try_init(&k, &zero);
    if (v)
        *v += n;
}

#ifdef XS_TP_XDP_DEVMAP_XMIT
/* One event per bulk-queue flush (bq_xmit_all): sent + drops is the flush size. */
TRACEPOINT_PROBE(xdp, xdp_devmap_xmit)
{
    if (!XS_MINE(args->from_ifindex))
        return 0;
    int to = args->to_ifindex;
    u32 size = args->sent + args->drops;
    struct xs_flush_key fk = {.ifindex = to, .size = size > 16 ? 17 : size};
    u64 zero = 0, *n = xs_flush.lookup_or_try_init(&fk, &zero);
    if (n)
        (*n)++;
    struct xs_dev_val dz = {}, *d = xs_devtx.lookup_or_try_init(&to, &dz);
    if (d) {
        d->sent += args->sent;
        d->drops += args->drops;
    }
    if (args->err && args->drops)
        xs_add_err(to, args->err, args->drops);
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

#ifdef XS_TP_NAPI_POLL
/* Work done per NAPI poll against the budget, per device (log2 histogram of work). */
TRACEPOINT_PROBE(napi, napi_poll)
{
    struct xs_napi_key k;
    __builtin_memset(&k, 0, sizeof(k));
    bpf_probe_read_kernel_str(k.dev, sizeof(k.dev), (char *)args + (args->data_loc_dev_name & 0xFFFF));
    struct xs_napi_val z = {}, *v = xs_napi.lookup_or_try_init(&k, &z);
    if (!v)
        return 0;
    int work = args->work;
    v->polls++;
    v->work += work;
    v->budget += args->budget;
    if (work >= args->budget)
        v->full++;
    /* log2 bins 0, 1, 2-3, 4-7, ... 64-127, >=128 (no __builtin_clz: it crashes bcc's clang) */
    u32 bin = work <= 0 ? 0 : work < 2 ? 1 : work < 4 ? 2 : work < 8 ? 3 : work < 16 ? 4 :
              work < 32 ? 5 : work < 64 ? 6 : work < 128 ? 7 : 8;
    v->hist[bin]++;
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
