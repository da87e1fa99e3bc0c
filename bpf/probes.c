/* xdpscope probes. Each is compiled only when the running kernel has its tracepoint (XS_TP_*
 * defined by backend/kernel/probes.py); sizes and bins are -D constants from backend/data/schema.py.
 * All counter maps are per-CPU: no atomics on the hot path, user space sums the CPUs.
 *
 * Devices are identified by (netns, ifindex), never by ifindex alone: every namespace reuses low
 * ifindexes. The raw tracepoints give net_device pointers; the ifindex and the namespace's inode
 * are read at the running kernel's BTF offsets (XS_OFF_*). The namespace of the collector is 0.
 * xs_devs, filled by the collector, holds the session's devices and their roles: events of other
 * devices are not counted (unless XS_ALL_DEVICES asks for every device's flushes and polls).
 *
 * Hot path: what a net_device or napi_struct address stands for (its DevId and roles) is cached by
 * address for one generation (xs_gen): a freed object's address may come back as another's, so
 * the collector starts a new generation every half second and whenever the session's devices
 * change, and every cached address is checked again (three reads). The ingress of a flush is
 * checked against a per-CPU slot (an array: no hash lookup). */

#define XS_ROLE_INGRESS 1   /* the program's events: exceptions, redirect errors, flushes from it */
#define XS_ROLE_POLLED 2    /* NAPI polls counted: ingress, targets and their peers */

struct xs_dev { u32 ns; u32 ifindex; };
struct xs_devtx_val { u64 sent; u64 drops; u64 flush[XS_FLUSH_SLOTS]; };
struct xs_err_key { struct xs_dev to; int err; };
struct xs_napi_val { u64 polls; u64 work; u64 budget; u64 full; u64 hist[XS_NAPI_BINS]; };
struct xs_cpu_enq { u64 processed; u64 drops; u64 bulks; };
struct xs_kthread { u64 processed; u64 drops; u64 sched; };
struct xs_ptr_val { struct xs_dev dev; u32 roles; u32 gen; };   /* an address, resolved */
struct xs_slot { u64 ptr; u32 gen; u32 pad; };                  /* the ingress, last seen */

BPF_HASH(xs_devs, struct xs_dev, u32, XS_DEVS_ENTRIES);                 /* device -> roles */
BPF_ARRAY(xs_gen, u32, 1);                                              /* cache generation */
BPF_TABLE("lru_hash", u64, struct xs_ptr_val, xs_devptr, XS_PTR_ENTRIES);   /* net_device address */
BPF_TABLE("lru_hash", u64, struct xs_ptr_val, xs_napiptr, XS_PTR_ENTRIES);  /* napi_struct address */
BPF_PERCPU_ARRAY(xs_from, struct xs_slot, 1);
BPF_PERCPU_HASH(xs_devtx, struct xs_dev, struct xs_devtx_val, XS_DEVTX_ENTRIES);  /* by target */
BPF_PERCPU_HASH(xs_rerr, struct xs_err_key, u64, XS_RERR_ENTRIES);
BPF_PERCPU_ARRAY(xs_exc, u64, XS_EXC_SLOTS);          /* index = verdict, XS_EXC_INVALID = other */
BPF_PERCPU_ARRAY(xs_cpumap, u64, XS_CPUMAP_SLOTS);    /* bulk sizes 0..8, then dropped frames */
BPF_PERCPU_ARRAY(xs_cpu_enq, struct xs_cpu_enq, XS_NR_CPUS);  /* by target CPU */
BPF_PERCPU_ARRAY(xs_kthread, struct xs_kthread, 1);   /* the CPU a cpumap kthread runs on */
BPF_PERCPU_HASH(xs_napi, struct xs_dev, struct xs_napi_val, XS_NAPI_ENTRIES);
BPF_PERCPU_HASH(xs_redir, struct xs_dev, u64, XS_REDIR_ENTRIES);  /* per-packet successes, by target */
BPF_HASH(xs_cpumaps, u32, u32, XS_CPUMAPS_ENTRIES);   /* ids of the session's cpumaps */

