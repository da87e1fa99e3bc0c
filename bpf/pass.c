/* pass: every frame goes up the stack. */
static __always_inline int xs_prog(struct xdp_md *ctx, u32 *slot)
{
    return XDP_PASS;
}
