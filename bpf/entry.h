/* Entry point, appended after the program: the only non-static function, so bcc loads it. */
int xdp_main(struct xdp_md *ctx)
{
    u32 slot = XS_NO_SLOT;
    int act = xs_prog(ctx, &slot);
    return xs_count(act, slot);
}