/* cpumap events name no device: they count when the map is the session program's. */
static __always_inline int xs_cpumap_of_session(u32 map_id)
{
#ifdef XS_ALL_DEVICES
    return 1;
#else
    return xs_cpumaps.lookup(&map_id) != 0;
#endif
}

/* (netns, ifindex) of a net_device: three reads of kernel memory, no pointer kept (a freed
 * net_device's address may come back as another device). */
static __always_inline struct xs_dev xs_dev_of(const void *dev)
{
    struct xs_dev d = {};
    void *net = 0;
    if (!dev)
        return d;
    bpf_probe_read_kernel(&d.ifindex, sizeof(d.ifindex), dev + XS_OFF_NETDEV_IFINDEX);
    bpf_probe_read_kernel(&net, sizeof(net), dev + XS_OFF_NETDEV_NET);
    if (net)
        bpf_probe_read_kernel(&d.ns, sizeof(d.ns), net + XS_OFF_NET_INUM);
    if (d.ns == XS_OWN_NETNS)
        d.ns = 0;
    return d;
}

static __always_inline u32 xs_roles(struct xs_dev *d)
{
    u32 *r = xs_devs.lookup(d);
    return r ? *r : 0;
}

static __always_inline u32 xs_gen_now(void)
{
    u32 zero = 0, *g = xs_gen.lookup(&zero);
    return g ? *g : 0;
}

/* DevId and roles of the device at an address, resolved (three reads, a lookup) */
static __always_inline struct xs_ptr_val xs_resolve(const void *dev, u32 gen)
{
    struct xs_ptr_val v = {.dev = xs_dev_of(dev), .gen = gen};
    v.roles = xs_roles(&v.dev);
    return v;
}

/* ... cached by the net_device's address */
static __always_inline struct xs_ptr_val *xs_netdev(const void *dev, u32 gen)
{
    u64 key = (u64)dev;
    struct xs_ptr_val *c = xs_devptr.lookup(&key);
    if (c && c->gen == gen)
        return c;
    struct xs_ptr_val v = xs_resolve(dev, gen);
    xs_devptr.update(&key, &v);
    return xs_devptr.lookup(&key);
}

/* ... cached by the address of a napi_struct (its device read from napi->dev) */
static __always_inline struct xs_ptr_val *xs_napidev(u64 napi, u32 gen)
{
    struct xs_ptr_val *c = xs_napiptr.lookup(&napi);
    if (c && c->gen == gen)
        return c;
    void *dev = 0;
    bpf_probe_read_kernel(&dev, sizeof(dev), (void *)napi + XS_OFF_NAPI_DEV);
    struct xs_ptr_val v = xs_resolve(dev, gen);
    xs_napiptr.update(&napi, &v);
    return xs_napiptr.lookup(&napi);
}

/* Is dev the session's ingress (the program's events)? A per-CPU slot remembers it. */
static __always_inline int xs_is_ingress(const void *dev, u32 gen)
{
    u32 zero = 0;
    struct xs_slot *slot = xs_from.lookup(&zero);
    if (slot && slot->ptr == (u64)dev && slot->gen == gen)
        return 1;
    struct xs_ptr_val *c = xs_netdev(dev, gen);
    if (!c || !(c->roles & XS_ROLE_INGRESS))
        return 0;
    if (slot) {
        slot->ptr = (u64)dev;
        slot->gen = gen;
    }
    return 1;
}

static __always_inline void xs_add_err(struct xs_dev to, int err, u64 n)
{
    struct xs_err_key k = {.to = to, .err = err};
    u64 zero = 0, *v = xs_rerr.lookup_or_try_init(&k, &zero);
    if (v)
        *v += n;
}

/* The target of a redirect, as the xdp_redirect tracepoints compute to_ifindex: a devmap entry's
 * device, or bpf_redirect()'s ifindex (in the ingress's namespace); else none (0, 0). */
