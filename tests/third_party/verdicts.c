// SPDX-License-Identifier: GPL-2.0
/* A third-party XDP program, as people write them with libbpf: built with
 *   clang -O2 -g -target bpf -I/usr/include/$(uname -m)-linux-gnu -DOK=.. -DREFUSED=.. -DUNSENT=.. -c verdicts.c
 * and attached by iproute2 (`ip link set dev X xdpdrv obj verdicts.o sec xdp`), never by xdpscope.
 * It keeps its own truth: how often it returned each verdict, per CPU, in the map `truth`.
 * Out of every 20 frames of a CPU: 2 ABORTED, 2 DROP, 4 PASS, 2 TX, and REDIRECT 4 to the ifindex OK,
 * 3 to REFUSED and 3 to UNSENT (tests/test_watch_truth.py makes TX fail, REFUSED refuse the redirect
 * at once and UNSENT accept it but fail to send at the flush). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#if !defined(OK) || !defined(REFUSED) || !defined(UNSENT)
#error "build with -DOK=<ifindex> -DREFUSED=<ifindex> -DUNSENT=<ifindex>"
#endif

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 5);        /* index = the verdict returned */
	__type(key, __u32);
	__type(value, __u64);
} truth SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seq SEC(".maps");

static __always_inline int verdict_of(__u64 i)
{
	__u32 k = i % 20;

	if (k < 2)
		return XDP_ABORTED;
	if (k < 4)
		return XDP_DROP;
	if (k < 8)
		return XDP_PASS;
	if (k < 10)
		return XDP_TX;
	return bpf_redirect(k < 14 ? OK : k < 17 ? REFUSED : UNSENT, 0);
}

SEC("xdp")
int every_verdict(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&seq, &zero);

	if (!n)
		return XDP_PASS;
	__u32 act = verdict_of((*n)++);
	__u64 *t = bpf_map_lookup_elem(&truth, &act);

	if (t)
		(*t)++;
	return act;
}

char _license[] SEC("license") = "GPL";
