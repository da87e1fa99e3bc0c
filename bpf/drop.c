/* drop: every frame is dropped in the driver. */
static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
{
    return XDP_DROP;
}