static __always_inline struct xs_dev xs_redirect_target(struct xs_dev from, const void *tgt,
                                                        u32 map_type, u32 map_id, u32 index)
{
    struct xs_dev none = {};
    if (map_type == BPF_MAP_TYPE_DEVMAP || map_type == BPF_MAP_TYPE_DEVMAP_HASH) {
        void *dev = 0;
        if (tgt)  /* struct bpf_dtab_netdev starts with its net_device pointer */
            bpf_probe_read_kernel(&dev, sizeof(dev), tgt);
        struct xs_ptr_val *c = dev ? xs_netdev(dev, xs_gen_now()) : 0;
        return c ? c->dev : none;
    }
    if (map_type == BPF_MAP_TYPE_UNSPEC && map_id == 0x7fffffff) {
        struct xs_dev d = {.ns = from.ns, .ifindex = index};
        return d;
    }
    return none;
}

#ifdef XS_TP_XDP_DEVMAP_XMIT
/* One event per bulk-queue flush (bq_xmit_all): sent + drops is the flush size.
 * args: from_dev, to_dev, sent, drops, err. */
RAW_TRACEPOINT_PROBE(xdp_devmap_xmit)
{
    u32 gen = xs_gen_now();
#ifndef XS_ALL_DEVICES
    if (!xs_is_ingress((void *)ctx->args[0], gen))
        return 0;
#endif
    struct xs_ptr_val *target = xs_netdev((void *)ctx->args[1], gen);
    if (!target)
        return 0;
    struct xs_dev to = target->dev;
    int sent = (int)ctx->args[2], drops = (int)ctx->args[3], err = (int)ctx->args[4];
    struct xs_devtx_val *d = xs_devtx.lookup(&to);
    if (!d) {
        struct xs_devtx_val z = {};
        u32 polled = XS_ROLE_POLLED;
        xs_devtx.update(&to, &z);
        d = xs_devtx.lookup(&to);
        if (!d)
            return 0;
        if (!xs_devs.lookup(&to)) {  /* a new target: count its polls from now on */
            xs_devs.update(&to, &polled);
            u32 zero = 0, *g = xs_gen.lookup(&zero);
            if (g)
                __sync_fetch_and_add(g, 1);   /* cached roles are stale */
        }
    }
    u32 bin = sent + drops;
    if (bin > XS_DEV_MAP_BULK_SIZE)
        bin = XS_FLUSH_OVERSIZE;
    asm volatile("" : "+r"(bin));  /* keep clang from bound-checking a copy (verifier) */
    d->sent += sent;
    d->drops += drops;
    d->flush[bin & (XS_FLUSH_SLOTS - 1)]++;
    if (err && drops)
        xs_add_err(to, err, drops);
    return 0;
}
#endif

/* The target of an xdp_redirect / xdp_redirect_err event, if the session's ingress redirected
 * (0: another device's). args: dev, xdp, tgt, err, map_type, map_id, index. */
static __always_inline int xs_ingress_redirect(struct bpf_raw_tracepoint_args *ctx, struct xs_dev *to)
{
    u32 gen = xs_gen_now();
    if (!xs_is_ingress((void *)ctx->args[0], gen))
        return 0;
    struct xs_ptr_val *from = xs_netdev((void *)ctx->args[0], gen);
    if (!from)
        return 0;
    *to = xs_redirect_target(from->dev, (void *)ctx->args[2], (u32)ctx->args[4],
                             (u32)ctx->args[5], (u32)ctx->args[6]);
    return 1;
}

#ifdef XS_TP_XDP_REDIRECT_ERR
/* A redirect that failed before reaching a bulk queue (bad slot, device cannot take XDP, ...).
 * args: dev, xdp, tgt, err, map_type, map_id, index. */
RAW_TRACEPOINT_PROBE(xdp_redirect_err)
{
    struct xs_dev to;
    if (!xs_ingress_redirect(ctx, &to))
        return 0;
    xs_add_err(to, (int)ctx->args[3], 1);
    return 0;
}
#endif

#ifdef XS_TP_XDP_EXCEPTION
/* args: dev, xdp, act */
RAW_TRACEPOINT_PROBE(xdp_exception)
{
    if (!xs_is_ingress((void *)ctx->args[0], xs_gen_now()))
        return 0;
    u32 act = (u32)ctx->args[2];
    u32 k = act < XS_EXC_INVALID ? act : XS_EXC_INVALID;
    u64 *v = xs_exc.lookup(&k);
    if (v)
        (*v)++;
    return 0;
}
#endif

#ifdef XS_TP_XDP_CPUMAP_ENQUEUE
/* One event per cpumap bulk flush: processed frames (drops included) went to CPU to_cpu.
 * args: map_id, processed, drops, to_cpu. No device: filtered by the session's cpumap id. */
RAW_TRACEPOINT_PROBE(xdp_cpumap_enqueue)
{
    if (!xs_cpumap_of_session((u32)ctx->args[0]))  /* another program's cpumap */
        return 0;
    u32 processed = (u32)ctx->args[1], drops = (u32)ctx->args[2], to_cpu = (u32)ctx->args[3];
    u32 k = processed < XS_CPU_MAP_BULK_SIZE ? processed : XS_CPU_MAP_BULK_SIZE;
    u64 *v = xs_cpumap.lookup(&k);
    if (v)
        (*v)++;
    k = XS_CPUMAP_DROPS;
    v = xs_cpumap.lookup(&k);
    if (v)
        *v += drops;
    struct xs_cpu_enq *e = xs_cpu_enq.lookup(&to_cpu);
    if (e) {
        e->processed += processed;
        e->drops += drops;
        e->bulks++;
    }
    return 0;
}
#endif

#ifdef XS_TP_XDP_CPUMAP_KTHREAD
/* One event per round of a cpumap kthread (on the CPU it serves).
 * args: map_id, processed, drops, sched, xdp_stats. */
RAW_TRACEPOINT_PROBE(xdp_cpumap_kthread)
{
    if (!xs_cpumap_of_session((u32)ctx->args[0]))
        return 0;
    u32 zero = 0;
    struct xs_kthread *t = xs_kthread.lookup(&zero);
    if (t) {
        t->processed += (u32)ctx->args[1];
        t->drops += (u32)ctx->args[2];
        t->sched += (int)ctx->args[3] ? 1 : 0;
    }
    return 0;
}
#endif

#ifdef XS_TP_NAPI_POLL
/* Work done per NAPI poll against the budget, per device (log2 histogram of work).
 * args: napi, work, budget; the device through napi->dev (none: the per-CPU backlog). */
RAW_TRACEPOINT_PROBE(napi_poll)
{
    struct xs_ptr_val *c = xs_napidev(ctx->args[0], xs_gen_now());
    if (!c)
        return 0;
#ifndef XS_ALL_DEVICES
    if (!(c->roles & XS_ROLE_POLLED))
        return 0;
#endif
    struct xs_dev d = c->dev;
    struct xs_napi_val *v = xs_napi.lookup(&d);
    if (!v) {
        struct xs_napi_val z = {};
        xs_napi.update(&d, &z);
        v = xs_napi.lookup(&d);
        if (!v)
            return 0;
    }
    int work = (int)ctx->args[1], budget = (int)ctx->args[2];
    v->polls++;
    v->work += work;
    v->budget += budget;
    if (work >= budget)
        v->full++;
    /* log2 bins 0, 1, 2-3, 4-7, ... 64-127, >=128 (no __builtin_clz: it crashes bcc's clang) */
    u32 bin = work <= 0 ? 0 : work < 2 ? 1 : work < 4 ? 2 : work < 8 ? 3 : work < 16 ? 4 :
              work < 32 ? 5 : work < 64 ? 6 : work < 128 ? 7 : 8;
    asm volatile("" : "+r"(bin));
    if (bin < XS_NAPI_BINS)
        v->hist[bin]++;
    return 0;
}
#endif

#ifdef XS_TP_XDP_REDIRECT
/* Per packet: costly (~29% of live redirect throughput), only on request.
 * args: dev, xdp, tgt, err, map_type, map_id, index. */
RAW_TRACEPOINT_PROBE(xdp_redirect)
{
    struct xs_dev to;
    if (!xs_ingress_redirect(ctx, &to))
        return 0;
    u64 zero = 0, *v = xs_redir.lookup_or_try_init(&to, &zero);
    if (v)
        (*v)++;
    return 0;
}
#endif
